"""Matplotlib (Agg) plots of the benchmarks; each writes one PNG and returns its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_act", "plot_online", "plot_throughput", "plot_train", "save_figure"]

_STYLE = {
    "aaren-recurrent": {"color": "tab:blue", "ls": "-"},
    "aaren-window": {"color": "tab:cyan", "ls": "--"},
    "transformer-window": {"color": "tab:orange", "ls": "--"},
    "transformer-kv": {"color": "tab:red", "ls": "-"},
    "aaren-compiled": {"color": "tab:green", "ls": "-"},
    "aaren-onnx": {"color": "tab:purple", "ls": "-"},
    "aaren-recurrent-h20": {"color": "tab:blue", "ls": ":"},
    "aaren-onnx-h20": {"color": "tab:purple", "ls": ":"},
    "aaren-unfused": {"color": "tab:gray", "ls": "-"},
    "aaren-onnx-fp16": {"color": "tab:pink", "ls": "-."},
    "aaren-onnx-int8": {"color": "tab:olive", "ls": "-."},
    "transformer-window-onnx": {"color": "tab:brown", "ls": "--"},
    "transformer-kv-onnx": {"color": "black", "ls": "-"},
}


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Running median over ``width`` steps (per-step timings are noisy)."""
    if width <= 1 or len(x) < width:
        return x
    pad = np.pad(x, (width // 2, width - 1 - width // 2), mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(pad, width), axis=-1)


def plot_act(records: list[dict], path: str | Path, title: str = "", smooth: int = 25) -> Path:
    """Time per action (median, p90 dotted) and state bytes vs episode step t, batch 1."""
    records = [r for r in records if r.get("num_envs", 1) == 1]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    agents = list(dict.fromkeys(r["agent"] for r in records))
    for agent in agents:
        rs = sorted((r for r in records if r["agent"] == agent), key=lambda r: r["t"])
        t = np.array([r["t"] for r in rs])
        med = _smooth(np.array([r["time_us_median"] for r in rs]) / 1e3, smooth)
        p90 = _smooth(np.array([r["time_us_p90"] for r in rs]) / 1e3, smooth)
        style = _STYLE.get(agent, {})
        ax_t.plot(t, med, label=f"{agent} (median)", lw=1.6, **style)
        ax_t.plot(t, p90, lw=0.8, alpha=0.6, color=style.get("color"), ls=":")
        ax_m.plot(t, [r["state_bytes"] for r in rs], label=agent, lw=1.6, **style)
    # Linear t: the KV cache's linear growth reads as a line; log time: all agents fit.
    ax_t.set(xlabel="episode step t", ylabel="time per action (ms)", yscale="log")
    ax_t.set_title(f"time per action (running median over {smooth} steps; p90 dotted)")
    ax_m.set(xlabel="episode step t", ylabel="state held by the agent (bytes)")
    ax_m.set(xscale="log", yscale="log", title="memory held by the agent's state (log-log)")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
    ax_m.legend(fontsize=8)  # one legend (the same agents and styles), where it hides no curve
    return save_figure(fig, path, title)


def save_figure(fig: Any, path: str | Path, title: str = "", fontsize: int = 10) -> Path:
    """Title (when given), lay out, write ``path`` (parent folders created), close."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if title:
        fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_throughput(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Actions per second vs number of environments acting together, one line per agent."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for agent in dict.fromkeys(r["agent"] for r in rows):
        rs = sorted((r for r in rows if r["agent"] == agent), key=lambda r: r["num_envs"])
        n = [r["num_envs"] for r in rs]
        ax.plot(
            n, [r["actions_per_s"] for r in rs], "o", label=agent, lw=1.6, **_STYLE.get(agent, {})
        )
    ax.set(xscale="log", yscale="log", xlabel="environments acting together (batch size)")
    ax.set(ylabel="actions per second (median call time)", title="batched acting throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path, title, fontsize=9)


def plot_train(records: list[dict], path: str | Path, title: str = "") -> Path:
    """Training step time and saved-activation memory vs context length K, per backbone."""
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"aaren": "tab:blue", "transformer": "tab:orange"}
    for backbone in dict.fromkeys(r["backbone"] for r in records):
        rs = sorted(
            (r for r in records if r["backbone"] == backbone), key=lambda r: r["context_length"]
        )
        k = [r["context_length"] for r in rs]
        c = colors.get(backbone)
        ax_t.plot(k, [r["step_s_median"] * 1e3 for r in rs], "o-", color=c, label=backbone)
        mem = [(r["context_length"], r["saved_tensor_bytes"]) for r in rs]
        mem = [(x, b / 2**20) for x, b in mem if b is not None]  # a peer reports no memory
        if mem:
            ax_m.plot(*zip(*mem, strict=True), "o-", color=c, label=backbone)
    labels = {r["context_length"]: f"K={r['context_length']}\nB={r['batch_size']}" for r in records}
    for ax in (ax_t, ax_m):
        ax.set_xscale("log")
        ax.set_xticks(list(labels), list(labels.values()))
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        ax.set_xlabel("context length K (timesteps; 3K tokens) and batch size B")
    ax_t.set(ylabel="ms per training step (median)", title="training step time")
    ax_m.set(ylabel="MiB saved for backward", title="activation memory (saved tensors)")
    return save_figure(fig, path, title)


def plot_online(runs: list[dict], path: str | Path, title: str = "") -> Path:
    """Fine-tuning curves (aaren-bench online): the deterministic policy's normalised score
    against env steps and against the learning clock (acting + env + updates), one line per
    run, coloured by backbone."""
    fig, (ax_s, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"aaren": "tab:blue", "transformer": "tab:orange"}
    for r in sorted(runs, key=lambda r: (r["backbone"], r["seed"])):
        curve = [c for c in r["curve"] if c.get("normalized_mean") is not None]
        score = [c["normalized_mean"] for c in curve]
        style = {"color": colors.get(r["backbone"]), "marker": "o", "alpha": 0.8}
        label = f"{r['backbone']} ({r['mode']}), seed {r['seed']}"
        ax_s.plot([c["env_steps"] for c in curve], score, label=label, **style)
        ax_t.plot([c.get("train_clock_s", np.nan) for c in curve], score, label=label, **style)
    ax_s.set(xlabel="environment steps", ylabel="normalised score (deterministic policy)")
    ax_t.set(xlabel="learning clock, s (acting + env + updates; no evaluation)")
    for ax in (ax_s, ax_t):
        ax.grid(True, alpha=0.3)
    ax_s.legend(fontsize=8)
    return save_figure(fig, path, title)
