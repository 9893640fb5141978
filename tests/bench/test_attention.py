"""aaren-bench attention: the locality measure's arithmetic and the command on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aaren_rl.agents.checkpoint import load_model
from aaren_rl.bench import attention
from aaren_rl.bench.cli import main
from aaren_rl.envs import load_dataset


def _setup(checkpoint: Path, dataset: Path) -> tuple:
    model, meta = load_model(checkpoint, "cpu")
    return model.eval(), meta, load_dataset(f"d4rl:{dataset}").trajectories


def test_a_zero_query_attends_uniformly(aaren_checkpoint: Path, tiny_hopper_dataset: Path):
    model, meta, trajs = _setup(aaren_checkpoint, tiny_hopper_dataset)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, attention.Aaren):
                layer.query.zero_()  # every score equal: a running mean
    rows = attention.attention_locality(model, trajs, meta, (5, 12), window=3)
    assert rows and {r["t"] for r in rows} == {5, 12}
    for r in rows:
        assert r["last_window_share"] == pytest.approx(r["uniform_share"], abs=1e-6)
        assert r["effective_tokens"] == pytest.approx(r["tokens"], rel=1e-6)
        assert r["episodes"] == sum(len(tr.rewards) > r["t"] for tr in trajs)


def test_scores_on_the_last_token_give_share_one(
    aaren_checkpoint: Path, tiny_hopper_dataset: Path, monkeypatch
):
    model, meta, trajs = _setup(aaren_checkpoint, tiny_hopper_dataset)

    def peaked(model, inputs):  # every layer: one head, all weight on the newest token
        n = inputs[0].shape[1] * 3
        return [torch.arange(n, dtype=torch.float32)[None] * 100.0]

    monkeypatch.setattr(attention, "_layer_scores", peaked)
    (row,) = attention.attention_locality(model, trajs[:1], meta, (10,), window=2)
    assert row["last_window_share"] == pytest.approx(1.0)
    assert row["effective_tokens"] == pytest.approx(1.0, abs=1e-6)
    assert row["uniform_share"] == pytest.approx(5 / 32)  # R_9 s_9 a_9 R_10 s_10 of 32


def test_command_writes_json_and_refuses_a_transformer(
    aaren_checkpoint: Path, make_agent, tiny_hopper_dataset: Path, tmp_path: Path, capsys
):
    args = ["attention", "--dataset", f"d4rl:{tiny_hopper_dataset}", "--steps", "5", "10",
            "--episodes", "3", "--out", str(tmp_path / "o")]  # fmt: skip
    assert main([*args, "--checkpoint", str(aaren_checkpoint)]) == 0
    data = json.loads((tmp_path / "o" / "attention.json").read_text())
    layers = {r["layer"] for r in data["rows"]}
    assert layers == set(range(len(layers))) and data["rows"][0]["episodes"] == 3
    assert "weight on the last 20 steps" in capsys.readouterr().out
    tf = make_agent("transformer", "window").save(tmp_path / "tf")
    assert main([*args, "--checkpoint", str(tf)]) == 2
    assert "not aaren" in capsys.readouterr().err
