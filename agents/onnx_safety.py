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

__all__ = [
    "ALLOWED_OPS",
    "check_external_data",
    "check_graph",
    "check_model",
    "check_onnx_metadata",
]

MAX_DIM = 2**24  # the largest size a contract shape may name
MAX_IO_DIM = 2**20  # aaren.obs_dim / aaren.act_dim (MuJoCo's largest: 376 for Humanoid)
MAX_STATE_ELEMENTS = 2**24  # one env's carried state, all tensors (DT-size: ~100 floats)
MAX_TENSOR_ELEMENTS = 2**26  # any tensor of the graph at batch 1 (the largest we emit: ~10^5)
# Exactly the operators aaren-export emits (opsets 17-20; relu, gelu and gelu_tanh; discrete
# and continuous heads), plus the two that onnxruntime's dynamic int8 quantisation of that
# graph adds (docs/deployment.md, aaren-onnx-int8); tests/agents/test_onnx_graph.py exports
# them and checks this list. No control flow (Loop, Scan, If), nothing that sizes a tensor
# from data (Expand, Tile, ConstantOfShape, Range, Resize, Pad), no other domains or local
# functions.
ALLOWED_OPS = frozenset(
    "Add Cast Clip Concat Constant Div Equal Erf Gather Gelu Gemm Identity LayerNormalization "
    "Less MatMul Mul ReduceLogSumExp ReduceMax ReduceSum Relu Reshape Slice Softmax Split Sub "
    "Tanh Transpose Unsqueeze Where DynamicQuantizeLinear MatMulInteger".split()
)
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


def _parse(path: Path, data: bytes | None) -> Any:
    """The ModelProto of ``path`` (or of ``data``), without loading external data."""
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - onnx is part of the [onnx] extra
        raise OnnxAgentError(
            "checking an ONNX file needs onnx: pip install 'aaren-rl[onnx]'"
        ) from e
    try:
        if data is None:
            return onnx.load(str(path), load_external_data=False)
        return onnx.load_from_string(data)
    except Exception as e:  # protobuf DecodeError and friends
        raise OnnxAgentError(f"{path} is not a readable ONNX model ({e})") from e


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
    path = Path(path)
    return _check_external(_parse(path, data), path)


def check_model(path: str | Path, data: bytes | None = None) -> bool:
    """Every check before onnxruntime opens a model: external data
    (:func:`check_external_data`) and the graph (:func:`check_graph`). Returns whether the
    model keeps external data (inside its folder)."""
    path = Path(path)
    model = _parse(path, data)
    external = _check_external(model, path)
    check_graph(model, path)
    return external


def _dims(value: Any) -> list[int] | None:
    t = value.type.tensor_type
    if not t.HasField("shape") or any(not d.HasField("dim_value") for d in t.shape.dim):
        return None
    return [d.dim_value for d in t.shape.dim]


def check_graph(model: Any, path: str | Path) -> None:
    """Refuse a graph that could run for ever or allocate without bound.

    Only :data:`ALLOWED_OPS` of the default domain, no local functions and no subgraphs
    (so no ``Loop``/``Scan``/``If``); then ONNX shape inference (with data propagation)
    runs with every symbolic input dim set to 1: every tensor's shape must come out fully
    known, with at most ``MAX_TENSOR_ELEMENTS`` elements (an ``Expand`` to 1.2e9 floats or a
    broadcast outer product is refused before any session exists).
    """
    import onnx
    from onnx import shape_inference

    path = Path(path)
    if len(model.functions):
        raise OnnxAgentError(f"{path}: the model defines local functions; aaren-export emits none")
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in ALLOWED_OPS:
            raise OnnxAgentError(
                f"{path}: node {node.name or '?'!r} is a {node.domain or 'ai.onnx'} "
                f"{node.op_type!r}, which aaren-export never emits (allowed: the "
                f"{len(ALLOWED_OPS)} operators of docs/security.md); refusing to load it"
            )
        if any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        ):
            raise OnnxAgentError(f"{path}: node {node.name!r} holds a subgraph; refusing it")
    concrete = onnx.ModelProto()
    concrete.CopyFrom(model)
    for value in concrete.graph.input:
        for d in value.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = 1
    try:
        inferred = shape_inference.infer_shapes(concrete, strict_mode=True, data_prop=True)
    except Exception as e:  # InferenceError, ValidationError
        raise OnnxAgentError(f"{path}: the graph's shapes do not check out ({e})") from e
    g = inferred.graph
    for value in (*g.input, *g.value_info, *g.output):
        dims = _dims(value)
        size = None if dims is None else math.prod(dims)
        if size is None or size > MAX_TENSOR_ELEMENTS:
            raise OnnxAgentError(
                f"{path}: tensor {value.name!r} has shape "
                f"{'unknown' if dims is None else dims} at batch 1 (at most "
                f"{MAX_TENSOR_ELEMENTS} elements, all dims known); refusing to load it"
            )
    known = {v.name for v in (*g.input, *g.value_info, *g.output)}
    unknown = [o for n in g.node for o in n.output if o and o not in known]
    if unknown:  # inference gave up on them: their size cannot be bounded
        raise OnnxAgentError(
            f"{path}: tensor {unknown[0]!r} has no inferred shape at batch 1; refusing to load it"
        )
    for t in g.initializer:
        if math.prod(t.dims) > MAX_TENSOR_ELEMENTS:
            raise OnnxAgentError(
                f"{path}: initializer {t.name!r} of shape {list(t.dims)} is too large"
            )


def _check_external(model: Any, path: Path) -> bool:
    import onnx

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
    if not 1 <= v <= MAX_IO_DIM:
        raise OnnxAgentError(f"{path}: metadata {key!r} = {v} is out of range 1..{MAX_IO_DIM}")
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
    per_env = sum(
        math.prod(1 if d == "B" else d for d in shape)
        for shape in contract["state_shapes"].values()
    )
    if per_env > MAX_STATE_ELEMENTS:
        raise OnnxAgentError(
            f"{path}: aaren.contract states hold {per_env} values per environment, more than "
            f"the {MAX_STATE_ELEMENTS} allowed (each dim may be small, their product is not)"
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
