"""aaren-train end to end on tiny data: smoke runs, W&B offline, kill-and-resume, DDP, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aaren_rl.eval.offline_horizon import heldout_episodes
from aaren_rl.train.cli import main
from aaren_rl.train.trainer_state import load_trainer_state

TINY = ["--model.dim", "16", "--model.num-layers", "1", "--threads", "1", "--no-progress"]


def run_cli(args: list[str]) -> int:
    return main([str(a) for a in args])


@pytest.mark.parametrize("backbone", ["aaren", "transformer"])
def test_smoke_each_backbone_with_wandb_offline(
    backbone: str, tiny_hopper_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    run_dir = tmp_path / "run"
    rc = run_cli(
        ["--dataset", f"d4rl:{tiny_hopper_dataset}", "--backbone", backbone, "--steps", 20]
        + ["--log-every", 5, "--checkpoint-every", 10, "--eval-every", 10]
        + ["--eval-episodes", 2, "--eval-num-envs", 2, "--eval-max-episode-steps", 30]
        + ["--episode-length", 40, "--run-dir", run_dir, "--track", *TINY]
    )
    assert rc == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if "train/loss" in r]
    assert train_steps == [5, 10, 15, 20]
    evals = [r for r in records if "eval/return_mean" in r]
    assert [r["step"] for r in evals] == [10, 20]
    meta = json.loads((run_dir / "checkpoint" / "agent.json").read_text())
    assert meta["model_config"]["backbone"] == backbone
    assert meta["step"] == 20 and meta["env_id"] == "Hopper-v5"
    assert len(meta["state_mean"]) == 11
    config = json.loads((run_dir / "config.json").read_text())
    assert config["backbone"] == backbone
    # the acting default: Aaren's memory horizon chosen offline on held-out episodes, logged
    assert config["memory_horizon"] is None and config["horizon_selection"] == "offline"
    chosen = [r for r in records if "offline/memory_horizon" in r]
    assert not any("online/memory_horizon" in r for r in records)
    if backbone == "aaren":
        assert [r["step"] for r in chosen] == [20]
        assert meta["memory_horizon"] == chosen[0]["offline/memory_horizon"] in (0, 10, 20, 40)
        keys = {f"offline/{c}_action_error_h{h}" for h in (0, 10, 20, 40)
                for c in ("own-actions", "teacher-forced", "target-return")}  # fmt: skip
        assert keys <= set(chosen[0])
        record = meta["horizon_selection"]
        assert record["selection"] == "offline"  # 12 episodes: a fifth, 2, held out by seed 0
        assert (
            record["heldout_episodes"] == heldout_episodes(12, seed=0)
            and record["holdout_fraction"]
        )
        assert len(record["heldout_episodes"]) == 2
        assert record["choice"]["memory_horizon"] == meta["memory_horizon"]
    else:
        assert not chosen and meta["memory_horizon"] == 0
        assert meta["horizon_selection"] is None
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert offline_runs, "W&B offline run directory missing"
    assert list(offline_runs[0].glob("*.wandb")), "W&B run file missing"


def _train_args(dataset: Path, run_dir: Path, steps: int) -> list[str]:
    return [
        "--dataset", f"d4rl:{dataset}", "--steps", str(steps), "--checkpoint-every", "20",
        "--log-every", "10", "--eval-episodes", "0", "--run-dir", str(run_dir),
        "--recipe", "window", "--context-length", "8", "--batch-size", "8", *TINY,
    ]  # fmt: skip


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoint" / "model.safetensors"))


def test_kill_and_resume_is_bit_identical(tiny_hopper_dataset: Path, tmp_path: Path) -> None:
    steps = 400
    straight = tmp_path / "straight"
    assert run_cli(_train_args(tiny_hopper_dataset, straight, steps)) == 0

    killed = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "aaren_rl.train.cli",
        *_train_args(tiny_hopper_dataset, killed, steps),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trainer = killed / "checkpoint" / "trainer.json"
    deadline = time.time() + 120
    while not trainer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = json.loads((killed / "checkpoint" / "agent.json").read_text())["step"]
    assert 0 < stopped_at < steps, "the run was not stopped mid-way"

    # Only --run-dir and --resume: the rest comes from the run's config.json.
    assert run_cli(["--run-dir", killed, "--resume", "--no-progress"]) == 0
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    records = [list(map(json.loads, (d / "metrics.jsonl").open())) for d in (straight, killed)]
    losses = [[(r["step"], r["train/loss"]) for r in rs if "train/loss" in r] for rs in records]
    assert losses[0] == losses[1] and len(losses[0]) == steps // 10
    # the same held-out episodes, the same offline choice
    horizon = [[r for r in rs if "offline/memory_horizon" in r] for rs in records]
    assert horizon[0] == horizon[1] and len(horizon[0]) == 1


def test_resume_with_a_different_config_is_refused(
    tiny_hopper_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert run_cli(_train_args(tiny_hopper_dataset, run_dir, 20)) == 0
    before = (run_dir / "checkpoint" / "model.safetensors").read_bytes()
    rc = run_cli(["--run-dir", run_dir, "--resume", "--backbone", "transformer"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "backbone" in err
    assert (run_dir / "checkpoint" / "model.safetensors").read_bytes() == before


def test_resume_refuses_a_default_valued_flag_that_contradicts_the_run(
    tiny_hopper_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    args = _train_args(tiny_hopper_dataset, run_dir, 20) + ["--backbone", "transformer"]
    assert run_cli(args) == 0
    # "aaren" is the default value, but it was given explicitly: not the same run.
    assert run_cli(["--run-dir", run_dir, "--resume", "--backbone", "aaren"]) == 2
    assert "backbone" in capsys.readouterr().err


def _saved_by_an_older_version(run_dir: Path, *key: str) -> None:
    """Drop one (nested) field from the run's config.json, as an older aaren-rl wrote it."""
    config = json.loads((run_dir / "config.json").read_text())
    parent = config
    for k in key[:-1]:
        parent = parent[k]
    del parent[key[-1]]
    (run_dir / "config.json").write_text(json.dumps(config))


def test_a_run_saved_before_a_new_field_existed_still_resumes(
    tiny_hopper_dataset: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    assert run_cli(_train_args(tiny_hopper_dataset, run_dir, 10)) == 0
    _saved_by_an_older_version(run_dir, "download")
    assert run_cli(["--run-dir", run_dir, "--resume", "--steps", "20", "--no-progress"]) == 0


def test_a_run_saved_before_a_default_changed_resumes_only_with_its_old_value(
    tiny_hopper_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A run saved before model.activation existed was GELU; today's default is ReLU. Resuming
    # it with the defaults must be refused (not silently switched), and with gelu it resumes.
    run_dir = tmp_path / "run"
    args = _train_args(tiny_hopper_dataset, run_dir, 10) + ["--model.activation", "gelu"]
    assert run_cli(args) == 0
    _saved_by_an_older_version(run_dir, "model", "activation")
    resume = ["--run-dir", run_dir, "--resume", "--steps", "20", "--no-progress"]
    assert run_cli(resume) == 2
    assert "model.activation: run has 'gelu' (saved before the field existed)" in (
        capsys.readouterr().err
    )
    assert run_cli(resume + ["--model.activation", "gelu"]) == 0


def test_existing_run_is_not_overwritten(
    tiny_hopper_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert run_cli(_train_args(tiny_hopper_dataset, run_dir, 20)) == 0
    before = (run_dir / "metrics.jsonl").read_text()
    assert run_cli(_train_args(tiny_hopper_dataset, run_dir, 20)) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run_dir / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backbone", "mamba"], "backbone"),
        (["--context-length", "0"], "context-length"),
        (["--env", "NoSuchEnv-v9"], "NoSuchEnv-v9"),
        (["--env", "halfcheetah"], "expects shape"),
        (["--memory-horizon", "-3"], "--memory-horizon must be >= 0"),
        (["--horizon-candidates", "0", "-5"], "--horizon-candidates must be"),
    ],
)
def test_bad_input_gives_a_clear_error(
    args: list[str],
    message: str,
    tiny_hopper_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["--dataset", f"d4rl:{tiny_hopper_dataset}", "--run-dir", tmp_path / "r", "--steps", 2]
    try:
        rc = run_cli(base + args + TINY)
    except SystemExit as e:  # tyro rejects unknown choices itself
        rc = e.code
    assert rc == 2
    captured = capsys.readouterr()
    out = captured.err + captured.out
    assert message in out
    assert "Traceback" not in out
    assert not (tmp_path / "r" / "checkpoint").exists()


def test_unwritable_run_dir(tiny_hopper_dataset: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rc = run_cli(["--dataset", f"d4rl:{tiny_hopper_dataset}", "--run-dir", blocker / "run", *TINY])
    assert rc == 2
    assert "cannot write the run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tiny_hopper_dataset: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "aaren_rl.train.cli", *_train_args(tiny_hopper_dataset, run_dir, 30), "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    meta = json.loads((run_dir / "checkpoint" / "agent.json").read_text())
    assert meta["step"] == 30
    trainer = load_trainer_state(run_dir / "checkpoint")
    assert len(trainer["ranks"]) == 2  # both ranks' sampler and RNG state are kept
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in records if "train/loss" in r]
    assert logged == [10, 20, 30]  # rank 0 alone logs
    assert [r["step"] for r in records if "offline/memory_horizon" in r] == [30]


@pytest.mark.slow
def test_torchrun_chooses_the_memory_horizon_on_rank_0(tiny_hopper_dataset: Path, tmp_path):
    """Rank 0 scores the candidates, every rank saves the final checkpoint again with it."""
    run_dir = tmp_path / "ddp"
    args = [*_train_args(tiny_hopper_dataset, run_dir, 20), "--eval-episodes", "1"]
    args += ["--eval-num-envs", "1", "--eval-max-episode-steps", "10", "--device", "cpu"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "aaren_rl.train.cli", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "memory horizon for recurrent acting" in res.stdout
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    chosen = [r["offline/memory_horizon"] for r in records if "offline/memory_horizon" in r]
    meta = json.loads((run_dir / "checkpoint" / "agent.json").read_text())
    assert len(chosen) == 1 and meta["memory_horizon"] == chosen[0] and meta["step"] == 20


def test_a_given_memory_horizon_is_kept_without_a_choice(
    tiny_hopper_dataset: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = ["--dataset", f"d4rl:{tiny_hopper_dataset}", "--steps", 4, "--run-dir", run_dir]
    args += ["--eval-episodes", 1, "--eval-max-episode-steps", 10, "--memory-horizon", 7]
    assert run_cli(args + TINY) == 0
    meta = json.loads((run_dir / "checkpoint" / "agent.json").read_text())
    assert meta["memory_horizon"] == 7
    assert "memory_horizon" not in (run_dir / "metrics.jsonl").read_text()


def test_default_threads_are_recorded_and_a_resumed_run_keeps_them(
    tiny_hopper_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --threads the run picks its thread count once (aaren_rl.cpu.default_threads),
    prints it with the CPU path, and a resumed run takes the checkpoint's count (a different
    count would change the last bits of its steps)."""
    run_dir = tmp_path / "run"
    common = ["--dataset", f"d4rl:{tiny_hopper_dataset}", "--episode-length", 40]
    common += ["--eval-episodes", 0, "--model.dim", 16, "--model.num-layers", 1]
    common += ["--run-dir", run_dir, "--log-every", 1]
    assert run_cli([*common, "--steps", 2, "--checkpoint-every", 1]) == 0
    out = capsys.readouterr().out
    assert "training on cpu (" in out and (" in fp32 (" in out or " in bf16 (" in out)
    state = load_trainer_state(run_dir / "checkpoint")
    cores = len(os.sched_getaffinity(0))
    assert isinstance(state["threads"], int) and 1 <= state["threads"] <= cores
    assert f"{state['threads']} of {cores} cores" in out
    # a checkpoint that recorded another count: the resumed run uses that count
    from aaren_rl.train.trainer_state import save_trainer_state

    if cores == 1:
        pytest.skip("one core: no other thread count to record")
    state["threads"] = 1 if state["threads"] > 1 else 2
    save_trainer_state(run_dir / "checkpoint", state)
    assert run_cli([*common, "--steps", 3, "--resume"]) == 0
    assert load_trainer_state(run_dir / "checkpoint")["threads"] == state["threads"]
