"""HDF5 arrays read only from the file itself, and only as large as the file really is.

The one place every HDF5 reader of the repository checks a file before reading arrays from
it: ``aaren_rl.envs`` (D4RL and Minari loaders, through ``envs/dataset_safety.py``) and the
d3rlpy peer script ``bench/peer/d3rlpy_dt.py``, which runs in a virtual environment of its
own and loads this file by path. So this module imports only the standard library, numpy
and h5py (never ``aaren_rl``); every check raises the error class its caller passes.

Refused (docs/security.md, "Datasets"):

- external links, external raw storage and virtual datasets: they make h5py read *other*
  files (any file you can read) into the arrays;
- a dataset whose declared size the file does not hold: a few-kB file may declare
  ``(90_000_000, 17)`` float32 and never write it; reading it would allocate 6 GB of fill
  values. A contiguous dataset must have all its bytes stored; a chunked one at least
  1/``MAX_COMPRESSION_RATIO`` of them (deflate cannot do better than ~1032:1); a compact
  one lives in the object header (< 64 KiB);
- any dataset larger than ``MAX_ARRAY_BYTES`` (the largest D4RL array is ~0.2 GB).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "MAX_ARRAY_BYTES",
    "MAX_COMPRESSION_RATIO",
    "NUMERIC_KINDS",
    "check_dataset",
    "check_external_links",
    "read_numeric",
]

MAX_ARRAY_BYTES = 4 * 2**30  # one array in memory; D4RL's largest (antmaze/kitchen) < 0.3 GB
MAX_COMPRESSION_RATIO = 1100  # deflate's best is ~1032:1 (a run of zeros); lzf/szip less
COMPACT_BYTES = 64 * 2**10  # HDF5's compact layout holds at most 64 KiB in the header
NUMERIC_KINDS = "biuf"  # bool, signed int, unsigned int, float (numpy dtype.kind)


def check_external_links(f: Any, where: str, error: type[Exception] = ValueError) -> None:
    """Refuse an open ``h5py.File`` that holds external links anywhere (links only are
    visited, no object is opened: cheap even with tens of thousands of groups)."""
    import h5py

    found: list[str] = []

    def visit(name: bytes, info: Any) -> None:
        if info.type == h5py.h5l.TYPE_EXTERNAL:
            found.append(name.decode(errors="replace"))
        return None

    f.id.links.visit(visit, info=True)
    if found:
        raise error(
            f"{where}: the HDF5 file links to other files ({', '.join(found[:3])}"
            f"{' ...' if len(found) > 3 else ''}); such links are never followed. Re-export "
            "the dataset into one file."
        )


def check_dataset(dsid: Any, name: str, where: str, error: type[Exception] = ValueError) -> int:
    """Check a dataset (an ``h5py.Dataset`` or its low-level ``DatasetID``) before reading it.

    Refuses data kept in other files (virtual dataset, external raw storage), a declared
    size above ``MAX_ARRAY_BYTES``, and a declared size the file does not hold (see the
    module docstring). Returns the declared size in bytes.
    """
    import h5py

    if not hasattr(dsid, "get_create_plist"):  # an h5py.Dataset: its low-level id
        dsid = dsid.id
    plist = dsid.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL or plist.get_external_count() > 0:
        what = "virtual dataset" if layout == h5py.h5d.VIRTUAL else "dataset with external storage"
        raise error(
            f"{where}: {name!r} is a {what}: it keeps its data in other files, which are "
            "never read. Re-export the dataset into one file."
        )
    shape = dsid.shape
    declared = math.prod(shape) * dsid.dtype.itemsize
    if declared > MAX_ARRAY_BYTES:
        raise error(
            f"{where}: {name!r} is declared as {shape} {dsid.dtype} ({declared / 2**30:.1f} "
            f"GiB), more than the {MAX_ARRAY_BYTES // 2**30} GiB one array may have."
        )
    stored = dsid.get_storage_size()
    if layout == h5py.h5d.CHUNKED:
        enough = stored * MAX_COMPRESSION_RATIO >= declared
    elif layout == h5py.h5d.COMPACT:
        enough = declared <= COMPACT_BYTES
    else:
        enough = stored >= declared
    if not enough:
        raise error(
            f"{where}: {name!r} is declared as {shape} {dsid.dtype} ({declared} bytes) but the "
            f"file stores {stored} bytes of it: its data was never written (reading it would "
            "only allocate fill values). Refusing it; re-export the dataset."
        )
    return declared


def read_numeric(
    f: Any,
    key: str,
    where: str,
    error: type[Exception] = ValueError,
    ranks: tuple[int, ...] = (1, 2),
) -> np.ndarray:
    """Read ``f[key]`` of an open ``h5py.File`` after every check: a hard link to a dataset
    stored in this file (:func:`check_dataset`), of numeric dtype and one of ``ranks``."""
    import h5py

    link = f.get(key, getlink=True)
    if link is None:
        raise error(f"{where}: no {key!r} in the file")
    if not isinstance(link, h5py.HardLink):
        raise error(
            f"{where}: {key!r} is a {type(link).__name__} (it points elsewhere: "
            f"{getattr(link, 'filename', '')}{getattr(link, 'path', '')}); only datasets "
            "stored in the file itself are read."
        )
    d = f[key]
    if not isinstance(d, h5py.Dataset):
        raise error(f"{where}: {key!r} is a {type(d).__name__}, not an array.")
    dtype = np.dtype(d.dtype)
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None:
        kind = "variable-length" if h5py.check_vlen_dtype(dtype) is not None else None
        kind = kind or {"O": "Python objects", "S": "bytes", "U": "strings"}.get(dtype.kind)
        raise error(
            f"{where}: {key!r} has dtype {dtype} ({kind or 'compound/opaque'}); only bool, "
            "integer and float arrays are read. The file was not written by a D4RL/Minari "
            "writer, or was crafted: re-export it with numeric arrays (see docs/data.md)."
        )
    if d.ndim not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise error(f"{where}: {key!r} must be {want}, got shape {d.shape}.")
    check_dataset(d, key, where, error)
    return d[()]
