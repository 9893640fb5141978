"""The results grid (``aaren-bench returns``): runs, resume, the report, the missing-Ray hint."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from aaren_rl.aaren_policy import BackboneConfig
from aaren_rl.bench.returns import ReturnsConfig, grid_specs, grid_status, run_one, sha256_file
from aaren_rl.bench.returns_report import markers, sign_test, signed_rank_test, summarize_returns
from aaren_rl.errors import ConfigError

TINY = dict(
    seeds=(0,),
    steps=4,
    eval_every=2,
    eval_episodes=1,
    eval_max_episode_steps=15,
    model=BackboneConfig(dim=16, num_layers=1),
    context_length=4,
    episode_length=40,
    checkpoint_every=1,
)


def tiny_cfg(tmp: Path, dataset: Path, **kw) -> ReturnsConfig:
    args = {**TINY, "runs": ("aaren:auto",), **kw}
    return ReturnsConfig(
        datasets=(f"d4rl:{dataset}",), out_dir=tmp / "out", work_dir=tmp / "work", **args
    )


def without_timing(path: Path) -> dict:
    record = json.loads(path.read_text())
    record.pop("timing")
    return record


def test_defaults_stay_in_the_repository():
    cfg = ReturnsConfig()
    assert len(cfg.datasets) == 6 and all(d.startswith("d4rl:runs/datasets/") for d in cfg.datasets)
    assert {"d4rl:runs/datasets/walker2d-medium-replay.hdf5"} <= set(cfg.datasets)
    assert cfg.steps == 10_000 and cfg.eval_every == 1000 and cfg.eval_episodes == 10
    assert cfg.seeds == (0, 1, 2) and cfg.resolved_warmup == 1000
    assert cfg.resolved_out_dir == Path("docs/results/returns-10k")
    assert cfg.stages == list(range(1000, 10_001, 1000))
    specs = grid_specs(cfg, root="/r")
    assert len(specs) == 6 * 2 * 3
    assert {s.name for s in specs} >= {"hopper-medium__aaren__episode__s0",
                                       "halfcheetah-medium-replay__transformer__window__s2"}  # fmt: skip


def test_bad_flags():
    from aaren_rl.errors import ConfigError

    with pytest.raises(ConfigError, match="BACKBONE:RECIPE"):
        ReturnsConfig(runs=("lstm:auto",))
    with pytest.raises(ConfigError, match="--address"):
        ReturnsConfig(executor="local", address="auto")


def test_run_writes_both_acting_modes(tmp_path: Path, tiny_hopper_dataset: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny_cfg(tmp_path, tiny_hopper_dataset, runs=("transformer:auto",))
    (spec,) = grid_specs(cfg)
    assert run_one(spec).startswith("tiny-hopper__transformer__window__s0: final window")
    out = {p.name: json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")}
    assert set(out) == {"tiny-hopper__transformer__window__s0__window.json",
                        "tiny-hopper__transformer__window__s0__kv-cache.json"}  # fmt: skip
    r = out["tiny-hopper__transformer__window__s0__kv-cache.json"]
    assert r["acting"] == "kv-cache" and r["mode"] == "recurrent"
    assert r["dataset_sha256"] == sha256_file(tiny_hopper_dataset)
    assert r["dataset_source_sha256"] is None  # set for slim copies (bench/gpu/slim.py)
    assert [c["step"] for c in r["curve"]] == [2, 4]
    assert r["normalized_mean"] == r["curve"][-1]["normalized_mean"]  # final = last point
    assert r["best_normalized_mean"] == max(c["normalized_mean"] for c in r["curve"])
    assert r["best_step"] in (2, 4) and "CORL" in r["best_convention"]
    assert r["precision"] in ("float32", "bfloat16 autocast")  # --precision auto: the CPU's
    assert r["device"].startswith(("cpu", "cuda"))
    assert r["behaviour_normalized_score"] is not None and r["episodes"] == 12
    assert r["timing"]["wall_seconds"] > 0 and r["settings"]["warmup_steps"] == 0
    assert run_one(spec).endswith("already done")


@pytest.mark.parametrize("where, at", [("train", 3), ("eval", 2), ("eval", 3)])
def test_interrupted_run_resumes_to_the_same_json(
    tmp_path: Path, tiny_hopper_dataset: Path, monkeypatch, where: str, at: int
):
    """Stopped mid-training (after the step-2 checkpoint) or mid-scoring, then started
    again: the JSON files equal those of an uninterrupted run (up to the timing block)."""
    import torch

    import aaren_rl.bench.returns as returns

    monkeypatch.chdir(tmp_path)
    (ref,) = grid_specs(tiny_cfg(tmp_path / "ref", tiny_hopper_dataset))
    run_one(ref)

    cut = tiny_cfg(tmp_path / "cut", tiny_hopper_dataset)
    (spec,) = grid_specs(cut)
    assert grid_status(cut) == [(spec.name, "not started")]  # --status
    # "train": killed inside gradient step `at` (the trainer clips every step's gradient).
    target = (torch.nn.utils, "clip_grad_norm_") if where == "train" else (returns, "_evaluate")
    original, calls = getattr(*target), []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(*target, interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_one(spec)
    assert not spec.done
    ((_, state),) = grid_status(cut)
    assert state.startswith("checkpoint at step 2 of 4" if where == "train" else "checkpoint at")
    monkeypatch.setattr(*target, original)
    run_one(spec)
    assert grid_status(cut)[0][1].startswith("done (")
    for acting in ("recurrent", "window", "recurrent-full"):
        assert without_timing(spec.result_path(acting)) == without_timing(ref.result_path(acting))


def test_aaren_acts_with_a_chosen_memory_horizon_and_over_the_whole_episode(
    tmp_path: Path, tiny_hopper_dataset: Path, monkeypatch
):
    """recurrent: the horizon chosen offline at each evaluation on the run's held-out episodes
    (recorded in the curve and the final choice); recurrent-online (--also-online): the one
    chosen on validation episodes in the env; recurrent-full: the whole episode. An acting
    mode added after a run was scored is scored on its final checkpoint only."""
    import aaren_rl.bench.returns as returns

    monkeypatch.chdir(tmp_path)
    (spec,) = grid_specs(tiny_cfg(tmp_path, tiny_hopper_dataset, horizon_candidates=(0, 3)))
    assert spec.actings == ("recurrent", "window", "recurrent-full")
    monkeypatch.setitem(returns.ACTING, "aaren", ("recurrent", "window"))  # an older grid
    run_one(spec)
    assert not spec.result_path("recurrent-full").exists()
    monkeypatch.undo()
    cfg = tiny_cfg(tmp_path, tiny_hopper_dataset, horizon_candidates=(0, 3), also_online=True)
    (spec,) = grid_specs(cfg)
    assert spec.actings[-1] == "recurrent-online" and not spec.done
    run_one(spec)
    rec, full, online = (
        json.loads(spec.result_path(a).read_text())
        for a in ("recurrent", "recurrent-full", "recurrent-online")
    )
    choice = rec["horizon_choice"]
    assert rec["horizon_selection"] == choice["selection"] == "offline"
    assert rec["memory_horizon"] == choice["memory_horizon"] in (0, 3)
    assert choice["action_errors"].keys() == {"0", "3"} and choice["criterion"] == "own-actions"
    held = json.loads((spec.run_dir / "checkpoint" / "agent.json").read_text())
    assert choice["heldout_episodes"] == held["horizon_selection"]["heldout_episodes"]
    assert len(choice["heldout_episodes"]) == 2 and len(choice["scored_episodes"]) == 1
    assert [c["memory_horizon"] in (0, 3) for c in rec["curve"]] == [True, True]
    assert online["horizon_selection"] == online["horizon_choice"]["selection"] == "online"
    assert online["horizon_choice"]["validation_scores"].keys() == {"0", "3"}
    assert online["horizon_choice"]["validation_seed"] == 1_000_000
    assert online["memory_horizon"] == online["horizon_choice"]["memory_horizon"]
    assert [c["step"] for c in online["curve"]] == [4]
    assert full["memory_horizon"] == 0 and full["horizon_choice"] is None
    assert full["horizon_selection"] is None
    assert [c["step"] for c in rec["curve"]] == [2, 4] and rec["curve_note"] is None
    assert [c["step"] for c in full["curve"]] == [4]
    assert full["curve_note"].startswith("not scored at steps 2 (")
    assert full["best_normalized_mean"] == full["normalized_mean"]
    if rec["memory_horizon"] == 0:  # the same horizon on the same episodes: played once
        assert rec["returns"] == full["returns"]
    window = json.loads(spec.result_path("window").read_text())
    assert window["memory_horizon"] is None and window["curve_note"] is None
    with pytest.raises(ConfigError, match="--horizon-candidates"):
        tiny_cfg(tmp_path, tiny_hopper_dataset, horizon_candidates=())


def test_online_selection_trains_on_every_episode(tmp_path: Path, tiny_hopper_dataset: Path,
                                                  monkeypatch):  # fmt: skip
    """--horizon-selection online: the grid as before (no held-out episodes), labelled online;
    a run trained so cannot then be scored offline."""
    monkeypatch.chdir(tmp_path)
    cfg = tiny_cfg(tmp_path, tiny_hopper_dataset, horizon_selection="online", steps=2,
                   horizon_candidates=(0, 3))  # fmt: skip
    (spec,) = grid_specs(cfg)
    assert "recurrent-online" not in spec.actings
    run_one(spec)
    rec = json.loads(spec.result_path("recurrent").read_text())
    assert rec["horizon_selection"] == rec["horizon_choice"]["selection"] == "online"
    assert rec["settings"]["horizon_selection"] == "online"
    meta = json.loads((spec.run_dir / "checkpoint" / "agent.json").read_text())
    assert meta.get("horizon_selection") is None  # eval_episodes 0: the trainer chose nothing
    (offline,) = grid_specs(tiny_cfg(tmp_path, tiny_hopper_dataset, steps=2))
    from aaren_rl.bench.returns import _evaluate

    with pytest.raises(ConfigError, match="trained on every episode"):
        _evaluate(offline, "recurrent")


def test_status_says_what_it_cannot_read(tmp_path: Path, tiny_hopper_dataset: Path):
    cfg = tiny_cfg(tmp_path, tiny_hopper_dataset, seeds=(0, 1))
    done, broken = grid_specs(cfg)
    for acting in done.actings:  # results without their timing block
        done.result_path(acting).parent.mkdir(parents=True, exist_ok=True)
        done.result_path(acting).write_text("{}")
    (broken.run_dir / "checkpoint").mkdir(parents=True)  # a checkpoint folder, no state
    status = dict(grid_status(cfg))
    assert (
        status[done.name] == f"done ({done.result_path('recurrent').name} has no readable timing)"
    )
    assert status[broken.name].startswith("its checkpoint cannot be read: move ")


def _record(ds: str, backbone: str, acting: str, seed: int, final: float, **kw) -> dict:
    curve = [{"step": 1000, "normalized_mean": final + 5}, {"step": 2000, "normalized_mean": final}]
    return {
        "dataset": ds, "backbone": backbone, "recipe": "episode" if backbone == "aaren" else "window",
        "acting": acting, "mode": acting, "seed": seed, "steps": 2000, "normalized_mean": final,
        "curve": curve, "behaviour_normalized_score": 35.0, "dataset_sha256": "ab" * 32,
        "timing": {"wall_seconds": 600.0, "train_seconds_per_step": 0.25}, **kw,
    }  # fmt: skip


def test_summary_tables_targets_curves_and_docs(tmp_path: Path):
    out = tmp_path / "grid"
    out.mkdir()
    scores = {
        "aaren/recurrent": (50, 52, 54),
        "transformer/window": (48, 50, 58),
        "aaren/window": (51, 53, 55),
    }
    for key, vals in scores.items():
        backbone, acting = key.split("/")
        for seed, v in enumerate(vals):
            steps = "1000, 2000" if seed < 2 else "1000"  # two notes, listed by their seeds
            note = f"not scored at steps {steps} (later)" if key == "aaren/recurrent" else None
            rec = _record("hopper-medium", backbone, acting, seed, v, curve_note=note)
            path = out / f"hopper-medium__{backbone}__s{seed}__{acting}.json"
            path.write_text(json.dumps(rec))
    peer = {k: v for k, v in _record("hopper-medium", "d3rlpy-dt", "window", 0, 60.0).items()
            if k not in ("acting", "timing", "behaviour_normalized_score")}  # fmt: skip
    (out / "hopper-medium__d3rlpy-dt__window__window__s0.json").write_text(json.dumps(peer))
    page = tmp_path / "results.md"
    begin, end = markers(out)
    assert begin == "<!-- returns-grid:grid:begin -->"
    page.write_text(f"# Results\n\nintro\n\n{begin}\nold\n{end}\n\ntail\n")

    rows = summarize_returns(out, docs=page)
    by = {f"{r['backbone']}/{r['acting']}": r for r in rows}
    assert by["aaren/recurrent"]["final_mean"] == pytest.approx(52.0)
    assert by["aaren/recurrent"]["final_std"] == pytest.approx(2.0)
    assert by["aaren/recurrent"]["best_mean"] == pytest.approx(57.0)  # best of the curve
    assert by["d3rlpy-dt/window"]["final_mean"] == 60.0 and by["d3rlpy-dt/window"]["seeds"] == [0]
    targets = json.loads((out / "summary.json").read_text())["targets"]["hopper-medium"]
    vs_tf, vs_d3, vs_window, vs_behaviour = targets
    assert vs_window["met"] and vs_window["paired_difference"] == pytest.approx(-1.0)
    # every evaluation: 2 steps x 3 seeds, each 1 point behind (curves are final + 5, final)
    assert vs_window["every_evaluation_pairs"] == 6 and vs_window["every_evaluation_wins"] == 0
    assert vs_window["every_evaluation_difference"] == pytest.approx(-1.0)
    assert vs_tf["met"] and vs_tf["paired_difference"] == pytest.approx(0.0)
    assert vs_tf["paired_seeds"] == 3 and vs_tf["margin"] == pytest.approx(0.0)
    assert not vs_d3["met"] and vs_d3["margin"] == pytest.approx(-8.0)  # std 2 (d3rlpy: 1 seed)
    assert vs_behaviour["met"] and vs_behaviour["other"] == 35.0
    assert (out / "curves-hopper-medium.png").stat().st_size > 0
    text = page.read_text()
    assert text.startswith("# Results\n\nintro") and text.rstrip().endswith("tail")
    assert "old" not in text and "### hopper-medium" in text
    assert "](grid/curves-hopper-medium.png)" in text
    assert "**52.0 ± 2.0**" in text and "| behaviour policy |" in text
    # across datasets (one here): Aaren vs the Transformer 50-48, 52-50, 54-58 -> 2 of 3 ahead
    assert (
        "| transformer window | 1 | 3 | 2 / 1 / 0 | +0.0 ± 3.5 | 1.000 | 1.000 | 1 of 1 |" in text
    )
    assert "| d3rlpy-dt window | 1 | 1 | 0 / 1 / 0 | -10.0 ± - | 1.000 | 1.000 | 0 of 1 |" in text
    assert (
        "§ aaren acting recurrent: seed(s) 0, 1: not scored at steps 1000, 2000 (later); "
        "seed(s) 2: not scored at steps 1000 (later)"
    ) in text
    summarize_returns(out, docs=page)  # idempotent: the section is replaced, not appended
    assert page.read_text() == text


def test_the_report_labels_how_each_horizon_was_chosen(tmp_path: Path):
    """Offline and online choices are named in the rows, the targets and the across table;
    a record written before offline selection existed (a choice without ``selection``) was
    chosen online."""
    out = tmp_path / "grid"
    out.mkdir()
    offline = {"selection": "offline", "memory_horizon": 20, "action_errors": {"20": 0.1}}
    kinds = {
        "recurrent": ({"horizon_selection": "offline", "horizon_choice": offline}, (60, 62, 64)),
        "recurrent-online": ({"horizon_selection": "online",
                              "horizon_choice": {"selection": "online"}}, (61, 64, 65)),
        "recurrent-full": ({}, (40, 41, 42)),
        "window": ({}, (59, 60, 61)),
    }  # fmt: skip
    for acting, (extra, vals) in kinds.items():
        for seed, v in enumerate(vals):
            h = {"recurrent": 20, "recurrent-online": 40, "recurrent-full": 0}.get(acting)
            if acting == "recurrent":  # the default criterion changed between seeds 1 and 2
                crit = "own-actions" if seed == 2 else "target-return"
                extra = {**extra, "horizon_choice": {**offline, "criterion": crit}}
            rec = _record("hopper-medium", "aaren", acting, seed, v, memory_horizon=h, **extra)
            (out / f"hopper-medium__aaren__s{seed}__{acting}.json").write_text(json.dumps(rec))
    old = _record("walker2d-medium", "aaren", "recurrent", 0, 50.0, memory_horizon=10,
                  horizon_choice={"memory_horizon": 10, "validation_scores": {"10": 49.0}})  # fmt: skip
    (out / "walker2d-medium__aaren__s0__recurrent.json").write_text(json.dumps(old))
    rows = summarize_returns(out)
    by = {(r["dataset"], r["acting"]): r for r in rows}
    assert by[("hopper-medium", "recurrent")]["horizon_selection"] == "offline"
    assert by[("hopper-medium", "recurrent-online")]["horizon_selection"] == "online"
    assert by[("hopper-medium", "recurrent-full")]["horizon_selection"] is None
    assert by[("walker2d-medium", "recurrent")]["horizon_selection"] == "online"
    text = (out / "summary.md").read_text()
    assert "recurrent (memory horizon chosen offline, on held-out dataset episodes, per seed: " \
           "20, 20, 20; by the error on target-return, target-return, own-actions)" in text  # fmt: skip
    assert by[("hopper-medium", "recurrent")]["offline_criterion"] == [
        "target-return", "target-return", "own-actions"
    ]  # fmt: skip
    assert (
        "recurrent-online (memory horizon chosen online, on validation episodes in the env" in text
    )
    assert "recurrent (memory horizon chosen online, on validation episodes in the env, per " \
           "seed: 10)" in text  # fmt: skip
    targets = json.loads((out / "summary.json").read_text())["targets"]["hopper-medium"]
    vs_online = next(t for t in targets if t.get("rival") == "aaren/recurrent-online")
    assert vs_online["target"].startswith(
        "Aaren recurrent (H chosen offline) >= aaren recurrent-online"
    )
    assert vs_online["paired_difference"] == pytest.approx(-4 / 3)
    assert "| Aaren recurrent (H chosen offline) vs |" in text  # walker2d: no rival here
    assert "| aaren recurrent-online | 1 | 3 | 0 / 3 / 0 |" in text


def test_without_ray_the_command_says_how_to_install_it(
    tmp_path: Path, tiny_hopper_dataset: Path, monkeypatch, capsys
):
    from aaren_rl.bench.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    rc = main(["returns", "--datasets", f"d4rl:{tiny_hopper_dataset}", "--steps", "2",
               "--eval-every", "1", "--out-dir", str(tmp_path / "o"),
               "--work-dir", str(tmp_path / "w")])  # fmt: skip
    assert rc == 2
    assert "pip install 'aaren-rl[ray]'" in capsys.readouterr().err


def test_missing_dataset_says_how_to_make_it(tmp_path: Path, monkeypatch):
    from aaren_rl.bench.returns import run_returns_bench
    from aaren_rl.errors import DatasetError

    monkeypatch.chdir(tmp_path)
    cfg = ReturnsConfig(datasets=("d4rl:runs/datasets/walker2d-medium-replay.hdf5",), **TINY)
    with pytest.raises(
        DatasetError, match="aaren-collect --env walker2d --seed 0 --levels medium-replay"
    ):
        run_returns_bench(cfg)


def test_grid_on_a_local_ray_instance(tmp_path: Path, tiny_hopper_dataset: Path, monkeypatch):
    """Two tiny runs as Ray tasks on a 2-CPU local instance; a second launch skips both."""
    import ray  # a dev dependency: the grid really runs on Ray here

    from aaren_rl.bench.returns import run_returns_bench

    monkeypatch.chdir(tmp_path)
    cfg = tiny_cfg(tmp_path, tiny_hopper_dataset, runs=("aaren:auto", "transformer:auto"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rows = run_returns_bench(cfg)
    finally:
        ray.shutdown()
    assert {(r["backbone"], r["acting"]) for r in rows} == {
        ("aaren", "recurrent"), ("aaren", "window"), ("aaren", "recurrent-full"),
        ("transformer", "window"), ("transformer", "kv-cache"),
    }  # fmt: skip
    files = sorted(p.name for p in (tmp_path / "out").glob("tiny-hopper__*.json"))
    assert len(files) == 5
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("tiny-hopper__*.json")}
    assert all(s.done for s in grid_specs(cfg))
    run_returns_bench(cfg)  # nothing left to do: no task runs, no file is rewritten
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_run_refuses_a_dataset_that_changed_under_it(
    tmp_path: Path, tiny_hopper_dataset: Path, monkeypatch, synth
):
    import aaren_rl.bench.returns as returns
    from aaren_rl.errors import DatasetError

    monkeypatch.chdir(tmp_path)
    (spec,) = grid_specs(tiny_cfg(tmp_path, tiny_hopper_dataset))
    original, calls = returns._evaluate, []

    def stop_at_the_second_stage(*args, **kwargs):
        calls.append(1)
        if len(calls) == len(returns.ACTING["aaren"]) + 1:  # stage 1 scored; stop in stage 2
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(returns, "_evaluate", stop_at_the_second_stage)
    with pytest.raises(KeyboardInterrupt):
        run_one(spec)
    monkeypatch.setattr(returns, "_evaluate", original)
    synth.hopper_like(tiny_hopper_dataset, seed=1)  # other contents, same path
    with pytest.raises(DatasetError, match="changed since"):
        run_one(spec)


def test_overrides_reach_every_run_and_its_record(tmp_path: Path, tiny_hopper_dataset: Path):
    from aaren_rl.bench.returns import _train_config, _train_settings

    overrides = ("model.activation=relu", "learning_rate=3e-4")
    cfg = tiny_cfg(tmp_path, tiny_hopper_dataset, overrides=overrides)
    for spec in grid_specs(cfg):
        tc = _train_config(spec, 10, resume=False)
        assert (tc.model.activation, tc.learning_rate) == ("relu", 3e-4)
        assert _train_settings(spec)["model"]["activation"] == "relu"
    bad = tiny_cfg(tmp_path, tiny_hopper_dataset, overrides=("no_such_field=1",))
    with pytest.raises(ConfigError, match="no_such_field"):
        _train_config(grid_specs(bad)[0], 10, resume=False)


def test_across_datasets_flags_a_rival_at_another_budget(tmp_path: Path):
    out = tmp_path / "grid"
    out.mkdir()
    for ds in ("hopper-medium", "walker2d-medium"):
        for seed in (0, 1):
            rec = _record(ds, "aaren", "recurrent", seed, 50.0 + seed)
            (out / f"{ds}__aaren__s{seed}__recurrent.json").write_text(json.dumps(rec))
            steps = 1000 if ds == "walker2d-medium" else 2000  # no 2000-step rival there
            rec = _record(ds, "transformer", "window", seed, 40.0, steps=steps)
            (out / f"{ds}__transformer__s{seed}__window.json").write_text(json.dumps(rec))
    summarize_returns(out)
    text = (out / "summary.md").read_text()
    assert "| transformer window [1000 steps on some datasets] | 2 | 4 | 4 / 0 / 0 |" in text


def test_sign_test():
    assert sign_test(8, 1) == pytest.approx(20 / 512)  # 2 * (C(9,0) + C(9,1)) / 2^9
    assert sign_test(3, 0) == pytest.approx(0.25) and sign_test(0, 3) == pytest.approx(0.25)
    assert sign_test(2, 2) == 1.0 and sign_test(0, 0) == 1.0


def test_signed_rank_test_by_hand():
    assert signed_rank_test([1.0, 2.0, 3.0]) == pytest.approx(0.25)  # W+ = 6 of 6: 1/8, x2
    # ranks 1..5, W- = 2: sign patterns with W- <= 2 are {}, {1}, {2}: 2 * 3/32
    assert signed_rank_test([1.0, -2.0, 3.0, 4.0, 5.0]) == pytest.approx(6 / 32)
    # a tiny loss against big wins: W- = 1, patterns with W- <= 1 are {}, {1}: 2 * 2/16,
    # where the sign test (3 to 1) gives 10/16
    assert signed_rank_test([30.0, 25.0, 20.0, -0.1]) == pytest.approx(4 / 16)
    assert sign_test(3, 1) == pytest.approx(10 / 16)
    # one loss each: a big one leaves the two sides closer than a tiny one
    assert signed_rank_test([0.1, 0.2, 0.3, -30.0]) > signed_rank_test([-0.1, 0.2, 0.3, 30.0])
    assert signed_rank_test([1.0, -1.0, 2.0]) == pytest.approx(0.75)  # tied sizes: ranks 1.5
    assert signed_rank_test([0.0, 0.0]) == 1.0 and signed_rank_test([]) == 1.0


def test_signed_rank_test_matches_enumerating_every_sign_pattern():
    rng = np.random.default_rng(3)
    for n in (6, 9, 11):
        diffs = list(np.round(rng.normal(1.0, 3.0, n), 0))  # rounding makes ties and zeros
        sizes = sorted(abs(d) for d in diffs if d != 0)
        rank = {x: np.mean([i + 1 for i, y in enumerate(sizes) if y == x]) for x in sizes}
        w = sum(rank[abs(d)] for d in diffs if d > 0)
        sums = [
            sum(rank[x] for x, keep in zip(sizes, pattern) if keep)
            for pattern in itertools.product((0, 1), repeat=len(sizes))
        ]
        low = np.mean([t <= w + 1e-9 for t in sums])
        high = np.mean([t >= w - 1e-9 for t in sums])
        assert signed_rank_test(diffs) == pytest.approx(min(1.0, 2 * min(low, high)))


def test_a_run_trained_as_it_acts_acts_with_its_own_horizon(tmp_path: Path, tiny_hopper_dataset,
                                                            monkeypatch):  # fmt: skip
    """--overrides train_memory_horizon=H: recurrent acting uses H, labelled "trained", with no
    choice (none is held out); the whole-episode row still plays H = 0."""
    monkeypatch.chdir(tmp_path)
    cfg = tiny_cfg(tmp_path, tiny_hopper_dataset, steps=2, overrides=("train_memory_horizon=3",))
    (spec,) = grid_specs(cfg)
    run_one(spec)
    rec = json.loads(spec.result_path("recurrent").read_text())
    assert (rec["memory_horizon"], rec["horizon_selection"], rec["horizon_choice"]) == (
        3,
        "trained",
        None,
    )
    assert rec["settings"]["train_memory_horizon"] == 3
    full = json.loads(spec.result_path("recurrent-full").read_text())
    assert full["memory_horizon"] == 0
    summarize_returns(cfg.resolved_out_dir)
    text = (cfg.resolved_out_dir / "summary.md").read_text()
    assert "recurrent (memory horizon the one it trained with (offline, fixed before " \
           "training), per seed: 3)" in text  # fmt: skip


def test_seeds_on_files_of_their_own_keep_their_pairs(tmp_path: Path):
    """A grid that moved between CPU kinds: seed 1 on another collection of the dataset,
    every agent's seed 1 on that file. Pairs stay pairs; the page says what the means mix."""
    out = tmp_path / "grid"
    out.mkdir()
    for seed, sha, behaviour in ((0, "ab" * 32, 10.5), (1, "ef" * 32, 12.6)):
        for backbone, acting, score in (
            ("aaren", "recurrent", 50.0),
            ("transformer", "window", 40.0),
        ):
            rec = _record("walker2d-medium-replay", backbone, acting, seed, score + seed,
                          dataset_sha256=sha, behaviour_normalized_score=behaviour)  # fmt: skip
            (out / f"w__{backbone}__s{seed}__{acting}.json").write_text(json.dumps(rec))
    summarize_returns(out)
    text = (out / "summary.md").read_text()
    assert "Warning" not in text
    note = next(line for line in text.splitlines() if line.startswith("**Note"))
    assert f"seed 0: `{'ab' * 8}…`; seed 1: `{'ef' * 8}…`" in note
    assert (
        "2 different files" in note
        and "each pair below (same seed) is compared on one file" in note
    )
    assert f"**11.6** (10.5 on `{'ab' * 8}…`, 12.6 on `{'ef' * 8}…`)" in text
    summary = json.loads((out / "summary.json").read_text())
    targets = summary["targets"]["walker2d-medium-replay"]
    rival = next(t for t in targets if t.get("rival") == "transformer/window")
    assert rival["paired_seeds"] == 2 and rival["paired_difference"] == pytest.approx(10.0)
    behaviour = next(t for t in targets if "behaviour" in t["target"])
    assert behaviour["other"] == pytest.approx(11.55)  # the mean over the seeds' files
    # a seed whose rows disagree on the file: back to the warning
    odd = _record(
        "walker2d-medium-replay", "transformer", "kv-cache", 1, 30.0, dataset_sha256="ab" * 32
    )
    (out / "w__transformer__s1__kv-cache.json").write_text(json.dumps(odd))
    summarize_returns(out)
    assert "**Warning: these rows ran on 2 different files" in (out / "summary.md").read_text()


def test_rows_on_different_files_of_a_dataset_are_flagged(tmp_path: Path):
    out = tmp_path / "grid"
    out.mkdir()
    for seed in (0, 1):
        rec = _record("hopper-medium", "aaren", "recurrent", seed, 50.0)
        (out / f"hopper-medium__aaren__s{seed}__recurrent.json").write_text(json.dumps(rec))
        rec = _record("hopper-medium", "transformer", "window", seed, 40.0)
        (out / f"hopper-medium__transformer__s{seed}__window.json").write_text(json.dumps(rec))
    summarize_returns(out)
    assert "Warning" not in (out / "summary.md").read_text()  # one file: no warning
    peer = _record("hopper-medium", "d3rlpy-dt", "window", 0, 60.0, dataset_sha256="cd" * 32)
    (out / "hopper-medium__d3rlpy-dt__window__window__s0.json").write_text(json.dumps(peer))
    summarize_returns(out)
    text = (out / "summary.md").read_text()
    warning = next(line for line in text.splitlines() if line.startswith("**Warning"))
    assert "2 different files" in warning and "not comparable" in warning
    assert f"`{'cd' * 8}…`: d3rlpy-dt window window" in warning
    assert f"`{'ab' * 8}…`: aaren episode recurrent, transformer window window" in warning
    assert text.split(warning)[0].endswith("\n\n")  # a paragraph of its own
    targets = json.loads((out / "summary.json").read_text())["targets"]["hopper-medium"]
    peer_target = next(t for t in targets if t.get("rival") == "d3rlpy-dt/window")
    assert peer_target["paired_seeds"] == 0  # seed 0 on two files is no pair
    assert peer_target["every_evaluation_pairs"] == 0
    unknown = _record("hopper-medium", "transformer", "kv-cache", 0, 45.0, dataset_sha256=None)
    (out / "hopper-medium__transformer__s0__kv-cache.json").write_text(json.dumps(unknown))
    summarize_returns(out)
    text = (out / "summary.md").read_text()
    warning = next(line for line in text.splitlines() if line.startswith("**Warning"))
    assert "2 different files" in warning  # an unrecorded file is not counted as one
    assert "not recorded: transformer window kv-cache" in warning
