"""ONNX graphs are vetted before onnxruntime loads them (agents/onnx_safety.py check_graph):
only the operators aaren-export emits, every tensor's inferred size bounded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from aaren_rl.agents.onnx_agent import OnnxAgent
from aaren_rl.agents.onnx_safety import ALLOWED_OPS, MAX_TENSOR_ELEMENTS
from aaren_rl.errors import OnnxAgentError

# (activation, discrete, opset, memory horizon): the variants whose graphs differ
VARIANTS = [
    ("relu", False, 17, 0),
    ("gelu", False, 19, 0),
    ("gelu", False, 20, 50),
    ("gelu_tanh", True, 18, 0),
]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    import torch

    from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig
    from aaren_rl.agents import DecisionAgent
    from aaren_rl.deploy.export import ExportConfig, export_onnx

    root = tmp_path_factory.mktemp("graphs")
    out = []
    for i, (act, discrete, opset, horizon) in enumerate(VARIANTS):
        torch.manual_seed(0)
        net = BackboneConfig(dim=16, num_layers=2, num_heads=2, dropout=0.0, activation=act)
        cfg = DecisionModelConfig(11, 3, "aaren", net, discrete=discrete)
        agent = DecisionAgent(DecisionModel(cfg), np.zeros(11), np.ones(11), 1000.0, 3600.0)
        ckpt = agent.save(root / f"ckpt{i}")
        config = ExportConfig(ckpt, root / f"p{i}.onnx", opset=opset, memory_horizon=horizon)
        out.append(export_onnx(config))
    return out


def test_the_allowed_operators_are_those_aaren_export_emits(exports: list[Path]):
    from aaren_rl.bench.agents import quantize_int8  # the int8 variant of docs/deployment.md

    emitted = set()
    int8 = quantize_int8(exports[0], exports[0].with_name("int8.onnx"))
    for path in [*exports, int8]:
        model = onnx.load(str(path))
        emitted |= {n.op_type for n in model.graph.node}
        assert {n.domain for n in model.graph.node} <= {""}
        OnnxAgent(path)  # and every one of them passes the checks
    assert emitted == ALLOWED_OPS, (sorted(emitted - ALLOWED_OPS), sorted(ALLOWED_OPS - emitted))


def _edit(src: Path, dst: Path, nodes: list, initializers: list = ()) -> Path:
    """``src`` with ``nodes`` added (their outputs unused), saved as ``dst``."""
    model = onnx.load(str(src))
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(initializers)
    onnx.save(model, str(dst))
    return dst


def _loop(trips: int) -> list:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])],
    )  # fmt: skip
    return [
        helper.make_node("Constant", [], ["trips"], value=numpy_helper.from_array(np.array(trips))),
        helper.make_node("Constant", [], ["yes"], value=numpy_helper.from_array(np.array(True))),
        helper.make_node("Loop", ["trips", "yes"], [], body=body, name="forever"),
    ]


def test_a_loop_node_is_refused_before_a_session_exists(exports: list[Path], tmp_path: Path):
    path = _edit(exports[0], tmp_path / "loop.onnx", _loop(10**15))
    with pytest.raises(OnnxAgentError, match="'Loop', which aaren-export never emits"):
        OnnxAgent(path)


def _expand_bomb(export: Path, tmp_path: Path) -> Path:
    """``export`` plus an Expand of one float to 1.2 billion (4.8 GB if it ever ran)."""
    shape = numpy_helper.from_array(np.array([1_200_000_000], np.int64), "huge_shape")
    one = numpy_helper.from_array(np.ones(1, np.float32), "one")
    return _edit(
        export, tmp_path / "expand.onnx",
        [helper.make_node("Expand", ["one", "huge_shape"], ["big"], name="bomb")], [shape, one],
    )  # fmt: skip


def test_an_expand_to_a_billion_floats_is_refused(exports: list[Path], tmp_path: Path):
    path = _expand_bomb(exports[0], tmp_path)
    with pytest.raises(OnnxAgentError, match="'Expand', which aaren-export never emits"):
        OnnxAgent(path)


def test_an_outer_product_of_allowed_operators_is_refused(exports: list[Path], tmp_path: Path):
    """Allowed operators can still broadcast two vectors into a huge matrix: shape inference
    at batch 1 sees the size before onnxruntime allocates it."""
    n = 40_000  # 40k x 40k = 1.6e9 floats
    col = numpy_helper.from_array(np.ones((n, 1), np.float32), "col")
    row = numpy_helper.from_array(np.ones((1, n), np.float32), "row")
    path = _edit(
        exports[0], tmp_path / "outer.onnx",
        [helper.make_node("Add", ["col", "row"], ["outer"], name="outer")], [col, row],
    )  # fmt: skip
    with pytest.raises(
        OnnxAgentError, match=f"'outer' has shape \\[40000, 40000\\].*{MAX_TENSOR_ELEMENTS}"
    ):
        OnnxAgent(path)


def test_the_expand_bomb_stays_in_memory_bounds(exports: list[Path], tmp_path: Path, limited):
    """aaren-eval --onnx on the Expand file, capped at 1.5 GiB: exit 2, one line, no session
    (running the node would allocate 4.8 GB)."""
    path = _expand_bomb(exports[0], tmp_path)
    code = (
        "import sys\nfrom aaren_rl.eval.cli import main\n"
        f"sys.exit(main(['--onnx', '{path}', '--episodes', '1', '--no-progress']))\n"
    )
    out = limited(code, timeout=120)
    assert out.returncode == 2 and "'Expand', which aaren-export never emits" in out.stderr, (
        out.stderr[-2000:]
    )


def test_contract_state_dims_small_each_but_not_their_product(exports: list[Path], tmp_path):
    import json

    model = onnx.load(str(exports[0]))
    props = {p.key: p for p in model.metadata_props}
    contract = json.loads(props["aaren.contract"].value)
    name = next(iter(contract["state_shapes"]))
    contract["state_shapes"][name] = ["B", 4096, 4096, 4]  # each <= 2^24; 2^26 per env
    props["aaren.contract"].value = json.dumps(contract)
    onnx.save(model, str(tmp_path / "wide.onnx"))
    with pytest.raises(
        OnnxAgentError, match=r"hold 671\d{5} values per environment, more than the 16777216"
    ):
        OnnxAgent(tmp_path / "wide.onnx")
