"""The training loop: data, model, optimiser, checkpoints, evaluation and logging.

Follows the Decision Transformer recipe (Chen et al. 2021; official ``gym/experiment.py``):
AdamW, linear warm-up, gradient-norm clip 0.25, MSE on actions at real (unpadded) positions.
A run directory holds:

    config.json      the TrainConfig (resume checks it)
    metrics.jsonl    train/ and eval/ metrics, one JSON record per line
    checkpoint/      the latest checkpoint, written atomically (agents/checkpoint.py),
                     including trainer.pt (optimiser, scheduler, RNG and sampler state)

A resumed run restores everything the next step depends on (weights, AdamW moments, the
scheduler, torch's RNG for dropout, the sampler's generator), so it ends bit-identical to
an uninterrupted run with the same seed and thread count.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aaren_rl.aaren_policy import DecisionModel, DecisionModelConfig, __version__
from aaren_rl.agents import DecisionAgent
from aaren_rl.agents.checkpoint import (
    atomic_directory,
    atomic_write_text,
    load_model,
    recover_directory,
    save_model,
)
from aaren_rl.envs import get_env_spec, load_dataset, make_sampler
from aaren_rl.envs.datasets import check_dataset_matches_env
from aaren_rl.errors import TrainError
from aaren_rl.tracking import MetricsLog, WandbTracker
from aaren_rl.train.config import TrainConfig, config_differences
from aaren_rl.train.distributed import DistContext

__all__ = ["TrainError", "TrainResult", "masked_action_loss", "train"]

TRAINER_STATE = "trainer.pt"


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    final_loss: float
    seconds_per_step: float
    eval: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)


def masked_action_loss(
    preds: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared error over the real positions only.

    Args:
        preds, actions: (B, K, act_dim).
        mask: (B, K) bool, True at real positions.
    """
    per_pos = ((preds - actions) ** 2).mean(-1)  # (B, K)
    m = mask.to(per_pos.dtype)
    return (per_pos * m).sum() / m.sum().clamp_min(1.0)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda was asked for, but torch sees no CUDA device; use cpu")
    return torch.device(name)


def _resume_config(cfg: TrainConfig, explicit: set[str] | None = None) -> TrainConfig:
    """On --resume, the run's saved config, with the flags not given filled from it.

    ``explicit`` names the fields given on the command line; without it, a field counts as
    given when it differs from its default. A flag given with a value different from the
    run's is an error: the run would not be the same run any more.
    """
    if cfg.run_dir is None:
        raise TrainError("--resume needs --run-dir DIR: the run to continue")
    run_dir = cfg.run_dir
    config_path = run_dir / "config.json"
    recover_directory(run_dir / "checkpoint")
    if not config_path.exists() or not (run_dir / "checkpoint" / TRAINER_STATE).exists():
        raise TrainError(
            f"nothing to resume in {run_dir}: no config.json or checkpoint/{TRAINER_STATE}. "
            "Start it without --resume."
        )
    saved = json.loads(config_path.read_text())
    defaults = TrainConfig().to_dict()
    merged = cfg.to_dict()
    for key, value in saved.items():
        given = key in explicit if explicit is not None else merged.get(key) != defaults.get(key)
        if key in merged and not given:
            merged[key] = value
    merged_cfg = TrainConfig(**{**merged, "resume": True, "run_dir": run_dir})
    diffs = config_differences(saved, merged_cfg)
    if diffs:
        raise TrainError(
            "--resume with a different configuration (start a new --run-dir instead):\n  "
            + "\n  ".join(diffs)
        )
    return merged_cfg


def _prepare_new_run_dir(run_dir: Path) -> None:
    """Refuse to overwrite an existing run; check the directory can be written."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise TrainError(
            f"{run_dir} already holds a run; pass --resume to continue it, or choose a new "
            "--run-dir (nothing was overwritten)"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise TrainError(f"cannot write the run directory {run_dir}: {e}") from e


def _lr_lambda(warmup: int):
    # DT: LambdaLR(lambda steps: min((steps + 1) / warmup_steps, 1))
    return lambda step: min((step + 1) / max(warmup, 1), 1.0)


def _make_agent(
    model: DecisionModel, cfg: TrainConfig, dataset: Any, env_spec: Any, target: float
) -> DecisionAgent:
    return DecisionAgent(
        model,
        dataset.state_mean,
        dataset.state_std,
        return_scale=cfg.return_scale,
        target_return=target,
        mode=cfg.eval_mode,
        context_length=cfg.context_length,
        env_id=env_spec.gym_id,
        metadata={
            "dataset": cfg.dataset,
            "target_returns": list(env_spec.target_returns),
            "train_recipe": cfg.resolved_recipe,
            # DESIGN.md §5: normalise with the dataset's own reference returns when it has them.
            "reference_scores": dataset.reference_scores,
        },
    )


def _evaluate(agent: DecisionAgent, cfg: TrainConfig, env_id: str) -> dict[str, Any]:
    from aaren_rl.eval.rollout import evaluate

    result = evaluate(
        agent,
        env_id,
        episodes=cfg.eval_episodes,
        num_envs=cfg.eval_num_envs,
        seed=cfg.seed,
        max_episode_steps=cfg.eval_max_episode_steps,
    )
    return result.to_dict()


def train(cfg: TrainConfig, explicit: set[str] | None = None) -> TrainResult:
    """Run (or resume) training as configured; returns a summary.

    Args:
        cfg: the configuration.
        explicit: field names given on the command line (for --resume's consistency check).
    """
    device = _resolve_device(cfg.device)
    ctx = DistContext.from_env(device.type)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    if cfg.resume:
        cfg = _resume_config(cfg, explicit)
    dataset = load_dataset(cfg.dataset, download=cfg.download)
    env_name = cfg.env or dataset.env_id
    if env_name is None:
        raise TrainError(f"{cfg.dataset} does not record its environment: pass --env (e.g. hopper)")
    env_spec = get_env_spec(env_name)
    check_dataset_matches_env(dataset, env_spec)
    longest = max(len(t) for t in dataset.trajectories)
    if cfg.resolved_recipe == "episode" and longest > cfg.episode_length and ctx.is_main:
        print(
            f"[aaren-rl] warning: episodes up to {longest} steps, --episode-length "
            f"{cfg.episode_length}: the episode recipe trains only on their first "
            f"{cfg.episode_length} steps"
        )
    target = cfg.target_return if cfg.target_return is not None else env_spec.target_returns[0]

    run_dir = ctx.broadcast(cfg.run_dir or cfg.default_run_dir(env_spec.name))
    problem = None
    if ctx.is_main and not cfg.resume:
        try:
            _prepare_new_run_dir(run_dir)
        except TrainError as e:
            problem = str(e)
    problem = ctx.broadcast(problem)  # every rank stops, none waits at a barrier for rank 0
    if problem is not None:
        raise TrainError(problem)
    ckpt_dir = run_dir / "checkpoint"

    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    model_config = DecisionModelConfig(
        obs_dim=dataset.obs_dim,
        act_dim=dataset.act_dim,
        backbone=cfg.backbone,
        net=cfg.net_config,
        max_timestep=cfg.max_timestep,
    )
    model = DecisionModel(model_config).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.resolved_warmup))
    sampler = make_sampler(
        cfg.resolved_recipe,
        dataset,
        context_length=cfg.window_length,
        batch_size=cfg.resolved_batch_size,
        return_scale=cfg.return_scale,
        state_mean=dataset.state_mean,
        state_std=dataset.state_std,
        seed=cfg.seed + 7919 * ctx.rank,
    )
    torch.manual_seed(cfg.seed + 7919 * ctx.rank)  # dropout differs across ranks

    metrics_log = MetricsLog(run_dir / "metrics.jsonl")
    start_step, wandb_id = 0, None
    if cfg.resume:
        loaded, _ = load_model(ckpt_dir, device)
        if loaded.config.to_dict() != model_config.to_dict():
            raise TrainError(f"{ckpt_dir} holds a different model than the run's config")
        model.load_state_dict(loaded.state_dict())
        trainer = torch.load(ckpt_dir / TRAINER_STATE, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(trainer["optimizer"])
        scheduler.load_state_dict(trainer["scheduler"])
        if len(trainer["ranks"]) != ctx.world_size:
            raise TrainError(
                f"the run was saved with {len(trainer['ranks'])} processes; resume it with the same "
                "number"
            )
        rank_state = trainer["ranks"][ctx.rank]
        sampler.load_state_dict(rank_state["sampler"])
        torch.set_rng_state(rank_state["torch_rng"])
        if rank_state.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state(rank_state["cuda_rng"], device)
        start_step, wandb_id = trainer["step"], trainer.get("wandb_id")
        if ctx.is_main:
            metrics_log.truncate_after(start_step)
    elif ctx.is_main:
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))

    net: nn.Module = model
    if ctx.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.local_rank] if device.type == "cuda" else None
        )

    tracker = None
    run_name = run_dir.name
    if cfg.track and ctx.is_main:
        tracker = WandbTracker(
            {
                **cfg.to_dict(),
                "model_params": model.num_parameters(),
                "dataset_spec": cfg.dataset,
            },
            run_dir,
            run_name,
            cfg.wandb_project,
            cfg.wandb_entity,
            cfg.wandb_group,
            resume_id=wandb_id,
        )

    def save_checkpoint(step: int) -> None:
        states = ctx.gather({"sampler": sampler.state_dict(), "torch_rng": torch.get_rng_state()})
        if not ctx.is_main:
            return
        agent = _make_agent(model, cfg, dataset, env_spec, target)
        with atomic_directory(ckpt_dir) as tmp:
            save_model(tmp, model, {**agent.checkpoint_metadata(), "step": step})
            torch.save(
                {
                    "step": step,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "ranks": states,
                    "wandb_id": tracker.id if tracker else wandb_id,
                    "package_version": __version__,
                },
                tmp / TRAINER_STATE,
            )
        model.train()

    def log(step: int, metrics: dict[str, Any]) -> None:
        metrics_log.write(step, metrics)
        if tracker:
            tracker.log(step, metrics)

    def run_eval(step: int) -> dict[str, Any]:
        agent = _make_agent(model, cfg, dataset, env_spec, target)
        # Acting is a chain of tiny ops: one thread is fastest, and extra threads that spin
        # on a busy machine can slow each action down a hundredfold.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            result = _evaluate(agent, cfg, env_spec.gym_id)
        finally:
            torch.set_num_threads(threads)
        model.train()
        eval_metrics = {
            f"eval/{k}": v
            for k, v in result.items()
            if isinstance(v, (int, float)) and v is not None
        }
        log(step, eval_metrics)
        return result

    bar = None
    if cfg.progress and ctx.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=cfg.steps,
            initial=start_step,
            desc=f"{cfg.backbone}",
            unit="step",
            dynamic_ncols=True,
        )

    model.train()
    loss_value, last_eval, eval_result = math.nan, None, None
    window_losses: list[float] = []
    t_window = time.perf_counter()
    step_times: list[float] = []
    for step in range(start_step + 1, cfg.steps + 1):
        t0 = time.perf_counter()
        batch = sampler.sample().to(device)
        preds, _ = net(batch.returns_to_go, batch.observations, batch.actions, batch.timesteps)
        loss = masked_action_loss(preds, batch.actions, batch.mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        step_times.append(time.perf_counter() - t0)
        loss_value = float(loss.detach())
        window_losses.append(loss_value)

        if step % cfg.log_every == 0 or step == cfg.steps:
            mean_loss = ctx.mean(float(np.mean(window_losses)))
            elapsed = time.perf_counter() - t_window
            if ctx.is_main:
                log(
                    step,
                    {
                        "train/loss": mean_loss,
                        "train/grad_norm": float(grad_norm),
                        "train/lr": scheduler.get_last_lr()[0],
                        "train/steps_per_second": len(window_losses) / max(elapsed, 1e-9),
                        "train/seconds_per_step": float(
                            np.median(step_times[-len(window_losses) :])
                        ),
                    },
                )
            window_losses, t_window = [], time.perf_counter()
        if (
            cfg.eval_every
            and step % cfg.eval_every == 0
            and step != cfg.steps
            and cfg.eval_episodes
        ):
            if ctx.is_main:
                eval_result = run_eval(step)
                last_eval = eval_result.get("normalized_mean")
                if last_eval is None:
                    last_eval = eval_result.get("return_mean")
            ctx.barrier()
        if step % cfg.checkpoint_every == 0 and step != cfg.steps:
            save_checkpoint(step)
        if bar is not None:
            post = {"loss": f"{loss_value:.4f}"}
            if last_eval is not None:
                post["eval"] = f"{last_eval:.1f}"
            bar.set_postfix(post, refresh=False)
            bar.update(1)

    if bar is not None:
        bar.close()
    final_step = max(cfg.steps, start_step)
    save_checkpoint(final_step)
    if ctx.is_main and cfg.eval_episodes:
        eval_result = run_eval(final_step)
    ctx.barrier()
    if tracker:
        tracker.finish()
    ctx.close()
    return TrainResult(
        run_dir=run_dir,
        steps=final_step,
        final_loss=loss_value,
        seconds_per_step=float(np.median(step_times)) if step_times else math.nan,
        eval=eval_result,
        metrics=metrics_log.read() if ctx.is_main else [],
    )
