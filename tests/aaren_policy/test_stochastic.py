"""The stochastic policy of online fine-tuning: densities against torch.distributions, the
head's initialisation, and that its mean is the offline model's deterministic action."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig
from aaren_rl.aaren_policy.stochastic import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    LogStdHead,
    StochasticPolicy,
    categorical_entropy,
    categorical_log_prob,
    tanh_gaussian_entropy,
    tanh_gaussian_log_prob,
    tanh_gaussian_sample,
)


def _reference(mean: torch.Tensor, log_std: torch.Tensor) -> TransformedDistribution:
    return TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])


def test_tanh_gaussian_log_prob_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    log_std = torch.empty(4, 5, 3, dtype=torch.float64).uniform_(-2, 0.5, generator=g)
    actions = torch.empty(4, 5, 3, dtype=torch.float64).uniform_(-0.99, 0.99, generator=g)
    ours = tanh_gaussian_log_prob(actions, mean, log_std)
    ref = _reference(mean, log_std).log_prob(actions).sum(-1)
    assert ours.shape == (4, 5)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-4)


def test_sample_log_prob_is_the_density_of_the_sampled_action() -> None:
    g = torch.Generator().manual_seed(1)
    mean, log_std = torch.randn(6, 2, generator=g), torch.full((6, 2), -1.0)
    noise = torch.randn(6, 2, generator=g)
    action, logp = tanh_gaussian_sample(mean, log_std, noise)
    torch.testing.assert_close(action, torch.tanh(mean + log_std.exp() * noise))
    ref = _reference(mean.double(), log_std.double()).log_prob(action.double()).sum(-1)
    torch.testing.assert_close(logp.double(), ref, rtol=1e-4, atol=1e-3)


def test_entropy_estimate_is_unbiased_against_a_monte_carlo_reference() -> None:
    # Mean of many one-sample estimates ~= E[-log p(a)] of the reference distribution.
    g = torch.Generator().manual_seed(2)
    mean, log_std = torch.tensor([0.3, -1.0]), torch.tensor([-0.5, -1.5])
    noise = torch.randn(20000, 2, generator=g)
    ours = tanh_gaussian_entropy(mean.expand(20000, 2), log_std.expand(20000, 2), noise).mean()
    ref = _reference(mean.double(), log_std.double())
    a = ref.sample((20000,)).clamp(-1 + 1e-6, 1 - 1e-6)
    assert abs(float(ours) - float(-ref.log_prob(a).sum(-1).mean())) < 0.05


def test_categorical_log_prob_and_entropy_match_torch() -> None:
    logits = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(3))
    ids = torch.tensor([[0, 1, 2, 3], [4, 0, 1, 2], [3, 3, 3, 3]])
    one_hot = torch.nn.functional.one_hot(ids, 5).float()
    ref = Categorical(logits=logits)
    torch.testing.assert_close(categorical_log_prob(logits, one_hot), ref.log_prob(ids))
    torch.testing.assert_close(categorical_entropy(logits), ref.entropy())


def test_log_std_head_starts_at_init_std_and_stays_in_bounds() -> None:
    head = LogStdHead(8, 3, init_std=0.1)
    y = torch.randn(5, 8)
    torch.testing.assert_close(head(y).exp(), torch.full((5, 3), 0.1))
    with torch.no_grad():
        head.linear.bias.fill_(100.0)
    assert float(head(y).detach().max()) <= LOG_STD_MAX
    with torch.no_grad():
        head.linear.bias.fill_(-100.0)
    assert float(head(y).detach().min()) >= LOG_STD_MIN
    with pytest.raises(ValueError, match="init_std"):
        LogStdHead(8, 3, init_std=math.exp(LOG_STD_MAX) + 1)


@pytest.mark.parametrize("backbone", ["aaren", "transformer"])
def test_mean_is_the_offline_deterministic_action(backbone: str) -> None:
    torch.manual_seed(0)
    cfg = DecisionModelConfig(11, 3, backbone, BackboneConfig(dim=16, num_layers=1, dropout=0.0))
    model = DecisionModel(cfg).eval()
    policy = StochasticPolicy(model, init_std=0.2)
    args = (torch.randn(2, 6, 1), torch.randn(2, 6, 11), torch.rand(2, 6, 3) * 2 - 1)
    ts = torch.arange(6).expand(2, 6)
    out = policy(*args, ts)
    preds, _ = model(*args, ts)
    torch.testing.assert_close(torch.tanh(out.mean), preds)
    torch.testing.assert_close(out.log_std.exp(), torch.full((2, 6, 3), 0.2))
    logp, ent = policy.log_prob_and_entropy(out, args[2])
    assert logp.shape == ent.shape == (2, 6)
    assert torch.isfinite(logp).all() and torch.isfinite(ent).all()
