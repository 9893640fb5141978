"""bench/gpu/slim.py: a slim copy holds the training arrays bit for bit and names its source."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from aaren_rl.bench.gpu.slim import KEYS, sha256, slim_copy
from aaren_rl.envs import load_dataset
from aaren_rl.errors import DatasetError


def test_slim_copy_keeps_the_training_arrays(tmp_path, tiny_hopper_dataset):
    dst = slim_copy(tiny_hopper_dataset, tmp_path / "slim" / "d.hdf5")
    with h5py.File(tiny_hopper_dataset) as f, h5py.File(dst) as g:
        assert set(g.keys()) == set(KEYS)
        for k in KEYS:
            np.testing.assert_array_equal(g[k][()], f[k][()])
        assert g.attrs["source_sha256"] == sha256(tiny_hopper_dataset)
    a, b = load_dataset(f"d4rl:{tiny_hopper_dataset}"), load_dataset(f"d4rl:{dst}")
    assert a.num_transitions == b.num_transitions
    np.testing.assert_array_equal(a.state_mean, b.state_mean)


def test_slim_copy_refuses_a_file_without_the_keys(tmp_path, synth):
    arrays = synth.arrays()
    del arrays["timeouts"]
    src = synth.write(tmp_path / "bad.hdf5", arrays)
    with pytest.raises(DatasetError, match="timeouts"):
        slim_copy(src, tmp_path / "out.hdf5")
    assert not (tmp_path / "out.hdf5").exists()
