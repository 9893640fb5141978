"""agents: the acting agents (one ``predict`` contract, ``agents.base.Agent``) and checkpoints.

The torch-based names load on first use (PEP 562), so that the numpy-only modules here
(``agents.base``, ``agents.step_inputs``) serve the ONNX agent without importing torch.
"""

from typing import Any

from aaren_rl.agents.base import Agent
from aaren_rl.errors import CheckpointError

__all__ = ["MODES", "Agent", "CheckpointError", "DecisionAgent"]


def __getattr__(name: str) -> Any:
    if name in ("MODES", "DecisionAgent"):
        from aaren_rl.agents import decision_agent

        return getattr(decision_agent, name)
    raise AttributeError(f"module 'aaren_rl.agents' has no attribute {name!r}")
