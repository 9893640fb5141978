"""aaren-collect: make D4RL-style offline datasets with a stable-baselines3 behaviour policy.

The D4RL recipe (Fu et al., 2020, §5) on Gymnasium MuJoCo v5:

1. train a behaviour policy (PPO by default: ~1k steps/s here, SAC runs ~45 steps/s on these
   CPUs; SAC/TD3 selectable), evaluating it (deterministic, ``--eval-episodes``) and saving a
   checkpoint every ``--eval-every`` steps; every transition the training envs produce is kept;
2. ``random``: uniform-random actions;
   ``medium``: the checkpoint whose evaluation return is nearest ``--medium-fraction`` x the
   expert return (D4RL's reference expert score; without one, the best checkpoint's return),
   rolled out with *stochastic* actions;
   ``medium-replay``: every training transition up to that checkpoint (each training env's
   stream kept contiguous; a stream cut by a checkpoint/resume boundary ends in a timeout);
   ``expert``: the final policy, rolled out stochastically;
   ``medium-expert``: medium followed by expert.

Outputs: Minari datasets ``{namespace}/{env}-{level}-v{version}`` (visible to
``minari list local``) and, with ``--hdf5-dir``, D4RL HDF5 files ``{env}-{level}.hdf5``.
Everything intermediate lives in ``--work-dir``; rerunning the same command after an
interruption resumes from the last checkpoint and skips finished rollouts and outputs.

Example:
    aaren-collect --env hopper --hdf5-dir data/
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from aaren_rl.cli import check_minimums, run_cli
from aaren_rl.collect.workdir import (
    Manifest,
    check_state,
    load_npz,
    load_replay_buffer,
    load_sb3_model,
    load_vecnormalize,
    obs_normalizer,
    save_replay_buffer,
    save_vecnormalize,
)
from aaren_rl.envs.datasets import close_open_episode, split_episodes
from aaren_rl.envs.registry import EnvSpec, get_env_spec, make_env
from aaren_rl.errors import ConfigError, OutputPathError, RunDirError
from aaren_rl.eval.rollout import evaluate
from aaren_rl.fileio import (
    DirLock,
    atomic_path,
    atomic_write_text,
    check_free_space,
    check_output_dir,
    check_output_file,
)
from aaren_rl.untrusted import read_json

LEVELS = ("random", "medium", "medium-replay", "expert", "medium-expert")
Level = Literal["random", "medium", "medium-replay", "expert", "medium-expert"]
PolicyFn = Callable[[np.ndarray], np.ndarray]  # (E, obs_dim) -> (E, act_dim)


@dataclass
class Args:
    """Collect D4RL-style datasets (random/medium/medium-replay/expert/medium-expert)."""

    env: str = "hopper"
    """short name (hopper, halfcheetah, walker2d, ant) or a Gymnasium id with Box spaces;
    memory tasks (tmaze-L, popgym-RepeatFirstEasy, ...) use scripted policies instead of SB3
    (collect/scripted.py: levels expert, medium = the mix, random)"""
    algo: Literal["ppo", "sac", "td3"] = "ppo"
    """behaviour algorithm (stable-baselines3); PPO is ~20x faster per step on CPU"""
    total_timesteps: int = 500_000
    """training steps of the behaviour policy (its final policy is the 'expert')"""
    eval_every: int = 25_000
    """evaluate + checkpoint every this many training steps (rounded up to a PPO rollout)"""
    eval_episodes: int = 5
    """deterministic evaluation episodes per checkpoint"""
    medium_fraction: float = 0.4
    """medium = checkpoint nearest this fraction of the expert return (D4RL hopper-medium ~0.44)"""
    transitions: int = 100_000
    """transitions per rolled-out dataset (random, medium, expert); D4RL uses 1M"""
    levels: tuple[Level, ...] = LEVELS
    """which datasets to write"""
    seed: int = 0
    """seeds the behaviour policy's training, its environments and the dataset rollouts"""
    num_envs: int = 4
    """training envs (PPO); SAC/TD3 use 1"""
    ppo_n_steps: int = 512
    """PPO rollout length per env (a rollout is num_envs x ppo_n_steps steps)"""
    rollout_envs: int = 8
    """parallel envs when rolling out a dataset (batched policy calls)"""
    work_dir: Path | None = None
    """checkpoints, training transitions, cached rollouts; default runs/collect/{env}-{algo}-s{seed}"""
    minari: bool = True
    """write Minari datasets (under MINARI_DATASETS_PATH or ~/.minari/datasets)"""
    namespace: str = "aaren"
    """Minari dataset ids are {namespace}/{env}-{level}-v{version}"""
    version: int = 0
    """version suffix of the Minari dataset ids"""
    hdf5_dir: Path | None = None
    """also write D4RL HDF5 files {env}-{level}.hdf5 here"""
    overwrite: bool = False
    """replace existing output datasets (the work dir is always resumed)"""
    threads: int = 1
    """torch threads; 1 is fastest for these small MLPs and leaves cores to others"""

    @property
    def run_dir(self) -> Path:
        return self.work_dir or Path("runs/collect") / f"{self.env}-{self.algo}-s{self.seed}"


def check_args(args: Args) -> None:
    """Every flag and output path checked before anything is created or trained.

    Raises:
        ConfigError: a flag out of range, or nothing to write.
        OutputPathError: --work-dir or --hdf5-dir cannot be written.
    """
    check_minimums(
        (
            ("--total-timesteps", args.total_timesteps, 1),
            ("--eval-every", args.eval_every, 1),
            ("--eval-episodes", args.eval_episodes, 1),
            ("--transitions", args.transitions, 1),
            ("--seed", args.seed, 0),
            ("--num-envs", args.num_envs, 1),
            ("--ppo-n-steps", args.ppo_n_steps, 2),
            ("--rollout-envs", args.rollout_envs, 1),
            ("--version", args.version, 0),
            ("--threads", args.threads, 1),
        )
    )
    if args.seed >= 2**31:
        raise ConfigError(f"--seed must be below 2**31, got {args.seed}")
    if not (math.isfinite(args.medium_fraction) and 0 < args.medium_fraction <= 1):
        raise ConfigError(f"--medium-fraction must be in (0, 1], got {args.medium_fraction}")
    if not args.levels:
        raise ConfigError(f"--levels is empty: name at least one of {', '.join(LEVELS)}")
    if not args.minari and args.hdf5_dir is None:
        raise ConfigError("nothing to write: --no-minari without --hdf5-dir DIR")
    if not re.fullmatch(r"[A-Za-z0-9_][-\w]*", args.namespace or "", re.ASCII):
        raise ConfigError(  # Minari's own rule is checked only when it writes: after training
            f"--namespace {args.namespace!r}: give a plain name of letters, digits, '-' and "
            "'_' such as 'aaren'"
        )
    check_output_dir(args.run_dir, "--work-dir")
    if args.hdf5_dir is not None:
        check_output_dir(args.hdf5_dir, "--hdf5-dir")


def planned_outputs(
    args: Args, short: str, levels: tuple[str, ...] | None = None
) -> list[tuple[str, str]]:
    """``(kind, target)`` of every dataset of ``levels`` (default ``--levels``): Minari ids
    and HDF5 paths."""
    out = []
    for level in args.levels if levels is None else levels:
        if args.minari:
            out.append(("minari", f"{args.namespace}/{short}-{level}-v{args.version}"))
        if args.hdf5_dir is not None:
            out.append(("hdf5", str(Path(args.hdf5_dir) / f"{short}-{level}.hdf5")))
    return out


def _minari_path(dataset_id: str) -> Path:
    """Where ``write_minari`` puts ``dataset_id`` (minari's rule, without creating folders)."""
    root = os.environ.get("MINARI_DATASETS_PATH")
    base = Path(root) if root is not None else Path.home() / ".minari" / "datasets"
    return base / dataset_id


def check_outputs(
    args: Args, short: str, written: list[list[str]], recipe: str | None = None
) -> None:
    """Before any work: every output that exists must be one this work dir wrote with the
    same recipe (``written``, from state.json), or ``--overwrite`` must be given. A dataset
    written with other settings (e.g. another --transitions) is never kept silently.

    Raises:
        OutputPathError: an output exists that this command did not write (or wrote with
            other settings), is a symlink or a special file.
    """
    for kind, target in planned_outputs(args, short):
        prior = next((w for w in written if w[:2] == [kind, target]), None)
        same = prior is not None and (len(prior) < 3 or prior[2] == recipe)
        if prior is not None and not same and not args.overwrite:
            raise OutputPathError(
                f"{target} was written by this work dir with other settings ({prior[2]}); "
                "pass --overwrite to replace it with this command's data, or choose another "
                "--hdf5-dir / --version"
            )
        if kind == "hdf5":
            check_output_file(
                target, "--hdf5-dir", overwrite=args.overwrite, ours=lambda p, same=same: same
            )
        elif _minari_path(target).exists() and not (same or args.overwrite):
            raise OutputPathError(
                f"Minari dataset {target} already exists at {_minari_path(target)} and this "
                "command did not write it; pass --overwrite to replace it, or bump --version"
            )


def check_trainable_actions(gym_id: str, flag_value: str) -> None:
    """Refuse, before training a behaviour policy, an env whose data aaren-train could not
    use: discrete actions (only the scripted memory tasks collect those) or continuous actions
    outside [-1, 1], the range of aaren-train's tanh action head."""
    env = make_env(gym_id)
    try:
        raw, space = env.unwrapped.action_space, env.action_space
    finally:
        env.close()
    if not isinstance(raw, gym.spaces.Box):
        raise ConfigError(
            f"--env {flag_value}: {gym_id} has {type(raw).__name__} actions; aaren-collect's "
            "stable-baselines3 behaviour policies are for continuous (Box) actions. Discrete "
            "memory tasks (tmaze-L, popgym-...) are collected with scripted policies"
        )
    low, high = float(np.min(space.low)), float(np.max(space.high))
    if low < -1 or high > 1:
        raise ConfigError(
            f"--env {flag_value}: {gym_id}'s actions span [{low:g}, {high:g}], outside the "
            "[-1, 1] of aaren-train's tanh action head: aaren-train would refuse the data. "
            "Collect an env with actions in [-1, 1] (the MuJoCo tasks: hopper, walker2d, ...)"
        )


def sb3_class(algo: str) -> type:
    """The stable-baselines3 class of ``--algo`` (the one map of names to algorithms)."""
    import stable_baselines3 as sb3

    return {"ppo": sb3.PPO, "sac": sb3.SAC, "td3": sb3.TD3}[algo]


class PolicyAgent:
    """A batched policy function as an agent of the one episode loop (``aaren_rl.eval``).

    ``predict`` ignores rewards and episode starts: an SB3 MLP policy is memoryless.
    """

    mode = "sb3"

    def __init__(self, policy: PolicyFn) -> None:
        self.policy = policy

    def reset(self, num_envs: int = 1) -> None:
        pass

    def predict(
        self,
        obs: np.ndarray,
        reward: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
    ) -> np.ndarray:
        return np.asarray(self.policy(np.asarray(obs)), dtype=np.float32)


# ----------------------------------------------------------------------------- small helpers


def _atomic_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, default=float))


def _atomic_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: no ".npz" appended
        np.savez(f, **arrays)


class _Recorder(gym.Wrapper):
    """Keeps every (obs, action, reward, next_obs, terminated, truncated) an env produces."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._obs: np.ndarray | None = None
        self._buf: dict[str, list] = {k: [] for k in ("obs", "act", "rew", "nxt", "term", "trunc")}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action):
        obs, rew, term, trunc, info = self.env.step(action)
        for k, v in zip(self._buf, (self._obs, action, rew, obs, term, trunc)):
            self._buf[k].append(v)
        self._obs = obs
        return obs, rew, term, trunc, info

    def flush(self) -> dict[str, np.ndarray]:
        out = {k: np.asarray(v) for k, v in self._buf.items()}
        for v in self._buf.values():
            v.clear()
        return out


def _to_d4rl(streams: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate per-env streams; each stream's last step becomes a timeout if open."""
    streams = [s for s in streams if len(s["rew"])]
    timeouts = [close_open_episode(s["term"], s["trunc"]) for s in streams]
    cat = lambda k, dt: np.concatenate([s[k] for s in streams]).astype(dt)  # noqa: E731
    return {
        "observations": cat("obs", np.float32),
        "actions": cat("act", np.float32),
        "rewards": cat("rew", np.float32),
        "terminals": cat("term", bool),
        "timeouts": np.concatenate(timeouts),
        "next_observations": cat("nxt", np.float32),
    }


def _episode_returns(d: dict[str, np.ndarray]) -> np.ndarray:
    """Returns of the episodes exactly as ``load_dataset`` splits them.

    The up-to-``rollout_envs`` episodes cut by the transition budget are included (they end in
    a timeout, as in D4RL), so these stats match ``OfflineDataset.episode_returns``.
    """
    ds = split_episodes(
        d["observations"], d["actions"], d["rewards"], d["terminals"], d["timeouts"]
    )
    return ds.episode_returns


def record(
    gym_id: str,
    policy: PolicyFn,
    *,
    num_envs: int,
    seed: int,
    transitions: int,
    desc: str | None = None,
) -> dict[str, np.ndarray]:
    """Record ``transitions`` steps of ``policy`` in ``num_envs`` envs, batched (a dataset).

    Each env runs ``ceil(transitions / num_envs)`` steps; the result is cut to exactly
    ``transitions`` (cut episodes end in a timeout, as in D4RL). Episodes are not counted or
    scored here: evaluation goes through ``aaren_rl.eval.rollout.evaluate``.

    Returns:
        D4RL arrays.
    """
    envs = [_Recorder(make_env(gym_id)) for _ in range(num_envs)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    steps = -(-transitions // num_envs)
    try:
        for _ in tqdm(range(steps), desc=desc, disable=desc is None, leave=False):
            actions = policy(obs)
            for i, env in enumerate(envs):
                o, _, term, trunc, _ = env.step(actions[i])
                obs[i] = env.reset()[0] if term or trunc else o
        data = _to_d4rl([e.flush() for e in envs])
    finally:
        for e in envs:
            e.close()
    if len(data["rewards"]) > transitions:
        data = {k: v[:transitions] for k, v in data.items()}
        data["timeouts"] = close_open_episode(data["terminals"], data["timeouts"])
    return data


# ----------------------------------------------------------------------------- collector


class Collector:
    """Train, checkpoint, choose medium/expert, roll out, write. Resumable via ``run_dir``."""

    def __init__(self, args: Args) -> None:
        self.args = args
        self.spec: EnvSpec = get_env_spec(args.env)
        self.short = self.spec.name.split("/")[-1].lower().replace("-", "_")
        self.dir = args.run_dir
        self.state_path = self.dir / "state.json"
        key = {k: getattr(args, k) for k in ("env", "algo", "seed", "num_envs", "ppo_n_steps")}
        # every file loaded from the work dir is checked against it (collect/workdir.py)
        self.manifest = Manifest(self.dir)
        if self.state_path.exists():
            try:  # size- and depth-capped, a regular file inside the work dir
                self.state = read_json(self.state_path, RunDirError, root=self.dir)
                old_key = self.state["key"]
            except (KeyError, TypeError) as e:
                raise RunDirError(
                    f"{self.state_path} is corrupt ({e}); delete {self.dir} to start over, "
                    "or use another --work-dir"
                ) from e
            check_state(self.state, self.state_path)  # types, before any value is used
            if self.state["checkpoints"] and not self.manifest.exists():
                raise RunDirError(
                    f"{self.dir} was written by an older aaren-collect: its policies are pickle "
                    "files (which can run code when loaded) and no manifest records that this "
                    "tool wrote them, so they are not loaded. Use a fresh --work-dir (datasets "
                    "it already wrote stay usable; see docs/security.md)."
                )
            if old_key != key:
                raise RunDirError(
                    f"{self.dir} holds a collection with {self.state['key']}, not {key}. "
                    "Use another --work-dir, or delete that folder to start over."
                )
        else:
            self.state = {
                "key": key,
                "checkpoints": [],
                "chunks": [],
                "segment": -1,
                "timings": {},
                "written": [],
            }
        check_outputs(args, self.short, self.state["written"], self.recipe())
        self._check_space()
        for sub in ("ckpt", "replay", "rollouts"):  # after the state was read and checked
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.log = tqdm.write

    def _check_space(self) -> None:
        """Before training: room for the datasets (float32 arrays, uncompressed: an upper
        bound for Minari, about twice the gzip-compressed HDF5) and the work dir's copies."""
        env = make_env(self.spec.gym_id)
        try:
            per_step = 4 * (2 * int(np.prod(env.observation_space.shape))
                            + int(np.prod(env.action_space.shape)) + 3)  # fmt: skip
        finally:
            env.close()
        size = per_step * self.args.transitions * len(self.args.levels)
        if self.args.hdf5_dir is not None:
            check_free_space(self.args.hdf5_dir, size, "--hdf5-dir: the datasets")
        if self.args.minari:
            check_free_space(_minari_path(""), size, "the Minari datasets")
        check_free_space(self.dir, size, "--work-dir: the rollouts")

    def save_state(self) -> None:
        _atomic_json(self.state_path, self.state)

    # -- training -----------------------------------------------------------------------

    def _make_train_env(self):
        from stable_baselines3.common.monitor import Monitor
        from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

        n = self.args.num_envs if self.args.algo == "ppo" else 1
        self.recorders = [_Recorder(make_env(self.spec.gym_id)) for _ in range(n)]
        venv = DummyVecEnv([lambda r=r: Monitor(r) for r in self.recorders])
        venv.seed(self.args.seed + 1000 * (self.state["segment"] + 1))
        if self.args.algo == "ppo":
            last = self.state["checkpoints"][-1] if self.state["checkpoints"] else None
            if last is not None:
                venv = load_vecnormalize(self.manifest.verified(last["vecnorm"]), venv)
            else:
                venv = VecNormalize(venv, norm_obs=True, norm_reward=True)
        return venv

    def _new_model(self, venv):
        a = self.args
        extra = {"n_steps": a.ppo_n_steps, "batch_size": 64} if a.algo == "ppo" else {}
        return sb3_class(a.algo)("MlpPolicy", venv, seed=a.seed, verbose=0, device="cpu", **extra)

    def load_model(self, rel: str, env=None):
        """The SB3 model ``rel`` of the work dir: manifest-verified, loaded without unpickling."""
        from stable_baselines3.common.vec_env import DummyVecEnv

        path = self.manifest.verified(rel)
        n = self.args.num_envs if self.args.algo == "ppo" else 1
        spare = DummyVecEnv([lambda: make_env(self.spec.gym_id) for _ in range(n)])
        try:  # a fresh model supplies every object the zip would have unpickled
            return load_sb3_model(sb3_class(self.args.algo), path, self._new_model(spare), env)
        finally:
            spare.close()

    def policy_fn(self, ckpt: dict, deterministic: bool) -> PolicyFn:
        """The checkpoint's policy as a batched function of raw observations."""
        model = self.load_model(ckpt["model"])
        normalize = None
        if ckpt.get("vecnorm"):  # VecNormalize's observation transform, from its arrays
            obs_dim = model.observation_space.shape[0]
            normalize = obs_normalizer(self.manifest.verified(ckpt["vecnorm"]), obs_dim)

        def act(obs: np.ndarray) -> np.ndarray:
            if normalize is not None:
                obs = normalize(obs)
            return model.predict(obs.astype(np.float32), deterministic=deterministic)[0]

        return act

    def checkpoint(self, model, venv) -> None:
        """Save model (+ VecNormalize stats, training transitions), evaluate, then state.json."""
        step = int(model.num_timesteps)
        seg = self.state["segment"]
        name = f"step_{step:09d}"
        model.save(self.dir / "ckpt" / f"{name}.zip")
        self.manifest.record(f"ckpt/{name}.zip")  # every file hashed as soon as it is written
        ckpt: dict[str, Any] = {"step": step, "model": f"ckpt/{name}.zip", "vecnorm": None}
        if self.args.algo == "ppo":  # statistics as arrays, not VecNormalize.save's pickle
            ckpt["vecnorm"] = f"ckpt/{name}_vecnorm.npz"
            save_vecnormalize(venv, self.dir / ckpt["vecnorm"])
            self.manifest.record(ckpt["vecnorm"])
        else:  # off-policy: keep the replay buffer so a resumed run trains on the same data
            ckpt["replay_buffer"] = f"ckpt/{name}_replay_buffer.npz"  # arrays, not a pickle
            save_replay_buffer(model, self.dir / ckpt["replay_buffer"])
            self.manifest.record(ckpt["replay_buffer"])
        stale = [c for c in self.state["checkpoints"] if c.get("replay_buffer")]
        for c in stale:  # only the latest buffer is kept (deleted once state.json is saved)
            c["replay_buffer_stale"], c["replay_buffer"] = c["replay_buffer"], None
        chunk = f"replay/seg{seg:03d}_{name}.npz"
        streams = [r.flush() for r in self.recorders]
        _atomic_npz(
            self.dir / chunk,
            **{f"{i}_{k}": v for i, s in enumerate(streams) for k, v in s.items()},
        )
        self.manifest.record(chunk)
        agent = PolicyAgent(self.policy_fn(ckpt, deterministic=True))
        n = self.args.eval_episodes
        res = evaluate(agent, self.spec.gym_id, n, num_envs=n, seed=10_000 + step)
        ckpt.update(**{"return": res.return_mean, "std": res.return_std})
        self.state["checkpoints"].append(ckpt)
        self.state["chunks"].append({"file": chunk, "segment": seg, "step": step})
        self.save_state()  # the commit point: files above are only used once listed here
        for c in stale:
            rel = c.pop("replay_buffer_stale")
            (self.dir / rel).unlink(missing_ok=True)
            self.manifest.forget(rel)
        self.log(
            f"[aaren-collect] step {step}: eval return {res.return_mean:.1f} ± {res.return_std:.1f}"
        )

    def train(self) -> None:
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.logger import Logger

        a, ckpts = self.args, self.state["checkpoints"]
        done = ckpts[-1]["step"] if ckpts else 0
        if done >= a.total_timesteps:
            return
        import torch

        torch.set_num_threads(a.threads)
        self.state["segment"] += 1
        self.save_state()
        venv = self._make_train_env()
        if ckpts:
            model = self.load_model(ckpts[-1]["model"], env=venv)
            if ckpts[-1].get("replay_buffer"):
                load_replay_buffer(model, self.manifest.verified(ckpts[-1]["replay_buffer"]))
            self.log(f"[aaren-collect] resuming from step {done} ({self.dir})")
        else:
            model = self._new_model(venv)
        model.set_logger(Logger(folder=None, output_formats=[]))  # no SB3-* temp folders
        collector, next_eval = self, (done // a.eval_every + 1) * a.eval_every
        bar = tqdm(total=a.total_timesteps, initial=done, desc=f"train {a.algo}", unit="step")

        class _Cb(BaseCallback):
            def _on_step(self) -> bool:
                n = self.training_env.num_envs
                if bar.n + n > bar.total:  # PPO overshoots to a whole rollout
                    bar.total = bar.n + n
                bar.update(n)
                return True

            def _on_rollout_start(self) -> None:  # after the previous update: a clean point
                nonlocal next_eval
                if self.num_timesteps >= next_eval and self.num_timesteps < a.total_timesteps:
                    collector.checkpoint(self.model, venv)
                    next_eval = (self.num_timesteps // a.eval_every + 1) * a.eval_every

        t0 = time.perf_counter()
        try:
            model.learn(a.total_timesteps - done, callback=_Cb(), reset_num_timesteps=not ckpts)
            self.checkpoint(model, venv)  # the final policy = the expert
        finally:
            bar.close()
            venv.close()
            tm = self.state["timings"]
            tm["train_s"] = tm.get("train_s", 0.0) + time.perf_counter() - t0
            self.save_state()

    # -- datasets -------------------------------------------------------------------------

    def medium_checkpoint(self) -> dict:
        ckpts = self.state["checkpoints"]
        best = max(c["return"] for c in ckpts)
        expert = self.spec.expert_score if self.spec.expert_score is not None else best
        target = self.args.medium_fraction * expert
        return min(ckpts, key=lambda c: (abs(c["return"] - target), c["step"]))

    def replay_until(self, step: int) -> dict[str, np.ndarray]:
        """Every training transition up to ``step``; per segment, each env's stream contiguous."""
        chunks = [c for c in self.state["chunks"] if c["step"] <= step]
        streams = []
        for seg in sorted({c["segment"] for c in chunks}):
            files = [c["file"] for c in chunks if c["segment"] == seg]
            loaded = [load_npz(self.manifest.verified(f)) for f in files]
            n_env = len({k.split("_")[0] for k in loaded[0]})
            for i in range(n_env):
                streams.append(
                    {
                        k: np.concatenate([z[f"{i}_{k}"] for z in loaded if len(z[f"{i}_rew"])])
                        for k in ("obs", "act", "rew", "nxt", "term", "trunc")
                    }
                )
        return _to_d4rl(streams)

    def make_level(self, level: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and metadata for one level; rollouts are cached in the work dir."""
        a = self.args
        med, exp = self.medium_checkpoint(), self.state["checkpoints"][-1]
        if level == "medium-expert":
            (d1, m1), (d2, m2) = self.make_level("medium"), self.make_level("expert")
            data = {k: np.concatenate([d1[k], d2[k]]) for k in d1}
            return data, {"policy_step": [m1["policy_step"], m2["policy_step"]]}
        if level == "medium-replay":
            return self.replay_until(med["step"]), {"policy_step": med["step"]}
        ckpt = {"random": None, "medium": med, "expert": exp}[level]
        step = -1 if ckpt is None else ckpt["step"]
        cache = f"rollouts/{level}_step{step}_n{a.transitions}.npz"
        if self.manifest.has(cache):
            return load_npz(self.manifest.verified(cache)), {"policy_step": step}
        if ckpt is None:
            space = make_env(self.spec.gym_id).action_space
            rng = np.random.default_rng(a.seed)
            policy: PolicyFn = lambda o: rng.uniform(  # noqa: E731
                space.low, space.high, (len(o), space.shape[0])
            ).astype(np.float32)
        else:
            policy = self.policy_fn(ckpt, deterministic=False)
        t0 = time.perf_counter()
        data = record(self.spec.gym_id, policy, num_envs=a.rollout_envs,
                      seed=a.seed + 20_000 + max(step, 0), transitions=a.transitions,
                      desc=f"rollout {level}")  # fmt: skip
        self.state["timings"][f"rollout_{level}_{a.transitions}_s"] = time.perf_counter() - t0
        self.save_state()
        _atomic_npz(self.dir / cache, **data)
        self.manifest.record(cache)
        return data, {"policy_step": step}

    def metadata(self, level: str, data: dict[str, np.ndarray], extra: dict) -> dict[str, Any]:
        from aaren_rl.envs.scores import normalized_score

        rets = _episode_returns(data)
        norm = normalized_score(self.spec, rets)
        a = self.args
        return {
            "env_id": self.spec.gym_id,
            "level": level,
            "behavior_algorithm": f"stable-baselines3 {a.algo.upper()} MlpPolicy"
            + (
                f" + VecNormalize, {a.num_envs} envs, n_steps {a.ppo_n_steps}"
                if a.algo == "ppo"
                else ""
            ),
            "seed": a.seed,
            "total_timesteps": a.total_timesteps,
            "eval_every": a.eval_every,
            "medium_fraction": a.medium_fraction,
            "medium_step": self.medium_checkpoint()["step"],
            "expert_step": self.state["checkpoints"][-1]["step"],
            "checkpoints": [
                {"step": c["step"], "return": c["return"], "std": c["std"]}
                for c in self.state["checkpoints"]
            ],
            "transitions": int(len(data["rewards"])),
            "episodes": int(len(rets)),
            "episode_return_mean": float(rets.mean()),
            "episode_return_std": float(rets.std()),
            "normalized_score_mean": None if norm is None else float(norm.mean()),
            "ref_min_score": self.spec.random_score,
            "ref_max_score": self.spec.expert_score,
            "recipe": self.recipe(),
            **extra,
        }

    def recipe(self) -> str:
        """The command line that makes these datasets (every setting their data depends on)."""
        a = self.args
        return (
            f"aaren-collect --env {a.env} --algo {a.algo} --total-timesteps "
            f"{a.total_timesteps} --eval-every {a.eval_every} --medium-fraction "
            f"{a.medium_fraction} --transitions {a.transitions} --seed {a.seed}"
        )

    def write(self) -> dict[str, dict]:
        from aaren_rl.envs.writers import write_d4rl_hdf5, write_minari

        a, results = self.args, {}
        for level in a.levels:
            data, extra = self.make_level(level)
            meta = self.metadata(level, data, extra)
            results[level] = meta
            for kind, target in planned_outputs(a, self.short, (level,)):
                prior = [w for w in self.state["written"] if w[:2] == [kind, target]]
                done = bool(prior) and (len(prior[0]) < 3 or prior[0][2] == meta["recipe"])
                on_disk = Path(target) if kind == "hdf5" else _minari_path(target)
                done = done and on_disk.exists()  # a deleted output is written again
                if done and not a.overwrite:
                    self.log(f"[aaren-collect] {target} already written by this run; skipping")
                    continue
                if kind == "minari":
                    write_minari(target, data, self.spec.gym_id, algorithm_name=a.algo.upper(),
                                 description=f"{self.spec.gym_id} {level}: " + meta["recipe"],
                                 extra_metadata=meta, ref_min_score=self.spec.random_score,
                                 ref_max_score=self.spec.expert_score,
                                 overwrite=a.overwrite or done)  # fmt: skip
                else:
                    write_d4rl_hdf5(target, data, meta)
                for w in prior:
                    self.state["written"].remove(w)
                self.state["written"].append([kind, target, meta["recipe"]])
                self.save_state()
                self.log(f"[aaren-collect] wrote {kind} {target}")
        return results


def collect(args: Args) -> dict[str, dict]:
    """Run (or resume) a whole collection; returns per-level metadata.

    Every flag, output path and the env are checked before anything is created.
    """
    check_args(args)
    make_env(get_env_spec(args.env).gym_id).close()  # fail fast on a bad env
    from aaren_rl.collect.scripted import has_scripted_policy, write_scripted

    if has_scripted_policy(args.env):  # memory tasks: scripted expert + documented mix
        return write_scripted(args)
    check_trainable_actions(get_env_spec(args.env).gym_id, args.env)
    t0 = time.perf_counter()
    with DirLock(args.run_dir, "--work-dir"):  # one aaren-collect per work dir
        c = Collector(args)
        c.train()
        results = c.write()
        c.state["timings"]["last_invocation_s"] = time.perf_counter() - t0
        c.save_state()
    med = c.medium_checkpoint()
    print(f"[aaren-collect] {c.spec.gym_id}: medium = step {med['step']} "
          f"(eval {med['return']:.1f}), expert = step {c.state['checkpoints'][-1]['step']} "
          f"(eval {c.state['checkpoints'][-1]['return']:.1f})")  # fmt: skip
    for level, m in results.items():
        norm = m["normalized_score_mean"]
        print(f"  {level:14s} {m['transitions']:8d} transitions {m['episodes']:6d} episodes  "
              f"return {m['episode_return_mean']:8.1f} ± {m['episode_return_std']:6.1f}"
              + ("" if norm is None else f"  normalised {norm:5.1f}"))  # fmt: skip
    print(f"  timings: {json.dumps({k: round(v, 1) for k, v in c.state['timings'].items()})}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``aaren-collect`` (exit codes: aaren_rl.errors)."""
    import tyro

    args = tyro.cli(Args, args=argv, description=__doc__)

    def body() -> None:
        collect(args)

    hint = f"rerun the same command to resume ({args.run_dir})"
    return run_cli("aaren-collect", body, resume_hint=hint)


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Args", "Collector", "PolicyAgent", "check_args", "collect", "main", "record", "LEVELS"]
