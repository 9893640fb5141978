"""Scripted behaviour for the memory tasks: the expert, the documented mix, aaren-collect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aaren_rl.collect.scripted import WRONG_FRACTION, collect_arrays, has_scripted_policy
from aaren_rl.envs import load_dataset


def _returns(arrays: dict) -> np.ndarray:
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    return np.add.reduceat(arrays["rewards"], np.concatenate([[0], ends[:-1] + 1]))


def test_tmaze_expert_is_perfect_and_the_mix_is_documented() -> None:
    expert = collect_arrays("tmaze-12", "expert", episodes=50, seed=0)
    assert _returns(expert).tolist() == [1.0] * 50
    mix = collect_arrays("tmaze-12", "medium", episodes=600, seed=0)
    wrong = 1.0 - _returns(mix).mean()  # the decision itself is never noised
    assert abs(wrong - WRONG_FRACTION) < 0.05
    corridor = mix["actions"][mix["observations"][:, 2] == 0]
    assert 0.85 < np.mean(corridor == 0) < 0.97  # 10% of the walk is random steps


def test_popgym_behaviours() -> None:
    pytest.importorskip("popgym")
    assert _returns(
        collect_arrays("popgym-RepeatFirstEasy", "expert", 5, 0)
    ).min() == pytest.approx(1.0)
    cart = collect_arrays("popgym-StatelessCartPoleEasy", "expert", 5, 0)
    assert _returns(cart).min() == pytest.approx(1.0)  # the privileged controller survives
    assert not has_scripted_policy("hopper") and has_scripted_policy("tmaze-30")


def test_aaren_collect_writes_scripted_datasets(tmp_path: Path, capsys) -> None:
    from aaren_rl.collect.collect import Args, collect

    args = Args(env="tmaze-9", levels=("expert", "medium", "medium-replay"), transitions=300,
                hdf5_dir=tmp_path / "h5", work_dir=tmp_path / "work")  # fmt: skip
    results = collect(args)
    assert set(results) == {"expert", "medium"}
    assert "medium-replay" in capsys.readouterr().out  # skipped, with a note
    ds = load_dataset(f"d4rl:{tmp_path / 'h5' / 'PassiveTMaze-L9-medium.hdf5'}")
    assert ds.num_actions == 4 and len(ds.trajectories) == 30
    assert load_dataset("minari:aaren/PassiveTMaze-L9-expert-v0").episode_returns.min() == 1.0
