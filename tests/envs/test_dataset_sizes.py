"""HDF5 datasets whose declared size the file does not hold are refused before anything is
allocated, by the project's loaders and by the d3rlpy peer script (aaren_rl/hdf5_checks.py)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from aaren_rl import hdf5_checks
from aaren_rl.envs import load_dataset
from aaren_rl.errors import DatasetError

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def _declared_huge(path: Path, rows: int = 10_000_000, chunked: bool = False) -> Path:
    """A few-kB D4RL file whose arrays are declared with ``rows`` rows and never written."""
    with h5py.File(path, "w") as f:
        for key, cols, dtype in (("observations", 17, "f4"), ("actions", 6, "f4"),
                                 ("rewards", None, "f4"), ("terminals", None, "?"),
                                 ("timeouts", None, "?")):  # fmt: skip
            shape = (rows,) if cols is None else (rows, cols)
            f.create_dataset(key, shape=shape, dtype=dtype, chunks=True if chunked else None)
        f.attrs["env_id"] = "HalfCheetah-v5"
    assert path.stat().st_size < 100_000
    return path


@pytest.mark.parametrize("chunked", [False, True])
def test_declared_but_unwritten_rows_are_refused(tmp_path: Path, chunked: bool):
    path = _declared_huge(tmp_path / "huge.hdf5", chunked=chunked)
    with pytest.raises(
        DatasetError, match=r"'observations' is declared as \(10000000, 17\).*never"
    ):
        load_dataset(f"d4rl:{path}")
    path = _declared_huge(tmp_path / "huger.hdf5", rows=90_000_000, chunked=chunked)
    with pytest.raises(DatasetError, match=r"\(90000000, 17\) float32 \(5.7 GiB\), more than"):
        load_dataset(f"d4rl:{path}")


def test_declared_huge_file_stays_in_memory_bounds(tmp_path: Path, limited):
    """The loader, capped at 1.5 GiB of address space, refuses the file with exit 2 (reading
    it would allocate ~1 GB of fill values)."""
    path = _declared_huge(tmp_path / "huge.hdf5")
    code = (
        "import sys\n"
        "from aaren_rl.train.cli import main\n"
        f"sys.exit(main(['--dataset', 'd4rl:{path}', '--steps', '1', '--run-dir', "
        f"'{tmp_path / 'run'}', '--no-progress']))\n"
    )
    out = limited(code, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "is declared as (10000000, 17)" in out.stderr and "never written" in out.stderr
    assert not (tmp_path / "run").exists()


def test_a_real_compressed_dataset_still_loads(tmp_path: Path, synth):
    arrays = synth.arrays((40, 30, 50))
    path = tmp_path / "gz.hdf5"
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v, compression="gzip", compression_opts=9)
        f.attrs["env_id"] = "Hopper-v5"
    assert load_dataset(f"d4rl:{path}").num_transitions == 120


def test_a_dataset_above_the_size_cap_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(hdf5_checks, "MAX_ARRAY_BYTES", 1000)
    path = tmp_path / "big.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((100, 11), np.float32)
    with h5py.File(path) as f, pytest.raises(DatasetError, match="more than the 0 GiB"):
        hdf5_checks.read_numeric(f, "observations", "big", DatasetError)


def test_the_d3rlpy_peer_reads_through_the_same_checks(d3rlpy_peer, tmp_path: Path):
    peer = d3rlpy_peer
    checks = peer.hdf5_checks()
    assert checks.__file__ == str(ROOT / "aaren_rl" / "hdf5_checks.py")
    huge = _declared_huge(tmp_path / "huge.hdf5")
    with pytest.raises(SystemExit, match="declared as .* never written"):
        peer.load_d4rl(huge)
    # an external link and external storage: other files are never read
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(16, dtype=np.float32).tobytes())
    linked = tmp_path / "linked.hdf5"
    with h5py.File(linked, "w") as f:
        for k in KEYS:
            f[k] = np.zeros(4, np.float32)
        f["obs_elsewhere"] = h5py.ExternalLink(str(huge), "/observations")
    with h5py.File(linked) as f, pytest.raises(SystemExit, match="links to other files"):
        checks.check_external_links(f, "linked", SystemExit)
    stored = tmp_path / "stored.hdf5"
    with h5py.File(stored, "w") as f:
        for k in KEYS:
            f[k] = np.zeros(4, np.float32)
        del f["rewards"]
        f.create_dataset("rewards", shape=(4,), dtype="f4", external=[(str(secret), 0, 16)])
    with pytest.raises(SystemExit, match="'rewards' is a dataset with external storage"):
        peer.load_d4rl(stored)
