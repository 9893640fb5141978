"""Checks for values read from files a user may have been sent (docs/security.md).

Run directories, checkpoints, datasets and ONNX files travel between people. Everything the
toolkit reads from them is data, parsed by formats that cannot run code (JSON, safetensors,
HDF5 numeric arrays, npz without pickle, ONNX protobuf); this module holds the small checks
every reader shares, so that a crafted value fails early, with the file and key in the
message, instead of deep inside a library:

- :func:`read_json` reads a JSON file with a size cap and a nesting cap (never ``eval``,
  never pickle), through the folder policy of :mod:`aaren_rl.folders` (regular files only;
  with ``root``, no symlinks below the folder); :func:`parse_json_text` is the same for text
  already in memory. Every JSON the toolkit reads from a file goes through one of them;
- :func:`check_env_id` refuses environment ids that would make Gymnasium import a module
  (``"module:Env-v0"`` imports ``module`` before looking the id up);
- :func:`check_type`, :func:`check_number_list` and :func:`check_dataclass_dict` check the
  types and sizes of decoded JSON values before they reach a constructor.

Every check raises the error class the caller passes (a subclass of
:class:`aaren_rl.errors.AarenError`), so a dataset problem stays a ``DatasetError`` and a
checkpoint problem a ``CheckpointError``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
import zipfile
from pathlib import Path
from typing import Any, Literal

from aaren_rl.errors import AarenError
from aaren_rl.folders import read_bytes

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "json_depth",
    "MAX_LIST_LEN",
    "MAX_ZIP_RATIO",
    "check_dataclass_dict",
    "check_zip",
    "check_env_id",
    "check_number_list",
    "check_type",
    "parse_json_text",
    "read_json",
]

MAX_JSON_BYTES = 16 * 2**20  # agent.json of a 10k-dim observation is ~0.5 MB
MAX_JSON_DEPTH = 64  # nesting of objects/lists (trainer.json, the deepest we write, has ~12)
MAX_LIST_LEN = 1_000_000  # longest list a metadata field may hold
MAX_ZIP_RATIO = 1100  # deflate's best is ~1032:1; an entry claiming more is a bomb
MAX_ENV_ID_LEN = 200
# Gymnasium ids: [namespace/]Name[-vN]. No ':' - gymnasium imports the module named before it.
_ENV_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*")

ErrorClass = type[AarenError]


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a decoded JSON value (a scalar: 0), counted without recursion; stops
    counting once past ``limit``."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            d += 1
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((x, d) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def parse_json_text(
    text: str | bytes,
    where: str,
    error: ErrorClass,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """``json.loads`` with a size cap and a nesting cap; any failure is ``error`` naming
    ``where`` (never a RecursionError, however deep the text nests)."""
    if len(text) > max_bytes:
        raise error(f"{where}: {len(text)} bytes of JSON, more than the {max_bytes} allowed")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
        if isinstance(e, RecursionError):
            raise error(
                f"{where}: JSON nested deeper than the {max_depth} levels allowed"
            ) from None
        raise error(f"{where} is corrupt: not valid JSON ({type(e).__name__}: {e})") from e
    if json_depth(value, max_depth) > max_depth:
        raise error(f"{where}: JSON nested deeper than the {max_depth} levels allowed")
    return value


def read_json(
    path: str | Path,
    error: ErrorClass,
    max_bytes: int = MAX_JSON_BYTES,
    root: str | Path | None = None,
) -> Any:
    """Read a JSON file (capped as :func:`parse_json_text`); failures raise ``error``.

    The file must be a regular file (a FIFO or device is refused, never waited on) of at
    most ``max_bytes``; with ``root`` (the run, checkpoint or work dir it belongs to) no
    component below ``root`` may be a symlink (:mod:`aaren_rl.folders`).
    """
    text = read_bytes(path, error, max_bytes, root)
    return parse_json_text(text, str(path), error, max_bytes)


def check_zip(source: Any, where: str, error: ErrorClass, max_bytes: int) -> list[zipfile.ZipInfo]:
    """The entries of a zip (a path or a binary file object), checked before any is read.

    Refused: a zip that is not one; an entry whose declared size is more than
    ``MAX_ZIP_RATIO`` times its compressed size (stored entries: more than stored); entries
    that unpack to more than ``max_bytes`` together. Python's and PyTorch's zip readers stop
    at (or allocate) the declared size, so these caps bound what reading the entries costs.
    """
    try:
        with zipfile.ZipFile(source) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise error(f"{where} is not a readable zip ({e})") from e
    total = 0
    for info in infos:
        ratio = 1 if info.compress_type == zipfile.ZIP_STORED else MAX_ZIP_RATIO
        if info.file_size > max(info.compress_size, 1) * ratio:
            raise error(
                f"{where}: entry {info.filename!r:.80} unpacks to {info.file_size} bytes from "
                f"{info.compress_size} (more than {ratio}:1): a zip bomb; refusing it"
            )
        total += info.file_size
    if total > max_bytes:
        raise error(f"{where}: the zip unpacks to {total} bytes, more than the {max_bytes} allowed")
    if hasattr(source, "seek"):
        source.seek(0)
    return infos


def check_env_id(value: Any, where: str, error: ErrorClass) -> str | None:
    """An environment id recorded in a file: None, or a plain Gymnasium id.

    ``gym.make``/``gym.spec`` import the module named before a ``:`` (``"pkg:Env-v0"``), so an
    id with a colon from a file would import a module the file chooses; such ids (and any
    that are not ``[namespace/]Name-vN``-like strings) are refused.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise error(f"{where}: the environment id must be a string, got {type(value).__name__}")
    if len(value) > MAX_ENV_ID_LEN or not _ENV_ID.fullmatch(value):
        raise error(
            f"{where}: {value[:80]!r} is not a plain Gymnasium id (letters, digits, '_.-/'; "
            "no ':' - Gymnasium would import the module named before it). Pass the env "
            "explicitly (--env) if the file is yours."
        )
    return value


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_number_list(
    value: Any, where: str, error: ErrorClass, length: int | None = None, finite: bool = True
) -> list[float]:
    """A JSON list of numbers (of ``length`` if given; finite unless ``finite=False``)."""
    if not isinstance(value, list):
        raise error(f"{where} must be a list of numbers, got {type(value).__name__}")
    if len(value) > MAX_LIST_LEN:
        raise error(f"{where} has {len(value)} entries, more than {MAX_LIST_LEN}")
    if length is not None and len(value) != length:
        raise error(f"{where} must have {length} entries, got {len(value)}")
    for i, v in enumerate(value):
        if not _is_number(v) or (finite and not math.isfinite(v)):
            raise error(f"{where}[{i}] must be a finite number, got {v!r:.40}")
    return value


def check_type(value: Any, hint: Any, where: str, error: ErrorClass) -> None:
    """Check a decoded JSON value against a type hint (the subset configs use).

    Supported: ``int``, ``float`` (an int is accepted), ``bool``, ``str``, ``None``,
    ``Path`` (a string), ``Literal[...]``, unions / ``X | None``, ``tuple[X, ...]``,
    ``list[X]``, ``dict[str, X]``, ``Any`` and nested dataclasses (a JSON object).
    """
    origin = typing.get_origin(hint)
    if hint is Any:
        return
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            try:
                return check_type(value, arm, where, error)
            except AarenError:
                continue
        raise error(f"{where}: {value!r:.60} fits none of {hint}")
    if origin is Literal:
        if not any(type(value) is type(a) and value == a for a in typing.get_args(hint)):
            raise error(f"{where} must be one of {typing.get_args(hint)}, got {value!r:.60}")
        return
    if origin in (tuple, list):
        if not isinstance(value, list) or len(value) > MAX_LIST_LEN:
            raise error(f"{where} must be a list, got {type(value).__name__}")
        args = typing.get_args(hint)
        arms = [args[0]] * len(value) if (origin is list or args[-1:] == (...,)) else list(args)
        if len(arms) != len(value):
            raise error(f"{where} must have {len(arms)} entries, got {len(value)}")
        for i, (v, arm) in enumerate(zip(value, arms)):
            check_type(v, arm, f"{where}[{i}]", error)
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"{where} must be a JSON object, got {type(value).__name__}")
        val_hint = typing.get_args(hint)[1] if typing.get_args(hint) else Any
        for k, v in value.items():
            check_type(v, val_hint, f"{where}.{k}", error)
        return
    if dataclasses.is_dataclass(hint):
        check_dataclass_dict(hint, value, where, error)
        return
    ok = {
        type(None): value is None,
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: _is_number(value),
        str: isinstance(value, str),
        Path: isinstance(value, str),
    }.get(hint)
    if ok is None:  # a hint this checker does not know: left to the constructor's own checks
        return
    if not ok:
        name = getattr(hint, "__name__", str(hint))
        raise error(f"{where} must be {name}, got {type(value).__name__} {value!r:.60}")


def check_dataclass_dict(
    cls: type, data: Any, where: str, error: ErrorClass, allow_unknown: bool = False
) -> None:
    """Check that a JSON object can fill the dataclass ``cls``: known keys, right types.

    Fields missing from ``data`` are left to the dataclass defaults (or its own error).
    """
    if not isinstance(data, dict):
        raise error(f"{where} must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            if allow_unknown:
                continue
            raise error(f"{where}: unknown field {key!r:.60} (known: {sorted(fields)})")
        check_type(value, hints[key], f"{where}.{key}", error)
