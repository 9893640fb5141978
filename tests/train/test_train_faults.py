"""aaren-train against bad input and faults: one line naming the culprit, the right exit code,
no traceback, nothing existing changed, no code run from a file."""

from __future__ import annotations

import hashlib
import json
import pickle
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aaren_rl.errors import RunDirError
from aaren_rl.train.cli import main
from aaren_rl.train.config import TrainConfig
from aaren_rl.train.loop import train
from aaren_rl.train.trainer_state import load_trainer_state

TINY = ["--model.dim", "16", "--model.num-layers", "1", "--threads", "1", "--no-progress"]


def _args(dataset: Path, run_dir: Path, steps: int = 10) -> list[str]:
    return [
        "--dataset", f"d4rl:{dataset}", "--steps", str(steps), "--checkpoint-every", "10",
        "--log-every", "5", "--eval-episodes", "0", "--run-dir", str(run_dir),
        "--recipe", "window", "--context-length", "8", "--batch-size", "4", *TINY,
    ]  # fmt: skip


def _run(args: list, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # tyro's own usage errors
        rc = int(e.code or 0)
    captured = capsys.readouterr()
    return rc, captured.err + captured.out


def _tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _one_error_line(out: str, *needles: str) -> None:
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if "aaren-train: error:" in line]
    assert len(lines) == 1, out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def finished_run(tiny_hopper_dataset: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    assert main(_args(tiny_hopper_dataset, run_dir, 10)) == 0
    return run_dir


# ---- flags: refused before anything is created ----


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--grad-clip", "-1"),
        ("--grad-clip", "0"),
        ("--grad-clip", "nan"),
        ("--learning-rate", "nan"),
        ("--learning-rate", "0"),
        ("--learning-rate", "-1e-4"),
        ("--learning-rate", "inf"),
        ("--return-scale", "inf"),
        ("--weight-decay", "nan"),
        ("--target-return", "nan"),
        ("--seed", "-1"),
        ("--seed", str(2**40)),
        ("--warmup-steps", "-3"),
        ("--threads", "0"),
        ("--model.chunk-size", "0"),
    ],
)
def test_bad_flag_value_names_the_flag_and_creates_nothing(
    flag: str,
    value: str,
    tiny_hopper_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "new-run"
    rc, out = _run([*_args(tiny_hopper_dataset, run_dir), f"{flag}={value}"], capsys)
    assert rc == 2
    _one_error_line(out, flag)
    assert not run_dir.exists()


def test_run_dir_that_is_a_file(
    tiny_hopper_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    rc, out = _run(_args(tiny_hopper_dataset, blocker), capsys)
    assert rc == 2
    _one_error_line(out, str(blocker), "is a file")
    assert blocker.read_text() == "mine"
    rc, out = _run(["--run-dir", blocker, "--resume"], capsys)
    assert rc == 2
    _one_error_line(out, str(blocker))


def test_actions_outside_the_tanh_range_are_refused(
    synth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arrays = synth.arrays((30, 30, 30), None, seed=1, rewards="uniform")
    arrays["actions"] = arrays["actions"] * 5.0  # e.g. unnormalised torques
    path = synth.write(tmp_path / "wide.hdf5", arrays, env_id="Hopper-v5")
    rc, out = _run(_args(path, tmp_path / "run"), capsys)
    assert rc == 2
    _one_error_line(out, "outside [-1, 1]", "tanh")
    assert not (tmp_path / "run").exists()


# ---- resume: a run that does not fit is refused, the run is left as it was ----


def test_resume_with_fewer_or_equal_steps_says_so(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree_hash(finished_run)
    for steps in (5, 10):
        rc, out = _run(["--run-dir", finished_run, "--resume", "--steps", steps], capsys)
        assert rc == 2
        _one_error_line(out, "already trained 10 steps", "--steps")
        assert "nan" not in out
    assert _tree_hash(finished_run) == before


def test_resume_after_the_dataset_was_replaced_is_refused(
    finished_run: Path, tiny_hopper_dataset: Path, synth, capsys: pytest.CaptureFixture[str]
) -> None:
    synth.hopper_like(tiny_hopper_dataset, seed=5)  # new contents, same path and shapes
    before = _tree_hash(finished_run)
    rc, out = _run(["--run-dir", finished_run, "--resume", "--steps", 20], capsys)
    assert rc == 2
    _one_error_line(out, "--dataset", "not the data the run", "fingerprint")
    assert _tree_hash(finished_run) == before


def test_corrupt_config_json_names_the_file(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = finished_run / "config.json"
    for text in ('{"steps": 10, "dataset":', '{"steps": "ten"}', "[1, 2]"):
        config.write_text(text)
        rc, out = _run(["--run-dir", finished_run, "--resume", "--steps", 20], capsys)
        assert rc == 2
        _one_error_line(out, str(config))


def test_a_run_saved_with_flat_model_size_fields_still_resumes(
    tiny_hopper_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    finished_run = tmp_path / "run"  # aaren-rl 0.x models were all GELU
    assert main(_args(tiny_hopper_dataset, finished_run, 10) + ["--model.activation", "gelu"]) == 0
    config = json.loads((finished_run / "config.json").read_text())
    model = config.pop("model")
    config.update({k: model[k] for k in ("dim", "num_layers", "num_heads", "dropout")})
    for key in ("embed_init", "window_anchor"):  # newer than 0.x too
        del config[key]
    (finished_run / "config.json").write_text(json.dumps(config))  # as aaren-rl 0.x wrote it
    rc, out = _run(["--run-dir", finished_run, "--resume", "--steps", 20], capsys)
    assert rc == 2 and "model.activation: run has 'gelu'" in out  # not silently today's ReLU
    resume = ["--run-dir", finished_run, "--resume", "--steps", 20, "--model.activation", "gelu"]
    rc, out = _run(resume + ["--window-anchor", "start"], capsys)
    assert rc == 0, out


def test_truncated_trainer_state_is_one_clear_error(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = finished_run / "checkpoint"
    for name in ("trainer.safetensors", "trainer.json"):
        data = (ckpt / name).read_bytes()
        (ckpt / name).write_bytes(data[: len(data) // 2])
        rc, out = _run(["--run-dir", finished_run, "--resume", "--steps", 20], capsys)
        assert rc == 2
        _one_error_line(out, str(ckpt / name))
        (ckpt / name).write_bytes(data)
    rc, out = _run(["--run-dir", finished_run, "--resume", "--steps", 20], capsys)
    assert rc == 0, out


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: what a crafted trainer.pt would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _legacy_trainer_pt(ckpt: Path, payload: object) -> Path:
    """Replace the trainer state by a pickle ``trainer.pt`` (the format before JSON +
    safetensors), as a run directory shared by someone else could hold."""
    (ckpt / "trainer.json").unlink()
    (ckpt / "trainer.safetensors").unlink()
    path = ckpt / "trainer.pt"
    with path.open("wb") as f:
        pickle.dump(payload, f, protocol=2)
    return path


def test_a_crafted_legacy_trainer_pt_runs_no_code(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    path = _legacy_trainer_pt(finished_run / "checkpoint", {"step": _Payload(marker)})
    rc, out = _run(["--run-dir", finished_run, "--resume", "--steps", 20], capsys)
    assert rc == 2
    _one_error_line(out, str(path), "refused")
    assert not marker.exists()
    # truncated, as a plain pickle and as torch.save's zip: one line each
    path.write_bytes(path.read_bytes()[:7])
    zipped = tmp_path / "zipped.pt"
    torch.save({"step": 10, "ranks": [{"torch_rng": torch.get_rng_state()}]}, zipped)
    for data in (path.read_bytes(), zipped.read_bytes()[:100]):
        path.write_bytes(data)
        rc, out = _run(["--run-dir", finished_run, "--resume", "--steps", 20], capsys)
        assert rc == 2
        _one_error_line(out, str(path))
    assert not marker.exists()


def test_crafted_trainer_json_is_refused(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = finished_run / "checkpoint" / "trainer.json"
    doc = json.loads(path.read_text())
    for bad in ({"$call": "os.system"}, {"$tensor": "not-there"}, {"$items": "x"}):
        path.write_text(json.dumps({**doc, "state": {**doc["state"], "step": bad}}))
        rc, out = _run(["--run-dir", finished_run, "--resume", "--steps", 20], capsys)
        assert rc == 2
        _one_error_line(out, str(path))


def test_legacy_trainer_pt_of_plain_values_resumes_exactly(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trainer.pt written by aaren-rl before JSON + safetensors (plain values and tensors)
    loads with weights_only=True and continues exactly like the current format."""
    import shutil

    legacy = tmp_path / "legacy"
    shutil.copytree(finished_run, legacy)
    ckpt = legacy / "checkpoint"
    state = load_trainer_state(ckpt)
    state.pop("dataset_fingerprint")  # not recorded before this format
    for rank in state["ranks"]:
        del rank["numpy_rng"], rank["python_rng"]
    (ckpt / "trainer.json").unlink()
    (ckpt / "trainer.safetensors").unlink()
    torch.save(state, ckpt / "trainer.pt")
    for run in (finished_run, legacy):
        rc, out = _run(["--run-dir", run, "--resume", "--steps", 20], capsys)
        assert rc == 0, out
    a = load_file(str(finished_run / "checkpoint" / "model.safetensors"))
    b = load_file(str(legacy / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (legacy / "checkpoint" / "trainer.json").exists()  # rewritten in the new format
    assert not (legacy / "checkpoint" / "trainer.pt").exists()


def test_stale_checkpoint_temporaries_are_removed_on_resume(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = finished_run / ".checkpoint.tmp-abc123"  # what a kill during a write leaves
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"\0" * 1000)
    rc, out = _run(["--run-dir", finished_run, "--resume", "--steps", 20], capsys)
    assert rc == 0, out
    assert not stale.exists()


def test_python_api_resume_with_another_config_is_refused(
    finished_run: Path, tiny_hopper_dataset: Path
) -> None:
    cfg = TrainConfig(dataset=f"d4rl:{tiny_hopper_dataset}", run_dir=finished_run, resume=True)
    with pytest.raises(RunDirError, match="different configuration"):
        train(cfg)


# ---- faults during the work (subprocesses) ----


def _subprocess_args(*args: object) -> list[str]:
    return [sys.executable, "-m", "aaren_rl.train.cli", *map(str, args)]


def test_disk_full_while_saving_keeps_the_old_checkpoint(finished_run: Path) -> None:
    ckpt = finished_run / "checkpoint"
    before = _tree_hash(ckpt)

    def small_file_limit() -> None:  # model.safetensors alone is ~70 kB
        resource.setrlimit(resource.RLIMIT_FSIZE, (32_000, 32_000))

    res = subprocess.run(
        _subprocess_args("--run-dir", finished_run, "--resume", "--steps", 20),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=small_file_limit,
    )
    assert res.returncode == 1, res.stderr
    lines = [line for line in res.stderr.splitlines() if "aaren-train: error:" in line]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert str(ckpt) in lines[0] and "ulimit" in lines[0]
    assert "checkpoint of step 10 is intact" in lines[0] and "--resume" in lines[0]
    assert _tree_hash(ckpt) == before
    assert not list(finished_run.glob(".checkpoint.tmp-*"))


def _default_sigint() -> None:
    """In the child: SIGINT back to its default. A test runner started in the background by
    a non-interactive shell (``cmd &``) inherits SIGINT ignored, and so would the child, which
    is not what a user at a terminal gets."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_names_the_run_directory(tiny_hopper_dataset: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "interrupted"
    args = _args(tiny_hopper_dataset, run_dir, 100_000)
    proc = subprocess.Popen(
        _subprocess_args(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_sigint,
    )  # fmt: skip
    trainer = run_dir / "checkpoint" / "trainer.json"
    deadline = time.time() + 120
    while not trainer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"--resume --run-dir {run_dir}" in err
    assert "<run dir>" not in err and "Traceback" not in err
