"""aaren-export and the onnxruntime agent: same actions as the PyTorch agent, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from aaren_policy import DecisionModel, DecisionModelConfig, __version__
from agents import DecisionAgent
from envs import make_env
from eval.export import ExportConfig, ExportError, export_onnx, main
from eval.onnx_agent import OnnxAgent, OnnxAgentError

OBS, ACT = 11, 3  # Hopper-v5


def _agent(backbone: str = "aaren") -> DecisionAgent:
    torch.manual_seed(0)
    model = DecisionModel(DecisionModelConfig(OBS, ACT, backbone=backbone))  # d 128, 3 layers
    with torch.no_grad():  # move off the init (zero biases, unit LayerNorm)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    rng = np.random.default_rng(0)
    mean, std = rng.standard_normal(OBS) * 0.5, rng.uniform(0.5, 2.0, OBS)
    return DecisionAgent(model, mean, std, 1000.0, 3600.0, env_id="hopper")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("export")
    ckpt = _agent().save(root / "ckpt")
    return ckpt, export_onnx(ExportConfig(ckpt, root / "policy.onnx"))


@pytest.mark.parametrize("num_envs", [1, 3])
def test_onnx_agent_matches_torch_agent_on_hopper(
    exported: tuple[Path, Path], num_envs: int
) -> None:
    ckpt, path = exported
    torch_agent = DecisionAgent.load(ckpt)
    onnx_agent = OnnxAgent(path)
    envs = [make_env("hopper", seed=i) for i in range(num_envs)]
    obs = np.stack([e.reset(seed=i)[0] for i, e in enumerate(envs)])
    reward = np.zeros(num_envs)
    start = np.ones(num_envs, dtype=bool)
    torch_agent.reset(num_envs)
    onnx_agent.reset(num_envs)
    worst, restarts = 0.0, 0
    for _ in range(200):  # envs that fall restart: the per-row reset path is checked too
        a_torch = torch_agent.predict(obs, reward, start)
        a_onnx = onnx_agent.predict(obs, reward, start)
        worst = max(worst, float(np.abs(a_torch - a_onnx).max()))
        start = np.zeros(num_envs, dtype=bool)
        for j, env in enumerate(envs):
            obs[j], reward[j], term, trunc, _ = env.step(a_torch[j])
            if term or trunc:
                obs[j], _ = env.reset()
                start[j], restarts = True, restarts + 1
    for env in envs:
        env.close()
    assert worst <= 1e-5, worst
    assert onnx_agent.state_nbytes() == num_envs * (8 + 8 + 4 * ACT + 3 * 4 * (1 + 1 + 128))


def test_metadata_records_env_sizes_target_and_version(exported: tuple[Path, Path]) -> None:
    meta = {p.key: p.value for p in onnx.load(str(exported[1])).metadata_props}
    assert meta["aaren.env_id"] == "hopper"
    assert (meta["aaren.obs_dim"], meta["aaren.act_dim"]) == ("11", "3")
    assert float(meta["aaren.target_return"]) == 3600.0
    assert meta["aaren.package_version"] == __version__
    assert "state_next" in meta["aaren.contract"]


def test_transformer_export_is_refused_with_the_reason(tmp_path: Path) -> None:
    ckpt = _agent("transformer").save(tmp_path / "ckpt")
    with pytest.raises(ExportError, match="KV cache that grows"):
        export_onnx(ExportConfig(ckpt, tmp_path / "p.onnx"))
    with pytest.raises(SystemExit, match="window export is not provided"):
        main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "p.onnx")])
    assert not (tmp_path / "p.onnx").exists()


def test_bad_shapes_give_clear_errors(exported: tuple[Path, Path]) -> None:
    agent = OnnxAgent(exported[1])
    agent.reset(2)
    with pytest.raises(OnnxAgentError, match=r"obs has shape \(2, 7\), expected \(2, 11\)"):
        agent.predict(np.zeros((2, 7)))
    with pytest.raises(OnnxAgentError, match=r"expected \(2, 11\)"):
        agent.predict(np.zeros((3, 11)))
    state = agent.initial_state(2)
    state["w"] = state["w"][:, :2]
    with pytest.raises(OnnxAgentError, match="state 'w' has shape"):
        agent.set_state(state)
    with pytest.raises(OnnxAgentError, match="NaN"):
        agent.predict(np.full((2, 11), np.nan))


def test_cli_writes_a_file(exported: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "cli.onnx"
    main(["--checkpoint", str(exported[0]), "--out", str(out), "--no-verify"])
    assert OnnxAgent(out).predict(np.zeros(11)).shape == (1, 3)


def test_onnx_agent_does_not_import_torch() -> None:
    code = "import sys, eval.onnx_agent; assert 'torch' not in sys.modules, 'torch imported'"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
