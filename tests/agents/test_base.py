"""One acting contract: every agent's reset/predict has the signature of agents.base.Agent."""

from __future__ import annotations

import inspect

import pytest

from aaren_rl.agents.base import Agent


def _agent_classes() -> list[type]:
    from aaren_rl.agents import DecisionAgent
    from aaren_rl.collect.collect import PolicyAgent
    from aaren_rl.eval.rollout import RandomAgent

    classes = [DecisionAgent, RandomAgent, PolicyAgent]
    try:
        from aaren_rl.agents.onnx_agent import OnnxAgent
    except ImportError:  # pragma: no cover - onnxruntime is in the dev extra
        return classes
    return [*classes, OnnxAgent]


def _params(fn) -> list[tuple[str, object]]:
    sig = inspect.signature(fn)
    return [(p.name, p.default) for p in sig.parameters.values() if p.name != "self"]


@pytest.mark.parametrize("cls", _agent_classes(), ids=lambda c: c.__name__)
def test_predict_and_reset_follow_the_protocol(cls: type) -> None:
    assert _params(cls.predict) == _params(Agent.predict)
    assert _params(cls.reset) == _params(Agent.reset)


def test_the_protocol_is_checked_structurally() -> None:
    class NoPredict:
        def reset(self, num_envs: int = 1) -> None: ...

    assert not isinstance(NoPredict(), Agent)
