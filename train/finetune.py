"""``Finetuner``: what one online fine-tuning run holds, and what is done with it.

The Online Decision Transformer's loop (Zheng, Zhang, Grover 2022), on this toolkit's parts:

1. ``build``: the offline checkpoint (either backbone), a :class:`StochasticPolicy` around its
   model (the offline head is the tanh-Gaussian's mean; a new log-std head), the replay
   buffer seeded with the dataset's best trajectories (``train/replay.py``), AdamW with a
   linear warm-up, the log-temperature and its Adam. Every check; nothing written.
2. ``collect``: one episode in each of ``--num-envs`` environments, stepped in lockstep by
   the one episode loop (``aaren_rl.eval.rollout.run_episodes``) with a
   :class:`~aaren_rl.agents.sampling_agent.SamplingAgent` conditioned on the exploration
   return; a recording wrapper keeps each episode and times the environment. The episodes
   enter the buffer with hindsight returns-to-go.
3. ``update``: gradient steps on windows from the buffer. Loss (ODT ``trainer.py``):
   ``-(log p(a) + T * H)`` over real positions, with ``H`` the policy entropy (a one-sample
   estimate for the tanh-Gaussian) and ``T = exp(log_temperature)`` held fixed; then the
   temperature's own step on ``T * (H - target).detach()``, which lowers ``T`` when the
   entropy is above the target (-|A|) and raises it below.
4. ``evaluate``: the deterministic policy (``tanh(mean)``, i.e. a plain ``DecisionAgent``)
   through ``aaren_rl.eval.rollout.evaluate``.
5. ``save`` / ``restore``: an atomic checkpoint directory (``aaren_rl.fileio``) holding a
   normal agent checkpoint (aaren-eval reads it), ``log_std_head.safetensors``, the trainer
   state (optimisers, scheduler, temperature, torch's and the batch generator's states,
   counters: ``train/trainer_state.py``, no pickle) and the replay buffer (safetensors +
   JSON). Rounds are the unit of work: a checkpoint is taken between rounds, every episode
   is reset with a seed fixed by its index and its exploration noise seeded by that seed, so
   a resumed run ends bit-identical to an uninterrupted one (same threads, same machine).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from aaren_rl.aaren_policy import DecisionModel, __version__
from aaren_rl.aaren_policy.stochastic import StochasticPolicy
from aaren_rl.agents import DecisionAgent
from aaren_rl.agents.checkpoint import load_model, save_model
from aaren_rl.agents.sampling_agent import SamplingAgent
from aaren_rl.envs import EnvSpec, Trajectory, get_env_spec, load_dataset, make_env
from aaren_rl.errors import CheckpointError, ConfigError, DatasetError, EnvError, RunDirError
from aaren_rl.fileio import DirLock, atomic_directory, atomic_write_json
from aaren_rl.train.finetune_config import FinetuneConfig, finetune_config_differences
from aaren_rl.train.replay import ReplayBuffer, make_trajectory
from aaren_rl.train.run_dir import CHECKPOINT, CONFIG, check_new_run_dir
from aaren_rl.train.trainer import decision_weights, lr_lambda, resolve_device
from aaren_rl.train.trainer_state import load_trainer_state, save_trainer_state
from aaren_rl.untrusted import read_json

__all__ = ["COLLECT_SEED_BASE", "LOG_STD_FILE", "Finetuner", "RecordingEnv", "RoundStats"]

LOG_STD_FILE = "log_std_head.safetensors"
# Collection episode i is reset with seed COLLECT_SEED_BASE * (1 + seed) + i: apart from the
# evaluation episodes (seed * eval_episodes + i: disjoint between fine-tuning seeds) and the
# offline trainer's validation ones (1e6 + ...).
COLLECT_SEED_BASE = 10**9


class RecordingEnv(gym.Wrapper):
    """Keeps every finished episode as ``(reset seed, Trajectory)`` in ``sink`` and adds the
    time spent in ``reset``/``step`` to ``clock["env"]``. Actions are recorded as the env
    received them (after the episode loop's clip to the action bounds)."""

    def __init__(self, env: gym.Env, sink: list, clock: dict[str, float]) -> None:
        super().__init__(env)
        self.sink, self.clock = sink, clock
        self._seed: int | None = None
        self._obs: list[np.ndarray] = []
        self._act: list[np.ndarray] = []
        self._rew: list[float] = []

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        t0 = time.perf_counter()
        obs, info = self.env.reset(seed=seed, options=options)
        self.clock["env"] += time.perf_counter() - t0
        self._seed, self._obs, self._act, self._rew = seed, [obs], [], []
        return obs, info

    def step(self, action: Any) -> Any:
        t0 = time.perf_counter()
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.clock["env"] += time.perf_counter() - t0
        self._act.append(np.array(action, dtype=np.float32))
        self._rew.append(float(reward))
        if terminated or truncated:
            traj = make_trajectory(
                np.stack(self._obs), np.stack(self._act), np.array(self._rew), terminated
            )
            self.sink.append((self._seed, traj))
        else:
            self._obs.append(obs)
        return obs, reward, terminated, truncated, info


@dataclass
class RoundStats:
    """One collection round: its episodes (in seed order) and where the time went."""

    trajectories: list[Trajectory]
    act_seconds: float
    env_seconds: float
    seconds: float
    act_cpu_seconds: float = 0.0  # CPU time of acting: not inflated by other processes

    @property
    def env_steps(self) -> int:
        return sum(len(t) for t in self.trajectories)

    @property
    def returns(self) -> list[float]:
        return [float(np.sum(t.rewards, dtype=np.float64)) for t in self.trajectories]


@dataclass
class Counters:
    """Where the run stands; saved in the trainer state."""

    env_steps: int = 0
    updates: int = 0
    rounds: int = 0
    episodes: int = 0
    update_credit: float = 0.0  # fractional updates owed (updates_per_env_step * steps)
    # env steps whose acting CPU time is in timing["act_cpu"] (runs saved before it was
    # measured continue with 0: the figure then covers only their later rounds)
    act_cpu_env_steps: int = 0
    timing: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(
            ("act", "act_cpu", "env", "update", "eval", "checkpoint"), 0.0
        )
    )


def _load_source(cfg: FinetuneConfig, device: torch.device) -> tuple[DecisionModel, dict, Path]:
    """The checkpoint to start from: the run's own on --resume, else --checkpoint."""
    if cfg.resume:
        assert cfg.run_dir is not None
        source = cfg.run_dir / CHECKPOINT
    else:
        assert cfg.checkpoint is not None
        source = Path(cfg.checkpoint)
    model, meta = load_model(source, device)
    return model, meta, source


class Finetuner:
    """One online fine-tuning run (module docstring)."""

    def __init__(self, cfg: FinetuneConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.counters = Counters()
        self.wandb_id: str | None = None

    # ---- build: every check and every object; nothing is written ----

    @classmethod
    def build(cls, cfg: FinetuneConfig) -> Finetuner:
        cfg.validate()
        device = resolve_device(cfg.device)
        self = cls(cfg, device)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        model, meta, source = _load_source(cfg, device)
        self.meta, self.source = meta, source
        self.env_spec: EnvSpec = get_env_spec(cfg.env or meta.get("env_id") or "")
        _check_env_fits(self.env_spec, model)
        self.eval_target = float(
            cfg.eval_target_return if cfg.eval_target_return is not None else meta["target_return"]
        )
        self.explore_target = (
            cfg.exploration_return if cfg.exploration_return is not None else 2 * self.eval_target
        )
        backbone = model.config.backbone
        self.mode = (
            cfg.mode if cfg.mode != "auto" else ("recurrent" if backbone == "aaren" else "window")
        )
        self.recipe = cfg.recipe if cfg.recipe != "auto" else meta.get("train_recipe", "window")
        self.context_length = int(meta.get("context_length", 20))
        self.window = cfg.episode_length if self.recipe == "episode" else self.context_length
        self.batch_size = cfg.batch_size or (4 if self.recipe == "episode" else 64)
        # the horizon the checkpoint acts with (recurrent Aaren only): this run's unless it
        # is given or chosen below
        self.checkpoint_horizon = int(meta.get("memory_horizon", 0) or 0)
        self.acting_horizon = self.checkpoint_horizon
        # --memory-horizon choose: what the validation episodes scored (a resumed run keeps
        # its choice, and its checkpoint's horizon is the chosen one)
        self.horizon_choice: dict[str, Any] | None = (meta.get("finetune") or {}).get(
            "memory_horizon_choice"
        )
        if cfg.memory_horizon != "checkpoint":
            if not (backbone == "aaren" and self.mode == "recurrent"):
                raise ConfigError(
                    f"--memory-horizon {cfg.memory_horizon} sets how an Aaren agent acting "
                    f"recurrently forgets; this run acts with a {backbone} in {self.mode} mode: "
                    "leave it at checkpoint"
                )
            if cfg.memory_horizon != "choose" and not cfg.resume:
                self.acting_horizon = int(cfg.memory_horizon)
        self.train_horizon = self._train_horizon(backbone)
        torch.manual_seed(cfg.seed)
        self.policy = StochasticPolicy(model, cfg.init_std).to(device)
        if (source / LOG_STD_FILE).is_file():  # a fine-tuned checkpoint: keep its log-std
            self._load_log_std(source / LOG_STD_FILE)
        self.target_entropy = self._target_entropy()
        self.log_temperature = torch.tensor(
            math.log(cfg.init_temperature), device=device, requires_grad=True
        )
        self.optimizer = torch.optim.AdamW(
            self.policy.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        self.warmup = cfg.resolved_warmup
        self.decay_updates = cfg.total_updates  # fixed here: an extended run keeps it
        self.scheduler = self._scheduler()
        self.temperature_optimizer = torch.optim.Adam(
            [self.log_temperature], lr=cfg.temperature_lr, betas=(0.9, 0.999)
        )
        self.batch_rng = np.random.default_rng([cfg.seed, 1])
        self.run_dir = cfg.run_dir or cfg.default_run_dir(self.env_spec.name, backbone)
        # locked before it is checked: a second process on the run dir is told "in use by PID N"
        self.lock = DirLock(self.run_dir, "--run-dir").acquire()
        try:
            if cfg.resume:
                self._check_resume_config()
            else:
                check_new_run_dir(self.run_dir)
                self.buffer = self._seeded_buffer()
                self._rebuild_sampler()
        except BaseException:
            self.lock.release()
            raise
        return self

    def _train_horizon(self, backbone: str) -> int:
        """The memory horizon updates train with (--train-horizon), 0 for none."""
        applies = backbone == "aaren" and self.mode == "recurrent"
        given = self.cfg.train_memory_horizon
        if self.cfg.train_horizon == "off" or (self.cfg.train_horizon == "auto" and not applies):
            if given is not None:
                raise ConfigError(
                    f"--train-memory-horizon {given} needs updates that train with a horizon: "
                    f"--train-horizon on or auto, with Aaren acting recurrently (this run: "
                    f"--train-horizon {self.cfg.train_horizon}, a {backbone} in {self.mode} mode)"
                )
            return 0
        if not applies:
            raise ConfigError(
                f"--train-horizon on trains as an Aaren agent acting recurrently forgets; this "
                f"run acts with a {backbone} in {self.mode} mode: use auto or off"
            )
        return self.acting_horizon if given is None else given

    def _target_entropy(self) -> float:
        if self.cfg.target_entropy is not None:
            return float(self.cfg.target_entropy)
        n = self.policy.model.config.act_dim
        return 0.1 * math.log(n) if self.policy.discrete else -float(n)

    def _seeded_buffer(self) -> ReplayBuffer:
        cfg, cfgm = self.cfg, self.policy.model.config
        count = cfg.replay_size if cfg.seed_trajectories is None else cfg.seed_trajectories
        if count == 0:
            return ReplayBuffer(cfg.replay_size, eviction=cfg.replay_eviction)
        spec = cfg.dataset or self.meta.get("dataset")
        if not spec:
            raise DatasetError(
                f"{self.source} does not record its dataset: pass --dataset SPEC to seed the "
                "replay buffer, or --seed-trajectories 0 to start from an empty one"
            )
        ds = load_dataset(spec)
        if (ds.obs_dim, ds.act_dim) != (cfgm.obs_dim, cfgm.act_dim):
            raise DatasetError(
                f"--dataset {spec} has obs/act sizes {(ds.obs_dim, ds.act_dim)}, the checkpoint's "
                f"model {(cfgm.obs_dim, cfgm.act_dim)}: pass the dataset it was trained on"
            )
        return ReplayBuffer.seeded(cfg.replay_size, ds.trajectories, count, cfg.replay_eviction)

    def _check_resume_config(self) -> None:
        saved = read_json(self.run_dir / CONFIG, RunDirError)
        diffs = finetune_config_differences(saved, self.cfg) if isinstance(saved, dict) else ["?"]
        if diffs:
            raise RunDirError(
                "--resume with a different configuration (start a new --run-dir instead): "
                + "; ".join(diffs)
            )

    def _rebuild_sampler(self) -> None:
        """Windows over the buffer's current contents (none yet: an empty buffer, --seed-
        trajectories 0, gets its sampler with its first episodes, before any update)."""
        meta = self.meta
        if not len(self.buffer):
            return
        self.sampler = self.buffer.sampler(
            self.recipe,
            self.batch_rng,
            context_length=self.window,
            batch_size=self.batch_size,
            return_scale=float(meta["return_scale"]),
            state_mean=np.asarray(meta["state_mean"], dtype=np.float32),
            state_std=np.asarray(meta["state_std"], dtype=np.float32),
        )

    def _load_log_std(self, path: Path) -> None:
        from safetensors.torch import load_file

        head = self.policy.log_std_head
        try:
            assert head is not None
            head.load_state_dict(load_file(str(path), device=str(self.device)))
        except Exception as e:  # noqa: BLE001 - safetensors' errors, shape mismatches, discrete
            raise CheckpointError(f"{path} does not fit the model ({e})") from None

    # ---- agents ----

    def _agent_kwargs(self) -> dict[str, Any]:
        meta = self.meta
        return {
            "state_mean": np.asarray(meta["state_mean"], dtype=np.float32),
            "state_std": np.asarray(meta["state_std"], dtype=np.float32),
            "return_scale": float(meta["return_scale"]),
            "mode": self.mode,
            "context_length": self.context_length,
            "memory_horizon": self.acting_horizon,
            "env_id": self.env_spec.gym_id,
            "device": self.device,
        }

    def explorer(self) -> SamplingAgent:
        """The collection agent: samples, conditioned on the exploration return."""
        return SamplingAgent(
            self.policy,
            target_return=self.explore_target,
            seed=self.cfg.seed,
            **self._agent_kwargs(),
        )

    def deterministic_agent(self) -> DecisionAgent:
        """The evaluation agent (and what the checkpoint holds): ``tanh(mean)``."""
        keep = (
            "dataset",
            "dataset_fingerprint",
            "target_returns",
            "train_recipe",
            "reference_scores",
        )
        metadata = {k: self.meta[k] for k in keep if k in self.meta}
        metadata["finetune"] = {
            "env_steps": self.counters.env_steps,
            "updates": self.counters.updates,
        }
        if self.horizon_choice is not None:
            metadata["finetune"]["memory_horizon_choice"] = self.horizon_choice
        return DecisionAgent(
            self.policy.model,
            target_return=self.eval_target,
            metadata=metadata,
            **self._agent_kwargs(),
        )

    def choose_memory_horizon(self) -> dict[str, Any]:
        """--memory-horizon choose: play --horizon-episodes validation episodes with each
        candidate horizon (the deterministic policy, the evaluation target), act and train
        with the best from here on. Online, and recorded as such; counted as evaluation time.
        The torch RNG is left as it was, so the run after the choice is the run a fixed
        horizon of the same value gives."""
        from aaren_rl.eval.horizon import choose_memory_horizon

        cfg = self.cfg
        start = time.perf_counter()

        def make_agent(h: int) -> DecisionAgent:
            self.acting_horizon = h
            return self.deterministic_agent()

        with _one_thread(), torch.random.fork_rng(devices=[]):
            choice = choose_memory_horizon(
                make_agent,
                self.env_spec.gym_id,
                cfg.seed,
                candidates=cfg.horizon_candidates,
                episodes=cfg.horizon_episodes,
                num_envs=cfg.eval_num_envs,
                max_episode_steps=cfg.max_episode_steps,
            )
        self.acting_horizon = choice.memory_horizon
        self.train_horizon = self._train_horizon(self.policy.model.config.backbone)
        self.horizon_choice = {
            **choice.to_dict(),
            "checkpoint_memory_horizon": self.checkpoint_horizon,
        }
        self.counters.timing["eval"] += time.perf_counter() - start
        return self.horizon_choice

    # ---- collect, update, evaluate ----

    def collect(self) -> RoundStats:
        """One episode per environment with the explorer; the episodes enter the buffer."""
        from aaren_rl.eval.rollout import run_episodes

        cfg, c = self.cfg, self.counters
        sink: list = []
        clock = {"env": 0.0}
        envs = []
        for _ in range(cfg.num_envs):
            env = make_env(self.env_spec.gym_id)
            if cfg.max_episode_steps is not None:
                env = gym.wrappers.TimeLimit(env, cfg.max_episode_steps)
            envs.append(RecordingEnv(env, sink, clock))
        t0 = time.perf_counter()
        try:
            with _one_thread():
                stats = run_episodes(
                    self.explorer(),
                    envs,
                    cfg.num_envs,
                    seed=COLLECT_SEED_BASE * (1 + cfg.seed) + c.episodes,
                )
        finally:
            for e in envs:
                e.close()
        trajs = [t for _, t in sorted(sink, key=lambda st: st[0])]
        assert len(trajs) == cfg.num_envs, "every collection episode must have ended"
        out = RoundStats(
            trajs, stats.act_seconds, clock["env"], time.perf_counter() - t0, stats.act_cpu_seconds
        )
        self.buffer.add(trajs)
        self._rebuild_sampler()
        c.env_steps += out.env_steps
        c.episodes += cfg.num_envs
        c.rounds += 1
        c.timing["act"] += out.act_seconds
        c.timing["act_cpu"] += out.act_cpu_seconds
        c.act_cpu_env_steps += out.env_steps
        c.timing["env"] += out.env_seconds
        return out

    def updates_owed(self, env_steps: int) -> int:
        """Gradient steps bought by ``env_steps`` new steps (fractions carried over)."""
        c = self.counters
        c.update_credit += env_steps * self.cfg.updates_per_env_step
        n = int(c.update_credit)
        c.update_credit -= n
        return n

    def update(self) -> dict[str, float]:
        """One gradient step of the policy and one of the temperature (``--objective
        likelihood``), or one step of the offline loss on the mean (``mse``)."""
        t0 = time.perf_counter()
        self.policy.train()
        batch = self.sampler.sample().to(self.device)
        out = self.policy(
            batch.returns_to_go,
            batch.observations,
            batch.actions,
            batch.timesteps,
            memory_horizon=self.train_horizon,
        )
        logp, entropy = self.policy.log_prob_and_entropy(out, batch.actions)
        m = batch.mask.to(logp.dtype)
        n = m.sum().clamp_min(1.0)
        weights = decision_weights(batch.mask) if self.cfg.decision_weight else None
        nll = weighted_nll(logp, batch.mask, weights)
        ent = (entropy * m).sum() / n
        temperature = self.log_temperature.exp()
        if self.cfg.objective == "mse":  # the offline loss on the mean; log-std, T stay fixed
            model = self.policy.model
            preds = out.mean if model.config.discrete else torch.tanh(out.mean)
            loss = model.action_loss(
                preds, batch.actions, batch.mask, weights=weights, reduction="sum"
            )
        else:
            loss = nll - temperature.detach() * ent
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.cfg.objective == "likelihood":
            temperature_loss = temperature * (ent.detach() - self.target_entropy)
            self.temperature_optimizer.zero_grad(set_to_none=True)
            temperature_loss.backward()
            self.temperature_optimizer.step()
        self.counters.updates += 1
        self.counters.timing["update"] += time.perf_counter() - t0
        return {
            "train/loss": float(loss.detach()),
            "train/nll": float(nll.detach()),
            "train/entropy": float(ent.detach()),
            "train/temperature": float(temperature.detach()),
            "train/grad_norm": float(grad_norm),
            "train/lr": self.scheduler.get_last_lr()[0],
        }

    def evaluate(self) -> dict[str, Any] | None:
        """The deterministic policy over ``--eval-episodes`` (None when 0)."""
        cfg = self.cfg
        if not cfg.eval_episodes:
            return None
        from aaren_rl.eval.rollout import evaluate

        t0 = time.perf_counter()
        with _one_thread():
            result = evaluate(
                self.deterministic_agent(),
                self.env_spec.gym_id,
                episodes=cfg.eval_episodes,
                num_envs=cfg.eval_num_envs,
                seed=cfg.seed * cfg.eval_episodes,  # seeds 0, 1, ... share no episode
                max_episode_steps=cfg.max_episode_steps,
            ).to_dict()
        self.counters.timing["eval"] += time.perf_counter() - t0
        return result

    # ---- save, restore ----

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / CHECKPOINT

    def create_run_dir(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.run_dir / CONFIG, self.cfg.to_dict())
        except OSError as e:
            raise RunDirError(
                f"cannot write the run directory {self.run_dir}: {e.strerror or e}"
            ) from e

    def save(self) -> None:
        """Write the checkpoint atomically (module docstring, 5)."""
        from safetensors.torch import save_file

        t0 = time.perf_counter()
        c = self.counters
        state = {
            "format": 1,
            "counters": {
                k: getattr(c, k)
                for k in (
                    "env_steps",
                    "updates",
                    "rounds",
                    "episodes",
                    "update_credit",
                    "act_cpu_env_steps",
                )
            },
            "timing": dict(c.timing),
            "warmup": self.warmup,
            "decay_updates": self.decay_updates,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "temperature_optimizer": self.temperature_optimizer.state_dict(),
            "log_temperature": self.log_temperature.detach(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device)
            if self.device.type == "cuda"
            else None,
            "batch_rng": self.batch_rng.bit_generator.state,
            "wandb_id": self.wandb_id,
            "package_version": __version__,
        }
        agent = self.deterministic_agent()
        with atomic_directory(self.ckpt_dir) as tmp:
            save_model(tmp, self.policy.model, {**agent.checkpoint_metadata(), "step": c.updates})
            if self.policy.log_std_head is not None:
                head = {
                    k: v.detach().cpu().contiguous()
                    for k, v in self.policy.log_std_head.state_dict().items()
                }
                save_file(head, str(tmp / LOG_STD_FILE))
            save_trainer_state(tmp, state)
            self.buffer.save(tmp)
        c.timing["checkpoint"] += time.perf_counter() - t0

    def restore(self) -> None:
        """Load everything ``save`` wrote (the weights were loaded by ``build``)."""
        cfgm = self.policy.model.config
        state = load_trainer_state(self.ckpt_dir)
        try:
            self.warmup = int(state["warmup"])
            # absent from runs saved before --lr-decay, which ran without a decay
            self.decay_updates = int(state.get("decay_updates", self.decay_updates))
            self.scheduler = self._scheduler()
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.temperature_optimizer.load_state_dict(state["temperature_optimizer"])
            with torch.no_grad():
                self.log_temperature.copy_(state["log_temperature"])
            torch.set_rng_state(state["torch_rng"])
            if state.get("cuda_rng") is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
            self.batch_rng.bit_generator.state = state["batch_rng"]
            for k, v in state["counters"].items():
                setattr(self.counters, k, v)
            self.counters.timing.update(state["timing"])
            self.wandb_id = state.get("wandb_id")
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(
                f"{self.ckpt_dir}: the trainer state does not fit this run ({e})"
            ) from None
        self.buffer = ReplayBuffer.load(self.ckpt_dir, cfgm.obs_dim, cfgm.act_dim)
        self._rebuild_sampler()
        if self.cfg.env_steps <= self.counters.env_steps:
            raise ConfigError(
                f"the run in {self.run_dir} has already collected {self.counters.env_steps} env "
                f"steps; pass --env-steps N with N > {self.counters.env_steps} to extend it"
            )

    def _scheduler(self) -> Any:
        cfg = self.cfg
        return torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            functools.partial(
                lr_factor,
                warmup=self.warmup,
                decay_updates=self.decay_updates,
                decay=cfg.lr_decay,
                final_fraction=cfg.final_lr_fraction,
            ),
        )

    def resume_hint(self) -> str:
        if not (self.ckpt_dir / "trainer.json").is_file():
            return f"no checkpoint was written yet: remove {self.run_dir} and start again"
        return f"continue with: aaren-finetune --resume --run-dir {self.run_dir}"


def weighted_nll(
    logp: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """-(weighted mean of ``logp`` over real positions): ``mask`` (B, K) bool, ``weights``
    (B, K) or None (all 1)."""
    w = mask.to(logp.dtype)
    if weights is not None:
        w = w * weights.to(logp.dtype)
    return -(logp * w).sum() / w.sum().clamp_min(1e-12)


def _check_env_fits(spec: EnvSpec, model: DecisionModel) -> None:
    """Refuse, before anything is written, an env whose spaces are not the model's."""
    env = make_env(spec.gym_id)
    try:
        obs, act = env.observation_space.shape, env.action_space.shape
    finally:
        env.close()
    want = ((model.config.obs_dim,), (model.config.act_dim,))
    if (obs, act) != want:
        raise EnvError(
            f"{spec.gym_id} has observations {obs} and actions {act}; the checkpoint's model "
            f"expects {want[0]} and {want[1]}: pass the --env it was trained for"
        )


def lr_factor(
    step: int, warmup: int, decay_updates: int, decay: str, final_fraction: float
) -> float:
    """The learning rate at update ``step`` as a fraction of --learning-rate: DT / ODT's linear
    warm-up, then constant (``none``) or a half cosine from 1 down to ``final_fraction`` at
    update ``decay_updates``, held after it (``cosine``)."""
    warm = lr_lambda(warmup)(step)
    if decay == "none" or step < warmup:
        return warm
    done = min((step - warmup) / max(decay_updates - warmup, 1), 1.0)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * done))


class _one_thread:
    """Act on one torch thread (a chain of tiny ops: extra threads only spin)."""

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.threads)
