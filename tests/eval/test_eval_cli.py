"""aaren-eval end to end on tiny checkpoints, and its errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aaren_rl.eval.cli import main

FAST = ["--max-episode-steps", "10", "--no-progress"]


def test_eval_writes_json_and_table(checkpoint: Path, tmp_path: Path, capsys):
    out = tmp_path / "res.json"
    rc = main(["--checkpoint", str(checkpoint), "--episodes", "3", "--num-envs", "2",
               "--json", str(out), *FAST])  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    for key in ("returns", "lengths", "return_mean", "return_std", "normalized_mean",
                "normalized_std", "mode", "seconds", "terminated", "truncated", "seeds"):  # fmt: skip
        assert key in data, key
    assert len(data["returns"]) == 3 and data["seeds"] == [0, 1, 2]
    assert data["mode"] == "recurrent" and data["target_return"] == 3600.0
    assert len(data["results"]) == 1
    table = capsys.readouterr().out
    assert "normalized" in table and "3600" in table


def test_several_target_returns_window_mode(aaren_checkpoint: Path, tmp_path: Path, capsys):
    out = tmp_path / "res.json"
    rc = main(["--checkpoint", str(aaren_checkpoint), "--episodes", "2", "--mode", "window",
               "--context-length", "5", "--target-return", "3600", "1800", "--json", str(out),
               *FAST])  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    assert [r["target_return"] for r in data["results"]] == [3600.0, 1800.0]
    assert data["target_return"] == 3600.0 and data["mode"] == "window"
    lines = capsys.readouterr().out.splitlines()
    assert any(ln.startswith("1800") for ln in lines) and any(ln.startswith("3600") for ln in lines)


def _err(capsys) -> str:
    return capsys.readouterr().err


def test_missing_checkpoint(tmp_path: Path, capsys):
    assert main(["--checkpoint", str(tmp_path / "nope"), *FAST]) == 2
    assert "no checkpoint directory" in _err(capsys)


def test_corrupt_checkpoint(aaren_checkpoint: Path, capsys):
    (aaren_checkpoint / "agent.json").write_text("{not json")
    assert main(["--checkpoint", str(aaren_checkpoint), *FAST]) == 2
    assert "corrupt" in _err(capsys)


def test_corrupt_weights(aaren_checkpoint: Path, capsys):
    (aaren_checkpoint / "model.safetensors").write_bytes(b"garbage")
    assert main(["--checkpoint", str(aaren_checkpoint), *FAST]) == 2
    assert "corrupt" in _err(capsys)


def test_env_mismatch(aaren_checkpoint: Path, capsys):
    assert main(["--checkpoint", str(aaren_checkpoint), "--env", "walker2d", *FAST]) == 2
    assert "does not match the checkpoint's env Hopper-v5" in _err(capsys)


def test_memory_tasks_evaluate_at_another_length_other_envs_do_not() -> None:
    from aaren_rl.eval.cli import _memory_family

    assert _memory_family("aaren/PassiveTMaze-L1500-v0") == "aaren/PassiveTMaze-v0"
    assert _memory_family("aaren/PassiveTMaze-L30-v0") == _memory_family(
        "aaren/PassiveTMaze-L1000-v0"
    )
    assert _memory_family("Hopper-v5") is None
    assert _memory_family("aaren/popgym-RepeatFirstMedium-v0") is None


def test_matching_env_by_short_name(aaren_checkpoint: Path):
    assert main(["--checkpoint", str(aaren_checkpoint), "--env", "hopper", "--episodes", "1",
                 *FAST]) == 0  # fmt: skip


@pytest.mark.parametrize("n", ["0", "-2"])
def test_bad_episodes(aaren_checkpoint: Path, capsys, n: str):
    assert main(["--checkpoint", str(aaren_checkpoint), "--episodes", n, *FAST]) == 2
    assert "--episodes must be >= 1" in _err(capsys)


def test_video_dir_not_writable(aaren_checkpoint: Path, tmp_path: Path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rc = main(["--checkpoint", str(aaren_checkpoint), "--video", str(blocker / "videos"), *FAST])
    assert rc == 2
    assert "a-file is a file, not a directory" in _err(capsys)


def test_video_needs_moviepy(aaren_checkpoint: Path, tmp_path: Path, capsys):
    pytest.importorskip("mujoco")
    try:
        import moviepy  # noqa: F401
    except ImportError:
        rc = main(["--checkpoint", str(aaren_checkpoint), "--video", str(tmp_path / "v"), *FAST])
        assert rc == 2 and "pip install moviepy" in _err(capsys)
    else:
        pytest.skip("moviepy installed: see test_video_recorded")


@pytest.mark.slow
def test_video_recorded(aaren_checkpoint: Path, tmp_path: Path):
    pytest.importorskip("moviepy")
    out = tmp_path / "res.json"
    rc = main(["--checkpoint", str(aaren_checkpoint), "--episodes", "1", "--video",
               str(tmp_path / "v"), "--json", str(out), *FAST])  # fmt: skip
    assert rc == 0
    videos = json.loads(out.read_text())["videos"]
    assert videos and all(Path(v).stat().st_size > 0 for v in videos)


@pytest.mark.slow
def test_track_offline(aaren_checkpoint: Path, tmp_path: Path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    rc = main(["--checkpoint", str(aaren_checkpoint), "--episodes", "1", "--track", *FAST])
    assert rc == 0
    assert list(tmp_path.glob("wandb/offline-run-*"))


def test_the_onnx_path_checks_its_flags_without_torch(tmp_path: Path):
    """aaren-eval --onnx must run where torch is not installed: its checks import none."""
    import subprocess
    import sys

    code = (
        "import sys; from aaren_rl.eval.cli import main; "
        f"rc = main(['--onnx', {str(tmp_path / 'p.onnx')!r}, '--json', {str(tmp_path)!r}]); "
        "print(rc, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False"], out.stderr


def test_memory_horizon_flag(aaren_checkpoint: Path, tmp_path: Path, capsys):
    out = tmp_path / "res.json"
    args = ["--checkpoint", str(aaren_checkpoint), "--episodes", "2", *FAST]
    assert main([*args, "--memory-horizon", "5", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["memory_horizon"] == 5
    assert "memory_horizon=5" in capsys.readouterr().out
    assert main([*args, "--json", str(out)]) == 0  # the checkpoint's own (0 here)
    assert json.loads(out.read_text())["memory_horizon"] == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--memory-horizon", "-1"], "--memory-horizon must be >= 0"),
        (["--memory-horizon", "5", "--mode", "window"], "applies to a checkpoint acting with"),
    ],
)
def test_bad_memory_horizon(aaren_checkpoint: Path, capsys, extra, message):
    assert main(["--checkpoint", str(aaren_checkpoint), *extra, *FAST]) == 2
    assert message in _err(capsys)


def test_memory_horizon_is_for_aaren(make_agent, tmp_path: Path, capsys):
    ckpt = make_agent("transformer").save(tmp_path / "tf")
    assert main(["--checkpoint", str(ckpt), "--memory-horizon", "5", *FAST]) == 2
    assert "--memory-horizon is for Aaren checkpoints" in _err(capsys)


def test_json_replaces_its_own_results_but_not_other_files(checkpoint: Path, tmp_path: Path):
    """An earlier aaren-eval JSON is replaced; any other existing file needs --overwrite."""
    out = tmp_path / "res.json"
    args = ["--checkpoint", str(checkpoint), "--episodes", "1", "--json", str(out), *FAST]
    assert main(args) == 0
    assert main([*args, "--seed", "3"]) == 0  # its own file: replaced
    assert json.loads(out.read_text())["seeds"] == [3]
    out.write_text('{"mine": 1}\n')
    assert main(args) == 2
    assert out.read_text() == '{"mine": 1}\n'
    assert main([*args, "--overwrite"]) == 0
    assert json.loads(out.read_text())["seeds"] == [0]
