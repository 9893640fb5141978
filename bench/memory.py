"""``aaren-bench memory``: success vs memory length, and the cost per action, on memory tasks.

Where the past matters a K-step window forgets, and a KV cache pays O(t) per action; Aaren's
constant-size state should remember at constant cost (docs/memory.md).

A *unit* is one (task, backbone, seed): one model trained, then evaluated in every acting
mode at every memory length of the task:

- T-Maze (``envs/tmaze.py``): one model per unit, trained on a curriculum of growing, mixed
  corridor lengths (``curriculum``: stage i trains on episodes of lengths ``<= curriculum[i]``,
  all lengths mixed), the decision step's loss weighted by the episode length; then evaluated
  at every L of ``lengths`` (lengths above the last stage are zero-shot).
- POPGym tasks (``envs/popgym_envs.py``): trained on the task's own episodes.

Data: the scripted ``medium`` mix of ``collect/scripted.py`` (20% wrong-choice episodes, 10%
random steps), so the model must use the return it is conditioned on (target: 1).

Acting modes: Aaren ``recurrent`` (constant state); Transformer ``kv`` (cache of the whole
episode), ``window20`` (last K = 20 steps re-run), ``windowL`` (a window of the whole
episode, K = L + 1, only for L <= ``full_window_max``). The window agents use the same model
as ``kv``: a window is a way of acting, the weights are the same.

Per (task, L, backbone, mode, seed) one JSON record in ``OUT/records/``: env,
memory_length, backbone, mode, seed, success_rate, return_mean, act_us (median time of the
action at the decision step: the episode's last, batch 1), state_bytes (at that step),
train_steps, and more. Units whose records all exist are skipped (rerun the same command to
resume). The summary (``memory.json``), the table and ``memory.png`` are rebuilt from all
records.

Example (a quick look; the full grid is in docs/memory.md):
    aaren-bench memory --tasks tmaze --lengths 10 100 --seeds 0 --out /tmp/mem
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aaren_rl.aaren_policy.backbone import BackboneConfig

__all__ = ["MemoryConfig", "run_memory", "units_of"]

ALL_TASKS = ("tmaze", "popgym-RepeatFirstEasy", "popgym-RepeatFirstMedium",
             "popgym-StatelessCartPoleEasy")  # fmt: skip


@dataclass
class MemoryConfig:
    """Success vs memory length (Passive T-Maze, POPGym) and time per action, per agent."""

    tasks: tuple[str, ...] = ALL_TASKS
    """tmaze (at every --lengths) and POPGym task names (popgym-RepeatFirstEasy, ...)."""
    lengths: tuple[int, ...] = (10, 30, 100, 300, 1000, 1500)
    """T-Maze memory lengths L to evaluate."""
    backbones: tuple[Literal["aaren", "transformer"], ...] = ("aaren", "transformer")
    """Backbones (aaren acts recurrently; transformer with a KV cache and windows)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds."""
    curriculum: tuple[int, ...] = (10, 30, 100, 300)
    """T-Maze training stages: the longest corridor of each stage (lengths mixed within)."""
    stage_steps: int = 400
    """Gradient steps per curriculum stage but the last."""
    final_steps: int = 400
    """Gradient steps of the last stage (and of a POPGym unit)."""
    episodes_per_length: int = 48
    """Training episodes per T-Maze length (lengths: 10 and the curriculum)."""
    popgym_episodes: int = 400
    """Training episodes of a POPGym task."""
    decision_weight: bool = True
    """Weight the T-Maze decision step's loss by the episode length."""
    model: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(dim=64, num_layers=2, dropout=0.0)
    )
    """Size of the backbone stack (the model library's BackboneConfig, as in aaren-train)."""
    batch_size: int = 4
    """Episodes per batch."""
    learning_rate: float = 1e-3
    """AdamW learning rate (linear warm-up over 50 steps, gradient clip 1)."""
    eval_episodes: int = 100
    """Evaluation episodes per (L, mode) for the success rate."""
    eval_envs: int = 25
    """Environments stepped together in evaluation."""
    timing_episodes: int = 9
    """Batch-1 episodes for act_us (median over their decision steps)."""
    window: int = 20
    """K of the window Transformer."""
    full_window_max: int = 100
    """Largest L with a whole-episode window agent (windowL): it re-runs L steps per action."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Training and acting device (acting times are measured there too)."""
    jobs: int = 1
    """Units run in parallel processes (use the cores: 16 on the GPU machine)."""
    threads: int = 1
    """torch threads per process."""
    out: Path = Path("runs/bench/memory")
    """Folder for records/*.json (one record per run), memory.json, memory.md and memory.png."""
    model_dir: Path | None = None
    """Where trained models are kept for resuming (default OUT/models)."""
    summary_only: bool = False
    """Only rebuild memory.json / memory.md / memory.png from the records under OUT."""


@dataclass(frozen=True)
class Unit:
    task: str
    backbone: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.task}__{self.backbone}__s{self.seed}"


@dataclass
class Run:
    """One evaluated agent: what a record describes."""

    env: str
    memory_length: int
    mode: str
    context_length: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def units_of(cfg: MemoryConfig) -> list[Unit]:
    units = [Unit(t, b, s) for t in cfg.tasks for b in cfg.backbones for s in cfg.seeds]
    # T-Maze first (the headline), Aaren before the Transformer
    return sorted(units, key=lambda u: (u.task != "tmaze", u.backbone != "aaren"))


def _modes(backbone: str) -> list[str]:
    return ["recurrent"] if backbone == "aaren" else ["kv", "window20", "windowL"]


def _runs(cfg: MemoryConfig, unit: Unit) -> list[Run]:
    from aaren_rl.envs import get_env_spec
    from aaren_rl.envs.tmaze import tmaze_id

    if unit.task == "tmaze":
        envs = [(tmaze_id(L), L) for L in cfg.lengths]
    else:
        spec = get_env_spec(unit.task)
        envs = [(spec.gym_id, spec.max_episode_steps)]
    runs = []
    for env, L in envs:
        for mode in _modes(unit.backbone):
            if mode == "windowL" and L > cfg.full_window_max:
                continue
            k = cfg.window if mode == "window20" else (L + 1 if mode == "windowL" else None)
            runs.append(Run(env, L, mode, k))
    return runs


def _record_path(cfg: MemoryConfig, unit: Unit, run: Run) -> Path:
    env = run.env.replace("/", "_")
    return cfg.out / "records" / f"{env}__{unit.backbone}__{run.mode}__s{unit.seed}.json"


# ----------------------------------------------------------------------------- training


def _tmaze_pool(cfg: MemoryConfig, seed: int):
    """Scripted medium-mix episodes at lengths 10 and every curriculum stage."""
    from aaren_rl.collect.scripted import collect_arrays, to_dataset
    from aaren_rl.envs.tmaze import tmaze_id

    trajs, ds = [], None
    for i, L in enumerate(sorted({10, *cfg.curriculum})):
        arrays = collect_arrays(tmaze_id(L), "medium", cfg.episodes_per_length, seed + 101 * i)
        ds = to_dataset(arrays, tmaze_id(L), "scripted:tmaze")
        trajs += ds.trajectories
    assert ds is not None
    return _with_stats(ds, trajs)


def _with_stats(template, trajs):
    from aaren_rl.envs.datasets import STD_FLOOR, OfflineDataset

    obs = np.concatenate([t.observations for t in trajs])
    return OfflineDataset(
        trajectories=trajs,
        state_mean=obs.mean(0).astype(np.float32),
        state_std=(obs.std(0) + STD_FLOOR).astype(np.float32),
        spec=template.spec,
        env_id=template.env_id,
        metadata={},
        num_actions=template.num_actions,
    )


def _stages(cfg: MemoryConfig, unit: Unit, seed: int):
    """[(dataset, steps)] for the unit; every stage shares the pool's normalisation."""
    from aaren_rl.collect.scripted import collect_arrays, to_dataset
    from aaren_rl.envs.datasets import OfflineDataset

    if unit.task == "tmaze":
        pool = _tmaze_pool(cfg, seed)
        stages = []
        for i, top in enumerate(cfg.curriculum):
            trajs = [t for t in pool.trajectories if len(t) <= top + 1]
            sub = OfflineDataset(trajs, pool.state_mean, pool.state_std, pool.spec, pool.env_id,
                                 {}, pool.num_actions)  # fmt: skip
            last = i == len(cfg.curriculum) - 1
            stages.append((sub, cfg.final_steps if last else cfg.stage_steps))
        return pool, stages
    arrays = collect_arrays(unit.task, "medium", cfg.popgym_episodes, seed)
    ds = to_dataset(arrays, unit.task, f"scripted:{unit.task}")
    return ds, [(ds, cfg.final_steps)]


def _decision_weights(batch, enabled: bool):
    """(B, K): 1, and the episode length at each row's last real step (the T-Maze decision)."""
    import torch

    w = torch.ones(batch.mask.shape, dtype=torch.float32, device=batch.mask.device)
    if enabled:
        n = batch.mask.sum(1)  # (B,) real steps
        rows = torch.arange(len(n), device=w.device)
        w[rows, n - 1] = n.to(torch.float32)
    return w


def train_unit(cfg: MemoryConfig, unit: Unit, device: Any):
    """Train one unit's model; returns (model, dataset (for normalisation), steps, seconds)."""
    import torch

    from aaren_rl.aaren_policy import DecisionModel, DecisionModelConfig
    from aaren_rl.envs.sampling import EpisodeSampler

    torch.manual_seed(unit.seed)
    pool, stages = _stages(cfg, unit, unit.seed)
    model = DecisionModel(
        DecisionModelConfig(
            obs_dim=pool.obs_dim,
            act_dim=pool.act_dim,
            backbone=unit.backbone,
            net=replace(cfg.model),
            # No absolute timestep embedding: the junction is in the observation, and a
            # length beyond training must not meet untrained rows.
            max_timestep=1,
            discrete=pool.discrete_actions,
        )
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / 50, 1.0))
    weighted = cfg.decision_weight and unit.task == "tmaze"
    steps, t0 = 0, time.perf_counter()
    model.train()
    for i, (ds, n_steps) in enumerate(stages):
        longest = max(len(t) for t in ds.trajectories)
        sampler = EpisodeSampler(ds, context_length=longest, batch_size=cfg.batch_size,
                                 return_scale=1.0, state_mean=pool.state_mean,
                                 state_std=pool.state_std, seed=unit.seed * 7919 + i)  # fmt: skip
        for _ in range(n_steps):
            batch = sampler.sample().to(device)
            preds, _ = model(
                batch.returns_to_go, batch.observations, batch.actions, batch.timesteps
            )
            loss = model.action_loss(preds, batch.actions, batch.mask,
                                     _decision_weights(batch, weighted))  # fmt: skip
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            steps += 1
    return model.eval(), pool, steps, time.perf_counter() - t0


# ----------------------------------------------------------------------------- evaluation


def _agent(model, norm: tuple[np.ndarray, np.ndarray], run: Run, device: Any):
    from aaren_rl.agents import DecisionAgent

    mode = "window" if run.mode.startswith("window") else "recurrent"
    return DecisionAgent(model, norm[0], norm[1], return_scale=1.0,
                         target_return=1.0, mode=mode, context_length=run.context_length or 20,
                         env_id=run.env, device=device)  # fmt: skip


def time_decision_step(agent: Any, env_id: str, episodes: int, seed: int) -> tuple[float, int]:
    """Median microseconds of ``predict`` at each episode's last step (batch 1), and the
    agent's state bytes there."""
    from aaren_rl.envs import make_env

    env = make_env(env_id)
    times, nbytes = [], 0
    try:
        agent.reset(1)
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            reward, start = 0.0, True
            while True:
                t0 = time.perf_counter()
                a = agent.predict(obs[None], np.array([reward]), np.array([start]))
                dt = time.perf_counter() - t0
                obs, reward, term, trunc, _ = env.step(a[0])
                start = False
                if term or trunc:
                    times.append(dt)
                    nbytes = int(agent.state_nbytes())
                    break
    finally:
        env.close()
    return 1e6 * float(np.median(times)), nbytes


def evaluate_run(cfg: MemoryConfig, model, norm, run: Run, seed: int, device: Any) -> dict:
    from aaren_rl.eval.rollout import evaluate

    agent = _agent(model, norm, run, device)
    res = evaluate(agent, run.env, episodes=cfg.eval_episodes,
                   num_envs=min(cfg.eval_envs, cfg.eval_episodes), seed=10_000 + 1000 * seed)  # fmt: skip
    act_us, nbytes = time_decision_step(agent, run.env, cfg.timing_episodes, 90_000)
    return {
        "success_rate": res.success_rate,
        "return_mean": res.return_mean,
        "return_std": res.return_std,
        "act_us": act_us,
        "state_bytes": nbytes,
        "eval_episodes": res.episodes,
        "eval_seconds": res.seconds,
    }


def _resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run_unit(cfg: MemoryConfig, unit: Unit) -> list[dict]:
    """Train (or load) and evaluate one unit; writes and returns its missing records."""
    import torch

    from aaren_rl.agents import DecisionAgent
    from aaren_rl.fileio import atomic_write_json

    torch.set_num_threads(cfg.threads)
    device = _resolve_device(cfg.device)
    todo = [r for r in _runs(cfg, unit) if not _record_path(cfg, unit, r).exists()]
    if not todo:
        return []
    model_path = (cfg.model_dir or cfg.out / "models") / unit.name
    if model_path.is_dir():  # trained before, evaluation cut short: resume from the model
        saved = DecisionAgent.load(model_path, device=device)
        model, steps, secs = saved.model, saved.metadata["train_steps"], saved.metadata["train_s"]
        norm = (saved.state_mean, saved.state_std)
    else:
        model, pool, steps, secs = train_unit(cfg, unit, device)
        norm = (pool.state_mean, pool.state_std)
        DecisionAgent(model, *norm, 1.0, 1.0, device=device).save(
            model_path, {"train_steps": steps, "train_s": secs, "unit": unit.name}
        )
    records = []
    for run in todo:
        rec = {
            "env": run.env,
            "task": unit.task,
            "memory_length": run.memory_length,
            "backbone": unit.backbone,
            "mode": run.mode,
            "context_length": run.context_length,
            "seed": unit.seed,
            **evaluate_run(cfg, model, norm, run, unit.seed, device),
            "train_steps": steps,
            "train_s": secs,
            "params": model.num_parameters(),
            "device": str(device),
            "threads": cfg.threads,
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "model_dir")},
        }
        atomic_write_json(_record_path(cfg, unit, run), json.loads(json.dumps(rec, default=str)))
        records.append(rec)
        print(f"[memory] {unit.name} L={run.memory_length} {run.mode}: success "
              f"{rec['success_rate']} act {rec['act_us']:.0f} us", flush=True)  # fmt: skip
    return records


# ----------------------------------------------------------------------------- summary


def _agent_name(rec: dict) -> str:
    if rec["backbone"] == "aaren":
        return "aaren-recurrent"
    return {"kv": "transformer-kv", "window20": "transformer-window20"}.get(
        rec["mode"], "transformer-windowL"
    )


def summarise(records: list[dict]) -> list[dict]:
    """One row per (task, agent, L): success mean/std over seeds, median act_us, bytes."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r["task"], _agent_name(r), r["memory_length"])
        groups.setdefault(key, []).append(r)
    rows = []
    for (task, agent, L), rs in sorted(groups.items()):
        succ = [r["success_rate"] for r in rs if r["success_rate"] is not None]
        rows.append({
            "task": task, "agent": agent, "memory_length": L, "seeds": len(rs),
            "success_mean": float(np.mean(succ)) if succ else None,
            "success_std": float(np.std(succ)) if succ else None,
            "success_min": float(np.min(succ)) if succ else None,
            "return_mean": float(np.mean([r["return_mean"] for r in rs])),
            "act_us": float(np.median([r["act_us"] for r in rs])),
            "state_bytes": int(np.median([r["state_bytes"] for r in rs])),
            "train_steps": int(np.median([r["train_steps"] for r in rs])),
            "train_s": float(np.median([r["train_s"] for r in rs])),
        })  # fmt: skip
    return rows


def targets(rows: list[dict]) -> list[dict]:
    """The issue's targets, from the T-Maze rows (None: not measured)."""
    t = {(r["agent"], r["memory_length"]): r for r in rows if r["task"] == "tmaze"}
    out = []

    def row(name: str, value: Any, ok: bool | None) -> None:
        out.append({"target": name, "measured": value, "met": ok})

    for L in (1000, 1500):
        r = t.get(("aaren-recurrent", L))
        v = None if r is None else r["success_min"]
        row(f"Aaren recurrent success >= 95% at L={L}, every seed (min over seeds)", v,
            None if v is None else v >= 0.95)  # fmt: skip
    a = [t.get(("aaren-recurrent", L)) for L in (10, 1500)]
    if all(a):
        ratio = a[1]["act_us"] / a[0]["act_us"]
        row("Aaren act_us(L=1500) / act_us(L=10) <= 1.25", round(ratio, 3), ratio <= 1.25)
        row("Aaren state bytes constant in L", [a[0]["state_bytes"], a[1]["state_bytes"]],
            a[0]["state_bytes"] == a[1]["state_bytes"])  # fmt: skip
    w = [r for (ag, L), r in t.items() if ag == "transformer-window20" and L > 20]
    if w:
        worst = max(r["success_mean"] for r in w)
        row("Transformer window K=20 at chance (50%) for L > 20 (max mean success)",
            round(worst, 3), worst <= 0.65)  # fmt: skip
    kv = sorted((L, r) for (ag, L), r in t.items() if ag == "transformer-kv")
    if len(kv) >= 2:
        (l0, r0), (l1, r1) = kv[0], kv[-1]
        row(f"Transformer KV act_us and state bytes grow from L={l0} to L={l1}",
            [round(r0["act_us"]), round(r1["act_us"]), r0["state_bytes"], r1["state_bytes"]],
            r1["act_us"] > r0["act_us"] and r1["state_bytes"] > r0["state_bytes"])  # fmt: skip
    return out


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return "-" if v is None else str(v)

    lines = ["| " + " | ".join(c for c, _ in columns) + " |",
             "|" + "---|" * len(columns)]  # fmt: skip
    lines += ["| " + " | ".join(fmt(r.get(k)) for _, k in columns) + " |" for r in rows]
    return "\n".join(lines)


COLUMNS = [("task", "task"), ("agent", "agent"), ("L", "memory_length"), ("seeds", "seeds"),
           ("success", "success_mean"), ("± std", "success_std"), ("min", "success_min"),
           ("return", "return_mean"), ("act µs", "act_us"), ("state bytes", "state_bytes"),
           ("train steps", "train_steps"), ("train s", "train_s")]  # fmt: skip


def plot(rows: list[dict], path: Path) -> Path | None:
    """Success vs L and time per action vs L, one line per agent (T-Maze)."""
    rows = [r for r in rows if r["task"] == "tmaze"]
    if not rows:
        return None
    from aaren_rl.bench.plots import plt, save_figure  # pyplot on the Agg backend

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, agent in enumerate(sorted({r["agent"] for r in rows})):
        rs = sorted((r for r in rows if r["agent"] == agent), key=lambda r: r["memory_length"])
        x = [r["memory_length"] for r in rs]
        style = {"marker": "osD^v"[i % 5], "ls": ["-", "--", "-.", ":"][i % 4], "alpha": 0.85}
        ax1.errorbar(x, [r["success_mean"] for r in rs], yerr=[r["success_std"] for r in rs],
                     capsize=3, label=agent, **style)  # fmt: skip
        ax2.plot(x, [r["act_us"] for r in rs], label=agent, **style)
    ax1.axhline(0.5, color="gray", ls=":", lw=1, label="chance")
    ax1.set(xscale="log", xlabel="memory length L", ylabel="success rate (mean ± std, seeds)",
            title="Passive T-Maze: success", ylim=(0, 1.05))  # fmt: skip
    ax2.set(xscale="log", yscale="log", xlabel="memory length L",
            ylabel="µs per action at the decision step (batch 1)", title="time per action")  # fmt: skip
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    save_figure(fig, path)
    return path


def write_summary(cfg: MemoryConfig) -> dict:
    from aaren_rl.cpu import cpu_record
    from aaren_rl.fileio import atomic_write_json, atomic_write_text

    records = [json.loads(p.read_text()) for p in sorted((cfg.out / "records").glob("*.json"))]
    rows = summarise(records)
    tg = targets(rows)
    data = {"records": len(records), "summary": rows, "targets": tg}
    atomic_write_json(cfg.out / "memory.json", {**data, "cpu": cpu_record()})
    md = (
        _table(rows, COLUMNS)
        + "\n\n"
        + _table(tg, [("target", "target"), ("measured", "measured"), ("met", "met")])
    )
    atomic_write_text(cfg.out / "memory.md", md + "\n")
    plot(rows, cfg.out / "memory.png")
    print(md)
    return data


def run_memory(cfg: MemoryConfig) -> dict:
    """Run every unit not yet finished (in ``jobs`` processes), then the summary."""
    from aaren_rl.errors import ConfigError

    if min(cfg.jobs, cfg.threads, cfg.eval_episodes, cfg.timing_episodes, cfg.batch_size) < 1:
        raise ConfigError(
            "--jobs, --threads, --eval-episodes, --timing-episodes and --batch-size must be >= 1"
        )
    if not cfg.curriculum or min(cfg.curriculum) < 1 or min(cfg.lengths, default=1) < 1:
        raise ConfigError("--curriculum needs at least one length; lengths must be >= 1")
    from aaren_rl.collect.scripted import has_scripted_policy

    bad = [t for t in cfg.tasks if t != "tmaze" and not has_scripted_policy(t)]
    if bad:
        raise ConfigError(
            f"--tasks {bad}: not a memory task; use tmaze or popgym-RepeatFirst{{Easy,Medium,Hard}}"
            ", popgym-StatelessCartPole{Easy,Medium,Hard}"
        )
    if not cfg.summary_only:
        units = units_of(cfg)
        t0 = time.perf_counter()
        if cfg.jobs == 1:
            for u in units:
                run_unit(cfg, u)
        else:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(cfg.jobs) as pool:
                pool.starmap(run_unit, [(cfg, u) for u in units], chunksize=1)
        print(f"[memory] {len(units)} units in {time.perf_counter() - t0:.0f} s", flush=True)
    return write_summary(cfg)


if __name__ == "__main__":  # python -m aaren_rl.bench.memory ...
    import tyro

    run_memory(tyro.cli(MemoryConfig))
