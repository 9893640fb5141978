"""agents: the acting decision agent, its checkpoints, and behaviour policies."""

from agents.checkpoint import CheckpointError
from agents.decision_agent import MODES, DecisionAgent

__all__ = ["MODES", "CheckpointError", "DecisionAgent"]
