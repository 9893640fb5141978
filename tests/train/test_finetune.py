"""aaren-finetune end to end on Hopper-v5 from tiny checkpoints trained on the shipped demo data:
the buffer, the checkpoint, the summary's time split, bit-identical resume, the temperature
update's direction and clear errors for bad flags."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file

from aaren_rl.aaren_policy import BackboneConfig
from aaren_rl.agents import DecisionAgent
from aaren_rl.errors import ConfigError
from aaren_rl.train.config import TrainConfig
from aaren_rl.train.finetune import Finetuner
from aaren_rl.train.finetune_cli import finetune, main
from aaren_rl.train.finetune_config import FinetuneConfig
from aaren_rl.train.loop import train


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 20-step checkpoint of each backbone on demo:hopper (d = 16, one layer)."""
    root = tmp_path_factory.mktemp("offline")
    out = {}
    for backbone in ("aaren", "transformer"):
        cfg = TrainConfig(
            dataset="demo:hopper",
            backbone=backbone,
            steps=20,
            model=BackboneConfig(dim=16, num_layers=1),
            episode_length=100,
            batch_size=8,
            threads=1,
            eval_episodes=0,
            progress=False,
            run_dir=root / backbone,
        )
        out[backbone] = train(cfg).run_dir / "checkpoint"
    return out


def _cfg(checkpoint: Path, run_dir: Path, **kw) -> FinetuneConfig:
    base = dict(
        checkpoint=checkpoint,
        run_dir=run_dir,
        env_steps=200,
        num_envs=2,
        max_episode_steps=40,
        replay_size=20,
        batch_size=8,
        episode_length=40,
        eval_every=100,
        eval_episodes=2,
        checkpoint_every=100,
        threads=1,
        progress=False,
    )
    return FinetuneConfig(**{**base, **kw})


@pytest.mark.parametrize("backbone", ["aaren", "transformer"])
def test_finetune_collects_trains_and_writes_a_checkpoint(
    offline, tmp_path: Path, backbone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    track = backbone == "transformer"  # W&B (offline mode) on one of the two runs
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    result = finetune(_cfg(offline[backbone], tmp_path / "ft", track=track))
    s, ckpt = result.summary, tmp_path / "ft" / "checkpoint"
    assert s["backbone"] == backbone and s["mode"] == (
        "recurrent" if backbone == "aaren" else "window"
    )
    assert s["env_steps"] >= 200 and s["episodes"] == 2 * s["rounds"]
    assert s["updates"] == int(s["env_steps"] * 0.3) or abs(s["updates"] - 0.3 * s["env_steps"]) < 1
    assert s["exploration_return"] == 2 * s["eval_target_return"]
    assert s["offline_eval"]["episodes"] == 2 and s["final_eval"]["episodes"] == 2
    assert s["curve"][0]["env_steps"] == 0 and s["curve"][-1]["env_steps"] == s["env_steps"]
    assert all(s["time_seconds"][k] > 0 for k in ("act", "env", "update", "eval", "checkpoint"))
    # acting's CPU time covers every env step, and one thread's CPU time never exceeds its
    # wall-clock (the two clocks are read a few ns apart: the slack)
    assert s["acting_cpu_env_steps"] == s["env_steps"] and s["time_seconds"]["act_cpu"] > 0
    assert s["acting_cpu_us_per_env_step"] <= 1.01 * s["acting_us_per_env_step"] + 1
    # the buffer: 20 offline trajectories, every online episode added, the oldest evicted
    replay = json.loads((ckpt / "replay.json").read_text())
    assert replay["added"] == s["episodes"] and replay["trajectories"] == 20
    assert replay["evicted"] == s["episodes"]  # full from the start: one out per one in
    records = [json.loads(x) for x in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    online = [r for r in records if "online/return_mean" in r]
    assert [r["step"] for r in online] == sorted({r["step"] for r in online})
    assert all("train/entropy" in r and "train/temperature" in r for r in online[1:])
    # the checkpoint: an ordinary agent (aaren-eval reads it) + log-std + state, no pickle
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == sorted(
        ["agent.json", "model.safetensors", "log_std_head.safetensors", "trainer.json"]
        + ["trainer.safetensors", "replay.json", "replay.safetensors"]
    )
    assert not any(p.read_bytes()[:1] == b"\x80" for p in ckpt.iterdir())  # pickle protocol 2+
    agent = DecisionAgent.load(ckpt)
    agent.reset(1)
    assert agent.predict(np.zeros((1, 11), np.float32)).shape == (1, 3)
    if track:
        runs = list((tmp_path / "ft" / "wandb").glob("offline-run-*"))
        assert runs and list(runs[0].glob("*.wandb")), "W&B offline run missing"
    before, after = (
        load_file(str(offline[backbone] / "model.safetensors")),
        load_file(str(ckpt / "model.safetensors")),
    )
    assert any(not torch.equal(before[k], after[k]) for k in before)


def _weights_equal(a_dir: Path, b_dir: Path) -> bool:
    names = ("model.safetensors", "log_std_head.safetensors", "trainer.safetensors")
    for name in names:
        a, b = load_file(str(a_dir / name)), load_file(str(b_dir / name))
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            return False
    return True


def test_resume_gives_the_weights_of_an_uninterrupted_run(offline, tmp_path: Path) -> None:
    kw = dict(eval_episodes=0, warmup_steps=10, env_steps=120)
    finetune(_cfg(offline["aaren"], tmp_path / "whole", **{**kw, "env_steps": 240}))
    first = finetune(_cfg(offline["aaren"], tmp_path / "split", **kw))
    assert 120 <= first.summary["env_steps"] < 240
    resumed = replace(_cfg(offline["aaren"], tmp_path / "split", **kw), env_steps=240, resume=True)
    finetune(resumed)
    whole, split = tmp_path / "whole" / "checkpoint", tmp_path / "split" / "checkpoint"
    assert _weights_equal(whole, split)
    a, b = (
        load_numpy(str(whole / "replay.safetensors")),
        load_numpy(str(split / "replay.safetensors")),
    )
    assert all(np.array_equal(a[k], b[k]) for k in a)
    sa = json.loads((tmp_path / "whole" / "summary.json").read_text())
    sb = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert (sa["env_steps"], sa["updates"], sa["episodes"]) == (
        sb["env_steps"],
        sb["updates"],
        sb["episodes"],
    )


def test_a_run_saved_before_acting_cpu_time_reports_it_for_its_later_rounds(
    offline, tmp_path: Path
) -> None:
    kw = dict(eval_episodes=0, warmup_steps=10, env_steps=120)
    first = finetune(_cfg(offline["aaren"], tmp_path / "old", **kw)).summary
    path = tmp_path / "old" / "checkpoint" / "trainer.json"
    doc = json.loads(path.read_text())  # as written before the CPU time was measured
    del doc["state"]["timing"]["act_cpu"], doc["state"]["counters"]["act_cpu_env_steps"]
    path.write_text(json.dumps(doc))
    resumed = replace(_cfg(offline["aaren"], tmp_path / "old", **kw), env_steps=240, resume=True)
    s = finetune(resumed).summary
    assert s["acting_cpu_env_steps"] == s["env_steps"] - first["env_steps"] > 0
    assert s["time_seconds"]["act_cpu"] > 0


@pytest.mark.parametrize(("target", "direction"), [(50.0, 1), (-50.0, -1)])
def test_temperature_moves_towards_the_entropy_target(
    offline, tmp_path: Path, target, direction
) -> None:
    ft = Finetuner.build(
        _cfg(offline["aaren"], tmp_path / "t", target_entropy=target, temperature_lr=1e-2)
    )
    start = float(ft.log_temperature.detach().exp())
    stats = [ft.update() for _ in range(3)]
    end = float(ft.log_temperature.detach().exp())
    assert np.sign(end - start) == direction
    # the entropy is far from either target, so the sign is (target - entropy)'s
    assert all(np.sign(target - s["train/entropy"]) == direction for s in stats)
    assert not (tmp_path / "t").exists()  # build and update write nothing


def test_bad_flags_give_one_line_and_exit_2(offline, tmp_path: Path, capsys, monkeypatch) -> None:
    ckpt = str(offline["aaren"])
    monkeypatch.chdir(tmp_path)  # the default run directory is relative: runs/...
    cases = [
        ([], "--checkpoint is required"),
        (["--checkpoint", ckpt, "--num-envs", "0"], "--num-envs must be >= 1"),
        (["--checkpoint", ckpt, "--init-std", "100"], "--init-std"),
        (["--checkpoint", ckpt, "--updates-per-env-step", "0"], "--updates-per-env-step"),
        (["--checkpoint", ckpt, "--final-lr-fraction", "1.5"], "--final-lr-fraction must lie"),
        (["--checkpoint", str(tmp_path / "nope")], "no checkpoint directory"),
        (["--resume"], "--resume needs --run-dir"),
        (["--checkpoint", ckpt, "--env", "walker2d"], "pass the --env it was trained for"),
        (["--resume", "--run-dir", str(tmp_path / "none")], "nothing to resume"),
        (["--checkpoint", ckpt, "--seed", "2147483647"], "must stay below 2**32"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was written
    taken = tmp_path / "taken"
    (taken / "x").mkdir(parents=True)
    assert main(["--checkpoint", ckpt, "--run-dir", str(taken)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    from aaren_rl.fileio import DirLock

    busy = tmp_path / "busy"
    with DirLock(busy, "--run-dir"):  # another process's run in progress
        assert main(["--checkpoint", ckpt, "--run-dir", str(busy)]) == 2
    assert f"in use by PID {os.getpid()}" in capsys.readouterr().err
    assert not busy.exists()


def _checkpoint_env_steps(run_dir: Path) -> int:
    try:
        meta = json.loads((run_dir / "checkpoint" / "agent.json").read_text())
        return int(meta["finetune"]["env_steps"])
    except (OSError, ValueError, KeyError):  # not written yet, or mid-swap
        return 0


@pytest.mark.slow
# tyro warns when a saved value's type differs from the field's (a JSON list for a tuple)
@pytest.mark.filterwarnings("error::UserWarning")
def test_kill_9_and_resume_is_bit_identical(offline, tmp_path: Path) -> None:
    args = ["--checkpoint", offline["aaren"], "--env-steps", 300, "--num-envs", 2]
    args += [
        "--max-episode-steps",
        40,
        "--replay-size",
        20,
        "--batch-size",
        8,
        "--episode-length",
        40,
    ]
    args += ["--eval-episodes", 0, "--checkpoint-every", 40, "--warmup-steps", 10, "--threads", 1]
    args = [str(a) for a in [*args, "--no-progress"]]
    assert main([*args, "--run-dir", str(tmp_path / "straight")]) == 0
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "aaren_rl.train.finetune_cli", *args, "--run-dir", str(killed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _checkpoint_env_steps(killed) < 100 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = _checkpoint_env_steps(killed)
    assert 0 < stopped_at < 300, "the run was not stopped mid-way"
    # Only --run-dir and --resume: the rest comes from the run's config.json.
    assert main(["--run-dir", str(killed), "--resume", "--no-progress"]) == 0
    assert _weights_equal(tmp_path / "straight" / "checkpoint", killed / "checkpoint")
    online = [
        [(r["step"], r.get("train/loss")) for r in map(json.loads, (d / "metrics.jsonl").open())]
        for d in (tmp_path / "straight", killed)
    ]
    assert online[0] == online[1]


def test_discrete_actions_finetune_on_the_tmaze(tmp_path: Path) -> None:
    from aaren_rl.collect.scripted import collect_arrays
    from aaren_rl.envs.writers import write_d4rl_hdf5

    data = tmp_path / "tmaze.hdf5"
    write_d4rl_hdf5(
        data,
        collect_arrays("tmaze-8", "medium", episodes=40, seed=0),
        {"env_id": "aaren/PassiveTMaze-L8-v0"},
    )
    cfg = TrainConfig(
        dataset=f"d4rl:{data}", steps=10, return_scale=1.0, model=BackboneConfig(dim=16, num_layers=1),
        threads=1, eval_episodes=0, progress=False, run_dir=tmp_path / "offline",
    )  # fmt: skip
    ckpt = train(cfg).run_dir / "checkpoint"
    result = finetune(
        _cfg(
            ckpt, tmp_path / "ft", env_steps=100, max_episode_steps=None, target_entropy=None,
            decision_weight=True,
        )
    )  # fmt: skip
    s = result.summary
    assert s["env_steps"] >= 100 and s["updates"] > 0 and s["final_eval"]["episodes"] == 2
    assert not (tmp_path / "ft" / "checkpoint" / "log_std_head.safetensors").exists()
    records = [json.loads(x) for x in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    entropy = [r["train/entropy"] for r in records if "train/entropy" in r]
    assert entropy and all(0 <= h <= np.log(4) + 1e-6 for h in entropy)  # exact, 4 actions
    agent = DecisionAgent.load(tmp_path / "ft" / "checkpoint")
    assert agent.model.config.discrete


def test_weighted_nll_is_the_weighted_mean_over_real_positions() -> None:
    from aaren_rl.train.finetune import weighted_nll
    from aaren_rl.train.trainer import decision_weights

    logp = torch.tensor([[-1.0, -2.0, -3.0, -9.0], [-4.0, -5.0, -7.0, -7.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    assert float(weighted_nll(logp, mask)) == pytest.approx((1 + 2 + 3 + 4 + 5) / 5)
    w = decision_weights(mask)  # the last real step of each row weighs the row's length
    assert w.tolist() == [[1, 1, 3, 1], [1, 2, 1, 1]]
    want = (1 + 2 + 3 * 3 + 4 + 2 * 5) / (1 + 1 + 3 + 1 + 2)
    assert float(weighted_nll(logp, mask, w)) == pytest.approx(want)


def test_an_empty_buffer_fills_with_the_first_episodes(offline, tmp_path: Path) -> None:
    ft = Finetuner.build(_cfg(offline["aaren"], tmp_path / "e", seed_trajectories=0))
    assert len(ft.buffer) == 0
    stats = ft.collect()
    assert len(ft.buffer) == 2 and ft.buffer.num_transitions == stats.env_steps
    assert all(np.isfinite(v) for v in ft.update().values())


def test_lowest_return_eviction_keeps_the_best_returns_seen(offline, tmp_path: Path) -> None:
    ft = Finetuner.build(
        _cfg(offline["aaren"], tmp_path / "lr", replay_size=3, replay_eviction="lowest-return")
    )
    assert len(ft.buffer) == 3 and ft.buffer.eviction == "lowest-return"
    for _ in range(3):
        held = [t.episode_return for t in ft.buffer.trajectories]
        stats = ft.collect()
        assert ft.buffer.evicted == ft.buffer.added  # full: each round pushes as many out
        best = sorted(held + [float(r) for r in stats.returns])[-3:]
        now = sorted(t.episode_return for t in ft.buffer.trajectories)
        assert now == pytest.approx(best, rel=1e-5)


def test_mse_objective_trains_the_mean_only(offline, tmp_path: Path) -> None:
    ft = Finetuner.build(_cfg(offline["transformer"], tmp_path / "m", objective="mse"))
    head = {k: v.clone() for k, v in ft.policy.log_std_head.state_dict().items()}
    mean_w = ft.policy.model.action_head[0].weight.detach().clone()
    log_t = float(ft.log_temperature.detach())
    for _ in range(2):
        ft.update()
    assert all(torch.equal(head[k], v) for k, v in ft.policy.log_std_head.state_dict().items())
    assert float(ft.log_temperature.detach()) == log_t
    assert not torch.equal(mean_w, ft.policy.model.action_head[0].weight.detach())


def test_fine_tuning_seeds_evaluate_on_disjoint_episodes(offline, tmp_path: Path) -> None:
    played = []
    for seed in (0, 1):
        cfg = _cfg(offline["aaren"], tmp_path / f"s{seed}", seed=seed, eval_episodes=3)
        played.append(Finetuner.build(cfg).evaluate()["seeds"])
    assert played == [[0, 1, 2], [3, 4, 5]]  # seed 0 keeps episodes 0 .. n - 1


def _with_horizon(checkpoint: Path, dest: Path, horizon: int) -> Path:
    """A copy of ``checkpoint`` whose agent acts with memory horizon ``horizon``."""
    import shutil

    shutil.copytree(checkpoint, dest)
    meta = json.loads((dest / "agent.json").read_text())
    meta["memory_horizon"] = horizon
    (dest / "agent.json").write_text(json.dumps(meta))
    return dest


@pytest.mark.parametrize("horizon", [0, 5])
def test_train_horizon_trains_with_the_acting_horizon(
    offline, tmp_path: Path, horizon: int
) -> None:
    ckpt = _with_horizon(offline["aaren"], tmp_path / "ckpt", horizon)
    losses = {}
    for mode in ("off", "on", "auto"):
        # build seeds torch: every first update draws the same batch and dropout masks
        ft = Finetuner.build(_cfg(ckpt, tmp_path / mode, train_horizon=mode))
        assert ft.acting_horizon == horizon
        assert ft.train_horizon == (0 if mode == "off" else horizon)  # auto: on for Aaren
        losses[mode] = ft.update()["train/loss"]
    assert losses["auto"] == losses["on"]
    if horizon:
        assert losses["on"] != pytest.approx(losses["off"], rel=1e-6)
    else:
        assert losses["on"] == losses["off"]


def test_train_memory_horizon_trains_with_its_own_horizon_and_acts_with_the_checkpoints(
    offline, tmp_path: Path
) -> None:
    ckpt = _with_horizon(offline["aaren"], tmp_path / "ckpt", 5)
    losses = {}
    for name, given in (("acting", None), ("five", 5), ("forty", 40)):
        ft = Finetuner.build(_cfg(ckpt, tmp_path / name, train_memory_horizon=given))
        assert ft.acting_horizon == 5  # acting keeps the checkpoint's horizon
        assert ft.train_horizon == (5 if given is None else given)
        losses[name] = ft.update()["train/loss"]
    assert losses["five"] == losses["acting"]  # the same batch: the same horizon, the same loss
    assert losses["forty"] != pytest.approx(losses["five"], rel=1e-6)
    for bad in ({"train_horizon": "off"}, {"mode": "window"}):
        with pytest.raises(ConfigError, match="--train-memory-horizon 40 needs"):
            Finetuner.build(_cfg(ckpt, tmp_path / "bad", train_memory_horizon=40, **bad))
        assert not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="--train-memory-horizon"):
        FinetuneConfig(checkpoint=ckpt, train_memory_horizon=0).validate()


def test_train_horizon_on_is_refused_for_a_window_agent(offline, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--train-horizon on"):
        Finetuner.build(_cfg(offline["transformer"], tmp_path / "t", train_horizon="on"))
    assert not (tmp_path / "t").exists()
    ft = Finetuner.build(_cfg(offline["transformer"], tmp_path / "a", train_horizon="auto"))
    assert ft.train_horizon == 0


def test_lr_decay_warms_up_then_follows_a_half_cosine_to_its_floor() -> None:
    from aaren_rl.train.finetune import lr_factor

    def f(step: int, decay: str = "cosine") -> float:
        return lr_factor(step, warmup=10, decay_updates=110, decay=decay, final_fraction=0.1)

    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])  # DT's warm-up
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.55)  # half-way: the mean
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)  # held at the floor
    steps = [f(s) for s in range(10, 111)]
    assert all(a > b for a, b in zip(steps, steps[1:]))
    assert [f(s, "none") for s in (0, 9, 60, 500)] == pytest.approx([0.1, 1.0, 1.0, 1.0])


def test_an_extended_decaying_run_keeps_its_decay_length(offline, tmp_path: Path) -> None:
    kw = dict(eval_episodes=0, warmup_steps=5, env_steps=120, lr_decay="cosine")
    first = finetune(_cfg(offline["aaren"], tmp_path / "run", **kw))
    state = json.loads((tmp_path / "run" / "checkpoint" / "trainer.json").read_text())["state"]
    assert state["decay_updates"] == 36  # 120 env steps x 0.3 updates each
    assert first.summary["lr_decay"] == "cosine"
    extended = replace(_cfg(offline["aaren"], tmp_path / "run", **kw), env_steps=240, resume=True)
    finetune(extended)
    state = json.loads((tmp_path / "run" / "checkpoint" / "trainer.json").read_text())["state"]
    assert state["decay_updates"] == 36 and state["counters"]["updates"] > 36


def test_a_run_saved_before_a_new_field_resumes_with_what_it_ran_with() -> None:
    from aaren_rl.train.finetune_config import finetune_config_differences

    cfg = FinetuneConfig(checkpoint=Path("c"), train_horizon="off")
    saved = cfg.to_dict()
    del saved["train_horizon"]  # a config written before the flag existed: it trained "off"
    assert finetune_config_differences(saved, cfg) == []
    del saved["replay_eviction"]  # likewise: FIFO
    assert finetune_config_differences(saved, cfg) == []
    for key in ("memory_horizon", "horizon_candidates", "horizon_episodes"):
        del saved[key]  # likewise: the checkpoint's horizon
    assert finetune_config_differences(saved, cfg) == []
    assert finetune_config_differences(saved, replace(cfg, memory_horizon="choose"))
    assert finetune_config_differences(saved, replace(cfg, replay_eviction="lowest-return"))
    assert finetune_config_differences(saved, replace(cfg, train_horizon="auto")) == [
        "train_horizon: run has 'off', command line gives 'auto'"
    ]
    for was, now in ((True, "on"), (False, "off")):  # the flag's first, boolean spelling
        saved["train_horizon"] = was
        assert finetune_config_differences(saved, replace(cfg, train_horizon=now)) == []
        assert finetune_config_differences(saved, replace(cfg, train_horizon="auto")) == [
            f"train_horizon: run has {now!r}, command line gives 'auto'"
        ]


def test_memory_horizon_choose_acts_and_trains_with_the_best_candidate(
    offline, tmp_path: Path
) -> None:
    """--memory-horizon choose plays each candidate on validation episodes once, then the run
    is the run of that fixed horizon (weights bit-identical), and a resumed run keeps it."""
    kw = dict(
        eval_episodes=0,
        warmup_steps=10,
        horizon_candidates=(3, 7),
        horizon_episodes=2,
        env_steps=240,
    )
    ckpt = offline["aaren"]
    own = json.loads((ckpt / "agent.json").read_text())["memory_horizon"]
    assert own not in (3, 7)  # the choice changes how the agent acts
    s = finetune(_cfg(ckpt, tmp_path / "choose", memory_horizon="choose", **kw)).summary
    choice = s["memory_horizon_choice"]
    scores = choice["validation_scores"]
    assert choice["selection"] == "online" and set(scores) == {"3", "7"}
    best = max((3, 7), key=lambda h: (scores[str(h)], -h))  # ties: the earlier candidate
    assert choice["memory_horizon"] == best and choice["checkpoint_memory_horizon"] == own
    assert s["acting_memory_horizon"] == s["train_memory_horizon"] == best
    saved = DecisionAgent.load(tmp_path / "choose" / "checkpoint")
    assert saved.memory_horizon == best  # aaren-eval acts with the chosen horizon
    fixed = finetune(_cfg(ckpt, tmp_path / "fixed", memory_horizon=str(best), **kw)).summary
    assert fixed["memory_horizon_choice"] is None and fixed["acting_memory_horizon"] == best
    assert _weights_equal(tmp_path / "choose" / "checkpoint", tmp_path / "fixed" / "checkpoint")
    # interrupted after the choice: the resumed run neither chooses again nor drifts
    split = _cfg(ckpt, tmp_path / "split", memory_horizon="choose", **{**kw, "env_steps": 120})
    finetune(split)
    s2 = finetune(replace(split, env_steps=240, resume=True)).summary
    assert s2["memory_horizon_choice"] == choice and s2["acting_memory_horizon"] == best
    assert _weights_equal(tmp_path / "choose" / "checkpoint", tmp_path / "split" / "checkpoint")


def test_memory_horizon_is_refused_where_it_cannot_apply(offline, tmp_path: Path) -> None:
    for bad in ("-1", "twenty", "1.5", ""):
        with pytest.raises(ConfigError, match="--memory-horizon must be"):
            FinetuneConfig(checkpoint=offline["aaren"], memory_horizon=bad).validate()
    with pytest.raises(ConfigError, match="--horizon-candidates"):
        FinetuneConfig(checkpoint=offline["aaren"], horizon_candidates=()).validate()
    for backbone, kw in (("transformer", {}), ("aaren", {"mode": "window"})):
        with pytest.raises(ConfigError, match="--memory-horizon choose sets how an Aaren"):
            Finetuner.build(
                _cfg(offline[backbone], tmp_path / "bad", memory_horizon="choose", **kw)
            )
        assert not (tmp_path / "bad").exists()
    ft = Finetuner.build(_cfg(offline["aaren"], tmp_path / "ok", memory_horizon="12"))
    assert ft.acting_horizon == ft.train_horizon == 12
