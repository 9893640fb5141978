"""Choosing the memory horizon on validation episodes (eval/horizon.py)."""

from __future__ import annotations

import pytest

from aaren_rl.eval.horizon import VALIDATION_SEED, choose_memory_horizon


def test_the_best_candidate_wins_on_the_same_validation_episodes(make_agent) -> None:
    calls = []

    def make(h: int):
        calls.append(h)
        return make_agent("aaren", memory_horizon=h)

    choice = choose_memory_horizon(make, "hopper", 3, (0, 2, 0, 30), episodes=2, num_envs=2,
                                   max_episode_steps=20)  # fmt: skip
    assert calls == [0, 2, 30]  # each candidate once
    assert set(choice.scores) == {0, 2, 30}
    assert choice.scores[choice.memory_horizon] == max(choice.scores.values())
    assert choice.seed == VALIDATION_SEED + 300 and choice.episodes == 2
    assert choice.to_dict()["validation_scores"].keys() == {"0", "2", "30"}
    assert len(set(choice.scores.values())) > 1  # the horizon changes what the agent does


def test_ties_go_to_the_earlier_candidate(make_agent) -> None:
    # A Transformer ignores the horizon: every candidate scores the same.
    choice = choose_memory_horizon(lambda h: make_agent("transformer"), "hopper", 0, (20, 0),
                                   episodes=1, max_episode_steps=10)  # fmt: skip
    assert choice.memory_horizon == 20 and len(set(choice.scores.values())) == 1


@pytest.mark.parametrize("bad", [(), (-1, 20)])
def test_bad_candidates(make_agent, bad) -> None:
    with pytest.raises(ValueError, match="candidates"):
        choose_memory_horizon(lambda h: make_agent("aaren"), "hopper", 0, bad)
