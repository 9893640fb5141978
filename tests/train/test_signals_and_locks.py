"""aaren-train under SIGTERM and with two processes on one run directory (real processes).

SIGTERM (kill, systemd, Slurm, Kubernetes) ends a run like Ctrl-C: exit 143, one line naming
the run directory to resume, a checkpoint that resumes. A second process on a run directory
in use is refused with the PID of the first; a lock left by a killed process blocks nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aaren_rl.train.cli import main

TINY = ["--model.dim", "16", "--model.num-layers", "1", "--threads", "1", "--no-progress"]


def _args(dataset: Path, run_dir: Path, steps: int) -> list[str]:
    return [
        "--dataset", f"d4rl:{dataset}", "--steps", str(steps), "--checkpoint-every", "10",
        "--log-every", "5", "--eval-episodes", "0", "--run-dir", str(run_dir),
        "--recipe", "window", "--context-length", "8", "--batch-size", "4", *TINY,
    ]  # fmt: skip


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    return subprocess.Popen(
        [sys.executable, "-m", "aaren_rl.train.cli", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def _wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path) -> None:
    trainer = run_dir / "checkpoint" / "trainer.json"
    deadline = time.monotonic() + 120
    while not trainer.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[1]
    assert trainer.exists(), "no checkpoint within 120 s"


def _checkpoint_step(run_dir: Path) -> int:
    import json

    return int(json.loads((run_dir / "checkpoint" / "agent.json").read_text())["step"])


def test_sigterm_ends_training_like_ctrl_c(tiny_hopper_dataset: Path, tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    proc = _start(_args(tiny_hopper_dataset, run_dir, 100_000))
    _wait_for_checkpoint(proc, run_dir)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("aaren-train: terminated (SIGTERM)")]
    assert len(lines) == 1 and f"--resume --run-dir {run_dir}" in lines[0], err
    assert not (tmp_path / ".run.lock").exists()  # released on the way out
    step = _checkpoint_step(run_dir)
    resumed = ["--run-dir", str(run_dir), "--resume", "--steps", str(step + 2), "--no-progress"]
    assert main(resumed) == 0, capsys.readouterr().err
    assert _checkpoint_step(run_dir) == step + 2


def test_a_second_process_on_a_run_dir_in_use_is_refused(
    tiny_hopper_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    first = _start(_args(tiny_hopper_dataset, run_dir, 100_000))
    try:
        _wait_for_checkpoint(first, run_dir)
        for extra in ([], ["--resume"]):  # a new run on it, or a resume of it
            assert main([*_args(tiny_hopper_dataset, run_dir, 100_001), *extra]) == 2
            err = capsys.readouterr().err
            lines = [ln for ln in err.splitlines() if ln.startswith("aaren-train: error:")]
            assert len(lines) == 1, err
            assert f"--run-dir {run_dir} is in use by PID {first.pid}" in lines[0]
            assert "delete" not in lines[0] and "Traceback" not in err
    finally:
        first.kill()  # kill -9: the kernel drops its lock, the lock file stays behind
        first.communicate(timeout=60)
    assert (tmp_path / ".run.lock").exists()  # left by the killed process...
    step = _checkpoint_step(run_dir)
    resumed = ["--run-dir", str(run_dir), "--resume", "--steps", str(step + 2), "--no-progress"]
    assert main(resumed) == 0, capsys.readouterr().err  # ...and blocks nothing
    assert not (tmp_path / ".run.lock").exists()


def test_a_non_finite_loss_stops_before_the_weights_change(
    tiny_hopper_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """--learning-rate 1e30: step 1 is finite, the weights blow up, a later loss is not.
    Training stops there, exit 2, naming the step; the last checkpoint holds finite weights."""
    import torch
    from safetensors.torch import load_file

    run_dir = tmp_path / "run"
    args = _args(tiny_hopper_dataset, run_dir, 50)
    args[args.index("--checkpoint-every") + 1] = "1"
    assert main([*args, "--learning-rate", "1e30", "--warmup-steps", "1"]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("aaren-train: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    step = _checkpoint_step(run_dir)
    assert f"step {step + 1}: the training loss is" in lines[0], lines[0]
    assert f"the checkpoint of step {step} is untouched" in lines[0]
    weights = load_file(str(run_dir / "checkpoint" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


# ---- W&B reachable by the probe but not answering: never a traceback or a half-made run ----


def _failing_wandb_init(monkeypatch: pytest.MonkeyPatch, fail_modes: set[str]) -> None:
    wandb = pytest.importorskip("wandb")
    import aaren_rl.tracking as tracking

    real = wandb.init

    def init(*args, **kwargs):
        if kwargs.get("mode") in fail_modes:
            raise wandb.errors.CommError("Error communicating with wandb process")
        return real(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setattr(tracking, "wandb_online_possible", lambda timeout=2.0: (True, ""))
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_wandb_that_does_not_answer_falls_back_to_offline(
    tiny_hopper_dataset: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    _failing_wandb_init(monkeypatch, {"online"})
    run_dir = tmp_path / "run"
    assert main([*_args(tiny_hopper_dataset, run_dir, 2), "--track"]) == 0
    out = capsys.readouterr().out
    assert "W&B: the server did not answer (CommError" in out and "wandb sync" in out


def test_wandb_that_cannot_start_leaves_no_run_dir(
    tiny_hopper_dataset: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    _failing_wandb_init(monkeypatch, {"online", "offline"})
    run_dir = tmp_path / "run"
    assert main([*_args(tiny_hopper_dataset, run_dir, 2), "--track"]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("aaren-train: error:")]
    assert len(lines) == 1 and "--track: W&B could not start" in lines[0], err
    assert "Traceback" not in err and not run_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-hopper.hdf5"]
