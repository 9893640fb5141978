"""The online replay buffer: FIFO by trajectory (or lowest return first), ODT's seeding,
hindsight returns-to-go, and a file format that holds no pickle."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from aaren_rl.errors import CheckpointError, ConfigError
from aaren_rl.train.replay import (
    REPLAY_JSON,
    REPLAY_TENSORS,
    ReplayBuffer,
    hindsight_returns_to_go,
    make_trajectory,
)


def traj(length: int, reward: float = 1.0, obs_dim: int = 3, act_dim: int = 2, tag: float = 0.0):
    obs = np.full((length, obs_dim), tag, np.float32)
    return make_trajectory(
        obs, np.zeros((length, act_dim)), np.full(length, reward), length % 2 == 0
    )


def test_hindsight_returns_to_go_by_hand() -> None:
    # rewards 1, 2, 3, -1: realised returns-to-go 5, 4, 2, -1 (whatever return was asked for)
    np.testing.assert_array_equal(
        hindsight_returns_to_go(np.array([1.0, 2.0, 3.0, -1.0])), [5, 4, 2, -1]
    )
    t = make_trajectory(np.zeros((3, 2)), np.zeros((3, 1)), np.array([0.5, 0.25, 0.25]), True)
    np.testing.assert_array_equal(t.returns_to_go, np.array([1.0, 0.5, 0.25], np.float32))
    np.testing.assert_array_equal(t.timesteps, [0, 1, 2])
    assert t.terminated and t.episode_return == 1.0


def test_buffer_grows_then_evicts_the_oldest_trajectories_first() -> None:
    buf = ReplayBuffer(3)
    assert buf.add([traj(2, tag=1), traj(3, tag=2)]) == 0
    assert len(buf) == 2 and buf.num_transitions == 5
    assert buf.add([traj(4, tag=3), traj(5, tag=4)]) == 1  # tag 1 leaves
    assert [float(t.observations[0, 0]) for t in buf.trajectories] == [2, 3, 4]
    assert buf.add([traj(1, tag=5)]) == 1
    assert [float(t.observations[0, 0]) for t in buf.trajectories] == [3, 4, 5]
    assert (buf.added, buf.evicted, buf.num_transitions) == (5, 2, 10)


def test_seeded_buffer_keeps_the_best_trajectories_lowest_return_first() -> None:
    offline = [traj(2, reward=r, tag=r) for r in (5.0, 1.0, 9.0, 3.0, 7.0)]
    buf = ReplayBuffer.seeded(3, offline)
    assert [t.episode_return for t in buf.trajectories] == [10.0, 14.0, 18.0]  # 5, 7, 9 x 2
    assert buf.added == 0
    buf.add([traj(2, reward=0.0)])  # the weakest offline trajectory is evicted first
    assert [t.episode_return for t in buf.trajectories] == [14.0, 18.0, 0.0]
    assert len(ReplayBuffer.seeded(3, offline, count=0)) == 0
    with pytest.raises(ConfigError, match="--replay-size"):
        ReplayBuffer(0)


def test_lowest_return_eviction_keeps_the_best_and_their_order() -> None:
    offline = [traj(2, reward=r, tag=r) for r in (5.0, 1.0, 9.0, 3.0, 7.0)]
    buf = ReplayBuffer.seeded(3, offline, eviction="lowest-return")
    assert [t.episode_return for t in buf.trajectories] == [10.0, 14.0, 18.0]
    assert buf.add([traj(2, reward=0.0, tag=-1)]) == 1  # worse than all: it leaves at once
    assert [t.episode_return for t in buf.trajectories] == [10.0, 14.0, 18.0]
    assert (buf.added, buf.evicted) == (1, 1)
    # two new ones: 16 beats 10 and 14; 12 beats 10 only; the survivors keep their order
    assert buf.add([traj(2, reward=8.0, tag=8), traj(2, reward=6.0, tag=6)]) == 2
    assert [t.episode_return for t in buf.trajectories] == [14.0, 18.0, 16.0]
    # ties: the oldest of equal returns leaves first
    buf.add([traj(2, reward=7.0, tag=70)])  # 14, like the oldest one held
    assert [float(t.observations[0, 0]) for t in buf.trajectories] == [9.0, 8.0, 70.0]
    # FIFO on the same contents would have kept the newest instead
    fifo = ReplayBuffer.seeded(3, offline)
    fifo.add([traj(2, reward=0.0, tag=-1)])
    assert [t.episode_return for t in fifo.trajectories] == [14.0, 18.0, 0.0]
    with pytest.raises(ConfigError, match="--replay-eviction"):
        ReplayBuffer(3, eviction="random")


def test_eviction_survives_save_and_load(tmp_path: Path) -> None:
    buf = ReplayBuffer(2, [traj(2, reward=3.0), traj(2, reward=1.0)], eviction="lowest-return")
    buf.save(tmp_path)
    back = ReplayBuffer.load(tmp_path, obs_dim=3, act_dim=2)
    assert back.eviction == "lowest-return"
    back.add([traj(2, reward=2.0)])
    assert [t.episode_return for t in back.trajectories] == [6.0, 4.0]
    meta = json.loads((tmp_path / REPLAY_JSON).read_text())
    del meta["eviction"]  # a buffer saved before the choice existed: FIFO
    (tmp_path / REPLAY_JSON).write_text(json.dumps(meta))
    assert ReplayBuffer.load(tmp_path, obs_dim=3, act_dim=2).eviction == "oldest"
    meta["eviction"] = ["oldest"]
    (tmp_path / REPLAY_JSON).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="eviction must be one of"):
        ReplayBuffer.load(tmp_path, obs_dim=3, act_dim=2)


def test_return_stats_describe_what_the_updates_train_on() -> None:
    assert ReplayBuffer(2).return_stats() == {}
    buf = ReplayBuffer(3, [traj(2, reward=1.0), traj(3, reward=2.0)])
    assert buf.return_stats() == {"buffer/return_min": 2.0, "buffer/return_mean": 4.0}


def test_sampler_draws_windows_from_the_current_contents() -> None:
    buf = ReplayBuffer(2, [traj(4, tag=1)])
    rng = np.random.default_rng(0)
    kw = dict(
        context_length=3,
        batch_size=8,
        return_scale=1.0,
        state_mean=np.zeros(3),
        state_std=np.ones(3),
    )
    batch = buf.sampler("window", rng, **kw).sample()
    assert batch.observations.shape[0] == 8 and (batch.observations[batch.mask] == 1).all()
    buf.add([traj(5, tag=7), traj(6, tag=8)])  # tag 1 evicted
    sampler = buf.sampler("window", rng, **kw)
    assert sampler.rng is rng  # one stream across rebuilds
    obs = sampler.sample().observations
    assert set(np.unique(obs[obs != 0]).tolist()) <= {7.0, 8.0}


def test_save_and_load_round_trip_without_pickle(tmp_path: Path) -> None:
    buf = ReplayBuffer(4, [traj(3, reward=0.5, tag=1), traj(2, reward=2.0, tag=2)])
    buf.add([traj(5, reward=1.5, tag=3)])
    buf.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [REPLAY_JSON, REPLAY_TENSORS]
    raw = (tmp_path / REPLAY_TENSORS).read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]  # safetensors: u64 header size, JSON header
    header = json.loads(raw[8 : 8 + header_len])
    assert set(header) - {"__metadata__"} == {
        "observations",
        "actions",
        "rewards",
        "returns_to_go",
        "timesteps",
        "lengths",
        "terminated",
    }
    for blob in (raw, (tmp_path / REPLAY_JSON).read_bytes()):
        assert not blob.startswith(b"\x80") and b"PK\x03\x04" not in blob[:4]  # no pickle / zip
    json.loads((tmp_path / REPLAY_JSON).read_text())
    back = ReplayBuffer.load(tmp_path, obs_dim=3, act_dim=2)
    assert (back.capacity, back.added, back.evicted, len(back)) == (4, 1, 0, 3)
    for a, b in zip(buf.trajectories, back.trajectories):
        for key in ("observations", "actions", "rewards", "returns_to_go", "timesteps"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        assert a.terminated == b.terminated


def test_load_refuses_a_buffer_of_other_shapes_or_a_damaged_file(tmp_path: Path) -> None:
    ReplayBuffer(2, [traj(3)]).save(tmp_path)
    with pytest.raises(CheckpointError, match="observations has shape"):
        ReplayBuffer.load(tmp_path, obs_dim=4, act_dim=2)
    (tmp_path / REPLAY_TENSORS).write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="missing or corrupt"):
        ReplayBuffer.load(tmp_path, obs_dim=3, act_dim=2)
