"""``make demo``'s entry point: its flags reach the training run, a previous run is kept.

The training itself is ``aaren_rl.train.loop.train`` (tested with real data elsewhere); here
it is replaced by a recorder so that only the demo's own plumbing runs.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from aaren_rl.train import demo, loop


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list:
    seen: list = []

    def fake_train(cfg):  # noqa: ANN001, ANN202
        seen.append(cfg)
        return SimpleNamespace(
            seconds_per_step=0.1,
            precision=cfg.resolved_precision,
            run_dir=cfg.run_dir,
            memory_horizon=None,
            eval=None,
        )

    monkeypatch.setattr(loop, "train", fake_train)
    return seen


def test_precision_flag_reaches_the_training_run(recorded: list, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "demo"
    assert demo.main(["--precision", "fp32", "--steps", "3", "--run-dir", str(run_dir)]) == 0
    (cfg,) = recorded
    assert (cfg.precision, cfg.steps, cfg.run_dir) == ("fp32", 3, run_dir)
    assert cfg.horizon_selection == "online"  # labelled online when printed
    assert "fp32" in capsys.readouterr().out  # the path it took is printed


def test_default_precision_is_auto(recorded: list, tmp_path: Path) -> None:
    assert demo.main(["--run-dir", str(tmp_path / "demo")]) == 0
    assert recorded[0].precision == "auto"


def test_unknown_precision_is_refused_before_anything_moves(recorded: list, tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    run_dir.mkdir()
    with pytest.raises(SystemExit) as e:
        demo.main(["--precision", "fp16", "--run-dir", str(run_dir)])
    assert e.value.code == 2
    assert run_dir.is_dir() and not recorded


def test_a_previous_run_is_moved_aside_not_overwritten(recorded: list, tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("mine")
    assert demo.main(["--run-dir", str(run_dir)]) == 0
    (moved,) = [p for p in tmp_path.iterdir() if p.name.startswith("demo-")]
    assert (moved / "keep.txt").read_text() == "mine"
