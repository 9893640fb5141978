"""Passive T-Maze and the POPGym adapter: dynamics, success, names, vector spaces."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from aaren_rl.envs import get_env_spec, make_env
from aaren_rl.envs.spaces import VectorSpaces, encode_observations, one_hot
from aaren_rl.envs.tmaze import DOWN, RIGHT, UP, PassiveTMaze, resolve_tmaze_id


def _walk(env: PassiveTMaze, choice: int) -> tuple[list[np.ndarray], float, dict, int]:
    obs, _ = env.reset(seed=3)
    seen, total, steps = [obs], 0.0, 0
    while True:
        a = RIGHT if env.t < env.length else choice
        obs, r, term, trunc, info = env.step(a)
        total, steps = total + r, steps + 1
        if term or trunc:
            return seen, total, info, steps
        seen.append(obs)


@pytest.mark.parametrize("length", [1, 7, 50])
def test_cue_only_first_and_success_rule(length: int) -> None:
    env = PassiveTMaze(length)
    seen, total, info, steps = _walk(env, UP)
    goal = env.goal
    assert steps == length + 1  # corridor steps, then the decision
    assert seen[0][0] == (1.0 if goal == UP else -1.0)
    assert all(o[0] == 0.0 for o in seen[1:])  # the cue is shown only at t = 0
    assert seen[-1][2] == 1.0 and all(o[2] == 0.0 for o in seen[:-1])  # junction flag
    assert info["success"] == (goal == UP) and total == float(goal == UP)


def test_right_choice_succeeds_wrong_fails_and_goal_is_balanced() -> None:
    env = PassiveTMaze(5)
    goals = []
    for seed in range(200):
        env.reset(seed=seed)
        goals.append(env.goal)
    assert 0.35 < np.mean(np.array(goals) == UP) < 0.65
    env.reset(seed=0)
    for _ in range(5):
        env.step(RIGHT)
    _, r, term, _, info = env.step(DOWN if env.goal == UP else UP)
    assert term and r == 0.0 and info["success"] is False
    with pytest.raises(ValueError, match="0..3"):
        env.step(7)


def test_names_resolve_and_register() -> None:
    assert resolve_tmaze_id("tmaze-1000") == "aaren/PassiveTMaze-L1000-v0"
    assert resolve_tmaze_id("aaren/PassiveTMaze-v0:length=12") == "aaren/PassiveTMaze-L12-v0"
    assert resolve_tmaze_id("hopper") is None
    spec = get_env_spec("tmaze-40")
    assert spec.max_episode_steps == 41 and spec.target_returns == (1.0,)
    env = gym.make("aaren/PassiveTMaze-L40-v0")
    assert env.unwrapped.length == 40


def test_make_env_gives_vector_spaces_and_argmax_actions() -> None:
    env = make_env("tmaze-3", seed=0)
    assert isinstance(env, VectorSpaces)
    assert env.action_space.shape == (4,) and env.observation_space.shape == (3,)
    env.reset(seed=0)
    goal = env.unwrapped.goal
    for _ in range(3):
        env.step(one_hot(np.array(RIGHT), 4))
    scores = np.zeros(4, dtype=np.float32)
    scores[goal] = 0.7  # any vector: its argmax is the action
    assert env.step(scores)[4]["success"]


def test_encode_observations_discrete_and_multidiscrete() -> None:
    d = gym.spaces.Discrete(3, start=1)
    assert encode_observations(np.array([1, 3]), d).tolist() == [[1, 0, 0], [0, 0, 1]]
    md = gym.spaces.MultiDiscrete([2, 3])
    out = encode_observations(np.array([[1, 0], [0, 2]]), md)
    assert out.tolist() == [[0, 1, 1, 0, 0], [1, 0, 0, 0, 1]]


def test_popgym_tasks_success_and_privileged_state() -> None:
    pytest.importorskip("popgym")
    env = make_env("popgym-RepeatFirstEasy", seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4,) and obs.sum() == 1.0  # one-hot card
    first = int(np.argmax(obs))
    assert env.unwrapped.card == first  # the hidden state scripted experts read
    total, info = 0.0, {}
    while True:
        obs, r, term, trunc, info = env.step(one_hot(np.array(first), 4))
        total += r
        if term or trunc:
            break
    assert info["success"] and total == pytest.approx(1.0)
    cart = make_env("popgym-StatelessCartPoleEasy", seed=0)
    assert cart.observation_space.shape == (2,) and cart.action_space.shape == (2,)
