"""``Trainer``: what one training run holds, and the five things done with it.

``build`` (data, model, optimiser, scheduler, sampler: every check, nothing written),
``start`` (a new run directory, or ``restore`` from the checkpoint of ``--resume``),
``train_step`` (one gradient step), ``save`` (an atomic checkpoint) and ``evaluate``
(``aaren_rl.eval.rollout``, the one episode loop). ``train()`` in ``train/loop.py`` strings them
together.

The recipe is the Decision Transformer's (Chen et al. 2021; official ``gym/experiment.py``):
AdamW, linear warm-up, gradient-norm clip 0.25, MSE on actions at real (unpadded) positions.
A resumed run restores everything the next step depends on (weights, AdamW moments, the
scheduler, torch's, numpy's and Python's RNGs, the sampler's generator), so it ends
bit-identical to an uninterrupted run with the same seed and thread count.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aaren_rl.aaren_policy import DecisionModel, DecisionModelConfig, __version__, to_left_padding
from aaren_rl.aaren_policy.precision import autocast, resolve_precision
from aaren_rl.agents import DecisionAgent
from aaren_rl.agents.checkpoint import load_model, save_model
from aaren_rl.cpu import cpu_record, default_threads
from aaren_rl.envs import get_env_spec, make_sampler
from aaren_rl.envs.datasets import check_dataset_matches_env
from aaren_rl.errors import (
    AarenError,
    CheckpointError,
    ConfigError,
    DatasetError,
    RunDirError,
    TrainError,
)
from aaren_rl.fileio import DirLock, atomic_directory
from aaren_rl.tracking import MetricsLog, WandbTracker
from aaren_rl.train.config import TrainConfig, config_differences
from aaren_rl.train.data_checks import (
    check_action_range,
    dataset_fingerprint,
    warn_degenerate_data,
    warn_long_episodes,
    warn_target_return,
)
from aaren_rl.train.distributed import DistContext
from aaren_rl.train.mixed_data import load_training_data
from aaren_rl.train.run_dir import (
    CHECKPOINT,
    check_new_run_dir,
    check_resumable,
    create_run_dir,
    dataset_file,
    read_dataset_record,
    read_saved_config,
    write_dataset_record,
)
from aaren_rl.train.trainer_state import (
    has_trainer_state,
    load_trainer_state,
    save_trainer_state,
)
from aaren_rl.untrusted import read_json

__all__ = ["StepStats", "Trainer", "checkpoint_step", "decision_weights", "masked_action_loss"]


def masked_action_loss(
    preds: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Squared error over the real positions only, in float32 (whatever the autocast).

    Args:
        preds, actions: (B, K, act_dim).
        mask: (B, K) bool, True at real positions.
        reduction: over action dimensions, "mean" (DT) or "sum" (d3rlpy); positions are
            always averaged.
    """
    err = (preds.float() - actions.float()) ** 2
    per_pos = err.sum(-1) if reduction == "sum" else err.mean(-1)  # (B, K)
    m = mask.to(per_pos.dtype)
    return (per_pos * m).sum() / m.sum().clamp_min(1.0)


def decision_weights(mask: torch.Tensor) -> torch.Tensor:
    """(B, K) loss weights for --decision-weight: 1, and at each row's last real step the
    row's number of real steps (with the episode recipe: the episode's last step, where a
    T-Maze agent decides, weighs as much as the rest of the episode)."""
    n = mask.sum(1)  # (B,)
    pos = torch.arange(mask.shape[1], device=mask.device)
    last = torch.where(mask, pos, -1).amax(1)  # the last real position (either padding)
    w = torch.ones(mask.shape, dtype=torch.float32, device=mask.device)
    rows = torch.arange(mask.shape[0], device=mask.device)
    w[rows, last.clamp_min(0)] = n.to(torch.float32).clamp_min(1.0)
    return w


def lr_lambda(warmup: int):
    # DT: LambdaLR(lambda steps: min((steps + 1) / warmup_steps, 1))
    return lambda step: min((step + 1) / max(warmup, 1), 1.0)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda where torch sees a GPU, else cpu; ``cuda`` without one: ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device; use cpu")
    return torch.device(name)


def _numpy_rng_state() -> dict[str, Any]:
    """numpy's global MT19937 state, its 624-word key as a list (plain values only)."""
    state = np.random.get_state(legacy=False)
    state["state"] = {**state["state"], "key": state["state"]["key"].tolist()}
    return state


def checkpoint_step(ckpt_dir: Path) -> int | None:
    """The step of the resumable checkpoint on disk (or of the copy an interrupted swap left
    aside, which --resume restores), None if there is none."""
    for d in (ckpt_dir, ckpt_dir.parent / f".{ckpt_dir.name}.old"):
        if has_trainer_state(d):
            try:
                return int(read_json(d / "agent.json", CheckpointError, root=d)["step"])
            except (CheckpointError, KeyError, TypeError, ValueError):
                return None
    return None


@dataclass
class StepStats:
    loss: float
    grad_norm: float
    seconds: float


class Trainer:
    """One training run: data, model, optimiser, sampler, run directory, logs."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext, device: torch.device) -> None:
        self.cfg, self.ctx, self.device = cfg, ctx, device
        self.precision = resolve_precision(cfg.precision, device)  # "fp32" or "bf16"
        self.start_step = 0  # the step the run starts from (> 0 after --resume)
        self.wandb_id: str | None = None
        self.tracker: WandbTracker | None = None
        self.metrics_log: MetricsLog | None = None
        self._window: list[float] = []  # losses since the last log line
        self._window_start = time.perf_counter()
        self.step_times: list[float] = []
        self.last_loss = math.nan
        # --threads, else the cores other processes leave free now (a resumed run takes the
        # count its checkpoint recorded: the count changes float rounding; aaren_rl/cpu.py)
        auto = cfg.threads is None and device.type == "cpu" and not ctx.enabled
        self.threads = default_threads() if auto else cfg.resolved_threads
        self.lock: DirLock | None = None

    # ---- build: every check and every object; nothing is written ----

    @classmethod
    def build(cls, cfg: TrainConfig) -> Trainer:
        device = resolve_device(cfg.device)
        ctx = DistContext.from_env(device.type)
        if ctx.enabled and device.type == "cuda":
            device = torch.device("cuda", ctx.local_rank)
        self = cls(cfg, ctx, device)
        torch.set_num_threads(self.threads)
        try:  # the run directory is locked before it is checked: no two runs race for it
            if cfg.resume:
                self._lock(cfg.run_dir)
                self._check_resume_config()
            self._load_data()
            self.run_dir = ctx.broadcast(cfg.run_dir or cfg.default_run_dir(self.env_spec.name))
            if not cfg.resume:  # locked first: a run in progress is named as such
                self._lock(self.run_dir)
                self._on_main(check_new_run_dir, self.run_dir)
            self._build_model()
        except BaseException:
            self.close_lock()
            raise
        return self

    def _lock(self, run_dir: Path | None) -> None:
        """Hold ``run_dir``'s lock (rank 0) until :meth:`close`; refuse if another process
        holds it ("in use by PID N")."""

        def acquire() -> None:
            self.lock = DirLock(run_dir, "--run-dir").acquire()

        assert run_dir is not None
        self._on_main(acquire)

    def close_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _check_resume_config(self) -> None:
        assert self.cfg.run_dir is not None  # validate() refuses --resume without --run-dir
        self._on_main(check_resumable, self.cfg.run_dir)
        diffs = config_differences(read_saved_config(self.cfg.run_dir), self.cfg)
        self.dataset_record = read_dataset_record(self.cfg.run_dir)
        if self.dataset_record.get("fingerprint"):  # the same data under another path is
            diffs = [d for d in diffs if not d.startswith("dataset:")]  # checked when loaded
        if diffs:
            raise RunDirError(
                "--resume with a different configuration (start a new --run-dir instead): "
                + "; ".join(diffs)
            )

    def _load_data(self) -> None:
        cfg = self.cfg
        try:
            self.dataset = load_training_data(self._dataset_spec(), download=cfg.download)
        except DatasetError as e:
            record = getattr(self, "dataset_record", {})
            if cfg.resume and record.get("path"):
                e.add_note(
                    f"the run was trained on {record['path']} (sha256 "
                    f"{str(record.get('sha256'))[:16]}...): pass --dataset d4rl:PATH to that "
                    "file or a copy of it"
                )
            raise
        env_name = cfg.env or self.dataset.env_id
        if env_name is None:
            raise DatasetError(
                f"{cfg.dataset} does not record its environment: pass --env (e.g. hopper)"
            )
        self.env_spec = get_env_spec(env_name)
        check_dataset_matches_env(self.dataset, self.env_spec)
        check_action_range(self.dataset)
        if self.ctx.is_main:
            warn_long_episodes(self.dataset, cfg.resolved_recipe, cfg.episode_length)
            warn_degenerate_data(self.dataset, cfg.return_scale)
        self.fingerprint = dataset_fingerprint(self.dataset)
        self.target = (
            cfg.target_return if cfg.target_return is not None else self.env_spec.target_returns[0]
        )
        if self.ctx.is_main:
            warn_target_return(self.dataset, self.target)
        # The acting default saved with checkpoints until the end of training chooses one.
        self.memory_horizon = (
            cfg.memory_horizon if cfg.memory_horizon is not None else cfg.train_memory_horizon
        )
        self.horizon_choice: dict[str, Any] | None = None
        self._hold_out_episodes()

    def _hold_out_episodes(self) -> None:
        """Offline horizon selection: split off the held-out episodes (``heldout``, dataset
        indices, saved in the checkpoint); ``train_data`` is the rest, all the sampler sees.
        Observation statistics stay the whole file's (the agent's normalisation)."""
        ds = self.dataset
        self.heldout: list[int] = []
        self.train_data = ds
        if self.cfg.holds_out_episodes(ds.discrete_actions):
            from aaren_rl.eval.offline_horizon import heldout_episodes

            self.heldout = heldout_episodes(
                len(ds.trajectories), self.cfg.seed, self.cfg.holdout_fraction
            )
            out = set(self.heldout)
            kept = [t for i, t in enumerate(ds.trajectories) if i not in out]
            self.train_data = dataclasses.replace(ds, trajectories=kept)

    def _dataset_spec(self) -> str:
        """The spec to load: ``--dataset``; on ``--resume`` from another folder, where a
        relative path finds nothing, the absolute path the run recorded (its fingerprint is
        checked against the checkpoint's before training goes on)."""
        spec, record = self.cfg.dataset, getattr(self, "dataset_record", {})
        recorded = record.get("path")
        if (
            self.cfg.resume
            and recorded
            and dataset_file(spec) is None
            and spec == record.get("spec")
        ):
            if Path(recorded).is_file():
                if self.ctx.is_main:
                    print(f"[aaren-rl] {spec} is not found from here; using the run's "
                          f"recorded {recorded}")  # fmt: skip
                return f"d4rl:{recorded}"
        return spec

    def _build_model(self) -> None:
        cfg, ds, rank_seed = self.cfg, self.dataset, self.cfg.seed + 7919 * self.ctx.rank
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.model_config = DecisionModelConfig(
            obs_dim=ds.obs_dim,
            act_dim=ds.act_dim,
            backbone=cfg.backbone,
            net=cfg.model,
            max_timestep=cfg.max_timestep,
            state_encoder=cfg.state_encoder,
            embed_init=cfg.embed_init,
            return_in_state_token=cfg.return_in_state_token,
            discrete=ds.discrete_actions,  # integer actions: categorical head
        )
        self.model = DecisionModel(self.model_config).to(self.device)  # float32 master weights
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(cfg.resolved_warmup)
        )
        self._rank_seed = rank_seed
        self.stage = 0  # the --curriculum stage the sampler draws from
        for stage in range(1, len(cfg.curriculum)):  # every stage has episodes: checked now
            self._stage_data(stage)
        self.sampler = self._make_sampler(0)
        self._next_step = 1  # the step the next train_step() makes (restore moves it)
        torch.manual_seed(rank_seed)  # dropout differs across ranks
        self.net: nn.Module = self.model
        if self.ctx.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.ctx.local_rank] if self.device.type == "cuda" else None
            )
        self.forward: nn.Module = torch.compile(self.net) if cfg.compile else self.net

    def _stage_data(self, stage: int) -> Any:
        """The episodes curriculum stage ``stage`` trains on (all without --curriculum)."""
        data, top = self.train_data, self.cfg.curriculum
        if not top:
            return data
        kept = [t for t in data.trajectories if len(t) <= top[stage]]
        if not kept:
            raise ConfigError(
                f"--curriculum stage {stage + 1} ({top[stage]} steps): no training episode is "
                f"that short (the shortest has {min(len(t) for t in data.trajectories)} steps)"
            )
        return dataclasses.replace(data, trajectories=kept)

    def _make_sampler(self, stage: int) -> Any:
        cfg, ds = self.cfg, self.dataset
        return make_sampler(
            cfg.resolved_recipe,
            self._stage_data(stage),  # without the held-out episodes
            context_length=cfg.window_length,
            batch_size=cfg.resolved_batch_size,
            return_scale=cfg.return_scale,
            state_mean=ds.state_mean,
            state_std=ds.state_std,
            seed=self._rank_seed + 104_729 * stage,  # stage 0: the run's sampler seed
            anchor=cfg.window_anchor if cfg.resolved_recipe == "window" else "start",
        )

    def _enter_stage_of(self, step: int) -> None:
        """Switch the sampler to the --curriculum stage of ``step`` (a fresh sampler at each
        stage's first step, as in a run that was never interrupted)."""
        stage = self.cfg.curriculum_stage(step)
        if stage != self.stage:
            self.stage, self.sampler = stage, self._make_sampler(stage)

    def _on_main(self, fn: Any, *args: Any) -> None:
        """Run ``fn`` on rank 0; if it raises, every rank raises (none waits at a barrier)."""
        problem = None
        if self.ctx.is_main:
            try:
                fn(*args)
            except AarenError as e:
                problem = e
        problem = self.ctx.broadcast(problem)
        if problem is not None:
            raise problem

    # ---- start: a new run directory, or restore the checkpoint ----

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / CHECKPOINT

    def start(self) -> None:
        if self.cfg.resume:
            self.restore()
        else:
            self._on_main(self._create_run_dir)
        self.metrics_log = MetricsLog(self.run_dir / "metrics.jsonl")
        if self.cfg.resume and self.ctx.is_main:
            self.metrics_log.truncate_after(self.start_step)
        if self.cfg.track and self.ctx.is_main:
            with self._new_run_dir_removed_on_failure():
                self.tracker = self._tracker()

    @contextmanager
    def _new_run_dir_removed_on_failure(self) -> Iterator[None]:
        """A new run that fails before its first step leaves no half-made run directory."""
        try:
            yield
        except BaseException:
            if not self.cfg.resume and checkpoint_step(self.ckpt_dir) is None:
                import shutil

                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    def _tracker(self) -> WandbTracker:
        return WandbTracker(
            {
                **self.cfg.to_dict(),
                "model_params": self.model.num_parameters(),
                "dataset_spec": self.cfg.dataset,
                "dataset_fingerprint": self.fingerprint,
            },
            self.run_dir,
            self.run_dir.name,
            self.cfg.wandb_project,
            self.cfg.wandb_entity,
            self.cfg.wandb_group,
            resume_id=self.wandb_id,
        )

    def _create_run_dir(self) -> None:
        create_run_dir(self.run_dir, self.cfg)
        write_dataset_record(self.run_dir, self.cfg.dataset, self.fingerprint)

    def restore(self) -> None:
        """Load weights and trainer state; refuse a checkpoint that does not fit this run."""
        loaded, _ = load_model(self.ckpt_dir, self.device)
        if loaded.config.to_dict() != self.model_config.to_dict():
            raise CheckpointError(f"{self.ckpt_dir} holds a different model than the run's config")
        state = load_trainer_state(self.ckpt_dir)
        try:
            step, ranks = int(state["step"]), state["ranks"]
            recorded = state.get("dataset_fingerprint")
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{self.ckpt_dir}: trainer state lacks {e}") from None
        if not isinstance(ranks, list) or not isinstance(recorded, (str, type(None))):
            raise CheckpointError(
                f"{self.ckpt_dir}: trainer state is malformed ('ranks' must be a list, "
                "'dataset_fingerprint' a string); restore the run directory, or start a new run"
            )
        self._check_resume_fits(step, len(ranks), recorded)
        self._enter_stage_of(step)  # the sampler whose state was saved
        try:
            self.model.load_state_dict(loaded.state_dict())
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self._set_rng_state(ranks[self.ctx.rank])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise CheckpointError(
                f"{self.ckpt_dir}: the trainer state does not fit this run ({e}); start a new run"
            ) from None
        self.start_step, self._next_step = step, step + 1
        wandb_id = state.get("wandb_id")  # from the file: a plain run id, or a fresh W&B run
        ok = isinstance(wandb_id, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", wandb_id)
        self.wandb_id = wandb_id if ok else None
        recorded_threads = state.get("threads")  # from the file: bounded like --threads
        if self.cfg.threads is None and isinstance(recorded_threads, int) and recorded_threads >= 1:
            self.threads = min(recorded_threads, len(os.sched_getaffinity(0)))
            torch.set_num_threads(self.threads)

    def _check_resume_fits(self, step: int, world: int, recorded: str | None) -> None:
        if world != self.ctx.world_size:
            raise RunDirError(
                f"the run in {self.run_dir} was saved with {world} processes; resume it with "
                "the same number"
            )
        if recorded is not None and recorded != self.fingerprint:
            raise DatasetError(
                f"--dataset {self.cfg.dataset} is not the data the run in {self.run_dir} was "
                f"trained on (fingerprint {self.fingerprint[:19]}..., the run recorded "
                f"{recorded[:19]}...): the file was replaced or changed. Restore the original "
                "dataset, or start a new run"
            )
        if self.cfg.steps <= step:
            raise ConfigError(
                f"the run in {self.run_dir} has already trained {step} steps; --steps "
                f"{self.cfg.steps} would add none. Pass --steps N with N > {step} to extend it"
            )

    def _rng_state(self) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        return {
            "sampler": self.sampler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None,
            "numpy_rng": _numpy_rng_state(),
            "python_rng": random.getstate(),
        }

    def _set_rng_state(self, rank_state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(rank_state["sampler"])
        torch.set_rng_state(rank_state["torch_rng"])
        if rank_state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rank_state["cuda_rng"], self.device)
        if rank_state.get("numpy_rng") is not None:  # absent in runs saved before it was kept
            np_state = rank_state["numpy_rng"]
            key = np.asarray(np_state["state"]["key"], dtype=np.uint32)
            np.random.set_state({**np_state, "state": {**np_state["state"], "key": key}})
        if rank_state.get("python_rng") is not None:
            random.setstate(rank_state["python_rng"])

    def compute_path(self) -> str:
        """One line: where and how this run computes (device, precision and why, threads)."""
        if self.device.type != "cpu":
            return f"training on {self.device} in {self.precision}"
        cpu = cpu_record()
        native = [f for f in ("avx512_bf16", "amx_bf16") if cpu["flags"][f]]
        why = (
            f"native on this CPU: {', '.join(native)}"
            if native
            else "no AVX512-BF16/AMX on this CPU"
            if self.precision == "fp32"
            else "emulated"
        )
        isa = "AVX-512" if cpu["flags"]["avx512f"] else "AVX2" if cpu["flags"]["avx2"] else "x86"
        return (
            f"training on cpu ({cpu['model']}, {isa}) in {self.precision} ({why}), "
            f"{self.threads} of {cpu['cores']} cores"
        )

    # ---- step, log, save, evaluate ----

    def train_step(self) -> StepStats:
        """One gradient step on one batch (DDP averages the gradients across ranks)."""
        t0 = time.perf_counter()
        self._enter_stage_of(self._next_step)
        self._next_step += 1
        batch = self.sampler.sample().to(self.device)
        rtg, obs, act, ts, mask = (
            batch.returns_to_go,
            batch.observations,
            batch.actions,
            batch.timesteps,
            batch.mask,
        )
        token_mask = None  # right padding needs none: the backbones are causal
        if self.cfg.padding == "left":
            mask, (rtg, obs, act, ts) = to_left_padding(mask, rtg, obs, act, ts)
            token_mask = mask
        with autocast(self.precision, self.device):  # bf16 matmuls; the scan stays float32
            preds, _ = self.forward(
                rtg, obs, act, ts, mask=token_mask, memory_horizon=self.cfg.train_memory_horizon
            )
        weights = decision_weights(mask) if self.cfg.decision_weight else None
        loss = self.model.action_loss(
            preds, act, mask, weights=weights, reduction=self.cfg.loss_reduction
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self._check_finite(float(loss.detach()), float(grad_norm))  # before the weights change
        self.optimizer.step()
        self.scheduler.step()
        stats = StepStats(float(loss.detach()), float(grad_norm), time.perf_counter() - t0)
        self.step_times.append(stats.seconds)
        self.last_loss = stats.loss
        self._window.append(stats.loss)
        return stats

    def _check_finite(self, loss: float, grad_norm: float) -> None:
        """Stop at the first non-finite loss or gradient, before the optimiser step: the
        weights stay as they were and nothing of this step is saved. (DDP averages the
        gradients, so every rank sees the same gradient norm and stops at the same step.)"""
        if math.isfinite(loss) and math.isfinite(grad_norm):
            return
        step = self.start_step + len(self.step_times) + 1
        cfg, ds = self.cfg, self.dataset
        rtg = float(np.max(np.abs(ds.episode_returns))) if len(ds.episode_returns) else 0.0
        obs = max(float(np.max(np.abs(t.observations), initial=0.0)) for t in ds.trajectories)
        last = checkpoint_step(self.ckpt_dir)
        kept = "no checkpoint was written" if last is None else f"the checkpoint of step {last}"
        raise TrainError(
            f"step {step}: the training loss is {loss} (gradient norm {grad_norm}), not a "
            f"finite number; training stopped before this step changed the weights "
            f"({kept} is untouched). Likely cause: the data's scale. The largest episode "
            f"return is {rtg:.3g}, {rtg / cfg.return_scale:.3g} after --return-scale "
            f"{cfg.return_scale:g} (keep it near 1-10: raise --return-scale or rescale the "
            f"rewards); the largest |observation| is {obs:.3g}. Otherwise lower "
            f"--learning-rate ({cfg.learning_rate:g})"
        )

    def log_train(self, step: int, stats: StepStats) -> None:
        """Log the mean loss since the last log line (averaged over ranks)."""
        mean_loss = self.ctx.mean(float(np.mean(self._window)))
        elapsed = time.perf_counter() - self._window_start
        if self.ctx.is_main:
            n = len(self._window)
            self._log(
                step,
                {
                    "train/loss": mean_loss,
                    "train/grad_norm": stats.grad_norm,
                    "train/lr": self.scheduler.get_last_lr()[0],
                    "train/steps_per_second": n / max(elapsed, 1e-9),
                    "train/seconds_per_step": float(np.median(self.step_times[-n:])),
                },
            )
        self._window, self._window_start = [], time.perf_counter()

    def _log(self, step: int, metrics: dict[str, Any]) -> None:
        assert self.metrics_log is not None
        self.metrics_log.write(step, metrics)
        if self.tracker:
            self.tracker.log(step, metrics)

    def agent(self, memory_horizon: int | None = None) -> DecisionAgent:
        cfg, ds = self.cfg, self.dataset
        return DecisionAgent(
            self.model,
            ds.state_mean,
            ds.state_std,
            return_scale=cfg.return_scale,
            target_return=self.target,
            mode=cfg.eval_mode,
            context_length=cfg.context_length,
            memory_horizon=self.memory_horizon if memory_horizon is None else memory_horizon,
            env_id=self.env_spec.gym_id,
            device=self.device,  # DecisionAgent moves the model: keep it where it trains
            metadata={
                "dataset": cfg.dataset,
                "dataset_fingerprint": self.fingerprint,
                "target_returns": list(self.env_spec.target_returns),
                "train_recipe": cfg.resolved_recipe,
                "train_precision": self.precision,
                # docs/design.md §5: normalise with the dataset's own reference returns.
                "reference_scores": ds.reference_scores,
                "horizon_selection": self._selection_record(),
                "train_memory_horizon": cfg.train_memory_horizon,
            },
        )

    def save(self, step: int) -> None:
        """Write the checkpoint of ``step`` atomically (rank 0; every rank must call it).

        A failed write (disk full, ``ulimit -f``) leaves the previous checkpoint intact and
        raises ``OSError`` naming the checkpoint and how to continue.
        """
        states = self.ctx.gather(self._rng_state())
        if not self.ctx.is_main:
            return
        from safetensors import SafetensorError

        trainer_state = {
            "step": step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ranks": states,
            "wandb_id": self.tracker.id if self.tracker else self.wandb_id,
            "dataset_fingerprint": self.fingerprint,
            "package_version": __version__,
            "threads": self.threads,
        }
        try:
            with atomic_directory(self.ckpt_dir) as tmp:
                save_model(tmp, self.model, {**self.agent().checkpoint_metadata(), "step": step})
                save_trainer_state(tmp, trainer_state)
        except (OSError, SafetensorError) as e:
            raise self._write_failure(e) from None
        self.model.train()

    def _write_failure(self, e: Exception) -> OSError:
        code = e.errno if isinstance(e, OSError) else None
        if code is None:  # safetensors reports the OS error in its message
            found = re.search(r"os error (\d+)", str(e))
            code = int(found.group(1)) if found else None
        err = OSError(code, os.strerror(code) if code else str(e), str(self.ckpt_dir))
        err.add_note(self.resume_hint())
        return err

    def resume_hint(self) -> str:
        """What to do after an interruption or a failed write: resume, or start again.

        Read from disk, not from memory: an interrupt can land after a checkpoint's swap and
        before ``save`` returns.
        """
        step = checkpoint_step(self.ckpt_dir)
        if step is None:
            return (
                f"no checkpoint was written yet, so {self.run_dir} cannot be resumed: remove it "
                "and start again"
            )
        return (
            f"the checkpoint of step {step} is intact; continue with: aaren-train "
            f"--resume --run-dir {self.run_dir}"
        )

    @contextmanager
    def _acting(self) -> Iterator[None]:
        """Act in the env on one torch thread, then put the model back in training mode.

        Acting is a chain of tiny ops: one thread is fastest, and extra threads that spin on a
        busy machine can slow each action down a hundredfold. (Agents put the model in eval
        mode.)
        """
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            self.model.train()

    def evaluate(self, step: int) -> dict[str, Any] | None:
        """Evaluate in the env on rank 0 and log ``eval/`` metrics (every rank must call it)."""
        result = None
        if self.ctx.is_main:
            from aaren_rl.eval.rollout import evaluate

            with self._acting():
                result = evaluate(
                    self.agent(),
                    self.env_spec.gym_id,
                    episodes=self.cfg.eval_episodes,
                    num_envs=self.cfg.eval_num_envs,
                    seed=self.cfg.seed,
                    max_episode_steps=self.cfg.eval_max_episode_steps,
                ).to_dict()
            numbers = {k: v for k, v in result.items() if isinstance(v, (int, float))}
            self._log(step, {f"eval/{k}": v for k, v in numbers.items()})
        self.ctx.barrier()
        return result

    def _selection_record(self) -> dict[str, Any] | None:
        """How the acting horizon was (or will be) chosen, for the checkpoint's metadata."""
        if not self.cfg.chooses_memory_horizon(self.dataset.discrete_actions):
            return None
        return {
            "selection": self.cfg.horizon_selection,
            "heldout_episodes": self.heldout,  # [] when online: every episode was trained on
            "holdout_fraction": self.cfg.holdout_fraction if self.heldout else None,
            "choice": self.horizon_choice,
        }

    def choose_memory_horizon(self, step: int) -> dict[str, Any] | None:
        """With --memory-horizon unset (Aaren, continuous actions): pick the acting horizon
        among --horizon-candidates as --horizon-selection says (offline: action error on the
        held-out episodes, ``eval.offline_horizon``; online: return on validation episodes
        in the env, ``eval.horizon``), keep it for the checkpoint and log it. Every rank
        must call it; returns the choice (rank 0) or None."""
        cfg = self.cfg
        if not cfg.chooses_memory_horizon(self.model.config.discrete):
            return None
        choice = None
        if self.ctx.is_main:
            with self._acting():
                choice = self._offline_choice() if self.heldout else self._online_choice()
            self._log(step, _choice_metrics(choice))
        self.memory_horizon = self.ctx.broadcast(choice["memory_horizon"] if choice else None)
        self.horizon_choice = self.ctx.broadcast(choice)
        return choice

    def _offline_choice(self) -> dict[str, Any]:
        from aaren_rl.eval.offline_horizon import choose_memory_horizon_offline

        return choose_memory_horizon_offline(
            self.model,
            self.dataset,
            self.heldout,
            self.cfg.return_scale,
            self.cfg.horizon_candidates,
            self.cfg.offline_criterion,
            target_return=self.target,  # the return the agent acts for
        ).to_dict()

    def _online_choice(self) -> dict[str, Any]:
        from aaren_rl.eval.horizon import choose_memory_horizon

        cfg = self.cfg
        return choose_memory_horizon(
            lambda h: self.agent(memory_horizon=h),
            self.env_spec.gym_id,
            cfg.seed,
            cfg.horizon_candidates,
            cfg.eval_episodes,
            cfg.eval_num_envs,
            cfg.eval_max_episode_steps,
        ).to_dict()

    @property
    def seconds_per_step(self) -> float:
        return float(np.median(self.step_times)) if self.step_times else math.nan

    def close(self) -> None:
        try:
            if self.tracker:
                self.tracker.finish()
            self.ctx.close()
        finally:
            self.close_lock()


def _choice_metrics(choice: dict[str, Any]) -> dict[str, Any]:
    """Log lines of a horizon choice, labelled by how it was made (``offline/`` or
    ``online/``): the chosen H and every candidate's score."""
    if choice.get("selection") == "offline":
        errs = choice["action_errors_by_criterion"]
        return {
            "offline/memory_horizon": choice["memory_horizon"],
            **{
                f"offline/{c}_action_error_h{h}": e
                for c, by_h in errs.items()
                for h, e in by_h.items()
            },
        }
    scores = {f"online/validation_score_h{h}": v for h, v in choice["validation_scores"].items()}
    return {"online/memory_horizon": choice["memory_horizon"], **scores}
