"""Discrete agents end to end: aaren-train on a T-Maze file, checkpoint, aaren-eval (success),
window mode, aaren-export + the ONNX agent (same actions as PyTorch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aaren_rl.agents import DecisionAgent
from aaren_rl.collect.scripted import collect_arrays
from aaren_rl.envs.writers import write_d4rl_hdf5
from aaren_rl.eval.rollout import evaluate


@pytest.fixture
def tmaze_checkpoint(tmp_path: Path) -> Path:
    from aaren_rl.train.cli import main

    data = tmp_path / "tmaze.hdf5"
    arrays = collect_arrays("tmaze-8", "medium", episodes=40, seed=0)
    write_d4rl_hdf5(data, arrays, {"env_id": "aaren/PassiveTMaze-L8-v0"})
    run = tmp_path / "run"
    rc = main([
        "--dataset", f"d4rl:{data}", "--steps", "30", "--return-scale", "1",
        "--model.dim", "16", "--model.num-layers", "1", "--threads", "1", "--no-progress",
        "--eval-episodes", "4", "--eval-num-envs", "2", "--run-dir", str(run),
    ])  # fmt: skip
    assert rc == 0
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/success_rate" in m for m in metrics)  # the env defines success
    return run / "checkpoint"


def test_checkpoint_keeps_the_categorical_head_and_eval_reports_success(
    tmaze_checkpoint: Path,
) -> None:
    agent = DecisionAgent.load(tmaze_checkpoint)
    assert agent.model.config.discrete and agent.act_dim == 4
    assert agent.memory_horizon == 0  # a memory task acts over the whole episode by default
    res = evaluate(agent, "tmaze-8", episodes=6, num_envs=3, seed=0)
    assert res.success is not None and len(res.success) == 6
    assert res.success_rate == pytest.approx(np.mean(res.returns))  # reward 1 iff success
    window = DecisionAgent.load(tmaze_checkpoint, mode="window", context_length=4)
    a = window.predict(np.array([[1.0, 0.0, 0.0]], dtype=np.float32))
    assert a.shape == (1, 4) and sorted(a[0].tolist()) == [0.0, 0.0, 0.0, 1.0]
    sampler = DecisionAgent.load(tmaze_checkpoint, sample=True)
    assert not sampler.fused and sampler.model.sample_actions
    assert evaluate(sampler, "tmaze-8", episodes=2, seed=0).success_rate is not None


def test_eval_cli_prints_success(tmaze_checkpoint: Path, capsys) -> None:
    from aaren_rl.eval.cli import main

    assert main(["--checkpoint", str(tmaze_checkpoint), "--episodes", "2", "--no-progress"]) in (
        0,
        None,
    )
    assert "success" in capsys.readouterr().out


def test_onnx_agent_acts_like_the_torch_agent(tmaze_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from aaren_rl.agents.onnx_agent import OnnxAgent
    from aaren_rl.deploy.export import ExportConfig, export_onnx

    path = export_onnx(ExportConfig(checkpoint=tmaze_checkpoint, out=tmp_path / "p.onnx"))
    torch_res = evaluate(DecisionAgent.load(tmaze_checkpoint), "tmaze-8", episodes=6, seed=3)
    onnx_res = evaluate(OnnxAgent(path), "tmaze-8", episodes=6, seed=3)
    assert onnx_res.success == torch_res.success and onnx_res.returns == torch_res.returns
