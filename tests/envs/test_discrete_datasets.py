"""Discrete actions / observations in D4RL HDF5 and Minari datasets, and the one clear error
for data that does not fit the env's action space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aaren_rl.collect.scripted import collect_arrays
from aaren_rl.envs import check_dataset_matches_env, load_dataset
from aaren_rl.envs.datasets import split_episodes
from aaren_rl.envs.writers import write_d4rl_hdf5, write_minari
from aaren_rl.errors import DatasetError


def _tmaze_file(tmp_path: Path, **changes) -> Path:
    arrays = collect_arrays("tmaze-6", "medium", episodes=12, seed=0)
    arrays.update(changes)
    path = tmp_path / "tmaze.hdf5"
    write_d4rl_hdf5(path, arrays, {"env_id": "aaren/PassiveTMaze-L6-v0"})
    return path


def test_integer_actions_load_one_hot(tmp_path: Path) -> None:
    raw = collect_arrays("tmaze-6", "medium", episodes=12, seed=0)
    ds = load_dataset(f"d4rl:{_tmaze_file(tmp_path)}")
    assert ds.num_actions == 4 and ds.discrete_actions and ds.act_dim == 4
    acts = np.concatenate([t.actions for t in ds.trajectories])
    assert acts.sum(1).tolist() == [1.0] * len(acts)  # one-hot rows
    assert acts.argmax(1).tolist() == raw["actions"].tolist()
    assert len(ds.trajectories) == 12 and all(len(t) == 7 for t in ds.trajectories)
    check_dataset_matches_env(ds, "tmaze-6")  # one-hot dims match the env's vector view


def test_action_ids_out_of_range(tmp_path: Path) -> None:
    raw = collect_arrays("tmaze-6", "medium", episodes=12, seed=0)
    bad = raw["actions"].copy()
    bad[5] = 9
    with pytest.raises(DatasetError, match=r"action ids must be in 0\.\.3.*index 5 \(id 9\)"):
        load_dataset(f"d4rl:{_tmaze_file(tmp_path, actions=bad)}")


def test_float_actions_for_a_discrete_env(tmp_path: Path) -> None:
    raw = collect_arrays("tmaze-6", "medium", episodes=12, seed=0)
    floats = np.random.default_rng(0).uniform(-1, 1, (len(raw["actions"]), 4)).astype(np.float32)
    with pytest.raises(DatasetError, match=r"Discrete\(4\).*integer action ids"):
        load_dataset(f"d4rl:{_tmaze_file(tmp_path, actions=floats)}")


def test_dataset_and_env_action_spaces_must_agree(tmp_path: Path) -> None:
    ds = load_dataset(f"d4rl:{_tmaze_file(tmp_path)}")
    with pytest.raises(DatasetError, match=r"Discrete\(4\) actions but Hopper-v5 takes float"):
        check_dataset_matches_env(ds, "hopper")
    n = 14  # float actions of the right width are still not a discrete dataset
    box = split_episodes(np.zeros((n, 3)), np.zeros((n, 4)), np.zeros(n), np.arange(n) % 7 == 6,
                         np.zeros(n, bool), spec="box")  # fmt: skip
    with pytest.raises(DatasetError, match=r"float \(Box\) actions but .* takes Discrete\(4\)"):
        check_dataset_matches_env(box, "tmaze-6")


def test_discrete_observations_are_one_hot(tmp_path: Path) -> None:
    pytest.importorskip("popgym")
    raw = collect_arrays("popgym-RepeatFirstEasy", "expert", episodes=3, seed=0)
    path = tmp_path / "rf.hdf5"
    write_d4rl_hdf5(path, raw, {"env_id": "aaren/popgym-RepeatFirstEasy-v0"})
    ds = load_dataset(f"d4rl:{path}")
    assert ds.obs_dim == 4 and ds.num_actions == 4
    obs = np.concatenate([t.observations for t in ds.trajectories])
    assert obs.argmax(1).tolist() == raw["observations"].tolist()
    # without a recorded env, the attrs say what the ids are
    path2 = tmp_path / "rf2.hdf5"
    write_d4rl_hdf5(path2, raw, {"observation_nvec": [4], "num_actions": 4})
    ds2 = load_dataset(f"d4rl:{path2}")
    assert ds2.obs_dim == 4 and ds2.num_actions == 4


def test_minari_round_trip() -> None:  # the autouse fixture gives a private Minari root
    raw = collect_arrays("tmaze-5", "medium", episodes=8, seed=1)
    write_minari("test/tmaze5-medium-v0", raw, "aaren/PassiveTMaze-L5-v0",
                 algorithm_name="scripted", description="test")  # fmt: skip
    ds = load_dataset("minari:test/tmaze5-medium-v0")
    assert ds.num_actions == 4 and len(ds.trajectories) == 8
    acts = np.concatenate([t.actions for t in ds.trajectories]).argmax(1)
    assert acts.tolist() == raw["actions"].tolist()
