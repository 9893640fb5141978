"""A crafted ``agent.json``: wrong types and sizes give a CheckpointError naming the file and
field before anything is built from it (agents/checkpoint.py ``check_metadata``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from aaren_rl.agents import DecisionAgent
from aaren_rl.agents.checkpoint import read_metadata
from aaren_rl.errors import CheckpointError


def _edit(ckpt: Path, edit) -> None:
    path = ckpt / "agent.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["model_config"].update(obs_dim="11"), r"model_config\.obs_dim must be int"),
        (lambda m: m["model_config"]["net"].update(dim=2**30), "a size above"),
        (lambda m: m["model_config"].update(backbone=["aaren"]), r"model_config\.backbone must"),
        (lambda m: m["model_config"].update(payload="x"), "unknown field 'payload'"),
        (lambda m: m.update(model_config=[1, 2]), "model_config must be a JSON object"),
        (lambda m: m.update(state_mean=m["state_mean"][:-1]), "state_mean must have 11 entries"),
        (lambda m: m.update(state_std=["1"] * 11), r"state_std\[0\] must be a finite number"),
        (lambda m: m.update(return_scale="1000"), "return_scale must be a finite number"),
        (lambda m: m.update(target_return=float("nan")), "target_return must be a finite"),
        (lambda m: m.update(target_returns="3600"), "target_returns must be a list"),
        (lambda m: m.update(context_length=-1), "context_length must be a non-negative"),
        (lambda m: m.update(env_id="aaren_mod:Hopper-v5"), "env_id.*not a plain Gymnasium id"),
        (lambda m: m.update(env_id={"id": 1}), "environment id must be a string"),
    ],
)
def test_wrong_types_and_sizes_are_refused(aaren_checkpoint: Path, edit, message: str):
    _edit(aaren_checkpoint, edit)
    with pytest.raises(CheckpointError, match=rf"agent\.json.*{message}"):
        DecisionAgent.load(aaren_checkpoint)


def test_a_json_array_is_not_a_checkpoint(aaren_checkpoint: Path):
    (aaren_checkpoint / "agent.json").write_text("[1, 2, 3]")
    with pytest.raises(CheckpointError, match="agent.json"):
        read_metadata(aaren_checkpoint)


def test_an_env_id_that_names_a_module_is_refused_before_any_import(
    aaren_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    marker = tmp_path / "IMPORTED"
    (tmp_path / "aaren_ckpt_mod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "aaren_ckpt_mod", raising=False)
    _edit(aaren_checkpoint, lambda m: m.update(env_id="aaren_ckpt_mod:Hopper-v5"))
    with pytest.raises(CheckpointError, match="not a plain Gymnasium id"):
        DecisionAgent.load(aaren_checkpoint)
    from aaren_rl.eval.cli import main as eval_main

    rc = eval_main(["--checkpoint", str(aaren_checkpoint), "--episodes", "1"])
    assert rc == 2 and not marker.exists()


def test_a_clean_checkpoint_loads(aaren_checkpoint: Path):
    agent = DecisionAgent.load(aaren_checkpoint)
    assert agent.obs_dim == 11 and agent.env_id is not None
