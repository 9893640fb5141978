"""aaren-train's memory-task options (as aaren-bench memory trains): --curriculum, --decision-weight."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aaren_rl.aaren_policy import BackboneConfig
from aaren_rl.collect.scripted import collect_arrays
from aaren_rl.envs.writers import write_d4rl_hdf5
from aaren_rl.errors import ConfigError, DatasetError
from aaren_rl.train.config import TrainConfig
from aaren_rl.train.loop import train
from aaren_rl.train.trainer import Trainer, decision_weights


def test_decision_weights_mark_each_rows_last_real_step() -> None:
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    w = decision_weights(right)
    assert w.tolist() == [[1, 1, 3, 1], [1, 1, 1, 4], [1, 1, 1, 1]]
    left = right.flip(1)  # left padding: the last real step is the window's last
    assert decision_weights(left).tolist() == [[1, 1, 1, 3], [1, 1, 1, 4], [1, 1, 1, 1]]


def test_curriculum_stages_split_the_steps_evenly() -> None:
    cfg = TrainConfig(steps=6, curriculum=(4, 9, 20))
    assert [cfg.curriculum_stage(s) for s in range(1, 7)] == [0, 0, 1, 1, 2, 2]
    assert TrainConfig(steps=5).curriculum_stage(3) == 0
    for bad in [(0, 5), (1, 2, 3)]:
        with pytest.raises(ConfigError, match="--curriculum"):
            TrainConfig(steps=2, curriculum=bad).validate()


@pytest.fixture
def mixed_tmaze(tmp_path: Path) -> Path:
    """T-Maze episodes of L = 3 (4 steps) and L = 8 (9 steps) in one file."""
    short, long_ = (collect_arrays(f"tmaze-{n}", "medium", episodes=12, seed=n) for n in (3, 8))
    arrays = {k: np.concatenate([short[k], long_[k]]) for k in short}
    return write_d4rl_hdf5(tmp_path / "mixed.hdf5", arrays, {"env_id": "aaren/PassiveTMaze-L8-v0"})


def _cfg(data: Path, run_dir: Path, **kw) -> TrainConfig:
    args = dict(dataset=f"d4rl:{data}", run_dir=run_dir, steps=6, curriculum=(4, 9),
                decision_weight=True, return_scale=1.0, max_timestep=1, batch_size=3,
                model=BackboneConfig(dim=16, num_layers=1, dropout=0.0), threads=1,
                eval_episodes=0, checkpoint_every=2, progress=False)  # fmt: skip
    return TrainConfig(**{**args, **kw})


def test_the_curriculum_feeds_short_episodes_first(mixed_tmaze: Path, tmp_path: Path) -> None:
    trainer = Trainer.build(_cfg(mixed_tmaze, tmp_path / "run"))
    trainer.start()
    seen = []
    for _ in range(6):
        trainer.train_step()
        seen.append((trainer.stage, int(trainer.sampler.lengths.max())))
    assert seen == [(0, 4)] * 3 + [(1, 9)] * 3
    assert np.isfinite(trainer.last_loss)


def test_a_run_stopped_mid_curriculum_resumes_bit_identically(
    mixed_tmaze: Path, tmp_path: Path, monkeypatch
) -> None:
    straight = train(_cfg(mixed_tmaze, tmp_path / "straight"))
    step = Trainer.train_step

    def stop_after_two(self: Trainer):  # checkpoint at step 2 (stage 0), stop in step 3
        if self._next_step == 3:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(mixed_tmaze, tmp_path / "killed"))
    monkeypatch.undo()
    resumed = train(_cfg(mixed_tmaze, tmp_path / "killed", resume=True))
    a, b = (load_file(str(r.run_dir / "checkpoint" / "model.safetensors"))
            for r in (straight, resumed))  # fmt: skip
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_decision_weight_changes_the_training(mixed_tmaze: Path, tmp_path: Path) -> None:
    runs = [train(_cfg(mixed_tmaze, tmp_path / f"r{w}", **{"decision_weight": w}))
            for w in (True, False)]  # fmt: skip
    assert runs[0].final_loss != runs[1].final_loss


def test_a_stage_without_episodes_is_refused_at_build(mixed_tmaze: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--curriculum stage 1"):
        Trainer.build(_cfg(mixed_tmaze, tmp_path / "run", curriculum=(2, 9)))


def test_the_flags_reach_the_run(mixed_tmaze: Path, tmp_path: Path) -> None:
    import json

    from aaren_rl.train.cli import main

    run = tmp_path / "cli"
    args = ["--dataset", f"d4rl:{mixed_tmaze}", "--steps", "4", "--curriculum", "4", "9",
            "--decision-weight", "--return-scale", "1", "--max-timestep", "1",
            "--model.dim", "16", "--model.num-layers", "1", "--threads", "1", "--no-progress",
            "--eval-episodes", "2", "--eval-num-envs", "2", "--run-dir", str(run)]  # fmt: skip
    assert main(args) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["curriculum"] == [4, 9] and config["decision_weight"] is True
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/success_rate" in m for m in metrics)
    assert main(["--run-dir", str(run), "--resume", "--steps", "6", "--no-progress"]) == 0


def test_several_files_train_as_one(tmp_path: Path, h5_file: Path) -> None:
    """--dataset A+B: aaren-collect writes one T-Maze length per file; the curriculum needs
    them together."""
    from aaren_rl.train.mixed_data import load_training_data

    paths = []
    for n in (3, 8):
        arrays = collect_arrays(f"tmaze-{n}", "medium", episodes=6, seed=n)
        env = {"env_id": f"aaren/PassiveTMaze-L{n}-v0"}
        paths.append(write_d4rl_hdf5(tmp_path / f"L{n}.hdf5", arrays, env))
    spec = f"d4rl:{paths[0]} + d4rl:{paths[1]}"
    ds = load_training_data(spec)
    assert sorted({len(t) for t in ds.trajectories}) == [4, 9] and len(ds.trajectories) == 12
    assert ds.env_id == "aaren/PassiveTMaze-L3-v0" and ds.num_actions == 4 and ds.spec == spec
    obs = np.concatenate([t.observations for t in ds.trajectories])
    np.testing.assert_allclose(ds.state_mean, obs.mean(0), rtol=1e-6)
    trainer = Trainer.build(_cfg(Path("unused"), tmp_path / "run", dataset=spec, curriculum=(4, 9)))
    assert len(trainer.dataset.trajectories) == 12
    with pytest.raises(DatasetError, match="the parts of one dataset must match"):
        load_training_data(f"d4rl:{paths[0]}+d4rl:{h5_file}")
    with pytest.raises(DatasetError, match="empty part"):
        load_training_data(f"d4rl:{paths[0]}+")
