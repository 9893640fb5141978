"""The finiteness check every agent runs on its observations, on both of its paths."""

from __future__ import annotations

import numpy as np
import pytest

from aaren_rl.agents.step_inputs import StepInputs


@pytest.mark.parametrize("shape", [(1, 11), (8, 17), (16, 16), (64, 376)])  # <= 256: Python
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_check_finite_refuses_nan_and_inf_anywhere_and_accepts_huge_finite_values(shape, dtype):
    agent = StepInputs()
    big = np.full(shape, np.finfo(np.float32).max, dtype=dtype)  # sums past float32's range
    agent._check_finite(big)
    agent._check_finite(-big)
    agent._check_finite(np.zeros(shape, dtype=dtype))
    for bad in (np.nan, np.inf, -np.inf):
        for pos in (0, big.size // 2, big.size - 1):
            obs = np.zeros(shape, dtype=dtype)
            obs.flat[pos] = bad
            with pytest.raises(ValueError, match="obs contains NaN or Inf"):
                agent._check_finite(obs)
    mixed = np.zeros(shape, dtype=dtype)  # +inf and -inf cancel to NaN in a sum: still refused
    mixed.flat[0], mixed.flat[-1] = np.inf, -np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        agent._check_finite(mixed)
