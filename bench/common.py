"""What every ``aaren-bench`` subcommand shares: the model it measures, machine info, output.

- :class:`ModelSize` and :func:`bench_model`: the one factory of benchmark models (a nested
  ``BackboneConfig`` as ``model``, flags ``--model.dim`` ... as in ``aaren-train``; DT size by
  default: d = 128, 3 layers, 1 head, Hopper's obs 11 / act 3), used by the acting, training
  and deployment benchmarks alike, so that every benchmark measures the same network.
- :func:`machine`: one line describing the CPU and its load (timings depend on both).
- :func:`write_json`, :func:`markdown_table`, :func:`report`: results go through
  :mod:`aaren_rl.fileio` (atomic writes) and print as Markdown tables.

Outputs default to ``runs/bench/`` under the current directory (:data:`RESULTS`); the
commands in docs/benchmarks.md pass ``--out docs/results/...`` explicitly.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig
from aaren_rl.cpu import cpu_record, freed_memory_kept
from aaren_rl.fileio import atomic_write_json

__all__ = [
    "RESULTS",
    "ModelSize",
    "agent_kwargs",
    "bench_model",
    "machine",
    "markdown_table",
    "report",
    "score_checkpoint",
    "targets_table",
    "write_json",
]

RESULTS = Path("runs/bench")
"""Default output folder of every benchmark (relative to the current directory)."""


@dataclass
class ModelSize:
    """The benchmarked network (DT reference size by default, no dropout) and its inputs."""

    model: BackboneConfig = field(default_factory=lambda: BackboneConfig(dropout=0.0))
    """Size of the backbone stack (the model library's BackboneConfig, as in aaren-train)."""
    obs_dim: int = 11
    """Observation size (Hopper: 11)."""
    act_dim: int = 3
    """Action size (Hopper: 3)."""
    seed: int = 0
    """Seeds the weights (and the benchmark's random inputs)."""


def bench_model(size: ModelSize, backbone: str = "aaren") -> DecisionModel:
    """The benchmark model: a freshly initialised ``DecisionModel`` of ``size``.

    Args:
        size: a :class:`ModelSize` (a benchmark config): its ``model`` (backbone size,
            dropout, activation), ``obs_dim``, ``act_dim`` and ``seed``.
        backbone: ``"aaren"`` or ``"transformer"``; both get the same seed, so their shared
            layers start from the same draws.

    Returns:
        The model in eval mode (call ``.train()`` to time training).
    """
    torch.manual_seed(size.seed)
    net = replace(size.model)  # a copy: the model never shares the config's object
    return DecisionModel(DecisionModelConfig(size.obs_dim, size.act_dim, backbone, net)).eval()


def agent_kwargs(obs_dim: int) -> dict[str, Any]:
    """``DecisionAgent`` settings of a benchmark agent: identity normalisation, DT's Hopper
    return scale (1000) and target return (3600)."""
    return {
        "state_mean": np.zeros(obs_dim),
        "state_std": np.ones(obs_dim),
        "return_scale": 1000.0,
        "target_return": 3600.0,
    }


def machine() -> str:
    """One line: CPU model and flags, core count, torch version, load average (the box may be
    shared)."""
    cpu = cpu_record()
    model = (
        cpu["model"] if cpu["model"] != "unknown" else platform.processor() or platform.machine()
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    flags = [f for f, on in cpu["flags"].items() if on and f != "fma"]
    return (
        f"{model} ({' '.join(flags) or 'no AVX2'}), {os.cpu_count()} cores, "
        f"torch {torch.__version__}, load average {load}"
    )


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (parent folders created); returns it.

    A dictionary gains ``cpu`` (:func:`aaren_rl.cpu.cpu_record`: model, cores, instruction-set
    flags) unless it has one: no benchmark number is kept without the CPU it came from; and
    ``malloc_keeps_freed_memory`` (:func:`aaren_rl.cpu.keep_freed_memory` in effect)."""
    if isinstance(data, dict) and "cpu" not in data:
        data = {**data, "cpu": cpu_record()}
    if isinstance(data, dict) and "malloc_keeps_freed_memory" not in data:
        data = {**data, "malloc_keeps_freed_memory": freed_memory_kept()}
    atomic_write_json(path, data, indent=1)
    return Path(path)


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A Markdown table: ``columns`` are (header, key) pairs, one line per row."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[k]) for _, k in columns) + " |")
    return "\n".join(lines)


def targets_table(targets: list[dict]) -> str:
    """Targets ``{target, measured, met}`` as a table; a missed one reads **no**."""
    rows = [{**t, "met": "yes" if t["met"] else "**no**"} for t in targets]
    return markdown_table(rows, [("target", "target"), ("measured", "measured"), ("met", "met")])


def report(
    rows: list[dict], cols: list[tuple[str, str]], targets: list[dict], *written: Path
) -> None:
    """The closing lines every benchmark prints: its table, its targets, where it wrote."""
    if rows:
        print(markdown_table(rows, cols))
        print()
    if targets:
        print(targets_table(targets))
    print(f"\nmachine after the run: {machine()}")
    print("wrote " + ", ".join(str(p) for p in written))


def score_checkpoint(
    checkpoint: str | Path,
    mode: str,
    train_seed: int,
    episodes: int,
    max_episode_steps: int | None = None,
    num_envs: int = 10,
    memory_horizon: int | None = None,
) -> dict[str, Any]:
    """Score a checkpoint the way every results grid does; ``EvalResult.to_dict()``.

    ``memory_horizon`` overrides the checkpoint's (None keeps it; Aaren recurrent acting).

    Episode ``i`` of training seed ``S`` is reset with env seed ``1000 + 100 S + i`` (the same
    episodes for every agent and acting mode); ``num_envs`` of them are stepped in lockstep
    (batched agent calls), which leaves each episode's seed unchanged.
    """
    from aaren_rl.agents import DecisionAgent
    from aaren_rl.eval.rollout import evaluate

    agent = DecisionAgent.load(checkpoint, mode=mode, memory_horizon=memory_horizon)
    result = evaluate(
        agent,
        agent.env_id,
        episodes=episodes,
        num_envs=min(num_envs, episodes),
        seed=1000 + 100 * train_seed,
        max_episode_steps=max_episode_steps,
    ).to_dict()
    result["memory_horizon"] = agent.acting_horizon
    return result
