"""evaluate(): seeding, splitting over envs, terminated vs truncated, scores, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from aaren_rl.eval.rollout import Agent, EvalError, RandomAgent, _split, evaluate

STEPS = 30  # short episodes keep these tests fast


def test_split_even_and_contiguous():
    assert _split(5, 2) == [[0, 1, 2], [3, 4]]
    assert _split(3, 3) == [[0], [1], [2]]
    blocks = _split(10, 4)
    assert sorted(i for b in blocks for i in b) == list(range(10))
    assert {len(b) for b in blocks} == {2, 3}


def test_agents_satisfy_protocol(make_agent):
    assert isinstance(RandomAgent(), Agent)
    assert isinstance(make_agent(), Agent)


@pytest.mark.parametrize("backbone", ["aaren", "transformer"])
def test_two_envs_give_the_same_returns_as_one(make_agent, backbone):
    agent = make_agent(backbone)
    one = evaluate(agent, "hopper", episodes=4, num_envs=1, seed=3, max_episode_steps=STEPS)
    two = evaluate(agent, "hopper", episodes=4, num_envs=2, seed=3, max_episode_steps=STEPS)
    three = evaluate(agent, "hopper", episodes=4, num_envs=3, seed=3, max_episode_steps=STEPS)
    assert one.seeds == two.seeds == three.seeds == [3, 4, 5, 6]
    assert one.lengths == two.lengths == three.lengths
    assert one.terminated == two.terminated and one.truncated == two.truncated
    # Equal up to float rounding: a batch of 2 goes through different BLAS kernels than a
    # batch of 1 (~1e-7 relative per matmul).
    np.testing.assert_allclose(two.returns, one.returns, rtol=1e-5)
    np.testing.assert_allclose(three.returns, one.returns, rtol=1e-5)
    assert len(set(np.round(one.returns, 3))) > 1  # the seeds do produce different episodes


def test_random_agent_is_exactly_layout_independent():
    agent = RandomAgent.for_env("hopper", seed=1)
    one = evaluate(agent, "hopper", episodes=5, num_envs=1, max_episode_steps=STEPS)
    two = evaluate(agent, "hopper", episodes=5, num_envs=2, max_episode_steps=STEPS)
    assert one.returns == two.returns and one.lengths == two.lengths


def test_random_policy_normalized_score_near_zero_on_hopper():
    # Full-length episodes: a random Hopper falls within a few dozen steps.
    res = evaluate(RandomAgent.for_env("hopper"), "hopper", episodes=10, num_envs=2)
    assert all(res.terminated) and not any(res.truncated)
    assert res.normalized is not None and len(res.normalized) == 10
    assert abs(res.normalized_mean) < 5.0, res.normalized_mean
    np.testing.assert_allclose(np.mean(res.normalized), res.normalized_mean)
    np.testing.assert_allclose(np.std(res.returns), res.return_std)


def test_truncation_is_kept_apart_from_termination(make_agent):
    res = evaluate(make_agent(), "hopper", episodes=3, num_envs=2, max_episode_steps=5)
    assert res.lengths == [5, 5, 5]
    assert res.truncated == [True, True, True] and res.terminated == [False] * 3
    assert res.steps == 15 and res.num_envs == 2


def test_finished_envs_are_not_counted_or_stepped():
    class Counting(RandomAgent):
        calls = 0

        def predict(self, obs, reward, episode_start):
            Counting.calls += 1
            return super().predict(obs, reward, episode_start)

    # 3 episodes of 4 steps over 2 envs: slot 0 runs 2 episodes (8 calls), slot 1 one.
    res = evaluate(Counting(act_dim=3), "hopper", episodes=3, num_envs=2, max_episode_steps=4)
    assert len(res.returns) == 3 and res.steps == 12
    assert Counting.calls == 8


def test_num_envs_capped_at_episodes():
    res = evaluate(RandomAgent(act_dim=3), "hopper", episodes=2, num_envs=8, max_episode_steps=3)
    assert res.num_envs == 2 and len(res.returns) == 2


def test_target_return_is_used_and_restored(make_agent):
    agent = make_agent()
    res = evaluate(agent, "hopper", 1, target_return=1234.0, max_episode_steps=3)
    assert res.target_return == 1234.0 and agent.target_return == 3600.0
    assert res.mode == "recurrent"


def test_no_reference_scores_gives_none():
    res = evaluate(RandomAgent.for_env("Pendulum-v1"), "Pendulum-v1", 2, max_episode_steps=5)
    assert res.normalized is None and res.normalized_mean is None and res.normalized_std is None
    d = res.to_dict()
    for key in ("returns", "lengths", "return_mean", "return_std", "normalized_mean", "seconds"):
        assert key in d


@pytest.mark.parametrize("episodes", [0, -3])
def test_bad_episode_count(episodes):
    with pytest.raises(EvalError, match="episodes must be >= 1"):
        evaluate(RandomAgent(), "hopper", episodes)


def test_bad_num_envs_and_steps():
    with pytest.raises(EvalError, match="num_envs"):
        evaluate(RandomAgent(), "hopper", 2, num_envs=0)
    with pytest.raises(EvalError, match="max_episode_steps"):
        evaluate(RandomAgent(), "hopper", 2, max_episode_steps=0)


def test_agent_for_another_env_is_rejected(make_agent):
    with pytest.raises(EvalError, match="another environment"):
        evaluate(make_agent(obs_dim=17), "hopper", 1, max_episode_steps=2)


def test_target_return_on_agent_without_one():
    with pytest.raises(EvalError, match="no target_return"):
        evaluate(RandomAgent(), "hopper", 1, target_return=10.0)


def test_unknown_env():
    from aaren_rl.envs import EnvError

    with pytest.raises(EnvError):
        evaluate(RandomAgent(), "no-such-env", 1)


def test_the_agents_own_reference_scores_win() -> None:
    """docs/design.md §5: a dataset that carries (random, expert) returns is normalised with them."""
    from aaren_rl.eval.rollout import RandomAgent, evaluate

    agent = RandomAgent.for_env("hopper", seed=0)
    plain = evaluate(agent, "hopper", episodes=2, max_episode_steps=20)
    agent.metadata = {"reference_scores": [0.0, 100.0]}
    own = evaluate(agent, "hopper", episodes=2, max_episode_steps=20)
    assert own.returns == plain.returns
    np.testing.assert_allclose(own.normalized, np.array(own.returns))  # 100 * r / 100
    assert not np.allclose(plain.normalized, own.normalized)
