"""agent.json from someone else: each size and their products bounded, the file size- and
depth-capped, before any model is built (agents/checkpoint.py, docs/security.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aaren_rl.agents.checkpoint import MODEL_LIMITS, check_model_size, read_metadata
from aaren_rl.errors import CheckpointError
from aaren_rl.untrusted import MAX_JSON_BYTES, MAX_JSON_DEPTH


def _edit(ckpt: Path, change) -> Path:
    meta = json.loads((ckpt / "agent.json").read_text())
    change(meta)
    (ckpt / "agent.json").write_text(json.dumps(meta))
    return ckpt


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(context_length=70_000_000), "context_length = 70000000 is outside"),
        (lambda m: m["model_config"].update(max_timestep=2**24), "max_timestep = 16777216"),
        (lambda m: m["model_config"]["net"].update(dim=8192, num_layers=200), "weights"),
        (
            lambda m: (
                m["model_config"].update(max_timestep=2**20)
                or m["model_config"]["net"].update(dim=2048)
            ),
            "weights",
        ),
    ],
)
def test_sizes_and_their_products_are_bounded(aaren_checkpoint: Path, change, message: str):
    _edit(aaren_checkpoint, change)
    with pytest.raises(CheckpointError, match=message):
        read_metadata(aaren_checkpoint)


def test_real_model_sizes_pass():
    dt = {"obs_dim": 17, "act_dim": 6, "max_timestep": 1000, "net": {"dim": 128, "num_layers": 3}}
    assert check_model_size(dt, "dt", CheckpointError, context_length=20) < 2_000_000
    big = {"obs_dim": 376, "act_dim": 17, "max_timestep": 10_000,
           "net": {"dim": 768, "num_layers": 12, "num_heads": 12}}  # fmt: skip
    # a GPT-2-small-size backbone (~85M weights), 1000-step windows of 64: still allowed
    assert check_model_size(big, "big", CheckpointError, context_length=1000, batch_size=64) > 8e7
    assert all(limit >= 256 for limit in MODEL_LIMITS.values())


def test_an_oversize_agent_json_is_refused_before_parsing(aaren_checkpoint: Path):
    path = aaren_checkpoint / "agent.json"
    meta = path.read_text()
    path.write_text(meta[:-1] + ', "pad": "' + "x" * MAX_JSON_BYTES + '"}')
    with pytest.raises(CheckpointError, match=f"more than the {MAX_JSON_BYTES}"):
        read_metadata(aaren_checkpoint)


def test_a_deeply_nested_agent_json_is_one_clear_error(aaren_checkpoint: Path):
    path = aaren_checkpoint / "agent.json"
    path.write_text(path.read_text()[:-1] + ', "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(CheckpointError, match=f"nested deeper than the {MAX_JSON_DEPTH}"):
        read_metadata(aaren_checkpoint)


def test_a_huge_context_length_stays_in_memory_bounds(aaren_checkpoint: Path, limited):
    """aaren-eval on the crafted checkpoint, capped at 1.5 GiB: exit 2 with one line."""
    _edit(aaren_checkpoint, lambda m: m.update(context_length=70_000_000))
    code = (
        "import sys\nfrom aaren_rl.eval.cli import main\n"
        f"sys.exit(main(['--checkpoint', '{aaren_checkpoint}', '--episodes', '1', "
        "'--mode', 'window', '--no-progress']))\n"
    )
    out = limited(code, timeout=120)
    assert out.returncode == 2 and "context_length = 70000000" in out.stderr, out.stderr[-2000:]
