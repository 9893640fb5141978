"""``aaren-finetune``: improve an offline Decision agent by acting (Online Decision Transformer).

Examples:
    aaren-finetune --checkpoint runs/demo/checkpoint --env-steps 5000      # demo:hopper run
    aaren-finetune --checkpoint runs/x/checkpoint --num-envs 8 --updates-per-env-step 0.5
    aaren-finetune --run-dir runs/ft1 --resume                              # after a kill
    aaren-finetune --run-dir runs/ft1 --resume --env-steps 20000            # extend a run

The run directory holds config.json, metrics.jsonl (``online/``, ``train/``, ``eval/``,
``buffer/``, ``time/`` records keyed by environment steps), checkpoint/ (an ordinary agent
checkpoint that aaren-eval reads, plus the log-std head, the trainer state and the replay
buffer) and, at the end, summary.json (offline and final scores, the time split into acting,
environment stepping and updates). See docs/online.md.

Exit codes (``aaren_rl.cli.run_cli``): 0 done, 2 bad input (one line naming the flag or
file), 1 a failure during the work, 130 interrupted (the message says how to resume).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aaren_rl.cpu import cpu_record
from aaren_rl.fileio import atomic_write_json
from aaren_rl.tracking import MetricsLog, WandbTracker
from aaren_rl.train.finetune import Finetuner
from aaren_rl.train.finetune_config import FinetuneConfig

__all__ = ["FinetuneResult", "finetune", "main", "parse_config"]

SUMMARY = "summary.json"


@dataclass
class FinetuneResult:
    run_dir: Path
    summary: dict[str, Any]


def parse_config(argv: Sequence[str] | None = None) -> FinetuneConfig:
    """Parse and check the flags; with ``--resume`` the run's config.json fills the rest
    (as ``aaren-train``: the argv is parsed again with the saved values as defaults)."""
    import tyro

    from aaren_rl.errors import RunDirError
    from aaren_rl.train.run_dir import CONFIG
    from aaren_rl.untrusted import check_dataclass_dict, read_json

    args = None if argv is None else [str(a) for a in argv]
    cfg = tyro.cli(FinetuneConfig, args=args, description=FinetuneConfig.__doc__)
    cfg.validate()
    if cfg.resume:
        assert cfg.run_dir is not None
        path = cfg.run_dir / CONFIG
        if not path.is_file():
            raise RunDirError(f"nothing to resume in {cfg.run_dir}: no {CONFIG}")
        saved = read_json(path, RunDirError)
        check_dataclass_dict(FinetuneConfig, saved, str(path), RunDirError)
        default = FinetuneConfig(**{**saved, "run_dir": cfg.run_dir, "resume": True})
        for key in ("checkpoint", "run_dir"):
            value = getattr(default, key)
            setattr(default, key, None if value is None else Path(value))
        cfg = tyro.cli(
            FinetuneConfig, args=args, default=default, description=FinetuneConfig.__doc__
        )
        cfg.validate()
    return cfg


def finetune(cfg: FinetuneConfig) -> FinetuneResult:
    """Run (or, with ``cfg.resume``, continue) online fine-tuning; returns the summary.

    Raises:
        aaren_rl.errors.AarenError: a bad flag, checkpoint, dataset or run directory.
        KeyboardInterrupt: interrupted; its note says how to continue.
    """
    ft = Finetuner.build(cfg)  # every check; nothing written
    log = MetricsLog(ft.run_dir / "metrics.jsonl")
    tracker = None
    try:
        if cfg.resume:
            ft.restore()
            log.truncate_after(ft.counters.env_steps)
        else:
            ft.create_run_dir()
        if cfg.track:
            tracker = WandbTracker(
                {**cfg.to_dict(), "backbone": ft.policy.model.config.backbone, "mode": ft.mode},
                ft.run_dir,
                ft.run_dir.name,
                cfg.wandb_project,
                cfg.wandb_entity,
                cfg.wandb_group,
                resume_id=ft.wandb_id,
            )
            ft.wandb_id = tracker.id

        def record(metrics: dict[str, Any]) -> None:
            log.write(ft.counters.env_steps, metrics)
            if tracker:
                tracker.log(ft.counters.env_steps, metrics)

        if not cfg.resume:
            if cfg.memory_horizon == "choose":
                choice = ft.choose_memory_horizon()
                record({"horizon/chosen": choice["memory_horizon"]})
                if cfg.progress:
                    from aaren_rl.train.cli import print_horizon

                    print_horizon(choice)
            _record_eval(ft, record)  # the offline score (chosen horizon), at env step 0
            ft.save()
        _loop(ft, record)
        final = _record_eval(ft, record)
        ft.save()
        summary = _summary(ft, log.read(), final)
        atomic_write_json(ft.run_dir / SUMMARY, summary)
    except KeyboardInterrupt as e:
        e.add_note(ft.resume_hint())
        raise
    finally:
        try:
            if tracker:
                tracker.finish()
        finally:
            ft.lock.release()  # taken by Finetuner.build
    return FinetuneResult(ft.run_dir, summary)


def _record_eval(ft: Finetuner, record: Any) -> dict[str, Any] | None:
    result = ft.evaluate()
    if result is not None:
        numbers = {
            k: v
            for k, v in result.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        # the wall-clock of learning so far (acting, env stepping, updates; not evaluations):
        # the x axis of the curves against time (docs/online.md)
        t = ft.counters.timing
        numbers["train_clock_s"] = sum(t.get(k, 0.0) for k in ("act", "env", "update"))
        record({f"eval/{k}": v for k, v in numbers.items()})
    return result


def _loop(ft: Finetuner, record: Any) -> None:
    """Rounds of collect, add, update until the env-step budget is spent; evaluation and
    checkpoints when their env-step multiples are crossed."""
    cfg, c = ft.cfg, ft.counters
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=cfg.env_steps,
            initial=c.env_steps,
            desc="finetune",
            unit="step",
            dynamic_ncols=True,
        )
    last_eval = None
    while c.env_steps < cfg.env_steps:
        before = c.env_steps
        stats = ft.collect()
        train: list[dict[str, float]] = [
            ft.update() for _ in range(ft.updates_owed(stats.env_steps))
        ]
        metrics: dict[str, Any] = {
            "online/return_mean": float(np.mean(stats.returns)),
            "online/return_max": float(np.max(stats.returns)),
            "online/length_mean": float(np.mean([len(t) for t in stats.trajectories])),
            "buffer/trajectories": len(ft.buffer),
            "buffer/transitions": ft.buffer.num_transitions,
            "buffer/evicted": ft.buffer.evicted,
            **ft.buffer.return_stats(),
            "env_steps": c.env_steps,
            "updates": c.updates,
            **{f"time/{k}_s": v for k, v in c.timing.items()},
        }
        if train:
            metrics.update({k: float(np.mean([t[k] for t in train])) for k in train[0]})
        record(metrics)
        if c.env_steps // cfg.eval_every > before // cfg.eval_every and c.env_steps < cfg.env_steps:
            last_eval = _record_eval(ft, record)
        if (
            c.env_steps // cfg.checkpoint_every > before // cfg.checkpoint_every
            and c.env_steps < cfg.env_steps
        ):
            ft.save()
        if bar is not None:
            post = {"online": f"{metrics['online/return_mean']:.0f}", "buffer": len(ft.buffer)}
            if last_eval is not None:
                post["eval"] = f"{last_eval.get('normalized_mean') or last_eval['return_mean']:.1f}"
            bar.set_postfix(post, refresh=False)
            bar.update(min(c.env_steps, cfg.env_steps) - bar.n)
    if bar is not None:
        bar.close()


def _summary(
    ft: Finetuner, records: list[dict[str, Any]], final: dict[str, Any] | None
) -> dict[str, Any]:
    """The run's outcome and time split (docs/online.md)."""
    c = ft.counters
    evals = [r for r in records if "eval/return_mean" in r]
    online = [r for r in records if "online/return_mean" in r]
    t = c.timing
    steps = max(c.env_steps, 1)
    keep = ("return_mean", "return_std", "normalized_mean", "normalized_std", "episodes")
    return {
        "env": ft.env_spec.gym_id,
        "backbone": ft.policy.model.config.backbone,
        "mode": ft.mode,
        "recipe": ft.recipe,
        "batch_size": ft.batch_size,
        "objective": ft.cfg.objective,
        "learning_rate": ft.cfg.learning_rate,
        "lr_decay": ft.cfg.lr_decay,
        "replay_size": ft.cfg.replay_size,
        "seed_trajectories": ft.cfg.seed_trajectories,
        "replay_eviction": ft.cfg.replay_eviction,
        "init_std": ft.cfg.init_std,
        "acting_memory_horizon": ft.acting_horizon,
        "memory_horizon_choice": ft.horizon_choice,  # --memory-horizon choose: online
        "train_memory_horizon": ft.train_horizon,
        "seed": ft.cfg.seed,
        "checkpoint": str(ft.cfg.checkpoint),
        "env_steps": c.env_steps,
        "updates": c.updates,
        "rounds": c.rounds,
        "episodes": c.episodes,
        "num_envs": ft.cfg.num_envs,
        "eval_target_return": ft.eval_target,
        "exploration_return": ft.explore_target,
        "offline_eval": {k: evals[0].get(f"eval/{k}") for k in keep} if evals else None,
        "final_eval": {k: final.get(k) for k in keep} if final else None,
        "curve": [
            {
                "env_steps": r["step"],
                "return_mean": r["eval/return_mean"],
                "normalized_mean": r.get("eval/normalized_mean"),
                "train_clock_s": r.get("eval/train_clock_s"),
            }
            for r in evals
        ],
        "online_returns": [
            {"env_steps": r["step"], "return_mean": r["online/return_mean"]} for r in online
        ],
        "time_seconds": dict(t),
        "acting_us_per_env_step": 1e6 * t["act"] / steps,
        # CPU time of acting (the acting thread's): comparable between runs under other loads
        "acting_cpu_us_per_env_step": (
            1e6 * t.get("act_cpu", 0.0) / c.act_cpu_env_steps if c.act_cpu_env_steps else None
        ),
        "acting_cpu_env_steps": c.act_cpu_env_steps,
        "env_us_per_env_step": 1e6 * t["env"] / steps,
        "update_ms_per_update": 1e3 * t["update"] / max(c.updates, 1),
        "machine": {
            "cpu": cpu_record(),  # model, cores and instruction-set flags
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _finetune(argv: Sequence[str] | None) -> int:
    result = finetune(parse_config(argv))
    s = result.summary
    print(f"run: {result.run_dir}")

    def score(e: dict | None) -> str:
        if not e:
            return "n/a"
        norm = e.get("normalized_mean")
        return f"return {e['return_mean']:.1f}" + (
            f" (normalized {norm:.1f})" if norm is not None else ""
        )

    print(f"offline: {score(s['offline_eval'])} -> online: {score(s['final_eval'])}")
    t = s["time_seconds"]
    print(
        f"{s['env_steps']} env steps, {s['updates']} updates; time: acting {t['act']:.1f} s "
        f"({s['acting_us_per_env_step']:.0f} us/step), env {t['env']:.1f} s, updates "
        f"{t['update']:.1f} s ({s['update_ms_per_update']:.0f} ms/update), eval {t['eval']:.1f} s"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from aaren_rl.cli import run_cli

    return run_cli("aaren-finetune", lambda: _finetune(argv))


if __name__ == "__main__":
    sys.exit(main())
