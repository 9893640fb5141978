"""Shared checks for the Aaren model tests."""

from __future__ import annotations

import pytest
import torch

from aaren_rl.aaren_policy import DecisionModel
from aaren_rl.aaren_policy.fused import FusedAarenPolicy, memory_decay


def _recurrent_paths_match(
    model: DecisionModel,
    parallel: torch.Tensor,
    rtg: torch.Tensor,
    obs: torch.Tensor,
    act: torch.Tensor,
    ts: torch.Tensor,
    atol: float = 1e-10,
    memory_horizon: int = 0,
) -> None:
    """Both recurrent paths of ``model`` (``act``/``observe_action`` and the fused O(1) step),
    fed the dataset's actions back (the same tokens as a parallel forward), give ``parallel``
    (B, T, A) at every step. ``memory_horizon``: both act with it, aging the state as
    ``DecisionAgent`` does (after ``act``, before ``observe_action``)."""
    decay = memory_decay(memory_horizon)
    with torch.no_grad():
        state, fused = None, FusedAarenPolicy(model, memory_horizon)
        fstate = fused.init_state(rtg.shape[0])
        for t in range(rtg.shape[1]):
            a, state = model.act(obs[:, t], rtg[:, t], ts[:, t], state)
            if decay:
                state = model.backbone.age_state(state, decay)
            state = model.observe_action(act[:, t], ts[:, t], state)
            fa, fstate = fused(obs[:, t], rtg[:, t], ts[:, t], fstate)
            fstate = fstate._replace(action=act[:, t])
            torch.testing.assert_close(a, parallel[:, t], rtol=0, atol=atol)
            torch.testing.assert_close(fa, parallel[:, t], rtol=0, atol=atol)


@pytest.fixture
def recurrent_paths_match():
    """``recurrent_paths_match(model, parallel, rtg, obs, act, ts[, memory_horizon=H])``: see
    ``_recurrent_paths_match``."""
    return _recurrent_paths_match
