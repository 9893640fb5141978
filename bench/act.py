"""Acting cost: time per action and state memory vs episode step t, and batched throughput.

Every agent (:data:`aaren_rl.bench.agents.ACT_AGENTS`: eager, TorchScript and ONNX paths of
Aaren and the Transformer, all from the same two models) acts in a fake loop with no
environment: observations are random normal, rewards 0, one thread. It pays what a user pays
per action: normalisation, return-to-go bookkeeping and the model call.

Timing protocol (batch 1): one episode of ``steps`` actions per agent per repeat; agents take
turns episode by episode, in an order rotated each repeat (so slow phases of background load
on a shared machine spread over all agents); the garbage collector is off during an episode.
Agents are deliberately *not* stepped in lockstep within an episode: the KV-cache agents copy
megabytes per step at large t, and their cache traffic slowed the agent timed next to them
(measured: Aaren recurrent drifted +20% from t = 10 to 1000 in lockstep, flat within 3%
alone). Statistics at step t are over the ``repeats`` episodes (median and p90 per t).
``state_bytes`` is ``agent.state_nbytes()`` after the action at t (all envs).

Batched (``num_envs`` > 1): the same, with N environments acting together for
``batch_steps`` steps (``batch_repeats`` episodes); actions per second = N / time per call.

With two checkpoints (``--checkpoint-aaren``, ``--checkpoint-transformer``) the agents act
with trained weights and ``--eval-episodes`` also scores each one in its environment on the
same seeds (:func:`aaren_rl.eval.rollout.evaluate`), so every path's return sits next to its
cost.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from aaren_rl.bench.agents import ACT_AGENTS, ENGINES, BenchAgent, PolicySource, onnx_nodes
from aaren_rl.bench.common import ModelSize
from aaren_rl.errors import ConfigError

__all__ = [
    "REPORT_TS",
    "ActBenchConfig",
    "ActRecord",
    "act_targets",
    "run_act_bench",
    "summarize",
    "throughput",
]

REPORT_TS = (1, 10, 100, 500, 1000)
"""Episode steps t reported in the tables."""


@dataclass
class ActBenchConfig(ModelSize):
    """Settings of ``aaren-bench act``."""

    steps: int = 1000
    """Episode length T at batch 1: actions timed at t = 1 .. T."""
    repeats: int = 5
    """Episodes per agent at batch 1; per-t statistics are over these."""
    num_envs: tuple[int, ...] = (1,)
    """Batch sizes (environments acting together), e.g. 1 16 256."""
    batch_steps: int = 100
    """Episode length at batch sizes above 1 (actions/s is the median over t = 1 .. this)."""
    batch_repeats: int = 2
    """Episodes per agent at batch sizes above 1."""
    context_length: int = 20
    """K of the window agents (DT default 20)."""
    threads: int = 1
    """torch and onnxruntime intra-op threads (1: the embedded-device setting)."""
    agents: tuple[str, ...] = ()
    """Subset of the agents to run (see ``aaren_rl.bench.agents``); empty means all."""
    checkpoint_aaren: Path | None = None
    """An Aaren checkpoint to act with (with --checkpoint-transformer); default: fresh
    benchmark models of the size above."""
    checkpoint_transformer: Path | None = None
    """The Transformer checkpoint that goes with --checkpoint-aaren."""
    eval_episodes: int = 0
    """With checkpoints: score every agent on this many episodes (same seeds; 0: off)."""
    eval_num_envs: int = 10
    """Environments stepped together when scoring."""
    profile_onnx: bool = False
    """Also run aaren-onnx's step graph under onnxruntime's profiler (1000 calls): time per
    operator type and the slowest nodes, into act.json's ``onnx_profile`` and a table. The
    profiler adds its own cost to every node, so small nodes read high: use the shares to
    see where the time goes on this CPU, the timed µs per action for speed."""
    quick: bool = False
    """A smoke run: at most 30 steps, 1 repeat; batches capped at 4 envs for 5 steps."""
    d3rlpy_json: Path | None = None
    """A JSON with ``act_ms_median`` measured for d3rlpy's DT on this machine
    (bench/peer/d3rlpy_dt.py): the speed-ups against it are added to the targets."""

    def __post_init__(self) -> None:
        if self.quick:
            self.steps, self.repeats = min(self.steps, 30), 1
            self.batch_steps, self.batch_repeats = min(self.batch_steps, 5), 1
            self.num_envs = tuple(min(n, 4) for n in self.num_envs)
        unknown = [n for n in self.agents if n not in ACT_AGENTS]
        if unknown:
            raise ConfigError(f"unknown agents {unknown}; choose from {sorted(ACT_AGENTS)}")
        if min(self.steps, self.repeats, self.batch_steps, self.batch_repeats) < 1:
            raise ConfigError("steps, repeats, batch-steps and batch-repeats must be >= 1")
        if not self.num_envs or min(self.num_envs) < 1:
            raise ConfigError(f"--num-envs must be >= 1, got {self.num_envs}")
        if (self.checkpoint_aaren is None) != (self.checkpoint_transformer is None):
            raise ConfigError("pass both --checkpoint-aaren and --checkpoint-transformer, or none")
        if self.profile_onnx and self.agents and "aaren-onnx" not in self.agents:
            raise ConfigError("--profile-onnx profiles aaren-onnx: add it to --agents")
        if self.eval_episodes and self.checkpoint_aaren is None:
            raise ConfigError("--eval-episodes needs trained checkpoints to score")


@dataclass
class ActRecord:
    """One point of the benchmark (the JSON record)."""

    agent: str
    num_envs: int
    t: int
    time_us_median: float
    """Time of one ``predict`` call for all ``num_envs`` envs (median over repeats)."""
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
    """Time each call of one episode; returns (ns per call, state bytes per call), (T,)."""
    steps, n = obs.shape[0], obs.shape[1]
    times = np.empty(steps, dtype=np.int64)
    nbytes = np.empty(steps, dtype=np.int64)
    reward = np.zeros(n)
    first, cont = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    agent.reset(n)
    clock = time.perf_counter_ns
    for t in range(steps):
        t0 = clock()
        agent.predict(obs[t], reward, first if t == 0 else cont)
        times[t] = clock() - t0
        nbytes[t] = agent.state_nbytes()
    return times, nbytes


def _time_agents(
    agents: dict[str, BenchAgent], obs: np.ndarray, repeats: int, log: Callable[[str], None]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(times µs (repeats, T), state bytes (T,)) per agent, episodes interleaved."""
    names = list(agents)
    times = {n: np.empty((repeats, obs.shape[0])) for n in names}
    nbytes: dict[str, np.ndarray] = {}
    for a in agents.values():  # warm-up: first-call allocations, lazy inits, traces
        _episode(a, obs[: min(obs.shape[0], 50)])
    for r in range(repeats):
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
            f"batch {obs.shape[1]}, repeat {r + 1}/{repeats}: median µs/call "
            + ", ".join(f"{n} {medians[n]:.0f}" for n in names)
        )
    return times, nbytes


def build_agents(
    cfg: ActBenchConfig, source: PolicySource, log: Callable[[str], None] = print
) -> dict[str, BenchAgent]:
    """The agents of ``cfg.agents`` (all by default), built from ``source``."""
    agents = {n: ACT_AGENTS[n](source) for n in (list(cfg.agents) or list(ACT_AGENTS))}
    for n, a in agents.items():
        check = source.checks.get(n)
        extra = f", max |action - PyTorch| {check:.2g}" if check is not None else ""
        log(f"{n:24s} params {a.params:,}, {model_bytes(a):,} model bytes{extra}")
    return agents


def run_act_bench(
    cfg: ActBenchConfig, source: PolicySource, log: Callable[[str], None] = print
) -> tuple[list[ActRecord], dict[str, BenchAgent]]:
    """Run the benchmark; one record per (agent, num_envs, t), and the agents."""
    torch.set_num_threads(cfg.threads)
    agents = build_agents(cfg, source, log)
    obs_dim = next(iter(source.models.values())).config.obs_dim
    rng = np.random.default_rng(cfg.seed)
    records = []
    for n in cfg.num_envs:
        steps, repeats = (
            (cfg.steps, cfg.repeats) if n == 1 else (cfg.batch_steps, cfg.batch_repeats)
        )
        obs = rng.standard_normal((steps, n, obs_dim)).astype(np.float32)
        times, nbytes = _time_agents(agents, obs, repeats, log)
        for name, agent in agents.items():
            med, p90 = np.median(times[name], axis=0), np.percentile(times[name], 90, axis=0)
            size, params = model_bytes(agent), agent.params
            records += [
                ActRecord(
                    name, n, t + 1, float(med[t]), float(p90[t]), int(nbytes[name][t]), params, size
                )  # fmt: skip
                for t in range(steps)
            ]
    return records, agents


def agent_info(agents: dict[str, BenchAgent], source: PolicySource) -> dict[str, dict]:
    """Per agent: engine, parameters, file bytes, ONNX nodes and the check against PyTorch."""
    info = {}
    for name, agent in agents.items():
        entry: dict = {"engine": ENGINES[name], "params": agent.params}
        entry["model_bytes"] = model_bytes(agent)
        path = getattr(agent, "path", None)
        if path is not None:
            entry["onnx_nodes_optimised"] = onnx_nodes(Path(path))
        if name in source.checks:
            entry["max_action_error_vs_pytorch"] = source.checks[name]
        info[name] = entry
    return info


def summarize(
    records: list[ActRecord], ts: tuple[int, ...] = REPORT_TS, bucket: int = 10
) -> list[dict]:
    """Batch-1 rows for a table: at each t, the median of the per-t records over the steps
    (t - bucket/2, t + bucket/2] clipped to the episode (smooths single-step noise on a shared
    machine); state bytes at t exactly."""
    rows = []
    by_agent: dict[str, dict[int, ActRecord]] = {}
    for rec in records:
        if rec.num_envs == 1:
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


def throughput(records: list[ActRecord]) -> list[dict]:
    """Actions per second per (agent, num_envs): N / median time per call over the episode
    (t = 1 .. steps at batch 1, 1 .. batch_steps above), with the state bytes at its end."""
    groups: dict[tuple[str, int], list[ActRecord]] = {}
    for rec in records:
        groups.setdefault((rec.agent, rec.num_envs), []).append(rec)
    rows = []
    for (agent, n), recs in groups.items():
        us = float(np.median([r.time_us_median for r in recs]))
        last = max(recs, key=lambda r: r.t)
        rows.append(
            {
                "agent": agent,
                "num_envs": n,
                "steps": last.t,
                "time_us_per_call": us,
                "actions_per_s": n * 1e6 / us,
                "state_bytes_end": last.state_bytes,
            }
        )
    return rows


def records_to_json(records: list[ActRecord]) -> list[dict]:
    return [asdict(r) for r in records]


def _ratio_target(
    rows: dict, fast: str, slow: str, t: int, factor: float, key: str = "time_us_median"
) -> dict | None:
    a, b = rows.get((fast, t)), rows.get((slow, t))
    if not (a and b):
        return None
    speedup = b[key] / a[key]
    return {
        "target": f"{fast} at t={t} >= {factor:g}x faster than {slow}",
        "measured": f"{speedup:.2f}x ({a[key]:.0f} vs {b[key]:.0f} µs)",
        "met": speedup >= factor,
    }


def _flat_target(rows: dict, records: list[ActRecord], agent: str, tolerance: float) -> list:
    a10, a1000 = rows.get((agent, 10)), rows.get((agent, 1000))
    if not (a10 and a1000):
        return []
    ratio = a1000["time_us_median"] / a10["time_us_median"]
    sizes = {r.state_bytes for r in records if r.agent == agent and r.num_envs == 1}
    return [
        {
            "target": f"{agent} time at t=1000 within {tolerance:.0%} of t=10",
            "measured": f"{a1000['time_us_median']:.0f} vs {a10['time_us_median']:.0f} µs "
            f"(ratio {ratio:.2f})",
            "met": abs(ratio - 1.0) <= tolerance,
        },
        {
            "target": f"{agent} state bytes identical at every t",
            "measured": f"{sorted(sizes)} bytes",
            "met": len(sizes) == 1,
        },
    ]


def act_targets(
    records: list[ActRecord],
    d3rlpy_ms: float | None = None,
    floors: dict | None = None,
) -> list[dict]:
    """The acting targets, measured (bucketed medians as in :func:`summarize`); ``floors``:
    ``bench.agents.onnx_floors`` (aaren-onnx, the fp32 GEMV limit and the graph's own matrix
    products timed in turn), which the GEMV target uses: the limit is never compared with the
    records' times, which ran minutes apart from it on a machine whose speed drifts."""
    rows = {(r["agent"], r["t"]): r for r in summarize(records, ts=(10, 1000))}
    out = _flat_target(rows, records, "aaren-recurrent", 0.10)
    pairs = [
        ("aaren-recurrent", "transformer-window", 2.0),
        ("aaren-recurrent", "transformer-kv", 5.0),
        ("aaren-onnx", "transformer-window-onnx", 5.0),
        ("aaren-onnx", "transformer-kv-onnx", 10.0),
    ]
    out += [t for f, s, x in pairs if (t := _ratio_target(rows, f, s, 1000, x))]
    onnx = rows.get(("aaren-onnx", 1000))
    if onnx:
        us = onnx["time_us_median"]
        out.append(
            {
                "target": "aaren-onnx <= 60 µs per action at batch 1, t=1000",
                "measured": f"{us:.0f} µs",
                "met": us <= 60.0,
            }  # fmt: skip
        )
        out += _flat_target(rows, records, "aaren-onnx", 0.10)
        if d3rlpy_ms is not None:
            speedup = d3rlpy_ms * 1e3 / us
            out.append(
                {
                    "target": "aaren-onnx >= 50x faster than d3rlpy DT (measured here)",
                    "measured": f"{speedup:.1f}x ({us:.0f} µs vs {d3rlpy_ms:.2f} ms)",
                    "met": speedup >= 50,
                }  # fmt: skip
            )
    if floors is not None:  # interleaved with the limit: robust to drifting speed
        step, limit, own = floors["aaren_onnx_us"], floors["gemv_us"], floors["matmul_us"]
        out.append(
            {
                "target": "aaren-onnx at t>=1000 <= 1.3x the fp32 GEMV limit (interleaved)",
                "measured": f"{step / limit:.2f}x ({step:.0f} vs {limit:.0f} µs; the graph's "
                f"matrix products alone: {own:.0f} µs)",
                "met": step <= 1.3 * limit,
            }  # fmt: skip
        )
    tp = {(r["agent"], r["num_envs"]): r["actions_per_s"] for r in throughput(records)}
    for fast, slow in (("aaren-recurrent", "transformer-window"),
                       ("aaren-onnx", "transformer-window-onnx")):  # fmt: skip
        if (fast, 256) in tp and (slow, 256) in tp:
            ratio = tp[(fast, 256)] / tp[(slow, 256)]
            out.append(
                {
                    "target": f"{fast} actions/s at 256 envs >= 5x {slow}'s",
                    "measured": f"{ratio:.2f}x ({tp[(fast, 256)]:,.0f} vs {tp[(slow, 256)]:,.0f})",
                    "met": ratio >= 5,
                }  # fmt: skip
            )
    return out


def score_agents(
    agents: dict[str, BenchAgent], source: PolicySource, episodes: int, num_envs: int
) -> dict[str, dict]:
    """Return of every agent on the same seeds (episode i reset with seed i); an agent whose
    evaluation fails (NaN actions) gets its error instead."""
    from aaren_rl.errors import EvalError
    from aaren_rl.eval.rollout import evaluate

    out = {}
    keys = ("return_mean", "return_std", "normalized_mean", "normalized_std", "returns")
    for name, agent in agents.items():
        try:
            res = evaluate(agent, source.env_id or "hopper", episodes, num_envs=num_envs, seed=0)
        except EvalError as e:  # e.g. NaN actions: recorded, the other agents still scored
            out[name] = {"error": str(e), "normalized_mean": None}
            continue
        out[name] = {k: getattr(res, k) for k in keys} | {"episodes": episodes}
    return out
