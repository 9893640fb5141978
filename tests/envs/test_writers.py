from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aaren_rl.envs import DatasetError, load_dataset
from aaren_rl.envs.writers import write_d4rl_hdf5, write_minari


def _flat(ds, key: str) -> np.ndarray:
    return np.concatenate([getattr(t, key) for t in ds.trajectories])


def test_d4rl_hdf5_round_trip_and_no_temp_files(tmp_path: Path, synth):
    a = synth.arrays(lengths=(6, 9), terminal=(True, False))
    p = write_d4rl_hdf5(
        tmp_path / "out" / "x.hdf5", a, {"env_id": "Hopper-v5", "checkpoints": [{"step": 1}]}
    )
    assert sorted(os.listdir(p.parent)) == ["x.hdf5"]
    ds = load_dataset(f"d4rl:{p}")
    np.testing.assert_array_equal(_flat(ds, "observations"), a["observations"])
    assert ds.metadata["checkpoints"] == [{"step": 1}] and ds.env_id == "Hopper-v5"


def test_minari_round_trip(tmp_path: Path, synth, _offline_minari: Path):
    a = synth.arrays(lengths=(6, 9, 4), terminal=(True, False, True), trailing=2)
    write_minari("aaren/synthetic-medium-v0", a, "Hopper-v5", algorithm_name="PPO",
                 description="test", extra_metadata={"level": "medium"},
                 ref_min_score=-20.272305, ref_max_score=3234.3)  # fmt: skip
    # minari sees it: both the Python API and the CLI
    import minari

    assert "aaren/synthetic-medium-v0" in minari.list_local_datasets()
    out = subprocess.run([sys.executable, "-m", "minari.cli", "list", "local"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert "aaren/synthetic-medium-v0" in out.stdout, out.stderr
    mds = minari.load_dataset("aaren/synthetic-medium-v0")
    assert mds.total_steps == len(a["rewards"]) and mds.total_episodes == 4
    assert [p.name for p in _offline_minari.iterdir() if p.name.startswith(".")] == []

    ds = load_dataset("minari:aaren/synthetic-medium-v0")
    for key in ("observations", "actions", "rewards"):
        np.testing.assert_allclose(_flat(ds, key), a[key])
    assert [len(t) for t in ds.trajectories] == [6, 9, 4, 2]
    assert [t.terminated for t in ds.trajectories] == [True, False, True, False]
    assert ds.env_id == "Hopper-v5" and ds.metadata["ref_max_score"] == 3234.3
    assert ds.metadata["aaren"] == {"level": "medium"}

    with pytest.raises(DatasetError, match="already exists"):
        write_minari(
            "aaren/synthetic-medium-v0", a, "Hopper-v5", algorithm_name="PPO", description="t"
        )
    write_minari(
        "aaren/synthetic-medium-v0",
        a,
        "Hopper-v5",
        algorithm_name="PPO",
        description="t",
        overwrite=True,
    )
    assert load_dataset("minari:aaren/synthetic-medium-v0").num_transitions == len(a["rewards"])
