"""``aaren-bench horizon``: the score of Aaren checkpoints acting recurrently, per memory horizon.

Acting recurrently, an Aaren agent attends over its whole episode through a constant-size
state. With a memory horizon H (``aaren-eval --memory-horizon``), every earlier token's score
drops by 1/H per step of age, so a token H steps old weighs e^-1 of a new one: a soft window,
still O(1) per action (docs/research/horizon.md, "The fix: a memory horizon at acting time"). This
command scores each checkpoint at each H (0: the whole episode) and, for reference, acting
through a K-step window, with the results grid's evaluation protocol (episode i of training
seed S is env seed 1000 + 100 S + i; the seed is read from the run's config.json beside the
checkpoint).

Where a checkpoint was trained with offline horizon selection (aaren-train
``--horizon-selection offline``: its held-out episodes are named in the checkpoint), it also
computes, for each H, the action errors the offline choice is made from
(``eval/offline_horizon.py``: the model acting recurrently over the held-out episodes, reading
its own or the dataset's previous actions, on the higher-return half or on all of them), and
the env score of the horizon each criterion picks next to the best H's: how well an offline
criterion ranks horizons, measured (``offline`` in ``horizon.json``).

Writes ``horizon.json`` (settings, one record per checkpoint and acting, the mean ± std over
checkpoints per H) and ``horizon.png`` (score vs H), and prints both tables::

    aaren-bench horizon --checkpoints runs/returns-10k/hopper-medium__aaren__episode__s*/checkpoint \\
        --out docs/results/horizon/hopper-medium
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aaren_rl.errors import ConfigError
from aaren_rl.eval.horizon import check_horizon_candidates

__all__ = ["HorizonConfig", "run_horizon"]


@dataclass
class HorizonConfig:
    """Scores of Aaren checkpoints acting recurrently with each memory horizon."""

    checkpoints: tuple[Path, ...]
    """Aaren checkpoint folders (aaren-train's run_dir/checkpoint), e.g. one per seed."""
    horizons: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 0)
    """Memory horizons H in timesteps (0: the whole episode, exact)."""
    window: bool = True
    """Also score each checkpoint acting through its K-step window (the DT way)."""
    episodes: int = 10
    """Evaluation episodes per checkpoint and acting."""
    num_envs: int = 10
    """Environments stepped in lockstep."""
    out: Path = Path("runs/bench")
    """Folder for horizon.json and horizon.png."""


def _train_seed(checkpoint: Path) -> int:
    config = Path(checkpoint).parent / "config.json"
    if not config.is_file():
        return 0
    return int(json.loads(config.read_text()).get("seed", 0))


def _check(cfg: HorizonConfig) -> None:
    if not cfg.checkpoints:
        raise ConfigError("--checkpoints: give at least one Aaren checkpoint folder")
    check_horizon_candidates(cfg.horizons, "--horizons")
    if cfg.episodes < 1 or cfg.num_envs < 1:
        raise ConfigError("--episodes and --num-envs must be >= 1")
    for ckpt in cfg.checkpoints:
        if not (Path(ckpt) / "agent.json").is_file():
            raise ConfigError(f"{ckpt} is not a checkpoint folder (no agent.json)")


def _offline(ckpt: Path, meta: dict[str, Any], env_scores: dict[int, float],
             datasets: dict[str, Any]) -> dict[str, Any] | None:  # fmt: skip
    """Offline action errors per H on the checkpoint's held-out episodes, what each criterion
    picks, and the env score of its pick (None without held-out episodes)."""
    from aaren_rl.agents import DecisionAgent
    from aaren_rl.envs import load_dataset
    from aaren_rl.eval.offline_horizon import (
        OFFLINE_CRITERIA,
        offline_action_errors,
        top_return_episodes,
    )

    heldout = (meta.get("horizon_selection") or {}).get("heldout_episodes") or []
    if not heldout or not env_scores:
        return None
    spec = str(meta["dataset"])
    if spec not in datasets:
        datasets[spec] = load_dataset(spec)
    ds, agent = datasets[spec], DecisionAgent.load(ckpt)
    scopes = {"top": top_return_episodes(ds, heldout), "all": heldout}
    errors: dict[str, dict[str, float]] = {}
    for scope, episodes in scopes.items():
        trajs = [ds.trajectories[i] for i in episodes]
        for crit in OFFLINE_CRITERIA:
            target = agent.target_return if crit == "target-return" else None
            errors[f"{crit}, {scope}"] = {
                str(h): float(offline_action_errors(agent.model, trajs, agent.state_mean,
                              agent.state_std, agent.return_scale, h, crit == "teacher-forced",
                              target).mean())
                for h in env_scores
            }  # fmt: skip
    picks = {name: int(min(e, key=e.get)) for name, e in errors.items()}
    best = max(env_scores, key=env_scores.get)
    return {
        "checkpoint": str(ckpt),
        "heldout_episodes": heldout,
        "scored_episodes": scopes["top"],
        "action_errors": errors,
        "picks": picks,
        "env_best_horizon": best,
        "env_score_of_pick": {name: env_scores[h] for name, h in picks.items()},
        "env_best_score": env_scores[best],
    }


def _print_offline(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    print("offline criteria: env score of the horizon each picks (regret vs the best H)")
    for name in rows[0]["picks"]:
        regret = [r["env_best_score"] - r["env_score_of_pick"][name] for r in rows]
        picks = ", ".join(str(r["picks"][name]) for r in rows)
        print(f"  {name:26s} picks {picks}; regret {np.mean(regret):.1f} (per checkpoint: "
              f"{', '.join(f'{x:.1f}' for x in regret)})")  # fmt: skip
    print(f"  best H in the env: {', '.join(str(r['env_best_horizon']) for r in rows)}")


def _summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over checkpoints for each acting (window, then each H)."""
    rows = []
    for acting in dict.fromkeys(r["acting"] for r in records):
        scores = [r["normalized_mean"] for r in records if r["acting"] == acting]
        rows.append(
            {
                "acting": acting,
                "memory_horizon": next(
                    r["memory_horizon"] for r in records if r["acting"] == acting
                ),
                "checkpoints": len(scores),
                "mean": float(np.mean(scores)),
                "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
                "per_checkpoint": [round(s, 1) for s in scores],
            }
        )
    return rows


def _plot(summary: list[dict[str, Any]], path: Path) -> Path:
    from aaren_rl.bench.plots import plt, save_figure

    rec = [r for r in summary if r["memory_horizon"]]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if rec:
        h = [r["memory_horizon"] for r in rec]
        mean, std = np.array([r["mean"] for r in rec]), np.array([r["std"] for r in rec])
        ax.errorbar(h, mean, yerr=std, marker="o", capsize=3, label="recurrent, memory horizon H")
    for r in summary:  # the references: horizontal lines
        if r["acting"] == "window":
            ax.axhline(r["mean"], ls="--", color="C1", label="window (K steps)")
        elif not r["memory_horizon"]:
            ax.axhline(r["mean"], ls=":", color="grey", label="recurrent, whole episode")
    ax.set_xscale("log")
    ax.set(xlabel="memory horizon H (timesteps)", ylabel="D4RL-normalised score (final)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def run_horizon(cfg: HorizonConfig) -> dict[str, Any]:
    """Score, print, write ``horizon.json`` and ``horizon.png``."""
    from aaren_rl.agents.checkpoint import read_metadata
    from aaren_rl.bench.common import machine, markdown_table, score_checkpoint, write_json
    from aaren_rl.fileio import check_output_dir

    _check(cfg)
    check_output_dir(cfg.out, "--out")
    print(f"machine: {machine()}", flush=True)
    actings = [("window", "window", None)] if cfg.window else []
    actings += [
        (f"recurrent H={h}" if h else "recurrent-full", "recurrent", h) for h in cfg.horizons
    ]
    records, offline, datasets = [], [], {}
    for ckpt in cfg.checkpoints:
        meta = read_metadata(ckpt)
        if meta.get("model_config", {}).get("backbone") != "aaren":
            raise ConfigError(f"{ckpt} is not an Aaren checkpoint: the horizon is Aaren's")
        seed = _train_seed(ckpt)
        for acting, mode, h in actings:
            ev = score_checkpoint(ckpt, mode, seed, cfg.episodes, None, cfg.num_envs, h)
            records.append(
                {
                    "checkpoint": str(ckpt),
                    "train_seed": seed,
                    "acting": acting,
                    "memory_horizon": h,
                    **{k: ev[k] for k in ("normalized_mean", "normalized_std", "return_mean")},
                    "lengths": ev["lengths"],
                }
            )
            print(f"{ckpt} {acting}: {ev['normalized_mean']:.1f} ± {ev['normalized_std']:.1f}",
                  flush=True)  # fmt: skip
        env = {r["memory_horizon"]: r["normalized_mean"] for r in records
               if r["checkpoint"] == str(ckpt) and r["memory_horizon"] is not None}  # fmt: skip
        row = _offline(Path(ckpt), meta, env, datasets)
        if row is not None:
            offline.append(row)
    summary = _summary(records)
    shown = [{**r, "score": f"{r['mean']:.1f} ± {r['std']:.1f}",
              "seeds": ", ".join(map(str, r["per_checkpoint"]))} for r in summary]  # fmt: skip
    print(markdown_table(shown, [("acting", "acting"), ("checkpoints", "checkpoints"),
                                 ("final score (mean ± std)", "score"), ("per checkpoint", "seeds")]))  # fmt: skip
    _print_offline(offline)
    out = Path(cfg.out)
    settings = {k: [str(c) for c in v] if k == "checkpoints" else v for k, v in asdict(cfg).items()}
    settings["out"] = str(cfg.out)
    data = {"settings": settings, "machine": machine(), "records": records, "summary": summary,
            "offline": offline}  # fmt: skip
    path = write_json(out / "horizon.json", data)
    png = _plot(summary, out / "horizon.png")
    print(f"wrote {path}, {png}")
    return data
