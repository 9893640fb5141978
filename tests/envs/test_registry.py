from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from aaren_rl.envs import EnvError, get_env_spec, make_env, normalized_score
from aaren_rl.envs.scores import REFERENCE_SCORES


def test_short_names_and_ids_share_a_spec():
    assert get_env_spec("hopper") == get_env_spec("Hopper-v5")
    spec = get_env_spec("walker2d")
    assert spec.gym_id == "Walker2d-v5" and spec.max_episode_steps == 1000
    assert spec.target_returns[0] == 5000.0


def test_reference_scores_are_d4rls():
    """Pinned to D4RL's d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE (docs/design.md §5) and
    the DT paper's default targets, written out here: an edit of the registry must edit this."""
    assert REFERENCE_SCORES == {
        "hopper": (-20.272305, 3234.3),
        "halfcheetah": (-280.178953, 12135.0),
        "walker2d": (1.629008, 4592.3),
        "ant": (-325.6, 3879.7),
    }
    targets = {n: get_env_spec(n).target_returns[0] for n in REFERENCE_SCORES}
    assert targets == {"hopper": 3600.0, "halfcheetah": 6000.0, "walker2d": 5000.0, "ant": 3600.0}


def test_other_box_env_has_no_reference_scores():
    spec = get_env_spec("Pendulum-v1")
    assert spec.random_score is None and spec.expert_score is None
    assert spec.max_episode_steps == 200 and len(spec.target_returns) == 1
    assert normalized_score(spec, 100.0) is None
    env = make_env("Pendulum-v1", seed=0)
    assert isinstance(env.action_space, gym.spaces.Box)


def test_unknown_and_discrete_envs_raise():
    with pytest.raises(EnvError, match="hopper, halfcheetah, walker2d, ant"):
        get_env_spec("NoSuchEnv-v0")
    with pytest.raises(EnvError, match="Tuple observation space"):
        make_env("Blackjack-v1")  # Tuple spaces are not supported
    env = make_env("CartPole-v1")  # Discrete actions are seen as one-hot vectors
    assert env.action_space.shape == (2,)


def test_normalized_score():
    assert np.isclose(normalized_score("hopper", 3234.3), 100.0)
    assert np.isclose(normalized_score("Hopper-v5", -20.272305), 0.0)
    out = normalized_score("halfcheetah", np.array([-280.178953, 12135.0]))
    np.testing.assert_allclose(out, [0.0, 100.0])


def test_make_env_seeding_is_reproducible():
    a, b = make_env("hopper", seed=3), make_env("hopper", seed=3)
    np.testing.assert_array_equal(a.reset(seed=3)[0], b.reset(seed=3)[0])
