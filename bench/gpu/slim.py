"""Slim copies of D4RL HDF5 datasets, for carrying them to a machine with a transfer limit.

A copy holds only the keys that training reads (``observations, actions, rewards, terminals,
timeouts``: no ``next_observations``), compressed harder (gzip 9 with the shuffle filter), with
the source's attributes plus ``source_sha256`` (the sha256 of the file it was made from). The
arrays are bit-identical to the source's, so a run on the copy trains on exactly the same data;
its records carry the copy's own ``dataset_sha256``, and ``source_sha256`` ties it back to the
dataset listed in docs/data.md. About half the size::

    python -m aaren_rl.bench.gpu.slim runs/datasets/hopper-medium.hdf5 --out-dir runs/slim
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import tyro

from aaren_rl.errors import DatasetError
from aaren_rl.fileio import atomic_path
from aaren_rl.fileio import sha256_file as sha256

KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def slim_copy(src: Path, dst: Path) -> Path:
    """Write the slim copy of ``src`` to ``dst`` (atomically) and check its arrays are equal."""
    with h5py.File(src, "r") as f:
        missing = [k for k in KEYS if k not in f]
        if missing:
            raise DatasetError(f"{src}: missing key(s) {missing}; expected a D4RL-format file")
        arrays = {k: f[k][()] for k in KEYS}
        attrs = dict(f.attrs)
    with atomic_path(dst) as tmp, h5py.File(tmp, "w") as g:
        for k, a in arrays.items():
            g.create_dataset(k, data=a, compression="gzip", compression_opts=9, shuffle=True)
        for k, v in attrs.items():
            g.attrs[k] = v
        g.attrs["source_sha256"] = sha256(src)
    with h5py.File(dst, "r") as g:
        assert all(np.array_equal(g[k][()], arrays[k]) for k in KEYS), "slim copy differs"
    return dst


@dataclass
class SlimArgs:
    """Write slim copies (training keys only, gzip 9) of D4RL HDF5 files."""

    files: list[Path] = field(default_factory=list)
    """D4RL HDF5 files to copy."""
    out_dir: Path = Path("runs/slim")
    """Folder of the copies (same file names)."""


def main() -> None:
    args = tyro.cli(SlimArgs)
    for src in args.files:
        dst = slim_copy(src, args.out_dir / src.name)
        mb = (src.stat().st_size / 1e6, dst.stat().st_size / 1e6)
        print(f"{dst}: {mb[1]:.1f} MB (source {mb[0]:.1f} MB), sha256 {sha256(dst)}")


if __name__ == "__main__":
    main()
