"""A stochastic policy around a decision model, for online fine-tuning (Online DT).

The Online Decision Transformer (Zheng, Zhang, Grover, ICML 2022) replaces DT's deterministic
action head with a distribution and trains it by likelihood with an entropy constraint, so
that the agent explores when it acts online. This module is that distribution:

- **continuous actions**: a tanh-Gaussian. The pre-tanh mean is the decision model's own
  action head *before* its tanh (``model.action_head[0]``), so the deterministic policy
  ``tanh(mean)`` is exactly the offline model's output, and a checkpoint fine-tuned this way
  is still a plain ``DecisionModel`` checkpoint (aaren-eval, aaren-export read it unchanged).
  A separate log-std head (one Linear on the same backbone output at ``s_t``) is added;
  ODT bounds it to ``[LOG_STD_MIN, LOG_STD_MAX]`` through a tanh. It starts with zero
  weights and the bias of ``init_std``: at the start every state explores with the same
  small noise, and the offline mean is untouched.
- **discrete actions**: the categorical of the model's logits (no extra head).

Log-likelihoods are summed over action dimensions; the tanh-Gaussian's density is the
Gaussian's times the Jacobian of tanh, ``log N(u; mu, sigma) - sum log(1 - tanh(u)^2)``, with
``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))`` (stable for large |u|). The entropy of a
tanh-Gaussian has no closed form: like ODT it is estimated by ``-log p(a)`` of one
reparameterised sample. A categorical's entropy is exact.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from aaren_rl.aaren_policy.decision import DecisionModel

__all__ = [
    "ACTION_EPS",
    "LOG_STD_MAX",
    "LOG_STD_MIN",
    "LogStdHead",
    "PolicyOutput",
    "StochasticPolicy",
    "categorical_entropy",
    "categorical_log_prob",
    "tanh_gaussian_entropy",
    "tanh_gaussian_log_prob",
    "tanh_gaussian_sample",
]

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # ODT's log_std_bounds
ACTION_EPS = 1e-6  # actions are clamped into (-1 + eps, 1 - eps) before atanh (|u| <= 7.3)


def _log_one_minus_tanh_sq(u: torch.Tensor) -> torch.Tensor:
    """``log(1 - tanh(u)^2)``, stable for large |u| (the tanh Jacobian's log)."""
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


def _gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    z = (u - mean) * torch.exp(-log_std)
    return -0.5 * z * z - log_std - 0.5 * math.log(2.0 * math.pi)


def tanh_gaussian_log_prob(
    actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """Log-density of ``actions`` under ``tanh(N(mean, exp(log_std)^2))``, summed over the last
    axis: (..., act_dim) -> (...). Actions are clamped to ``(-1 + ACTION_EPS, 1 - ACTION_EPS)``
    (an action of exactly +-1 has density 0 on the open interval)."""
    a = actions.float().clamp(-1.0 + ACTION_EPS, 1.0 - ACTION_EPS)
    u = torch.atanh(a)
    logp = _gaussian_log_prob(u, mean.float(), log_std.float()) - _log_one_minus_tanh_sq(u)
    return logp.sum(-1)


def tanh_gaussian_sample(
    mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A reparameterised sample: ``(action, log_prob)`` with ``action = tanh(mean + std *
    noise)`` (..., act_dim) and its log-density (...) computed from the pre-tanh value (no
    atanh round trip)."""
    u = mean + torch.exp(log_std) * noise
    logp = _gaussian_log_prob(u, mean, log_std) - _log_one_minus_tanh_sq(u)
    return torch.tanh(u), logp.sum(-1)


def tanh_gaussian_entropy(
    mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """One-sample estimate of the tanh-Gaussian's entropy, ``-log p(a)`` at ``a`` drawn with
    ``noise`` (..., act_dim) ~ N(0, 1): (...). Differentiable in ``mean`` and ``log_std``
    (ODT's ``SquashedNormal.entropy``)."""
    return -tanh_gaussian_sample(mean, log_std, noise)[1]


def categorical_log_prob(logits: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    """Log-probability of one-hot ``actions`` under ``softmax(logits)``: (..., n) -> (...)."""
    return (torch.log_softmax(logits.float(), dim=-1) * one_hot.float()).sum(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Exact entropy of ``softmax(logits)``: (..., n) -> (...)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


class LogStdHead(nn.Module):
    """``y`` (..., dim) -> log-std (..., act_dim) in ``[LOG_STD_MIN, LOG_STD_MAX]`` (ODT's
    tanh bound). Zero weights and a bias giving ``init_std`` everywhere at the start.

    Args:
        dim: the backbone width.
        act_dim: the action size.
        init_std: the standard deviation (pre-tanh) every state starts with.
    """

    def __init__(self, dim: int, act_dim: int, init_std: float = 0.1) -> None:
        super().__init__()
        if not math.exp(LOG_STD_MIN) < init_std < math.exp(LOG_STD_MAX):
            raise ValueError(
                f"init_std must lie in (e^{LOG_STD_MIN:g}, e^{LOG_STD_MAX:g}) = "
                f"({math.exp(LOG_STD_MIN):.4f}, {math.exp(LOG_STD_MAX):.2f}), got {init_std}"
            )
        self.linear = nn.Linear(dim, act_dim)
        half = 0.5 * (LOG_STD_MAX - LOG_STD_MIN)
        raw = math.atanh((math.log(init_std) - LOG_STD_MIN) / half - 1.0)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.fill_(raw)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        half = 0.5 * (LOG_STD_MAX - LOG_STD_MIN)
        return LOG_STD_MIN + half * (torch.tanh(self.linear(y)) + 1.0)


class PolicyOutput(NamedTuple):
    """The action distribution at every state token.

    Attributes:
        mean: (B, K, act_dim) pre-tanh mean (continuous) or logits (discrete).
        log_std: (B, K, act_dim), or None for discrete actions.
    """

    mean: torch.Tensor
    log_std: torch.Tensor | None


class StochasticPolicy(nn.Module):
    """A decision model plus what makes its policy a distribution (module docstring).

    Args:
        model: the decision model; its action head gives the mean (or logits).
        init_std: the initial standard deviation of a new log-std head (continuous only).

    Example:
        >>> from aaren_rl.aaren_policy import BackboneConfig, DecisionModelConfig
        >>> policy = StochasticPolicy(DecisionModel(DecisionModelConfig(11, 3,
        ...     net=BackboneConfig(dim=32))))
        >>> out = policy(torch.zeros(2, 5, 1), torch.zeros(2, 5, 11), torch.zeros(2, 5, 3),
        ...              torch.arange(5).expand(2, 5))
        >>> out.mean.shape, float(out.log_std.exp()[0, 0, 0])  # doctest: +ELLIPSIS
        (torch.Size([2, 5, 3]), 0.1...)
    """

    def __init__(self, model: DecisionModel, init_std: float = 0.1) -> None:
        super().__init__()
        self.model = model
        cfg = model.config
        self.discrete = cfg.discrete
        self.log_std_head = None if cfg.discrete else LogStdHead(cfg.net.dim, cfg.act_dim, init_std)

    def heads(self, y: torch.Tensor) -> PolicyOutput:
        """Backbone output at ``s_t`` (..., dim) -> the distribution's parameters."""
        mean = self.model.action_head[0](y)  # the Linear before the deterministic tanh
        return PolicyOutput(mean, None if self.log_std_head is None else self.log_std_head(y))

    def forward(
        self,
        returns_to_go: torch.Tensor,
        observations: torch.Tensor,
        actions: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor | None = None,
        memory_horizon: int = 0,
    ) -> PolicyOutput:
        """The distribution at every state token; arguments as ``DecisionModel.forward``."""
        y, _ = self.model.features(
            returns_to_go,
            observations,
            actions,
            timesteps,
            mask=mask,
            memory_horizon=memory_horizon,
        )
        return self.heads(y)

    def log_prob_and_entropy(
        self, out: PolicyOutput, actions: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(actions), entropy)``, both (B, K) in float32.

        Args:
            out: from :meth:`forward`.
            actions: (B, K, act_dim) taken actions (one-hot when discrete).
            noise: (B, K, act_dim) N(0, 1) draws for the continuous entropy estimate;
                None draws them from torch's global generator.
        """
        if out.log_std is None:
            return categorical_log_prob(out.mean, actions), categorical_entropy(out.mean)
        mean, log_std = out.mean.float(), out.log_std.float()
        if noise is None:
            noise = torch.randn_like(mean)
        return (
            tanh_gaussian_log_prob(actions, mean, log_std),
            tanh_gaussian_entropy(mean, log_std, noise),
        )
