"""``aaren-bench online``: fine-tune offline checkpoints online, every checkpoint x seed alike.

Each task is one ``aaren-finetune`` run (``train/finetune_cli.py``) from an offline checkpoint
(e.g. the ``aaren-bench returns`` grid's runs), run as a Ray task or in a local process pool
(``bench/grid.py``). A finished run (its JSON exists) is skipped; an interrupted one resumes
from its checkpoint bit-identically, so a grid stopped at any point and started again ends
with the same JSON files (up to the timing).

Files in ``--out-dir``: ``runs/NAME/`` (each fine-tuning run directory), ``NAME.json`` (that
run's summary: offline and final scores, the evaluation curve against env steps, the time
split into acting, env stepping and updates, the machine) and ``summary.json`` /
``summary.md`` (mean ± std over seeds per environment and backbone, and the acting-time
ratio of the Transformer to Aaren where both ran). ``--summary-only`` rebuilds the summary
from the JSON files.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aaren_rl.agents.checkpoint import read_metadata
from aaren_rl.bench.grid import GridOptions, run_grid
from aaren_rl.errors import ConfigError
from aaren_rl.fileio import atomic_write_json, atomic_write_text

__all__ = ["OnlineBenchConfig", "OnlineRun", "run_online_bench", "run_one", "summarize_online"]


@dataclass
class OnlineBenchConfig:
    """Online fine-tuning grid: every offline checkpoint x seed, fine-tuned alike."""

    checkpoints: tuple[Path, ...] = ()
    """Offline checkpoint folders (RUN/checkpoint of aaren-train or aaren-bench returns)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Fine-tuning seeds (collection, updates, evaluation episodes)."""
    env_steps: int = 50_000
    """Online budget per run in environment steps (ODT: 200k)."""
    num_envs: int = 4
    """Environments stepped in lockstep during collection."""
    updates_per_env_step: float = 0.3
    """Gradient steps per collected environment step."""
    eval_every: int = 5000
    """Evaluate every N env steps (and before and after)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    max_episode_steps: int | None = None
    """Cut episodes earlier than the env's limit (tests)."""
    out_dir: Path = Path("runs/bench/online")
    """Where runs, per-run JSON and the summary go."""
    summary_only: bool = False
    """Only rebuild summary.json / summary.md from the JSON files in --out-dir."""
    executor: Literal["ray", "local"] = "ray"
    """ray (tasks on this machine or --address), or local (a process pool)."""
    address: str | None = None
    """Ray cluster to join."""
    num_cpus: int | None = None
    """CPUs for the local Ray instance / processes of the local pool."""
    recipe: Literal["auto", "window", "episode"] = "auto"
    """Training windows from the buffer (aaren-finetune --recipe; auto: the checkpoint's)."""
    batch_size: int | None = None
    """Windows per update (aaren-finetune --batch-size; default: the recipe's)."""
    objective: Literal["likelihood", "mse"] = "likelihood"
    """aaren-finetune --objective: likelihood (ODT's, learned temperature) or mse (the offline
    loss on the mean, fixed exploration noise)."""
    learning_rate: float | None = None
    """aaren-finetune --learning-rate (default: aaren-finetune's, 1e-4 as ODT)."""
    lr_decay: Literal["none", "cosine"] = "none"
    """aaren-finetune --lr-decay: none (ODT's constant rate) or cosine (down to a tenth of it
    at the end of the budget)."""
    init_std: float | None = None
    """aaren-finetune --init-std: the exploration noise's starting std (pre-tanh; with
    --objective mse it stays there). Default: aaren-finetune's, 0.1."""
    train_horizon: Literal["auto", "on", "off"] = "auto"
    """aaren-finetune --train-horizon: auto (on for Aaren acting recurrently), off, or on
    (given to the Aaren checkpoints only; the Transformer ones keep auto)."""
    seed_trajectories: int | None = None
    """aaren-finetune --seed-trajectories: the buffer starts from this many of the offline
    data's best episodes (default: aaren-finetune's, as many as --replay-size holds)."""
    replay_size: int | None = None
    """aaren-finetune --replay-size: the buffer's capacity in trajectories (default:
    aaren-finetune's, 1000 as ODT)."""
    replay_eviction: Literal["oldest", "lowest-return"] = "oldest"
    """aaren-finetune --replay-eviction: which trajectories leave the full buffer, the oldest
    (ODT) or those with the lowest return."""
    memory_horizon: str = "checkpoint"
    """aaren-finetune --memory-horizon, given to the Aaren checkpoints only: checkpoint (its
    own), choose (the best of 0, 10, 20, 40 on validation episodes before fine-tuning: an
    online choice, recorded in each run's summary) or a number of timesteps."""
    acting_only: tuple[int, ...] = ()
    """Instead of fine-tuning, time collection alone: with one Aaren and one Transformer
    checkpoint, their explorers collect rounds (one episode per environment, no updates)
    alternately on this machine, at each of these environment counts; acting and env time
    per collected env step into acting.json in --out-dir (docs/research/online.md, "Acting cost")."""
    acting_rounds: int = 3
    """Collection rounds per backbone and environment count with --acting-only."""

    @property
    def grid_options(self) -> GridOptions:
        return GridOptions(self.executor, self.address, self.num_cpus, use_gpu=False)


@dataclass(frozen=True)
class OnlineRun:
    """One grid task (picklable)."""

    name: str
    checkpoint: str
    seed: int
    out_dir: str
    settings: tuple[tuple[str, Any], ...]
    dataset: str = ""
    """The checkpoint's dataset, short (``_dataset_name``): the summary's row key."""

    @property
    def json_path(self) -> Path:
        return Path(self.out_dir) / f"{self.name}.json"


def _slug(text: str) -> str:
    """``text`` safe as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


def _name(checkpoint: Path, meta: dict[str, Any], seed: int) -> str:
    env = str(meta.get("env_id") or "env").split("-")[0].lower()
    tag = _slug(checkpoint.resolve().parent.name)
    return f"{env}__{meta['model_config']['backbone']}__{tag}__s{seed}"


def _dataset_name(spec: str) -> str:
    """``d4rl:runs/datasets/hopper-medium.hdf5`` -> ``hopper-medium``; other specs unchanged
    but their kind prefix (``minari:ID`` -> ``ID``)."""
    _, _, rest = spec.partition(":")
    rest = rest or spec
    return Path(rest).stem if rest.endswith((".hdf5", ".h5")) else rest


_ADDED_SETTINGS = (
    "learning_rate",
    "seed_trajectories",
    "replay_size",
    "lr_decay",
    "init_std",
    "replay_eviction",
)
_BENCH_DEFAULTS = {f.name: f.default for f in dataclasses.fields(OnlineBenchConfig)}


def grid_specs(cfg: OnlineBenchConfig) -> list[OnlineRun]:
    if not cfg.checkpoints and not cfg.summary_only:
        raise ConfigError("--checkpoints is empty: give the offline checkpoints to fine-tune")
    settings = {
        "env_steps": cfg.env_steps,
        "num_envs": cfg.num_envs,
        "updates_per_env_step": cfg.updates_per_env_step,
        "eval_every": cfg.eval_every,
        "eval_episodes": cfg.eval_episodes,
        "max_episode_steps": cfg.max_episode_steps,
        "recipe": cfg.recipe,
        "batch_size": cfg.batch_size,
        "objective": cfg.objective,
    }
    # Settings added after runs had been saved: passed only when they differ from this
    # command's own default (None: aaren-finetune's default), so that older runs resume unchanged.
    for key in _ADDED_SETTINGS:
        if getattr(cfg, key) != _BENCH_DEFAULTS[key]:
            settings[key] = getattr(cfg, key)
    specs = []
    for c in cfg.checkpoints:
        meta = read_metadata(Path(c))  # once per checkpoint
        dataset = _dataset_name(str(meta.get("dataset") or ""))
        own = dict(settings)
        aaren = meta["model_config"]["backbone"] == "aaren"
        if cfg.train_horizon == "off" or aaren:
            own["train_horizon"] = cfg.train_horizon
        if cfg.memory_horizon != "checkpoint" and aaren:
            own["memory_horizon"] = cfg.memory_horizon
        for s in cfg.seeds:
            name = _name(Path(c), meta, s)
            specs.append(
                OnlineRun(name, str(c), s, str(cfg.out_dir), tuple(sorted(own.items())), dataset)
            )
    return specs


def run_one(run: OnlineRun) -> str:
    """One fine-tuning run (a grid task); resumes an interrupted one, skips a finished one."""
    from aaren_rl.train.finetune_cli import finetune
    from aaren_rl.train.finetune_config import FinetuneConfig

    if run.json_path.is_file():
        return f"done {run.name} (kept)"
    run_dir = Path(run.out_dir) / "runs" / run.name
    resume = (run_dir / "checkpoint" / "trainer.json").is_file()
    cfg = FinetuneConfig(
        checkpoint=Path(run.checkpoint),
        run_dir=run_dir,
        resume=resume,
        seed=run.seed,
        threads=1,
        progress=False,
        **dict(run.settings),
    )
    if not resume and run_dir.exists():  # stopped before its first checkpoint: start again
        import shutil

        shutil.rmtree(run_dir)
    result = finetune(cfg)
    atomic_write_json(run.json_path, {"name": run.name, "dataset": run.dataset, **result.summary})
    final = (result.summary.get("final_eval") or {}).get("normalized_mean")
    return f"done {run.name}: final {final}"


def _wall_seconds(timing: dict[str, float]) -> float:
    """A run's wall-clock: its timed parts, not acting's CPU time (a second clock on the
    acting part)."""
    return sum(v for k, v in timing.items() if k != "act_cpu")


def _mean_or_none(values: list[float | None]) -> float | None:
    """The mean where every value is known, else None (no partial means)."""
    return None if any(v is None for v in values) else float(np.mean(values))


def _mean_std(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    return f"{np.mean(vals):.1f} ± {np.std(vals):.1f}" if vals else "n/a"


def _horizons(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Aaren acting recurrently: each seed's memory horizon, and whether it was chosen online
    (--memory-horizon choose) rather than taken from the checkpoint or given."""
    if any(r["backbone"] != "aaren" or r["mode"] != "recurrent" for r in runs):
        return {}
    return {
        "memory_horizons": [r.get("acting_memory_horizon") for r in runs],
        "horizon_chosen_online": any(r.get("memory_horizon_choice") for r in runs),
    }


def _horizon_label(row: dict[str, Any]) -> str:
    if "memory_horizons" not in row:
        return ""
    hs = ", ".join("?" if h is None else str(h) for h in row["memory_horizons"])
    return f"; H {hs}" + (", chosen online" if row["horizon_chosen_online"] else "")


def summarize_online(out_dir: Path) -> list[dict[str, Any]]:
    """summary.json / summary.md from the per-run JSON files; returns the rows."""
    runs = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*__s*.json"))]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:  # one row per dataset (older JSON without one: per env)
        groups.setdefault((r.get("dataset") or r["env"], r["backbone"]), []).append(r)
    rows = []
    for (dataset, backbone), rs in sorted(groups.items()):
        rows.append(
            {
                "dataset": dataset,
                "env": rs[0]["env"],
                "backbone": backbone,
                "mode": rs[0]["mode"],
                "seeds": len(rs),
                "offline": _mean_std(
                    [(r["offline_eval"] or {}).get("normalized_mean") for r in rs]
                ),
                "online": _mean_std([(r["final_eval"] or {}).get("normalized_mean") for r in rs]),
                "acting_us_per_env_step": float(np.mean([r["acting_us_per_env_step"] for r in rs])),
                # CPU time (runs written before it was measured: None)
                "acting_cpu_us_per_env_step": _mean_or_none(
                    [r.get("acting_cpu_us_per_env_step") for r in rs]
                ),
                "env_us_per_env_step": float(np.mean([r["env_us_per_env_step"] for r in rs])),
                "update_ms_per_update": float(np.mean([r["update_ms_per_update"] for r in rs])),
                "wall_s": float(np.mean([_wall_seconds(r["time_seconds"]) for r in rs])),
                **_horizons(rs),
            }
        )
    by = {(r["dataset"], r["backbone"]): r for r in rows}
    for r in rows:
        other = by.get((r["dataset"], "transformer"))
        if r["backbone"] == "aaren" and other:
            r["acting_ratio_transformer_over_aaren"] = (
                other["acting_us_per_env_step"] / r["acting_us_per_env_step"]
            )
            if other["acting_cpu_us_per_env_step"] and r["acting_cpu_us_per_env_step"]:
                r["acting_cpu_ratio_transformer_over_aaren"] = (
                    other["acting_cpu_us_per_env_step"] / r["acting_cpu_us_per_env_step"]
                )
    lines = [
        "| dataset | backbone (acting) | seeds | offline → online (normalised) | acting µs/step "
        "(CPU µs) | env µs/step | ms/update | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu = r["acting_cpu_us_per_env_step"]
        lines.append(
            f"| {r['dataset']} | {r['backbone']} ({r['mode']}{_horizon_label(r)}) | {r['seeds']} "
            f"| {r['offline']} → "
            f"{r['online']} | {r['acting_us_per_env_step']:.0f} "
            f"({'n/a' if cpu is None else f'{cpu:.0f}'}) | {r['env_us_per_env_step']:.0f} "
            f"| {r['update_ms_per_update']:.0f} | {r['wall_s']:.0f} |"
        )
    atomic_write_json(out_dir / "summary.json", rows)
    atomic_write_text(out_dir / "summary.md", "\n".join(lines) + "\n")
    _plot_curves(out_dir, groups)
    print("\n".join(lines))
    return rows


def _plot_curves(out_dir: Path, groups: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
    """curves-<dataset>.png: every run of a dataset against env steps and wall-clock."""
    from aaren_rl.bench.plots import plot_online

    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for (dataset, _), rs in groups.items():
        by_dataset.setdefault(dataset, []).extend(rs)
    for dataset, rs in by_dataset.items():
        plot_online(rs, out_dir / f"curves-{_slug(dataset)}.png", f"online fine-tuning, {dataset}")


def _explorer_run(
    checkpoint: Path, num_envs: int, seed: int, max_steps: int | None, tmp: Path
) -> Any:
    """A fine-tuning run set up to collect only (empty buffer, nothing saved)."""
    from aaren_rl.train.finetune import Finetuner
    from aaren_rl.train.finetune_config import FinetuneConfig

    cfg = FinetuneConfig(
        checkpoint=checkpoint,
        num_envs=num_envs,
        seed_trajectories=0,
        seed=seed,
        threads=1,
        progress=False,
        max_episode_steps=max_steps,
        run_dir=tmp / f"{checkpoint.parent.name}-{num_envs}",
    )
    return Finetuner.build(cfg)


def acting_comparison(cfg: OnlineBenchConfig) -> dict[str, Any]:
    """Aaren's explorer against the Transformer's, alternated round by round on one machine:
    acting and env-stepping µs per collected env step at each of ``cfg.acting_only``."""
    import tempfile

    from aaren_rl.bench.common import write_json

    by_backbone: dict[str, Path] = {}
    for c in cfg.checkpoints:
        by_backbone.setdefault(read_metadata(Path(c))["model_config"]["backbone"], Path(c))
    if sorted(by_backbone) != ["aaren", "transformer"] or len(cfg.checkpoints) != 2:
        raise ConfigError(
            "--acting-only needs exactly two --checkpoints: one Aaren and one Transformer"
        )
    if min(cfg.acting_only) < 1 or cfg.acting_rounds < 1:
        raise ConfigError("--acting-only environment counts and --acting-rounds must be >= 1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in cfg.acting_only:
            runs = {
                b: _explorer_run(c, n, cfg.seeds[0], cfg.max_episode_steps, Path(tmp))
                for b, c in by_backbone.items()
            }
            rounds: dict[str, list[dict[str, float]]] = {b: [] for b in runs}
            try:
                for _ in range(cfg.acting_rounds):
                    for b, ft in runs.items():  # aaren, transformer, aaren, ...
                        st = ft.collect()
                        rounds[b].append(
                            {
                                "env_steps": st.env_steps,
                                "act_s": st.act_seconds,
                                "act_cpu_s": st.act_cpu_seconds,
                                "env_s": st.env_seconds,
                            }  # fmt: skip
                        )
                        print(f"{n} envs, {b} ({ft.mode}): {st.env_steps} env steps, acting "
                              f"{1e6 * st.act_seconds / st.env_steps:.0f} µs per env step",
                              flush=True)  # fmt: skip
            finally:
                for ft in runs.values():
                    ft.lock.release()
            row: dict[str, Any] = {"num_envs": n}
            for b, rs in rounds.items():
                steps = sum(r["env_steps"] for r in rs)
                row[b] = {
                    "mode": runs[b].mode,
                    "env_steps": steps,
                    "acting_us_per_env_step": 1e6 * sum(r["act_s"] for r in rs) / steps,
                    "acting_cpu_us_per_env_step": 1e6 * sum(r["act_cpu_s"] for r in rs) / steps,
                    "env_us_per_env_step": 1e6 * sum(r["env_s"] for r in rs) / steps,
                    "rounds": rs,
                }
            row["ratio_transformer_over_aaren"] = (
                row["transformer"]["acting_us_per_env_step"]
                / row["aaren"]["acting_us_per_env_step"]
            )
            row["cpu_ratio_transformer_over_aaren"] = (
                row["transformer"]["acting_cpu_us_per_env_step"]
                / row["aaren"]["acting_cpu_us_per_env_step"]
            )
            rows.append(row)
    data = {
        "what": "collection rounds alternated aaren / transformer on one machine, one torch "
        "thread, sampling explorers, no updates",
        "checkpoints": {b: str(c) for b, c in by_backbone.items()},
        "rounds_per_backbone": cfg.acting_rounds,
        "rows": rows,
    }
    path = write_json(cfg.out_dir / "acting.json", data)
    lines = [
        "| envs | Aaren µs / env step | Transformer µs / env step | ratio | ratio of CPU time "
        "| env µs / env step |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, t = r["aaren"], r["transformer"]
        lines.append(
            f"| {r['num_envs']} | {a['acting_us_per_env_step']:.0f} ({a['mode']}) | "
            f"{t['acting_us_per_env_step']:.0f} ({t['mode']}) | "
            f"{r['ratio_transformer_over_aaren']:.1f}x | "
            f"{r['cpu_ratio_transformer_over_aaren']:.1f}x | {a['env_us_per_env_step']:.0f} / "
            f"{t['env_us_per_env_step']:.0f} |"
        )
    print("\n".join(lines))
    print(f"wrote {path}")
    return data


def run_online_bench(cfg: OnlineBenchConfig) -> list[dict[str, Any]] | dict[str, Any]:
    """Run what is missing of the grid, then summarise (or, with --acting-only, time
    collection alone)."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.acting_only:
        return acting_comparison(cfg)
    if not cfg.summary_only:
        pending = [s for s in grid_specs(cfg) if not s.json_path.is_file()]
        print(f"{len(pending)} runs to do: " + ", ".join(s.name for s in pending), flush=True)
        failed = run_grid(run_one, pending, cfg.grid_options)
        if failed:
            summarize_online(cfg.out_dir)
            raise RuntimeError(f"{len(failed)} run(s) failed:\n" + "\n".join(failed))
    return summarize_online(cfg.out_dir)
