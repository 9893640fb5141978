"""aaren-train --resume of a run directory someone else crafted (docs/security.md): nothing
read or written outside it, no FIFO waited on, no size the file asks for allocated, and no
W&B or download setting taken from its config.json."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from aaren_rl.train.cli import main, parse_config

TINY = ["--model.dim", "16", "--model.num-layers", "1", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a run dir of 10 steps, its dataset), trained once for the module."""
    import h5py
    import numpy as np

    root = tmp_path_factory.mktemp("stranger")
    data, rng, n = root / "tiny.hdf5", np.random.default_rng(0), 120
    ends = np.zeros(n, bool)
    ends[29::30] = True
    with h5py.File(data, "w") as f:
        f["observations"] = rng.normal(size=(n, 11)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        f["rewards"] = rng.uniform(0, 3, n).astype(np.float32)
        f["terminals"], f["timeouts"] = ends, np.zeros(n, bool)
        f.attrs["env_id"] = "Hopper-v5"
    run = root / "run"
    args = [
        "--dataset",
        f"d4rl:{data}",
        "--steps",
        "10",
        "--checkpoint-every",
        "10",
        "--log-every",
        "5",
        "--eval-episodes",
        "0",
        "--run-dir",
        str(run),
        "--recipe",
        "window",
        "--context-length",
        "8",
        "--batch-size",
        "4",
        "--memory-horizon",
        "0",
        *TINY,
    ]  # fmt: skip  (4 episodes: none to hold out)
    assert main(args) == 0
    return run, data


@pytest.fixture
def run(trained: tuple[Path, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained[0], copy, symlinks=True)
    return copy


def _resume(run: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    signal.alarm(60)  # a FIFO read would block for ever: fail instead
    try:
        rc = main(["--run-dir", str(run), "--resume", "--steps", "15", *extra])
    finally:
        signal.alarm(0)
    captured = capsys.readouterr()
    return rc, captured.err + captured.out


@pytest.mark.parametrize("existing", [False, True])
def test_metrics_jsonl_linked_out_of_the_run_is_refused(
    run: Path, tmp_path: Path, capsys, existing: bool
):
    outside = tmp_path / "outside.txt"
    if existing:
        outside.write_text('{"step": 1, "secret": 1}\n')
    before = outside.read_bytes() if existing else None
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(outside)
    rc, out = _resume(run, capsys)
    assert rc == 2 and "metrics.jsonl is a symlink to" in out and "outside" in out, out
    assert (outside.read_bytes() if existing else outside.exists()) == (before or False)


def test_a_wandb_folder_linked_out_of_the_run_is_refused(run: Path, tmp_path: Path, capsys):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (run / "wandb").symlink_to(outside)
    rc, out = _resume(run, capsys, "--track")
    assert rc == 2 and "wandb is a symlink to" in out, out
    assert list(outside.iterdir()) == []


def test_metrics_jsonl_as_a_fifo_is_refused_in_seconds(run: Path, capsys):
    (run / "metrics.jsonl").unlink()
    os.mkfifo(run / "metrics.jsonl")
    rc, out = _resume(run, capsys)
    assert rc == 2 and "FIFO" in out, out


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_timestep", 2**24, "max_timestep = 16777216 is outside"),
        ("context_length", 70_000_000, "context_length = 70000000 is outside"),
        ("model", {"dim": 8192, "num_layers": 64}, "weights"),
    ],
)
def test_config_json_sizes_are_bounded(run: Path, capsys, field: str, value, message: str):
    config = json.loads((run / "config.json").read_text())
    config[field] = value
    (run / "config.json").write_text(json.dumps(config))
    rc, out = _resume(run, capsys)
    assert rc == 2 and message in out, out


def test_w_and_b_and_download_come_from_flags_only(run: Path, capsys):
    config = json.loads((run / "config.json").read_text())
    config |= {"track": True, "wandb_entity": "someone", "wandb_project": "theirs",
               "download": True}  # fmt: skip
    (run / "config.json").write_text(json.dumps(config))
    cfg = parse_config(["--run-dir", str(run), "--resume", "--steps", "15"])
    assert (cfg.track, cfg.wandb_entity, cfg.wandb_project, cfg.download) == (
        False, None, "aaren-rl", False,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert "from flags: steps=15" in err, err
    assert "from " in err and "context_length=8" in err  # reused from the file, and said so
    assert "not taken from the file" in err and "wandb_entity='someone'" in err
    cfg = parse_config(["--run-dir", str(run), "--resume", "--track", "--wandb-entity", "me"])
    assert (cfg.track, cfg.wandb_entity) == (True, "me")


def test_a_legacy_trainer_pt_zip_bomb_is_refused_before_decompressing(tmp_path: Path):
    import zipfile

    from aaren_rl.errors import CheckpointError
    from aaren_rl.train.trainer_state import MAX_LEGACY_BYTES, load_trainer_state

    ckpt = tmp_path / "checkpoint"
    ckpt.mkdir()
    with zipfile.ZipFile(ckpt / "trainer.pt", "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(3):  # 3 x 100 MB of zeros in ~300 kB
            z.writestr(f"archive/data/{i}", b"\0" * 100_000_000)
    assert (ckpt / "trainer.pt").stat().st_size < 1_000_000
    with pytest.raises(CheckpointError, match=f"more than the {MAX_LEGACY_BYTES} allowed"):
        load_trainer_state(ckpt)


def test_a_tracked_run_with_w_and_b_links_inside_still_resumes(
    run: Path, tmp_path: Path, capsys, monkeypatch
):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.delenv("WANDB_DIR", raising=False)
    rc, out = _resume(run, capsys, "--track")
    assert rc == 0, out
    links = [p for p in (run / "wandb").iterdir() if p.is_symlink()]
    assert links  # W&B's own latest-run / debug.log links, inside the run dir
    rc = main(["--run-dir", str(run), "--resume", "--steps", "20", "--track"])
    assert rc == 0, capsys.readouterr().err


@pytest.mark.parametrize("field, value", [("ranks", 5), ("dataset_fingerprint", 7)])
def test_a_malformed_trainer_state_is_one_line(run: Path, capsys, field: str, value):
    path = run / "checkpoint" / "trainer.json"
    doc = json.loads(path.read_text())
    doc["state"][field] = value
    path.write_text(json.dumps(doc))
    rc, out = _resume(run, capsys)
    assert rc == 2 and "trainer state is malformed" in out and "Traceback" not in out, out
