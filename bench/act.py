"""Acting cost per action vs episode step t: time and memory held by the agent's state.

Every agent is a real :class:`agents.DecisionAgent` (normalisation, return-to-go
bookkeeping, the model call: what a user pays per action), acting in a fake loop with no
environment: observations are random normal, batch 1, one thread, rewards 0.

Timing protocol: one episode of ``steps`` actions per agent per repeat; agents take turns
episode by episode, in an order rotated each repeat (so slow phases of background load on
a shared machine spread over all agents); the garbage collector is off during an episode.
Agents are deliberately *not* stepped in lockstep within an episode: the KV-cache agent
copies megabytes per step at large t, and its cache and memory traffic slowed the agent
timed next to it (measured: Aaren recurrent drifted +20% from t = 10 to 1000 in lockstep,
flat within 3% alone). Statistics at step t are taken over the ``repeats`` episodes (median
and p90 per t). ``state_bytes`` is ``agent.state_nbytes()`` after the action at t.

Agents (``ACT_AGENTS``; all at the same model size, parameter counts reported):

- ``aaren-recurrent``: Aaren, one recurrent step per token (3 per action), O(1) state.
- ``aaren-window``: Aaren re-running the last K steps in parallel (DT's way).
- ``transformer-window``: Transformer, last K = 20 steps re-run per action (DT's way).
- ``transformer-kv``: Transformer stepping with a KV cache over the whole history.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import torch

from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig
from aaren_rl.agents import DecisionAgent
from aaren_rl.deploy.export import compiled_bench_agent, onnx_bench_agent

__all__ = ["ACT_AGENTS", "ActBenchConfig", "ActRecord", "BenchAgent", "run_act_bench"]


@dataclass
class ActBenchConfig:
    """Settings of ``aaren-bench act``."""

    steps: int = 1000
    """Episode length T: actions timed at t = 1 .. T."""
    repeats: int = 5
    """Episodes per agent; per-t statistics are over these."""
    context_length: int = 20
    """K of the window agents (DT default 20)."""
    dim: int = 128
    """Model width (DT default 128)."""
    num_layers: int = 3
    """Blocks (DT default 3)."""
    num_heads: int = 1
    """Heads (DT default 1)."""
    obs_dim: int = 11
    """Observation size (Hopper: 11)."""
    act_dim: int = 3
    """Action size (Hopper: 3)."""
    threads: int = 1
    """torch intra-op threads (1: the embedded-device setting)."""
    agents: tuple[str, ...] = ()
    """Subset of ACT_AGENTS to run; empty means all."""
    seed: int = 0
    """Seeds weights and the fake observations."""


class BenchAgent(Protocol):
    """What the benchmark needs: the evaluation agent API plus state size and parameters."""

    params: int

    def reset(self, num_envs: int) -> None: ...

    def predict(
        self, obs: np.ndarray, reward: np.ndarray, episode_start: np.ndarray
    ) -> np.ndarray: ...

    def state_nbytes(self) -> int: ...


class _Counted(DecisionAgent):
    """A DecisionAgent that also reports its parameter count (``params``)."""

    @property
    def params(self) -> int:
        return self.model.num_parameters()


def _decision_agent(backbone: str, mode: str) -> Callable[[ActBenchConfig], BenchAgent]:
    def make(cfg: ActBenchConfig) -> BenchAgent:
        torch.manual_seed(cfg.seed)
        net = BackboneConfig(dim=cfg.dim, num_layers=cfg.num_layers, num_heads=cfg.num_heads)
        model = DecisionModel(DecisionModelConfig(cfg.obs_dim, cfg.act_dim, backbone, net))
        return _Counted(
            model,
            np.zeros(cfg.obs_dim),
            np.ones(cfg.obs_dim),
            return_scale=1000.0,
            target_return=3600.0,
            mode=mode,
            context_length=cfg.context_length,
        )

    return make


# name -> factory(config) -> agent. Add further agents here (same sizes, same config).
ACT_AGENTS: dict[str, Callable[[ActBenchConfig], BenchAgent]] = {
    "aaren-recurrent": _decision_agent("aaren", "recurrent"),
    "aaren-window": _decision_agent("aaren", "window"),
    "transformer-window": _decision_agent("transformer", "window"),
    "transformer-kv": _decision_agent("transformer", "recurrent"),
    # ---- compiled paths (issue 7; factories in eval/export.py) ----
    "aaren-compiled": compiled_bench_agent,  # TorchScript trace of the fused step
    "aaren-onnx": onnx_bench_agent,  # exported step graph in onnxruntime, 1 thread
}


@dataclass
class ActRecord:
    """One point of the benchmark (the JSON record)."""

    agent: str
    t: int
    time_us_median: float
    time_us_p90: float
    state_bytes: int
    params: int
    model_bytes: int


def model_bytes(agent: BenchAgent) -> int:
    """Bytes of the policy file: the ONNX file, or the weights a checkpoint stores."""
    size = getattr(agent, "model_bytes", None)
    if size is not None:
        return int(size)
    state = agent.model.state_dict()  # type: ignore[attr-defined]
    return sum(t.numel() * t.element_size() for t in state.values())


def _episode(agent: BenchAgent, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time each action of one episode; returns (ns per step, state bytes per step), (T,)."""
    steps = obs.shape[0]
    times = np.empty(steps, dtype=np.int64)
    nbytes = np.empty(steps, dtype=np.int64)
    reward = np.zeros(1)
    first, cont = np.ones(1, dtype=bool), np.zeros(1, dtype=bool)
    agent.reset(1)
    clock = time.perf_counter_ns
    for t in range(steps):
        t0 = clock()
        agent.predict(obs[t], reward, first if t == 0 else cont)
        times[t] = clock() - t0
        nbytes[t] = agent.state_nbytes()
    return times, nbytes


def run_act_bench(cfg: ActBenchConfig, log: Callable[[str], None] = print) -> list[ActRecord]:
    """Run the benchmark; returns one record per (agent, t)."""
    names = list(cfg.agents) or list(ACT_AGENTS)
    unknown = [n for n in names if n not in ACT_AGENTS]
    if unknown:
        raise ValueError(f"unknown agents {unknown}; choose from {sorted(ACT_AGENTS)}")
    if cfg.steps < 1 or cfg.repeats < 1:
        raise ValueError(f"steps and repeats must be >= 1, got {cfg.steps}, {cfg.repeats}")
    torch.set_num_threads(cfg.threads)
    agents = {n: ACT_AGENTS[n](cfg) for n in names}
    for n, a in agents.items():
        log(f"{n:20s} params {a.params:,}")
    rng = np.random.default_rng(cfg.seed)
    obs = rng.standard_normal((cfg.steps, 1, cfg.obs_dim)).astype(np.float32)
    times = {n: np.empty((cfg.repeats, cfg.steps)) for n in names}
    for a in agents.values():  # warm-up: first-call allocations, lazy inits
        _episode(a, obs[: min(cfg.steps, 50)])
    nbytes: dict[str, np.ndarray] = {}
    for r in range(cfg.repeats):
        medians = {}
        for i in range(len(names)):  # rotate the order: no agent always runs first
            n = names[(i + r) % len(names)]
            gc.collect()
            gc.disable()  # no collector pauses inside the timed episode
            try:
                t_ns, nbytes[n] = _episode(agents[n], obs)
            finally:
                gc.enable()
            times[n][r] = t_ns / 1e3
            medians[n] = np.median(t_ns) / 1e3
        log(
            f"repeat {r + 1}/{cfg.repeats}: median us/action "
            + ", ".join(f"{n} {medians[n]:.0f}" for n in names)
        )
    records = []
    for n in names:
        size = model_bytes(agents[n])
        med = np.median(times[n], axis=0)
        p90 = np.percentile(times[n], 90, axis=0)
        records += [
            ActRecord(
                n, t + 1, float(med[t]), float(p90[t]), int(nbytes[n][t]), agents[n].params, size
            )
            for t in range(cfg.steps)
        ]
    return records


def summarize(
    records: list[ActRecord], ts: tuple[int, ...] = (1, 10, 100, 500, 1000), bucket: int = 10
) -> list[dict]:
    """Rows for a table: at each t, the median of the per-t records over the steps
    (t - bucket/2, t + bucket/2] clipped to the episode, to smooth single-step noise on a
    shared machine; state bytes at t exactly."""
    rows = []
    by_agent: dict[str, dict[int, ActRecord]] = {}
    for rec in records:
        by_agent.setdefault(rec.agent, {})[rec.t] = rec
    for agent, recs in by_agent.items():
        for t in ts:
            if t not in recs:
                continue
            lo, hi = t - bucket // 2 + 1, t + bucket - bucket // 2
            window = [recs[s] for s in range(max(1, lo), hi + 1) if s in recs]
            rows.append(
                {
                    "agent": agent,
                    "t": t,
                    "time_us_median": float(np.median([w.time_us_median for w in window])),
                    "time_us_p90": float(np.median([w.time_us_p90 for w in window])),
                    "state_bytes": recs[t].state_bytes,
                    "params": recs[t].params,
                    "model_bytes": recs[t].model_bytes,
                }
            )
    return rows


def records_to_json(records: list[ActRecord]) -> list[dict]:
    return [asdict(r) for r in records]


def act_targets(records: list[ActRecord]) -> list[dict]:
    """The issue's acting targets, measured (bucketed medians as in :func:`summarize`)."""
    rows = {(r["agent"], r["t"]): r for r in summarize(records, ts=(10, 1000))}
    out = []

    def get(agent: str, t: int) -> dict | None:
        return rows.get((agent, t))

    a10, a1000 = get("aaren-recurrent", 10), get("aaren-recurrent", 1000)
    if a10 and a1000:
        ratio = a1000["time_us_median"] / a10["time_us_median"]
        out.append(
            {
                "target": "aaren-recurrent time at t=1000 within 10% of t=10",
                "measured": f"{a1000['time_us_median']:.0f} vs {a10['time_us_median']:.0f} us "
                f"(ratio {ratio:.2f})",
                "met": abs(ratio - 1.0) <= 0.10,
            }
        )
        sizes = {r.state_bytes for r in records if r.agent == "aaren-recurrent"}
        out.append(
            {
                "target": "aaren-recurrent state bytes identical at every t",
                "measured": f"{sorted(sizes)} bytes",
                "met": len(sizes) == 1,
            }
        )
    for other, factor in (("transformer-window", 2.0), ("transformer-kv", 5.0)):
        o = get(other, 1000)
        if a1000 and o:
            speedup = o["time_us_median"] / a1000["time_us_median"]
            out.append(
                {
                    "target": f"aaren-recurrent at t=1000 >= {factor:g}x faster than {other}",
                    "measured": f"{speedup:.2f}x ({a1000['time_us_median']:.0f} vs "
                    f"{o['time_us_median']:.0f} us)",
                    "met": speedup >= factor,
                }
            )
    return out
