"""aaren-train --horizon-selection: offline (held-out episodes, never trained on) or online."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aaren_rl.errors import ConfigError
from aaren_rl.eval.offline_horizon import heldout_episodes
from aaren_rl.train.cli import main
from aaren_rl.train.config import TrainConfig
from aaren_rl.train.trainer import Trainer

TINY = ["--model.dim", "16", "--model.num-layers", "1", "--threads", "1", "--no-progress"]


def _build(dataset: Path, tmp_path: Path, **kw) -> Trainer:
    from aaren_rl.aaren_policy import BackboneConfig

    cfg = TrainConfig(dataset=f"d4rl:{dataset}", run_dir=tmp_path / "run", threads=1,
                      model=BackboneConfig(dim=16, num_layers=1), **kw)  # fmt: skip
    cfg.validate()
    return Trainer.build(cfg)


def test_the_sampler_never_sees_the_held_out_episodes(tiny_hopper_dataset: Path, tmp_path):
    trainer = _build(tiny_hopper_dataset, tmp_path, seed=5, recipe="window", context_length=4)
    trajs = trainer.dataset.trajectories
    assert trainer.heldout == heldout_episodes(len(trajs), 5) and len(trainer.heldout) == 2
    kept = [t for i, t in enumerate(trajs) if i not in trainer.heldout]
    sampler = trainer.sampler
    assert sampler.lengths.tolist() == [len(t) for t in kept]
    held_obs = np.concatenate([trajs[i].observations for i in trainer.heldout])
    held_rows = (held_obs - trainer.dataset.state_mean) / trainer.dataset.state_std
    flat = sampler._obs[:-1]  # the sampler's flattened, normalised observations
    for row in held_rows.astype(np.float32):
        assert not np.isclose(flat, row, atol=1e-6).all(-1).any()
    for _ in range(20):  # and what it draws comes from the kept episodes
        batch = sampler.sample()
        obs = batch.observations[batch.mask].numpy()
        for row in obs[:5]:
            assert not np.isclose(held_rows, row, atol=1e-5).all(-1).any()
    # the agent's normalisation stays the whole file's
    np.testing.assert_array_equal(trainer.agent().state_mean, trainer.dataset.state_mean)


@pytest.mark.parametrize(
    "kw",
    [{"horizon_selection": "online"}, {"memory_horizon": 5}, {"backbone": "transformer"}],
    ids=["online", "given-horizon", "transformer"],
)
def test_nothing_is_held_out_without_an_offline_choice(tiny_hopper_dataset, tmp_path, kw):
    trainer = _build(tiny_hopper_dataset, tmp_path, **kw)
    assert trainer.heldout == [] and len(trainer.sampler.lengths) == 12


def test_too_few_episodes_fail_before_anything_is_written(synth, tmp_path: Path, capsys):
    dataset = synth.hopper_like(tmp_path / "four.hdf5", episodes=4)
    run_dir = tmp_path / "run"
    args = ["--dataset", f"d4rl:{dataset}", "--steps", 2, "--run-dir", run_dir, *TINY]
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert "4 episode(s)" in err and "--horizon-selection online" in err
    assert not run_dir.exists()
    # a given horizon needs no held-out episodes
    assert main([str(a) for a in [*args, "--memory-horizon", 0, "--eval-episodes", 0]]) == 0


def test_online_selection_is_labelled_online(tiny_hopper_dataset: Path, tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    args = ["--dataset", f"d4rl:{tiny_hopper_dataset}", "--steps", 4, "--run-dir", run_dir,
            "--eval-episodes", 1, "--eval-num-envs", 1, "--eval-max-episode-steps", 10,
            "--horizon-selection", "online", "--horizon-candidates", 0, 5, *TINY]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    out = capsys.readouterr().out
    assert "memory horizon for recurrent acting (chosen online, in the environment)" in out
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    chosen = [r for r in records if "online/memory_horizon" in r]
    assert len(chosen) == 1 and {"online/validation_score_h0", "online/validation_score_h5"} <= set(
        chosen[0]
    )
    assert not any(k.startswith("offline/") for r in records for k in r)
    meta = json.loads((run_dir / "checkpoint" / "agent.json").read_text())
    record = meta["horizon_selection"]
    assert record["selection"] == "online" and record["heldout_episodes"] == []
    assert record["choice"]["selection"] == "online"
    assert meta["memory_horizon"] == chosen[0]["online/memory_horizon"]


def test_offline_selection_needs_no_evaluation(tiny_hopper_dataset: Path, tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    args = ["--dataset", f"d4rl:{tiny_hopper_dataset}", "--steps", 4, "--run-dir", run_dir,
            "--eval-episodes", 0, "--horizon-candidates", 0, 5, *TINY]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    assert "memory horizon for recurrent acting (chosen offline)" in capsys.readouterr().out
    meta = json.loads((run_dir / "checkpoint" / "agent.json").read_text())
    choice = meta["horizon_selection"]["choice"]
    assert choice["selection"] == "offline" and meta["memory_horizon"] == choice["memory_horizon"]
    assert choice["heldout_episodes"] == meta["horizon_selection"]["heldout_episodes"]
    # aaren-eval says how the horizon it acts with was chosen
    assert _evaluate(run_dir, tmp_path) == "offline"
    assert "memory horizon chosen offline, on held-out dataset episodes" in capsys.readouterr().out
    assert _evaluate(run_dir, tmp_path, "--memory-horizon", "3") == "given"


def _evaluate(run_dir: Path, tmp_path: Path, *extra: str) -> str | None:
    """aaren-eval of the run's checkpoint (one 5-step episode): its JSON's horizon_selection."""
    from aaren_rl.eval.cli import main as evaluate

    out = tmp_path / "eval.json"
    args = ["--checkpoint", str(run_dir / "checkpoint"), "--episodes", "1",
            "--max-episode-steps", "5", "--no-progress", "--json", str(out), *extra]  # fmt: skip
    assert evaluate(args) == 0
    return json.loads(out.read_text())["horizon_selection"]


def test_bad_holdout_fraction() -> None:
    with pytest.raises(ConfigError, match="--holdout-fraction"):
        TrainConfig(holdout_fraction=0.0).validate()


def test_train_memory_horizon_trains_and_acts_with_it(tiny_hopper_dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["--dataset", f"d4rl:{tiny_hopper_dataset}", "--steps", 3, "--run-dir", run_dir,
            "--eval-episodes", 0, "--train-memory-horizon", 7, *TINY]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    assert "memory horizon for recurrent acting: 7, the one it trained with" in (
        capsys.readouterr().out
    )
    meta = json.loads((run_dir / "checkpoint" / "agent.json").read_text())
    assert meta["memory_horizon"] == 7 and meta["train_memory_horizon"] == 7
    assert meta["horizon_selection"] is None  # nothing chosen, nothing held out
    assert _evaluate(run_dir, tmp_path) == "trained"
    assert "memory horizon 7: the one it was trained with" in capsys.readouterr().out


def test_the_training_forward_uses_the_train_memory_horizon(tiny_hopper_dataset, tmp_path):
    losses = []
    for h in (0, 3, 3):  # same seed, same batch and dropout: only the horizon differs
        trainer = _build(tiny_hopper_dataset, tmp_path / str(len(losses)),
                         train_memory_horizon=h, memory_horizon=0, seed=1)  # fmt: skip
        assert trainer.heldout == [] and trainer.memory_horizon == 0  # --memory-horizon wins
        losses.append(trainer.train_step().loss)
    assert losses[1] == losses[2] and losses[0] != losses[1]


def test_train_memory_horizon_is_for_aaren() -> None:
    with pytest.raises(ConfigError, match="--train-memory-horizon is for --backbone aaren"):
        TrainConfig(backbone="transformer", train_memory_horizon=5).validate()
    with pytest.raises(ConfigError, match="--train-memory-horizon must be >= 0"):
        TrainConfig(train_memory_horizon=-1).validate()
