"""agents: the acting decision agent, its checkpoints, and behaviour policies.

The torch-based names load on first use (PEP 562), so that the numpy-only helpers here
(``agents.step_inputs``) serve the ONNX agent without importing torch.
"""

from typing import Any

__all__ = ["MODES", "CheckpointError", "DecisionAgent"]


def __getattr__(name: str) -> Any:
    if name == "CheckpointError":
        from aaren_rl.agents.checkpoint import CheckpointError

        return CheckpointError
    if name in ("MODES", "DecisionAgent"):
        from aaren_rl.agents import decision_agent

        return getattr(decision_agent, name)
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
