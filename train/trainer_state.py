"""Trainer state on disk, in formats that can hold data but never code.

What a resumed run needs besides the weights (optimiser moments, scheduler, every RNG, the
sampler's generator) is a tree of plain values and tensors. It is stored as two files in the
checkpoint directory:

    trainer.json         the tree, with each tensor replaced by {"$tensor": "t0"} and the
                         few values JSON has no word for tagged: {"$tuple": [...]},
                         {"$items": [[key, value], ...]} (a dict with non-string keys),
                         {"$float": "nan" | "inf" | "-inf"}
    trainer.safetensors  the tensors, by name

Reading them runs a JSON parser and the safetensors reader, nothing else, so a crafted file
can give wrong numbers (the run then refuses to load them) but never run code. Runs written
by aaren-rl before this format have a pickle ``trainer.pt``; it is read with
``torch.load(weights_only=True)``, PyTorch's restricted unpickler that builds only tensors and
plain containers and refuses anything else (a pickle that would call a function raises).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from aaren_rl.errors import CheckpointError
from aaren_rl.folders import check_inside
from aaren_rl.untrusted import check_zip, read_json

__all__ = [
    "TRAINER_JSON",
    "TRAINER_TENSORS",
    "has_trainer_state",
    "load_trainer_state",
    "save_trainer_state",
]

TRAINER_JSON = "trainer.json"
TRAINER_TENSORS = "trainer.safetensors"
LEGACY_TRAINER = "trainer.pt"
FORMAT = 1
MAX_LEGACY_BYTES = 256 * 2**20  # unpacked trainer.pt (AdamW moments of a DT-size model: ~10 MB)


def has_trainer_state(ckpt_dir: Path) -> bool:
    """True if ``ckpt_dir`` holds trainer state (this format, or a legacy ``trainer.pt``)."""
    return (ckpt_dir / TRAINER_JSON).is_file() or (ckpt_dir / LEGACY_TRAINER).is_file()


def save_trainer_state(directory: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plain values and tensors) into ``directory`` (a temporary one).

    The caller writes ``directory`` through ``aaren_rl.fileio.atomic_directory``, which fsyncs
    and swaps it whole.
    """
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors)
    save_file(tensors, str(directory / TRAINER_TENSORS))
    doc = {"format": FORMAT, "state": tree}
    (directory / TRAINER_JSON).write_text(json.dumps(doc, allow_nan=False))


def load_trainer_state(ckpt_dir: Path) -> dict[str, Any]:
    """Read the trainer state of ``ckpt_dir``; :class:`CheckpointError` naming the file if it
    is not what aaren-train wrote."""
    if (ckpt_dir / TRAINER_JSON).is_file():
        return _load_current(ckpt_dir)
    if (ckpt_dir / LEGACY_TRAINER).is_file():
        return _load_legacy(ckpt_dir / LEGACY_TRAINER)
    raise CheckpointError(
        f"{ckpt_dir} holds no trainer state ({TRAINER_JSON}); it cannot be resumed. "
        "Start a new run (its weights can still be evaluated)."
    )


def _load_current(ckpt_dir: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = ckpt_dir / TRAINER_JSON
    what_to_do = "restore the run directory from a copy, or start a new run"
    # size- and depth-capped, a regular file, no symlink; never more than a JSON parser
    doc = read_json(path, CheckpointError, root=ckpt_dir)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "state" not in doc:
        raise CheckpointError(
            f"{path} is not trainer state written by this aaren-rl (format "
            f"{doc.get('format') if isinstance(doc, dict) else None!r}, expected {FORMAT}); "
            f"{what_to_do}"
        )
    tensor_path = check_inside(ckpt_dir, ckpt_dir / TRAINER_TENSORS, CheckpointError)
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{tensor_path} is missing or corrupt ({e}); {what_to_do}") from e
    try:
        state = _decode(doc["state"], tensors)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} is malformed ({e}); {what_to_do}") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is malformed (its state is not a mapping); {what_to_do}")
    return state


def _load_legacy(path: Path) -> dict[str, Any]:
    check_inside(path.parent, path, CheckpointError)  # a regular file, no symlink
    # torch.save's zip: entry sizes checked before torch allocates what they declare
    try:
        check_zip(path, str(path), CheckpointError, MAX_LEGACY_BYTES)
    except CheckpointError as e:
        raise CheckpointError(
            f"{path} is not trainer state written by aaren-train (refused without running "
            f"anything from it: {e}); restore the run directory from a copy, or start a new run"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - the restricted unpickler fails in many ways
        # (UnpicklingError, struct.error, EOFError, the zip reader's RuntimeError...): each
        # means "not a file we wrote", and none of them ran anything from the file.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} is not trainer state written by aaren-train, or it is truncated "
            f"(refused without running anything from it: {first}); restore the run directory "
            "from a copy, or start a new run"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not trainer state written by aaren-train")
    return state


# ---- the codec: plain values + tensors <-> JSON + a dict of tensors ----

_TAGS = ("$tensor", "$tuple", "$items", "$float")


def _encode(x: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(x, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = x.detach().cpu().contiguous().clone()  # safetensors refuses shared memory
        return {"$tensor": name}
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else {"$float": repr(x)}
    if isinstance(x, tuple):
        return {"$tuple": [_encode(v, tensors) for v in x]}
    if isinstance(x, list):
        return [_encode(v, tensors) for v in x]
    if isinstance(x, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in x):
            return {k: _encode(v, tensors) for k, v in x.items()}
        return {"$items": [[_encode(k, tensors), _encode(v, tensors)] for k, v in x.items()]}
    raise TypeError(f"trainer state holds a {type(x).__name__}, which has no safe encoding")


def _decode(x: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(x, list):
        return [_decode(v, tensors) for v in x]
    if not isinstance(x, dict):
        return x  # JSON gives only str, int, float, bool, None here
    tags = [k for k in x if k.startswith("$")]
    if not tags:
        return {k: _decode(v, tensors) for k, v in x.items()}
    if len(x) != 1 or tags[0] not in _TAGS:
        raise ValueError(f"unknown entry {sorted(x)[:3]}")
    tag, value = tags[0], x[tags[0]]
    if tag == "$tensor":
        if not isinstance(value, str) or value not in tensors:
            raise ValueError(f"tensor {value!r} is not in {TRAINER_TENSORS}")
        return tensors[value]
    if tag == "$float":
        if value not in ("nan", "inf", "-inf"):
            raise ValueError(f"bad float {value!r}")
        return float(value)
    if not isinstance(value, list):
        raise ValueError(f"{tag} needs a list")
    if tag == "$tuple":
        return tuple(_decode(v, tensors) for v in value)
    if not all(isinstance(kv, list) and len(kv) == 2 for kv in value):
        raise ValueError("$items needs [key, value] pairs")
    return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in value}


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, dict, torch.Tensor)):
        raise ValueError(f"a mapping key must be a plain value, got {type(key).__name__}")
    return key
