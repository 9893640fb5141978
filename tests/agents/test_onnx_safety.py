"""Crafted ONNX files: external data outside the model's folder and bad metadata are refused
before onnxruntime opens the file (agents/onnx_safety.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from aaren_rl.agents.onnx_agent import OnnxAgent, make_session
from aaren_rl.agents.onnx_safety import check_external_data
from aaren_rl.errors import OnnxAgentError


def _external(name: str, location: str) -> TensorProto:
    t = numpy_helper.from_array(np.zeros(4, np.float32), name)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def _model(location: str, where: str = "initializer") -> onnx.ModelProto:
    """y = x + w, with w's bytes "in" ``location``: an initializer or a Constant's value."""
    w = _external("w", location)
    nodes = [helper.make_node("Add", ["x", "w"], ["y"])]
    inits = [w]
    if where == "constant":
        nodes.insert(0, helper.make_node("Constant", [], ["w"], value=w))
        inits = []
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the model's folder that a crafted model would read into its weights."""
    path = tmp_path / "secret.bin"
    np.arange(4, dtype=np.float32).tofile(path)
    return path


@pytest.fixture
def no_session(monkeypatch: pytest.MonkeyPatch) -> list:
    """Records every onnxruntime session opened (the refused files must open none)."""
    import onnxruntime as ort

    opened: list = []
    real = ort.InferenceSession

    def spy(*args, **kwargs):
        opened.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    return opened


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("where", ["initializer", "constant"])
def test_external_data_outside_the_folder_is_refused(tmp_path, secret, no_session, where):
    path = _save(_model("../secret.bin", where), tmp_path / "model" / "policy.onnx")
    with pytest.raises(OnnxAgentError, match=r"policy\.onnx: .*'w'.*'\.\./secret\.bin'.*'\.\.'"):
        OnnxAgent(path)
    assert no_session == []  # onnxruntime never opened it (nor the secret)


def test_absolute_external_data_is_refused(tmp_path, secret, no_session):
    path = _save(_model(str(secret)), tmp_path / "model" / "policy.onnx")
    with pytest.raises(OnnxAgentError, match="an absolute path"):
        make_session(path)
    assert no_session == []


def test_a_symlink_out_of_the_folder_is_refused(tmp_path, secret, no_session):
    path = _save(_model("weights.bin"), tmp_path / "model" / "policy.onnx")
    (path.parent / "weights.bin").symlink_to(secret)
    with pytest.raises(OnnxAgentError, match="resolves outside the model's folder"):
        make_session(path)
    assert no_session == []


def test_external_data_inside_the_folder_passes_the_check(tmp_path):
    path = _save(_model("weights.bin"), tmp_path / "model" / "policy.onnx")
    np.ones(4, np.float32).tofile(path.parent / "weights.bin")
    check_external_data(path)  # no error: a model may keep its weights beside it


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x80\x04not a protobuf" * 10)
    with pytest.raises(OnnxAgentError, match="junk.onnx"):
        make_session(path)


# ----------------------------------------------------------------------------- metadata


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig
    from aaren_rl.agents import DecisionAgent
    from aaren_rl.deploy.export import ExportConfig, export_onnx

    torch.manual_seed(0)
    net = BackboneConfig(dim=16, num_layers=1, num_heads=1, dropout=0.0)
    model = DecisionModel(DecisionModelConfig(11, 3, "aaren", net))
    agent = DecisionAgent(model, np.zeros(11), np.ones(11), 1000.0, 3600.0, env_id="Hopper-v5")
    root = tmp_path_factory.mktemp("onnx")
    ckpt = agent.save(root / "ckpt")
    return export_onnx(ExportConfig(ckpt, root / "policy.onnx"))


def _with_metadata(src: Path, dst: Path, **changes: str) -> Path:
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(changes)
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(dst))
    return dst


def test_an_exported_policy_loads(exported: Path):
    agent = OnnxAgent(exported)
    agent.reset(2)
    assert agent.predict(np.zeros((2, 11), np.float32)).shape == (2, 3)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"aaren.obs_dim": "1e12"}, "'aaren.obs_dim' must be an integer"),
        ({"aaren.obs_dim": str(2**40)}, "'aaren.obs_dim' = .* is out of range"),
        ({"aaren.env_id": "os:Hopper-v5"}, "'aaren.env_id'.*not a plain Gymnasium id"),
        ({"aaren.target_return": "nan"}, "'aaren.target_return' must be a finite number"),
        ({"aaren.contract": "[1, 2]"}, "aaren.contract must be a JSON object"),
        ({"aaren.contract": "{not json"}, "aaren.contract is corrupt: not valid JSON"),
        ({"aaren.format": "3"}, "aaren.format '3' is not one this version reads"),
    ],
)
def test_bad_metadata_is_refused(exported: Path, tmp_path: Path, changes: dict, message: str):
    path = _with_metadata(exported, tmp_path / "bad.onnx", **changes)
    with pytest.raises(OnnxAgentError, match=message):
        OnnxAgent(path)


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c.update(inputs="obs"),
        lambda c: c["state_shapes"].update(attn=["B", 2**40]),
        lambda c: c["state_shapes"].update(attn="B"),
        lambda c: c["initial_state"].update(rtg={"x": 1}),
        lambda c: c.update(state_next={k: "z" for k in c["state_next"]}),
    ],
    ids=["inputs-not-a-list", "huge-shape", "shape-not-a-list", "bad-initial", "no-action"],
)
def test_bad_contract_is_refused(exported: Path, tmp_path: Path, edit):
    model = onnx.load(str(exported))
    contract = json.loads(next(p.value for p in model.metadata_props if p.key == "aaren.contract"))
    edit(contract)
    path = _with_metadata(
        exported, tmp_path / "bad.onnx", **{"aaren.contract": json.dumps(contract)}
    )
    with pytest.raises(OnnxAgentError, match=r"bad\.onnx: aaren\.contract"):
        OnnxAgent(path)
