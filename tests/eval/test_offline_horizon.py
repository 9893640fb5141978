"""Choosing the memory horizon offline, on held-out episodes (eval/offline_horizon.py).

The scoring runs the model recurrently (``FusedAarenPolicy``, as acting does): checked here
against float64 references computed another way (the parallel forward over the same tokens,
with the horizon's age penalty added to every layer's scores, or the unfused step).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig
from aaren_rl.aaren_policy.aaren import Aaren
from aaren_rl.aaren_policy.fused import memory_decay
from aaren_rl.envs.datasets import OfflineDataset, Trajectory
from aaren_rl.errors import ConfigError
from aaren_rl.eval.offline_horizon import (
    choose_memory_horizon_offline,
    heldout_episodes,
    lowest_error_horizon,
    offline_action_errors,
)

OBS, ACT, SCALE = 5, 3, 10.0


def _dataset(lengths: tuple[int, ...], seed: int = 0) -> OfflineDataset:
    rng = np.random.default_rng(seed)
    trajs = []
    for i, n in enumerate(lengths):
        r = rng.uniform(0, 1 + i, n).astype(np.float32)  # later episodes: higher returns
        trajs.append(
            Trajectory(
                rng.normal(size=(n, OBS)).astype(np.float32),
                rng.uniform(-0.9, 0.9, (n, ACT)).astype(np.float32),
                r,
                np.cumsum(r[::-1])[::-1].copy(),
                np.arange(n),
                True,
            )
        )
    obs = np.concatenate([t.observations for t in trajs])
    return OfflineDataset(trajs, obs.mean(0), obs.std(0) + 1e-3, "test")


def _model(recency: float = 0.0) -> DecisionModel:
    torch.manual_seed(0)
    net = BackboneConfig(dim=16, num_layers=2, num_heads=2, dropout=0.0, recency_init=recency)
    model = DecisionModel(DecisionModelConfig(OBS, ACT, "aaren", net)).double()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model.eval()


def _tensors(ds: OfflineDataset, i: int) -> tuple[torch.Tensor, ...]:
    tr = ds.trajectories[i]
    obs = torch.as_tensor((tr.observations - ds.state_mean) / ds.state_std, dtype=torch.float64)
    rtg = torch.as_tensor(tr.returns_to_go / SCALE, dtype=torch.float64).view(1, -1, 1)
    act = torch.as_tensor(tr.actions, dtype=torch.float64).unsqueeze(0)
    return rtg, obs.unsqueeze(0), act, torch.arange(len(tr)).unsqueeze(0)


def _with_age(horizon: int):
    """Aaren._scores_values with the horizon's age penalty, as a parallel pass sees it."""
    scores_values = Aaren._scores_values

    def patched(self: Aaren, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, values = scores_values(self, x)
        g = (torch.arange(x.shape[1], dtype=scores.dtype) + 1) // 3  # R_t, s_t: t; a_t: t + 1
        return scores + (g * memory_decay(horizon)).unsqueeze(-1), values

    return patched


@pytest.mark.parametrize("recency", [0.0, 0.1])
@pytest.mark.parametrize("horizon", [0, 3])
def test_teacher_forced_equals_the_parallel_forward_on_the_same_tokens(
    horizon: int, recency: float, monkeypatch
) -> None:
    ds, model = _dataset((9, 14, 6)), _model(recency)
    errors = offline_action_errors(model, ds.trajectories, ds.state_mean, ds.state_std, SCALE,
                                   horizon, teacher_forced=True)  # fmt: skip
    monkeypatch.setattr(Aaren, "_scores_values", _with_age(horizon))
    for i in range(3):
        rtg, obs, act, ts = _tensors(ds, i)
        with torch.no_grad():
            preds, _ = model(rtg, obs, act, ts)  # each a_t predicted from the dataset's a_<t
        want = ((preds - act) ** 2).mean(-1).mean().item()
        assert errors[i] == pytest.approx(want, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("horizon", [0, 4])
def test_own_actions_equal_the_unfused_step_fed_its_own_actions(horizon: int) -> None:
    ds, model = _dataset((11, 7)), _model()
    errors = offline_action_errors(model, ds.trajectories, ds.state_mean, ds.state_std, SCALE,
                                   horizon)  # fmt: skip
    for i in range(2):
        rtg, obs, act, ts = _tensors(ds, i)
        state, total = None, 0.0
        with torch.no_grad():
            for t in range(obs.shape[1]):
                a, state = model.act(obs[:, t], rtg[:, t], ts[:, t], state)
                if horizon:
                    state = model.backbone.age_state(state, memory_decay(horizon))
                state = model.observe_action(a, ts[:, t], state)
                total += ((a - act[:, t]) ** 2).mean().item()
        assert errors[i] == pytest.approx(total / obs.shape[1], rel=1e-9)
    tf = offline_action_errors(model, ds.trajectories, ds.state_mean, ds.state_std, SCALE,
                               horizon, teacher_forced=True)  # fmt: skip
    assert np.abs(tf - errors).max() > 1e-6  # the action tokens differ, and so do the errors


def test_the_lowest_error_wins_on_the_higher_return_held_out_episodes() -> None:
    ds, model = _dataset((8, 9, 10, 7, 12, 6)), _model()
    heldout = [0, 2, 4, 5]  # returns rise with the index: 4 and 5 are the better half
    choice = choose_memory_horizon_offline(model, ds, heldout, SCALE, (0, 2, 0, 5))
    assert choice.scored == [4, 5] and choice.heldout == heldout
    errs = choice.errors["own-actions"]
    assert list(errs) == [0, 2, 5] and choice.memory_horizon == min(errs, key=errs.get)
    trajs = [ds.trajectories[i] for i in (4, 5)]
    for h, e in errs.items():
        want = offline_action_errors(model, trajs, ds.state_mean, ds.state_std, SCALE, h).mean()
        assert e == pytest.approx(float(want))
    assert len(set(errs.values())) == 3  # the horizon changes the actions
    d = choice.to_dict()
    assert d["selection"] == "offline" and d["criterion"] == "own-actions"
    assert d["action_errors"] == {str(h): e for h, e in errs.items()}
    assert set(d["action_errors_by_criterion"]) == {"own-actions", "teacher-forced"}
    tf = choose_memory_horizon_offline(model, ds, heldout, SCALE, (0, 2, 5), "teacher-forced")
    tf_errs = tf.errors["teacher-forced"]
    assert tf.memory_horizon == min(tf_errs, key=tf_errs.get)


def test_target_return_conditions_as_the_agent_does() -> None:
    """target-return: R_t = target - rewards so far, as DecisionAgent computes it. With the
    episode's own return as the target that is the episode's return-to-go: the same errors."""
    ds, model = _dataset((9, 6)), _model()
    for tr in ds.trajectories:
        own = offline_action_errors(model, [tr], ds.state_mean, ds.state_std, SCALE, 3)
        as_target = offline_action_errors(model, [tr], ds.state_mean, ds.state_std, SCALE, 3,
                                          target_return=tr.episode_return)  # fmt: skip
        np.testing.assert_allclose(as_target, own, rtol=1e-5)
        higher = offline_action_errors(model, [tr], ds.state_mean, ds.state_std, SCALE, 3,
                                       target_return=tr.episode_return + 50)  # fmt: skip
        assert abs(higher[0] - own[0]) > 1e-6
    choice = choose_memory_horizon_offline(model, ds, [0, 1], SCALE, (0, 2), "target-return",
                                           target_return=40.0)  # fmt: skip
    assert set(choice.errors) == {"own-actions", "teacher-forced", "target-return"}
    errs = choice.errors["target-return"]
    assert choice.memory_horizon == min(errs, key=errs.get)
    assert set(choose_memory_horizon_offline(model, ds, [0, 1], SCALE, (0,)).errors) == {
        "own-actions", "teacher-forced"}  # fmt: skip
    with pytest.raises(ConfigError, match="needs the target return"):
        choose_memory_horizon_offline(model, ds, [0, 1], SCALE, (0,), "target-return")


def test_ties_go_to_the_earlier_candidate() -> None:
    ds, model = _dataset((5, 5, 5)), _model()
    choice = choose_memory_horizon_offline(model, ds, [1], SCALE, (7, 7))
    assert choice.memory_horizon == 7 and list(choice.errors["own-actions"]) == [7]


@pytest.mark.parametrize(
    ("episodes", "expected"), [(5, 1), (12, 2), (40, 5), (100, 5), (1000, 50), (2000, 100)]
)
def test_heldout_sizes(episodes: int, expected: int) -> None:
    """5%, at least 5, at most a fifth of the episodes."""
    held = heldout_episodes(episodes, seed=3)
    assert len(held) == expected == len(set(held)) and held == sorted(held)
    assert 0 <= held[0] and held[-1] < episodes
    assert heldout_episodes(episodes, seed=3) == held  # seeded: the same split again


def test_heldout_depends_on_the_seed_and_the_fraction() -> None:
    assert heldout_episodes(500, 0) != heldout_episodes(500, 1)
    assert len(heldout_episodes(500, 0, fraction=0.1)) == 50


@pytest.mark.parametrize(("episodes", "fraction"), [(4, 0.05), (100, 0.0), (100, 1.0)])
def test_heldout_refuses_what_cannot_work(episodes: int, fraction: float) -> None:
    with pytest.raises(ConfigError, match="--memory-horizon|--holdout-fraction"):
        heldout_episodes(episodes, 0, fraction)


def test_choose_refuses_bad_arguments() -> None:
    ds, model = _dataset((5, 5)), _model()
    with pytest.raises(ConfigError, match="criterion"):
        choose_memory_horizon_offline(model, ds, [0], SCALE, (0,), "best-guess")
    with pytest.raises(ConfigError, match="held-out"):
        choose_memory_horizon_offline(model, ds, [], SCALE, (0,))


def test_lowest_error_ties_go_to_the_candidate_given_first() -> None:
    assert lowest_error_horizon({40: 0.3, 0: 0.1, 20: 0.2}) == 0
    assert lowest_error_horizon({40: 0.1, 0: 0.1, 20: 0.2}) == 40  # given first, not smaller
