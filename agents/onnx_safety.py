"""Checks on an ONNX policy file before onnxruntime opens it (docs/security.md).

An ONNX file is a protobuf: parsing it runs no code. Two things in it still need checking:

- **external data.** A tensor may keep its bytes in another file, named by a ``location``
  relative to the model. A crafted model can name ``../../home/me/.ssh/id_rsa`` or an
  absolute path, and a runtime that follows it reads that file into the weights (recent
  onnxruntime refuses; older releases, which ``aaren-rl[onnx]`` admits, did not). We parse
  the model *without* loading external data and refuse any location that is absolute, has a
  ``..`` component, or resolves (symlinks included) outside the model's folder.
- **metadata.** ``aaren.contract`` (JSON) and the ``aaren.*`` sizes drive how the agent
  allocates and binds its state; they are checked for types and sizes before use.

numpy, onnx and onnxruntime only: the ONNX agent path stays free of torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from aaren_rl.errors import OnnxAgentError
from aaren_rl.untrusted import check_env_id, parse_json_text

__all__ = ["check_external_data", "check_onnx_metadata"]

MAX_DIM = 2**24  # the largest size a contract shape or aaren.obs_dim may name
ONNX_FORMAT = 2
"""The format aaren-export writes (``aaren.format``). 2: the attention state (c, o) in one
tensor ``attn``; 1: (m, u, w) in three tensors. The agent follows the contract, so it reads
both; a newer format is refused (re-export the checkpoint with this version)."""
READABLE_FORMATS = (1, 2)


def _tensors(graph: Any, where: str) -> Iterator[tuple[Any, str]]:
    """Every TensorProto of a graph, its subgraphs (If/Loop/Scan bodies) and attributes."""
    for t in graph.initializer:
        yield t, f"{where}initializer {t.name!r}"
    for s in graph.sparse_initializer:
        yield s.values, f"{where}sparse initializer {s.values.name!r}"
        yield s.indices, f"{where}sparse initializer {s.values.name!r} (indices)"
    for node in graph.node:
        yield from _attribute_tensors(node, f"{where}node {node.name or node.op_type!r} ")


def _attribute_tensors(node: Any, where: str) -> Iterator[tuple[Any, str]]:
    for a in node.attribute:
        if a.HasField("t"):
            yield a.t, f"{where}attribute {a.name!r} (tensor {a.t.name!r})"
        for t in a.tensors:
            yield t, f"{where}attribute {a.name!r} (tensor {t.name!r})"
        if a.HasField("sparse_tensor"):
            yield a.sparse_tensor.values, f"{where}attribute {a.name!r}"
        for s in a.sparse_tensors:
            yield s.values, f"{where}attribute {a.name!r}"
        if a.HasField("g"):
            yield from _tensors(a.g, f"{where}subgraph {a.name!r}: ")
        for g in a.graphs:
            yield from _tensors(g, f"{where}subgraph {a.name!r}: ")


def _location_problem(location: str, folder: Path) -> str | None:
    """Why an external-data ``location`` is refused, or None if it stays inside ``folder``."""
    if not location:
        return "an empty location"
    for pure in (PurePosixPath(location), PureWindowsPath(location)):
        if pure.is_absolute() or pure.drive or pure.root:
            return "an absolute path"
        if ".." in pure.parts:
            return "a '..' component"
    target = (folder / location).resolve()
    if not target.is_relative_to(folder.resolve()):
        return f"a path that resolves outside the model's folder ({target})"
    return None


def check_external_data(path: str | Path, data: bytes | None = None) -> bool:
    """Refuse an ONNX model whose tensors keep external data outside its folder.

    The model is parsed with ``onnx.load(load_external_data=False)`` (or, given ``data``,
    the file's bytes as read by the caller, from those): the protobuf only, no external file
    is opened.

    Returns:
        True when some tensor keeps its data in an external file (inside the folder).

    Raises:
        OnnxAgentError: the file is not an ONNX protobuf, or a tensor's external data is an
            absolute path, has a ``..`` component or resolves (through symlinks) outside
            the model's folder. The message names the tensor and the location.
    """
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - onnx is part of the [onnx] extra
        raise OnnxAgentError(
            "checking an ONNX file needs onnx: pip install 'aaren-rl[onnx]'"
        ) from e
    path = Path(path)
    try:
        if data is None:
            model = onnx.load(str(path), load_external_data=False)
        else:
            model = onnx.load_from_string(data)
    except Exception as e:  # protobuf DecodeError and friends
        raise OnnxAgentError(f"{path} is not a readable ONNX model ({e})") from e
    tensors = list(_tensors(model.graph, ""))
    for fn in model.functions:
        for node in fn.node:
            tensors += _attribute_tensors(node, f"function {fn.name!r} node {node.op_type!r} ")
    external = False
    for tensor, where in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL and not tensor.external_data:
            continue
        external = True
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        problem = _location_problem(location, path.parent)
        if problem:
            raise OnnxAgentError(
                f"{path}: {where} keeps its data in {location!r}, {problem}; external data "
                "must sit in the model's own folder. Refusing to load it (re-export the model "
                "with aaren-export, which writes one self-contained file)."
            )
    return external


def _int(meta: dict[str, str], key: str, path: Path) -> int:
    try:
        v = int(meta[key])
    except (KeyError, ValueError) as e:
        raise OnnxAgentError(f"{path}: metadata {key!r} must be an integer ({e})") from e
    if not 1 <= v <= MAX_DIM:
        raise OnnxAgentError(f"{path}: metadata {key!r} = {v} is out of range 1..{MAX_DIM}")
    return v


def _names(value: Any, key: str, path: Path) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OnnxAgentError(f"{path}: aaren.contract {key!r} must be a list of names")
    return value


def check_onnx_metadata(meta: dict[str, str], path: str | Path) -> dict[str, Any]:
    """Check the ``aaren.*`` metadata of an exported policy; returns the parsed contract.

    Raises:
        OnnxAgentError: naming the file and the key whose type or size is wrong.
    """
    path = Path(path)
    fmt = meta.get("aaren.format", str(ONNX_FORMAT))
    if fmt not in {str(f) for f in READABLE_FORMATS}:
        raise OnnxAgentError(
            f"{path}: aaren.format {fmt!r:.20} is not one this version reads "
            f"({', '.join(map(str, READABLE_FORMATS))}): re-export the checkpoint with "
            "this version's aaren-export"
        )
    contract = parse_json_text(meta["aaren.contract"], f"{path}: aaren.contract", OnnxAgentError)
    if not isinstance(contract, dict):
        raise OnnxAgentError(f"{path}: aaren.contract must be a JSON object")
    _names(contract.get("inputs"), "inputs", path)
    _names(contract.get("outputs"), "outputs", path)
    for key in ("state_next", "state_shapes", "initial_state"):
        if not isinstance(contract.get(key), dict):
            raise OnnxAgentError(f"{path}: aaren.contract {key!r} must be a JSON object")
    if not all(isinstance(v, str) for v in contract["state_next"].values()):
        raise OnnxAgentError(f"{path}: aaren.contract 'state_next' must map names to names")
    if "action" not in contract["state_next"].values():
        raise OnnxAgentError(f"{path}: aaren.contract names no state that carries the action")
    for name, shape in contract["state_shapes"].items():
        dims = shape if isinstance(shape, list) else [None]
        ok = all(d == "B" or (type(d) is int and 0 <= d <= MAX_DIM) for d in dims)
        if not ok or len(dims) > 8 or name not in contract["initial_state"]:
            raise OnnxAgentError(
                f"{path}: aaren.contract state {name!r} has a bad shape {shape!r:.80} "
                "(dims: 'B' or integers up to 2^24) or no initial value"
            )
    for name, value in contract["initial_state"].items():
        if value != "target_return" and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            raise OnnxAgentError(
                f"{path}: aaren.contract initial value of {name!r} is {value!r:.40}"
            )
    _int(meta, "aaren.obs_dim", path)
    _int(meta, "aaren.act_dim", path)
    try:
        target = float(meta.get("aaren.target_return", "0"))
    except ValueError:
        target = math.nan
    if not math.isfinite(target):
        raise OnnxAgentError(f"{path}: metadata 'aaren.target_return' must be a finite number")
    check_env_id(
        meta.get("aaren.env_id") or None, f"{path}: metadata 'aaren.env_id'", OnnxAgentError
    )
    return contract
