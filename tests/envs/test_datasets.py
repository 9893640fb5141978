from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from aaren_rl.envs import DatasetError, check_dataset_matches_env, get_env_spec, load_dataset
from aaren_rl.envs.datasets import STD_FLOOR, split_episodes


def test_split_at_terminals_and_timeouts(h5_file: Path):
    ds = load_dataset(f"d4rl:{h5_file}")
    assert [len(t) for t in ds.trajectories] == [5, 3, 7]
    assert [t.terminated for t in ds.trajectories] == [True, False, True]
    assert ds.env_id == "Hopper-v5" and ds.obs_dim == 11 and ds.act_dim == 3
    assert ds.num_transitions == 15 and ds.metadata["trailing_steps_kept"] == 0
    # bare path is accepted as d4rl too
    assert load_dataset(str(h5_file)).num_transitions == 15


def test_returns_to_go_timesteps_and_dtypes(h5_file: Path):
    ds = load_dataset(f"d4rl:{h5_file}")
    t1 = ds.trajectories[1]  # rewards 5, 6, 7
    np.testing.assert_allclose(t1.returns_to_go, [18.0, 13.0, 7.0])
    np.testing.assert_array_equal(t1.timesteps, [0, 1, 2])
    assert t1.episode_return == 18.0
    assert t1.observations.dtype == np.float32 and t1.timesteps.dtype == np.int64
    assert t1.returns_to_go.dtype == np.float32 and t1.rewards.shape == (3,)
    np.testing.assert_allclose(ds.episode_returns, [10.0, 18.0, sum(range(8, 15))])


def test_statistics(h5_file: Path):
    ds = load_dataset(f"d4rl:{h5_file}")
    obs = np.concatenate([t.observations for t in ds.trajectories])
    np.testing.assert_allclose(ds.state_mean, obs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(ds.state_std, obs.std(0) + STD_FLOOR, rtol=1e-5)
    assert ds.state_mean.dtype == np.float32 and ds.state_std.shape == (11,)
    stats = ds.return_stats
    assert stats["min"] == 10.0 and stats["max"] == 77.0
    assert np.isclose(stats["mean"], (10 + 18 + 77) / 3)


def test_trailing_incomplete_episode_is_kept_as_truncated(synth):
    a = synth.arrays(lengths=(4, 4), terminal=(True, True), trailing=3)
    ds = split_episodes(
        *(a[k] for k in ("observations", "actions", "rewards", "terminals", "timeouts"))
    )
    assert [len(t) for t in ds.trajectories] == [4, 4, 3]
    assert not ds.trajectories[-1].terminated
    assert ds.metadata["trailing_steps_kept"] == 3


def test_constant_feature_std_floor(synth):
    a = synth.arrays()
    a["observations"][:, 0] = 1.0
    ds = split_episodes(
        *(a[k] for k in ("observations", "actions", "rewards", "terminals", "timeouts"))
    )
    assert ds.state_std[0] == pytest.approx(STD_FLOOR)


# ---------------------------------------------------------------------------- bad input


def test_missing_file_lists_local_files_and_command(tmp_path: Path, h5_file: Path):
    with pytest.raises(DatasetError) as e:
        load_dataset(f"d4rl:{tmp_path / 'nope.hdf5'}")
    assert "not found" in str(e.value) and "synthetic.hdf5" in str(e.value)
    assert "aaren-collect" in str(e.value)


def test_not_an_hdf5_file(tmp_path: Path):
    p = tmp_path / "junk.hdf5"
    p.write_text("not hdf5")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        load_dataset(f"d4rl:{p}")


def test_missing_key_is_named(tmp_path: Path, synth):
    a = synth.arrays()
    del a["timeouts"]
    p = synth.write(tmp_path / "x.hdf5", a)
    with pytest.raises(DatasetError, match=r"missing HDF5 key\(s\) \['timeouts'\]"):
        load_dataset(f"d4rl:{p}")


def test_different_lengths(tmp_path: Path, synth):
    a = synth.arrays()
    a["actions"] = a["actions"][:-2]
    p = synth.write(tmp_path / "x.hdf5", a)
    with pytest.raises(DatasetError, match="different lengths.*'actions': 13"):
        load_dataset(f"d4rl:{p}")


@pytest.mark.parametrize(
    "key,value", [("observations", np.nan), ("rewards", np.inf), ("actions", -np.inf)]
)
def test_nan_inf(tmp_path: Path, key: str, value: float, synth):
    a = synth.arrays()
    a[key][4] = value
    p = synth.write(tmp_path / "x.hdf5", a)
    with pytest.raises(DatasetError, match=f"'{key}' contains NaN/Inf.*first at index \\(4"):
        load_dataset(f"d4rl:{p}")


def test_dims_that_do_not_match_recorded_env(tmp_path: Path, synth):
    p = synth.write(tmp_path / "x.hdf5", synth.arrays(obs_dim=5), env_id="Hopper-v5")
    with pytest.raises(DatasetError, match="'observations' have dimension 5 but Hopper-v5"):
        load_dataset(f"d4rl:{p}")


def test_check_dataset_matches_env(h5_file: Path):
    ds = load_dataset(f"d4rl:{h5_file}")
    check_dataset_matches_env(ds, get_env_spec("hopper"))  # fine
    with pytest.raises(DatasetError, match="'observations' have dimension 11 but Walker2d-v5"):
        check_dataset_matches_env(ds, "walker2d")


def test_no_complete_episode(tmp_path: Path, synth):
    a = synth.arrays()
    a["terminals"][:] = False
    a["timeouts"][:] = False
    p = synth.write(tmp_path / "x.hdf5", a)
    with pytest.raises(DatasetError, match="no complete episode"):
        load_dataset(f"d4rl:{p}")


def test_wrong_rank(tmp_path: Path, synth):
    a = synth.arrays()
    a["observations"] = a["observations"][:, 0]
    p = synth.write(tmp_path / "x.hdf5", a)
    with pytest.raises(DatasetError, match="'observations' must be 2-D"):
        load_dataset(f"d4rl:{p}")


def test_unknown_spec():
    with pytest.raises(DatasetError, match="Unknown dataset spec"):
        load_dataset("s3:bucket/thing")


def test_missing_minari_id_lists_local_and_command():
    with pytest.raises(DatasetError) as e:
        load_dataset("minari:aaren/hopper-medium-v0")
    msg = str(e.value)
    assert "not found locally" in msg and "aaren-collect --env hopper" in msg


def test_minari_download_fails_fast_offline():
    with pytest.raises(DatasetError, match="not reachable"):
        load_dataset("minari:mujoco/hopper/medium-v0", download=True)


def test_h5_attrs_are_decoded(tmp_path: Path, synth):
    p = synth.write(tmp_path / "x.hdf5", synth.arrays(), checkpoints='[{"step": 1}]')
    ds = load_dataset(f"d4rl:{p}")
    assert ds.metadata["checkpoints"] == [{"step": 1}]
    with h5py.File(p) as f:
        assert "next_observations" in f  # optional keys are tolerated


def test_a_directory_is_named_as_such(tmp_path: Path, synth):
    synth.write(tmp_path / "inside.hdf5", synth.arrays())
    with pytest.raises(DatasetError, match="is a directory, not an HDF5 file.*inside.hdf5"):
        load_dataset(f"d4rl:{tmp_path}")


@pytest.mark.parametrize(
    ("terminals", "timeouts", "expected"),
    [
        ([0, 0, 0], [0, 0, 0], [0, 0, 1]),  # cut mid-episode: closed as a timeout
        ([0, 0, 1], [0, 0, 0], [0, 0, 0]),  # ends in a terminal: left alone
        ([0, 1, 0], [0, 0, 1], [0, 0, 1]),  # already closed
        ([], [], []),
    ],
)
def test_close_open_episode(terminals, timeouts, expected):
    from aaren_rl.envs import close_open_episode

    t = np.array(timeouts, dtype=bool)
    out = close_open_episode(np.array(terminals, dtype=bool), t)
    np.testing.assert_array_equal(out, np.array(expected, dtype=bool))
    assert out is not t  # a copy: the caller's array is not changed
