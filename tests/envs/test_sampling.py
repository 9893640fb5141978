from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aaren_rl.envs import Batch, EpisodeSampler, WindowSampler, make_sampler
from aaren_rl.envs.datasets import split_episodes

KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


@pytest.fixture
def ds(synth):
    a = synth.arrays(lengths=(5, 3, 7, 40), terminal=(True, False, True, True))
    return split_episodes(*(a[k] for k in KEYS))


def _kw(ds, **over):
    kw = dict(context_length=6, batch_size=256, return_scale=10.0,
              state_mean=ds.state_mean, state_std=ds.state_std, seed=0)  # fmt: skip
    kw.update(over)
    return kw


def _locate(ds, batch: Batch, b: int) -> tuple[int, int]:
    """Find (trajectory, start) of row b by its first normalised observation."""
    first = batch.observations[b, 0].numpy() * ds.state_std + ds.state_mean
    for i, t in enumerate(ds.trajectories):
        hit = np.flatnonzero(np.abs(t.observations - first).max(1) < 1e-4)
        if hit.size:
            return i, int(hit[0])
    raise AssertionError("window not found in dataset")


def test_window_batch_shapes_types_and_right_padding(ds):
    batch = WindowSampler(ds, **_kw(ds)).sample()
    assert isinstance(batch, Batch)
    assert batch.returns_to_go.shape == (256, 6, 1) and batch.returns_to_go.dtype == torch.float32
    assert batch.observations.shape == (256, 6, 11) and batch.actions.shape == (256, 6, 3)
    assert batch.timesteps.dtype == torch.int64 and batch.mask.dtype == torch.bool
    m = batch.mask.numpy()
    n_real = m.sum(1)
    # right padding: every row is a prefix of Trues
    assert (m == (np.arange(6)[None] < n_real[:, None])).all()
    assert n_real.max() == 6  # K is the longest real window: some windows are full
    assert n_real.min() >= 1 and (n_real < 6).any()
    assert (batch.observations.numpy()[~m] == 0).all() and (batch.timesteps.numpy()[~m] == 0).all()


def test_window_content_matches_trajectory(ds):
    batch = WindowSampler(ds, **_kw(ds, batch_size=32)).sample()
    for b in range(32):
        i, s = _locate(ds, batch, b)
        t, n = ds.trajectories[i], int(batch.mask[b].sum())
        assert n == min(6, len(t) - s)  # shorter only when it runs past the end
        np.testing.assert_allclose(
            batch.returns_to_go[b, :n, 0].numpy(), t.returns_to_go[s : s + n] / 10.0, rtol=1e-6
        )
        np.testing.assert_array_equal(batch.timesteps[b, :n].numpy(), np.arange(s, s + n))
        np.testing.assert_allclose(batch.actions[b, :n].numpy(), t.actions[s : s + n])
        np.testing.assert_allclose(
            batch.observations[b, :n].numpy(),
            (t.observations[s : s + n] - ds.state_mean) / ds.state_std,
            rtol=1e-5,
            atol=1e-5,
        )


def test_end_anchored_windows_are_short_only_at_the_episode_start(ds):
    batch = WindowSampler(ds, **_kw(ds, batch_size=256, anchor="end")).sample()
    m = batch.mask.numpy()
    assert (m == (np.arange(6)[None] < m.sum(1)[:, None])).all()  # still right-padded
    for b in range(256):
        i, s = _locate(ds, batch, b)
        t, n = ds.trajectories[i], int(m[b].sum())
        assert n == 6 or (s == 0 and n < min(6, len(t)) + 1)  # short only when it starts at 0
        np.testing.assert_array_equal(batch.timesteps[b, :n].numpy(), np.arange(s, s + n))
        np.testing.assert_allclose(batch.actions[b, :n].numpy(), t.actions[s : s + n])
    # the last real step of a window is uniform over a trajectory's steps: in the 40-step
    # trajectory, windows ending before step 5 (short, starting at 0) have 5/40 of its draws
    long = [b for b in range(256) if _locate(ds, batch, b)[0] == 3]
    short = [b for b in long if m[b].sum() < 6]
    assert 0 < len(short) < len(long) / 2


def test_episode_sampler_refuses_end_anchor(ds):
    with pytest.raises(ValueError, match="window recipe"):
        EpisodeSampler(ds, **_kw(ds, anchor="end"))
    with pytest.raises(ValueError, match="anchor must be"):
        WindowSampler(ds, **_kw(ds, anchor="middle"))


def test_trajectories_drawn_in_proportion_to_length(ds):
    s = WindowSampler(ds, **_kw(ds, batch_size=4000, context_length=1))
    batch = s.sample()
    # context 1: the single timestep pins down the trajectory only statistically; use lengths
    firsts = batch.observations[:, 0].numpy() * ds.state_std + ds.state_mean
    obs = np.concatenate([t.observations for t in ds.trajectories])
    owner = np.repeat(np.arange(4), [len(t) for t in ds.trajectories])
    idx = [owner[np.abs(obs - f).max(1).argmin()] for f in firsts]
    freq = np.bincount(idx, minlength=4) / 4000
    np.testing.assert_allclose(freq, np.array([5, 3, 7, 40]) / 55, atol=0.03)


def test_episode_sampler_starts_at_zero(ds):
    batch = EpisodeSampler(ds, **_kw(ds, context_length=1000, batch_size=16)).sample()
    # K is trimmed to the longest real window in the batch (the rest would be padding).
    assert batch.observations.shape == (16, int(batch.mask.sum(1).max()), 11)
    assert batch.observations.shape[1] <= 40
    assert (batch.timesteps[:, 0] == 0).all()
    lengths = sorted(set(batch.mask.sum(1).tolist()))
    assert set(lengths) <= {3, 5, 7, 40}
    b = int(np.flatnonzero(batch.mask.sum(1).numpy() == 40)[0])
    np.testing.assert_allclose(
        batch.returns_to_go[b, :, 0].numpy()[:40],
        ds.trajectories[3].returns_to_go / 10.0,
        rtol=1e-6,
    )


def test_state_dict_resumes_bit_identically(ds):
    s1 = make_sampler("window", ds, **_kw(ds, batch_size=8))
    s1.sample()
    state = json.loads(json.dumps(s1.state_dict()))  # JSON-able
    expected = [s1.sample() for _ in range(3)]
    s2 = make_sampler("window", ds, **_kw(ds, batch_size=8, seed=123))
    s2.load_state_dict(state)
    for e in expected:
        got = s2.sample()
        for f in ("returns_to_go", "observations", "actions", "timesteps", "mask"):
            assert torch.equal(getattr(e, f), getattr(got, f))


def test_batch_to_and_bad_recipe(ds):
    batch = make_sampler("episode", ds, **_kw(ds, batch_size=2)).sample().to("cpu")
    assert batch.mask.device.type == "cpu"
    with pytest.raises(ValueError, match="Unknown sampling recipe"):
        make_sampler("random", ds, **_kw(ds))
