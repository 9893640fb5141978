"""What a dataset file may contain before the loaders read it (docs/security.md).

Datasets are files people pass around; reading one must never run code or read files
outside it. HDF5 read through h5py runs no code, but a file can still hold things the
loaders must not accept:

- object, variable-length, string, compound or opaque dtypes where numbers are expected
  (an "object" array is the usual way to smuggle a pickle, for a reader that would unpickle
  it: we refuse it before anyone can);
- external links, external raw storage and virtual datasets, which make h5py read *other*
  files (any file the user can read) into the arrays, and datasets declared larger than the
  file holds (a few-kB file declaring 90M rows): these checks live in
  :mod:`aaren_rl.hdf5_checks`, shared with the d3rlpy peer script;
- attributes that are huge, or of types that are not plain numbers / strings; JSON strings
  are parsed with :mod:`json`, never ``eval`` or pickle;
- environment ids with a ``module:`` prefix (Gymnasium would import that module).

Minari datasets are an HDF5 file plus ``metadata.json``. ``minari.load_dataset`` builds the
observation/action spaces from that JSON, but when a space is missing it calls
``gym.make`` on the recorded ``env_spec``, whose ``entry_point`` and ``kwargs`` the file
chooses: a crafted ``metadata.json`` runs any function with any arguments
(``"os:system"``). :func:`check_minari_metadata` refuses such files before Minari sees them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aaren_rl import hdf5_checks
from aaren_rl.errors import DatasetError
from aaren_rl.untrusted import check_env_id, parse_json_text, read_json

__all__ = [
    "MAX_ATTR_CHARS",
    "NUMERIC_KINDS",
    "check_external_links",
    "check_metadata",
    "check_minari_metadata",
    "check_numeric",
    "check_stored_in_file",
    "hdf5_attrs",
    "read_numeric_datasets",
]

NUMERIC_KINDS = "biuf"  # bool, signed int, unsigned int, float (numpy dtype.kind)
MAX_ATTR_CHARS = 4 * 2**20  # one metadata attribute (D4RL/aaren-collect ones are < 10 kB)
MAX_ATTR_ELEMENTS = 1_000_000
MAX_SPACE_ELEMENTS = 2**24  # elements of a Box space's low/high in Minari metadata
ENV_ID_KEYS = ("env_id", "env", "env_name")
MINARI_SPACE_TYPES = ("Box", "Discrete", "MultiDiscrete", "MultiBinary", "Tuple", "Dict", "Text")


# ----------------------------------------------------------------------------- HDF5 arrays


def check_numeric(array: np.ndarray | Any, where: str, spec: str) -> None:
    """Refuse any dtype but bool / int / float (object, vlen, strings, compound, opaque)."""
    dtype = np.dtype(getattr(array, "dtype", object))
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None:
        raise DatasetError(
            f"{spec}: {where!r} has dtype {dtype} ({_kind_name(dtype)}); only bool, integer and "
            "float arrays are read. The file was not written by a D4RL/Minari writer, or was "
            "crafted: re-export it with numeric arrays (see docs/data.md)."
        )


def _kind_name(dtype: np.dtype) -> str:
    import h5py

    if h5py.check_vlen_dtype(dtype) is not None:
        return "variable-length"
    return {"O": "Python objects", "S": "bytes", "U": "strings", "V": "compound/opaque"}.get(
        dtype.kind, dtype.kind
    )


def read_numeric_datasets(f: Any, keys: tuple[str, ...], spec: str) -> dict[str, np.ndarray]:
    """Read ``keys`` of an open ``h5py.File`` after checking each is a plain numeric array.

    Each key must be a hard link to a dataset (not a group, soft or external link), stored
    in this file (no external raw storage, not a virtual dataset), holding as many bytes as
    it declares (at most ``MAX_ARRAY_BYTES``), of numeric dtype and rank 1 or 2
    (:mod:`aaren_rl.hdf5_checks`).
    """
    return {key: hdf5_checks.read_numeric(f, key, spec, DatasetError) for key in keys}


def check_stored_in_file(dsid: Any, where: str, spec: str) -> None:
    """Refuse a dataset (a low-level ``h5py.h5d.DatasetID``) whose data lives in other files
    (a virtual dataset, or external raw storage), or whose declared size the file does not
    hold (:func:`aaren_rl.hdf5_checks.check_dataset`)."""
    hdf5_checks.check_dataset(dsid, where, spec, DatasetError)


def check_external_links(f: Any, spec: str) -> None:
    """Refuse an HDF5 file that holds external links (they make h5py open other files)."""
    hdf5_checks.check_external_links(f, spec, DatasetError)


# ----------------------------------------------------------------------------- metadata


def _attr_value(key: str, v: Any, spec: str) -> Any:
    """A raw h5py attribute value, checked and decoded (JSON strings parsed with json)."""
    if isinstance(v, (bytes, np.bytes_)):
        try:
            v = bytes(v).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DatasetError(f"{spec}: attribute {key!r} is not UTF-8 text ({e}).") from e
    if isinstance(v, str):
        if len(v) > MAX_ATTR_CHARS:
            raise DatasetError(
                f"{spec}: attribute {key!r} holds {len(v)} characters (limit {MAX_ATTR_CHARS})."
            )
        if v[:1] in ("[", "{"):
            try:
                return parse_json_text(v, f"{spec}: attribute {key!r}", DatasetError)
            except DatasetError:
                return v  # text that merely starts with a bracket stays text
        return v
    if isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)):
        return v.item() if isinstance(v, np.generic) else v
    if isinstance(v, np.ndarray) and v.size <= MAX_ATTR_ELEMENTS:
        if v.dtype.kind in NUMERIC_KINDS and v.dtype.fields is None:
            return v.tolist()
        if v.dtype.kind in "SU" or (
            v.dtype.kind == "O" and all(isinstance(x, (str, bytes)) for x in v.flat)
        ):
            return [_attr_value(key, x, spec) for x in v.reshape(-1).tolist()]
    raise DatasetError(
        f"{spec}: attribute {key!r} is a {type(v).__name__}"
        f"{' of dtype ' + str(v.dtype) if isinstance(v, np.ndarray) else ''}; metadata "
        "attributes must be numbers, strings or JSON text."
    )


def hdf5_attrs(attrs: Any, spec: str) -> dict[str, Any]:
    """The attributes of an HDF5 object as plain Python values (see :func:`_attr_value`)."""
    meta: dict[str, Any] = {}
    for key in attrs.keys():
        try:
            raw = attrs[key]
        except (OSError, TypeError, ValueError) as e:  # a type h5py cannot read
            raise DatasetError(f"{spec}: attribute {key!r} cannot be read ({e}).") from e
        meta[str(key)] = _attr_value(str(key), raw, spec)
    check_metadata(meta, spec)
    return meta


def check_metadata(meta: dict[str, Any], spec: str) -> None:
    """Types and sizes of the metadata keys the loaders act on (HDF5 attrs or Minari JSON)."""
    for key in ENV_ID_KEYS:
        if key in meta:
            check_env_id(meta[key], f"{spec}: metadata {key!r}", DatasetError)
    n = meta.get("num_actions")
    if n is not None and (type(n) is not int or not 1 <= n <= 2**20):
        raise DatasetError(
            f"{spec}: metadata 'num_actions' must be an integer in 1..2^20, got {n!r:.60}."
        )
    nvec = meta.get("observation_nvec")
    if nvec is not None:
        flat = nvec if isinstance(nvec, list) else [nvec]
        if (
            not flat
            or len(flat) > 4096
            or any(type(x) is not int or not 1 <= x <= 2**20 for x in flat)
        ):
            raise DatasetError(
                f"{spec}: metadata 'observation_nvec' must be positive integers (<= 2^20), got "
                f"{str(nvec)[:80]}."
            )
    for key in ("ref_min_score", "ref_max_score"):
        v = meta.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise DatasetError(f"{spec}: metadata {key!r} must be a number, got {v!r:.60}.")


# ----------------------------------------------------------------------------- Minari


def _check_space_json(text: Any, where: str, spec: str, depth: int = 0) -> None:
    space = (
        parse_json_text(text, f"{spec}: {where}", DatasetError) if isinstance(text, str) else text
    )
    if not isinstance(space, dict) or space.get("type") not in MINARI_SPACE_TYPES or depth > 8:
        raise DatasetError(
            f"{spec}: Minari metadata {where} is not a serialised space of a known type "
            f"({', '.join(MINARI_SPACE_TYPES)})."
        )
    if space["type"] in ("Tuple", "Dict"):
        subs = space.get("subspaces")
        subs = list(subs.values()) if isinstance(subs, dict) else subs
        if not isinstance(subs, list):
            raise DatasetError(f"{spec}: Minari metadata {where} has no subspaces list.")
        for sub in subs:
            _check_space_json(sub, where, spec, depth + 1)
    if space["type"] == "Box":
        shape, dtype = space.get("shape"), space.get("dtype")
        if not isinstance(shape, list) or any(type(s) is not int or s < 0 for s in shape):
            raise DatasetError(
                f"{spec}: Minari metadata {where} has a bad Box shape {shape!r:.60}."
            )
        if int(np.prod(shape, dtype=np.float64)) > MAX_SPACE_ELEMENTS:
            raise DatasetError(f"{spec}: Minari metadata {where} is a Box of {shape}: too large.")
        try:
            kind = np.dtype(dtype).kind if isinstance(dtype, str) else "?"
        except TypeError:
            kind = "?"
        if kind not in NUMERIC_KINDS:
            raise DatasetError(
                f"{spec}: Minari metadata {where} has a non-numeric dtype {dtype!r:.40}."
            )


def check_minari_metadata(data_dir: Path, spec: str) -> dict[str, Any]:
    """Check a Minari dataset's ``metadata.json`` before ``minari.load_dataset`` reads it.

    Refused: no (or a malformed) serialised observation/action space - Minari would then
    ``gym.make`` the recorded ``env_spec``, running the ``entry_point`` the file names with
    the ``kwargs`` it chooses; an ``env_spec``/``eval_env_spec`` whose id is not a plain
    Gymnasium id; a data format other than HDF5 (the only one aaren-rl reads and checks).

    Returns:
        The parsed metadata.
    """
    path = Path(data_dir) / "metadata.json"
    meta = read_json(path, DatasetError, max_bytes=64 * 2**20)
    if not isinstance(meta, dict):
        raise DatasetError(f"{spec}: {path} must hold a JSON object.")
    for key in ("observation_space", "action_space"):
        if not isinstance(meta.get(key), str):
            raise DatasetError(
                f"{spec}: {path} has no serialised {key}. Minari would build the recorded "
                "environment (the entry point and arguments the file names) to learn it, which "
                "runs code chosen by the file; refusing. Re-create the dataset with Minari >= 0.4."
            )
        _check_space_json(meta[key], key, spec)
    if meta.get("data_format", "hdf5") != "hdf5":
        raise DatasetError(
            f"{spec}: data format {meta.get('data_format')!r:.40}; aaren-rl reads Minari's HDF5 "
            "format only."
        )
    for key in ("env_spec", "eval_env_spec"):
        raw = meta.get(key)
        if raw is None:
            continue
        env_spec = (
            parse_json_text(raw, f"{spec}: {path} {key}", DatasetError)
            if isinstance(raw, str)
            else None
        )
        if not isinstance(env_spec, dict):
            raise DatasetError(f"{spec}: {path} {key} must be a JSON object in a string.")
        check_env_id(env_spec.get("id"), f"{spec}: {path} {key} id", DatasetError)
    check_metadata(meta, spec)
    return meta
