"""An agent that samples its actions from a stochastic policy (online fine-tuning's explorer).

:class:`SamplingAgent` is a :class:`~aaren_rl.agents.DecisionAgent` (same ``reset`` /
``predict`` contract, same three acting paths) whose continuous actions are drawn from the
tanh-Gaussian of :class:`~aaren_rl.aaren_policy.stochastic.StochasticPolicy`,
``a_t = tanh(mean + std * eps)``, and fed back to the model as the action token:

- ``recurrent`` with an Aaren backbone: the fused O(1) step (``FusedAarenPolicy.features``,
  then the sampled action becomes the deferred token);
- ``recurrent`` with a Transformer: ``DecisionModel.act_features`` on its KV cache;
- ``window``: the last K steps re-run, the distribution read at the newest state token.

Discrete actions sample from the logits (``DecisionAgent(sample=True)``, torch's generator).

The Gaussian noise of each environment slot comes from its own numpy generator, reseeded at
every episode's start from ``(seed, episode seed)`` (``begin_episode``, called by
``aaren_rl.eval.rollout.run_episodes``): an episode's actions depend only on the weights and
its own seed, never on how episodes are laid out over slots, and a resumed fine-tuning run
collects exactly the episodes an uninterrupted one does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from aaren_rl.aaren_policy.stochastic import StochasticPolicy
from aaren_rl.agents.decision_agent import DecisionAgent

__all__ = ["SamplingAgent"]


class SamplingAgent(DecisionAgent):
    """A :class:`DecisionAgent` that samples from ``policy`` (module docstring).

    Args:
        policy: the stochastic policy; its ``model`` is the agent's model.
        state_mean, state_std, return_scale, target_return, mode, context_length,
            memory_horizon, env_id, device: as :class:`DecisionAgent`.
        seed: mixed with each episode's seed to seed that episode's noise.
    """

    def __init__(
        self,
        policy: StochasticPolicy,
        state_mean: np.ndarray,
        state_std: np.ndarray,
        return_scale: float,
        target_return: float,
        mode: str = "recurrent",
        context_length: int = 20,
        memory_horizon: int = 0,
        env_id: str | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            policy.model,
            state_mean,
            state_std,
            return_scale,
            target_return,
            mode=mode,
            context_length=context_length,
            env_id=env_id,
            metadata=metadata,
            device=device,
            sample=policy.discrete,
            memory_horizon=memory_horizon,
        )
        self.policy = policy
        self.seed = int(seed)
        self._rngs: list[np.random.Generator] = []

    def reset(self, num_envs: int = 1) -> None:
        super().reset(num_envs)
        self._rngs = [np.random.default_rng([self.seed, 2**32 - 1, j]) for j in range(num_envs)]

    def begin_episode(self, slot: int, seed: int) -> None:
        """Reseed slot ``slot``'s noise for the episode reset with ``seed``."""
        self._rngs[slot] = np.random.default_rng([self.seed, int(seed)])

    def _sample(self, y: torch.Tensor) -> torch.Tensor:
        """Backbone output at ``s_t`` (N, dim) -> sampled actions (N, act_dim)."""
        out = self.policy.heads(y)
        assert out.log_std is not None  # continuous only: discrete acting is the base class's
        noise = np.stack(
            [rng.standard_normal(self.act_dim, dtype=np.float32) for rng in self._rngs]
        )
        noise_t = torch.from_numpy(noise).to(device=y.device, dtype=out.mean.dtype)
        # tanh_gaussian_sample's action without its log-density (not needed to act)
        return torch.tanh(torch.addcmul(out.mean, torch.exp(out.log_std), noise_t))

    def _predict_fused(
        self, obs: torch.Tensor, rtg: torch.Tensor, time: torch.Tensor, start: np.ndarray
    ) -> torch.Tensor:
        policy = self._fused_policy()
        if start.any():
            self.state = policy.reset_state(self.state, torch.as_tensor(start, device=self.device))
        y, state = policy.features(obs, rtg, time, self.state)
        action = self._sample(y)
        self.state = policy.with_action(state, action, time)
        return action

    def _predict_recurrent(
        self, obs: torch.Tensor, rtg: torch.Tensor, time: torch.Tensor, start: np.ndarray
    ) -> torch.Tensor:
        if self.policy.discrete:
            return super()._predict_recurrent(obs, rtg, time, start)
        if start.any():
            done = torch.as_tensor(start, device=self.device)
            self.state = self.model.backbone.reset_state(self.state, done)
        y, state = self.model.act_features(obs, rtg, time, self.state)
        action = self._sample(y)
        if self._decay:  # as DecisionAgent: R_t, s_t and all before age one step
            state = self.model.backbone.age_state(state, self._decay)
        self.state = self.model.observe_action(action, time, state)
        return action

    def _predict_window(
        self, obs: torch.Tensor, rtg: torch.Tensor, time: torch.Tensor, start: np.ndarray
    ) -> torch.Tensor:
        if self.policy.discrete:
            return super()._predict_window(obs, rtg, time, start)
        rows, pos = self._push_window(obs, rtg, time, start)
        y, _ = self.model.features(self._buf_rtg, self._buf_obs, self._buf_act, self._buf_t)
        action = self._sample(y[rows, pos])
        self._buf_act[rows, pos] = action
        return action
