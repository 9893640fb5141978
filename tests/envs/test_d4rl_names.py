"""``d4rl:hopper-medium-v2``: a D4RL name resolved to D4RL's download cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aaren_rl.envs import load_dataset, normalized_score
from aaren_rl.envs.d4rl_names import is_d4rl_name, parse_d4rl_name, resolve_d4rl_name
from aaren_rl.errors import DatasetError


@pytest.mark.parametrize(
    "name, file_name",
    [
        ("hopper-medium-v2", "hopper_medium-v2.hdf5"),
        ("hopper-medium-replay-v2", "hopper_medium_replay-v2.hdf5"),
        ("halfcheetah-medium-expert-v2", "halfcheetah_medium_expert-v2.hdf5"),
        ("walker2d-expert-v1", "walker2d_expert-v1.hdf5"),
        ("walker2d-medium-replay-v0", "walker_mixed.hdf5"),  # D4RL v0's own odd names
        ("hopper-medium-replay-v0", "hopper_mixed.hdf5"),
        ("hopper-medium-v0", "hopper_medium.hdf5"),
    ],
)
def test_file_names_as_d4rl_writes_them(name: str, file_name: str):
    assert parse_d4rl_name(name).file_name == file_name
    assert parse_d4rl_name(name).url.endswith("/" + file_name)


def test_names_and_not_names():
    assert is_d4rl_name("hopper-medium-v2") and is_d4rl_name("ant-medium-replay-v2")
    for text in (
        "hopper-medium",
        "/data/hopper-medium-v2.hdf5",
        "hopper-medium-v3",
        "pen-human-v1",
    ):
        assert not is_d4rl_name(text)
    with pytest.raises(DatasetError, match="ENV-LEVEL-vN"):
        parse_d4rl_name("hopper-best-v2")


def test_env_var_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synth):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    arrays = synth.arrays((30, 25, 40), None, rewards="uniform")
    synth.write(tmp_path / "hopper_medium-v2.hdf5", arrays)  # no env attr, like D4RL's files
    ds = load_dataset("d4rl:hopper-medium-v2")
    assert ds.spec == "d4rl:hopper-medium-v2"
    assert ds.env_id == "Hopper-v5"
    assert ds.num_transitions == 95 and len(ds.trajectories) == 3
    assert ds.reference_scores == (-20.272305, 3234.3)  # D4RL's Hopper references
    np.testing.assert_allclose(normalized_score("Hopper-v5", 3234.3), 100.0)


def test_default_cache_is_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synth):
    monkeypatch.delenv("D4RL_DATASET_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = tmp_path / ".d4rl" / "datasets"
    cache.mkdir(parents=True)
    path = synth.write(
        cache / "walker2d_medium_replay-v2.hdf5", synth.arrays(obs_dim=17, act_dim=6)
    )
    assert resolve_d4rl_name("walker2d-medium-replay-v2") == path
    assert load_dataset("d4rl:walker2d-medium-replay-v2").env_id == "Walker2d-v5"


def test_missing_file_says_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetError) as err:
        load_dataset("d4rl:halfcheetah-medium-replay-v2")
    msg = str(err.value)
    assert "halfcheetah_medium_replay-v2.hdf5" in msg and str(tmp_path / "cache") in msg
    assert "$D4RL_DATASET_DIR" in msg
    assert "wget" in msg and "gym_mujoco_v2/halfcheetah_medium_replay-v2.hdf5" in msg
    monkeypatch.delenv("D4RL_DATASET_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DatasetError, match=r"\.d4rl/datasets.*D4RL_DATASET_DIR is not set"):
        load_dataset("d4rl:hopper-medium-v2")


def test_a_path_is_still_a_path(h5_file: Path):
    assert load_dataset(f"d4rl:{h5_file}").num_transitions == 15
