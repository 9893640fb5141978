"""aaren_policy.backbone.Dropout: nn.Dropout's distribution and gradient from packed draws."""

from __future__ import annotations

import pytest
import torch

from aaren_rl.aaren_policy.backbone import Dropout


def test_drops_p_of_the_elements_and_keeps_the_expectation() -> None:
    torch.manual_seed(0)
    x = torch.ones(400_000)
    y = Dropout(0.1).train()(x)
    dropped = (y == 0).float().mean().item()
    # binomial: std = sqrt(0.1 * 0.9 / 4e5) = 4.7e-4; 5 std
    assert abs(dropped - 0.1) < 2.4e-3
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 65536 / (65536 - 6554)))
    assert abs(y.mean().item() - 1.0) < 3e-3


def test_gradient_is_the_mask_times_the_scale_and_odd_sizes_work() -> None:
    torch.manual_seed(1)
    x = torch.randn(3, 7, 5, requires_grad=True)  # 105 elements: not a multiple of 4
    y = Dropout(0.5).train()(x)
    y.sum().backward()
    keep = y != 0
    assert x.grad is not None
    assert torch.equal(x.grad, keep.float() * (65536 / 32768))
    assert torch.allclose(y[keep], x.detach()[keep] * 2.0)


def test_identity_in_eval_and_at_zero_and_reproducible_under_the_seed() -> None:
    x = torch.randn(6, 9)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    torch.manual_seed(5)
    a = Dropout(0.3).train()(x)
    torch.manual_seed(5)
    b = Dropout(0.3).train()(x)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="dropout"):
        Dropout(1.0)
