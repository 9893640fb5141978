"""``aaren-bench returns``: the results grid, Aaren-DT vs Transformer-DT on the same data.

For every dataset x (backbone, recipe) x seed, one *run* trains with the DT reference model
(d = 128, 3 layers, 1 head, K = 20) for ``--steps`` gradient steps and is scored every
``--eval-every`` steps in each of its acting modes:

- Aaren (default recipe: whole episodes from t = 0): ``recurrent`` (O(1) state, with the
  memory horizon chosen at each evaluation among ``--horizon-candidates`` as
  ``--horizon-selection`` says: offline, by action error on the run's held-out dataset
  episodes, ``eval/offline_horizon.py``, the default; or online, by return on validation
  episodes played in the env, ``eval/horizon.py``; the main mode), ``window`` (re-run the
  last K steps, as DT), ``recurrent-full`` (O(1) state, exact attention over the whole
  episode) and, with ``--also-online``, ``recurrent-online`` (the horizon chosen online, for
  comparison with the offline choice);
- Transformer (default recipe: random K-step windows): ``window`` (the main mode) and
  ``kv-cache`` (the whole episode in a growing KV cache, for reference).

Each run writes one JSON per acting mode to ``--out-dir`` (schema below); peers (d3rlpy's DT,
``bench/peer/``) write the same schema there and appear in the summary beside ours.
The summary (``summary.md``/``summary.json``, one curve PNG per dataset, optionally a section
of ``docs/results.md``) is rebuilt from those files alone (``--summary-only``).

The runs are Ray tasks (``bench/grid.py``): ``ray.init()`` on this machine by default,
``--address`` for a cluster, a fraction of a GPU per run when there are GPUs; or
``--executor local``, a process pool. A finished run is skipped; an interrupted one continues
from its checkpoint (training resumes bit-identically, evaluation is seeded), so a grid
stopped at any point and started again ends with the same JSON files (up to the ``timing``
block).

Record schema (one file per run and acting mode; every key is written by every run):

    dataset, dataset_spec, dataset_sha256, dataset_source_sha256 (slim copies), env_id,
    behaviour_normalized_score, transitions, episodes
    backbone, recipe, acting ("recurrent" | "window" | "recurrent-full" | "kv-cache"),
    mode (the agent's), seed, memory_horizon (Aaren recurrent acting; else null),
    horizon_selection     "offline" | "online" (how memory_horizon was chosen) | null
    horizon_choice        null, or the final checkpoint's choice: offline {selection,
                          memory_horizon, criterion, action_errors (lower: better),
                          action_errors_by_criterion, heldout_episodes, scored_episodes};
                          online {selection, memory_horizon, validation_scores,
                          validation_episodes, validation_seed}. Records written before the
                          field existed lack ``selection``: their choice was online.
    steps, normalized_mean, normalized_std, return_mean, return_std, returns, lengths
                          (the FINAL evaluation, at ``steps``: the main number)
    best_normalized_mean, best_step, best_convention
                          (the best evaluation during training: CORL's convention, optimistic)
    curve                 [{step, episodes, normalized_mean, normalized_std, return_mean,
                            memory_horizon (recurrent*: the horizon chosen at that step)}]
    curve_note            null, or the steps the curve lacks (an acting mode added after
                          a run was scored starts at the next evaluation, or at the final
                          checkpoint when the run had finished)
    precision, device, settings, versions
    timing                {train_seconds, eval_seconds, wall_seconds, train_seconds_per_step,
                           act_us_per_call}
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aaren_rl.aaren_policy.backbone import BackboneConfig
from aaren_rl.agents.checkpoint import read_metadata
from aaren_rl.bench.common import score_checkpoint
from aaren_rl.bench.grid import GridOptions, run_grid
from aaren_rl.cpu import cpu_record
from aaren_rl.errors import ConfigError, DatasetError, EnvError
from aaren_rl.eval.horizon import HORIZON_CANDIDATES, check_horizon_candidates
from aaren_rl.eval.offline_horizon import HOLDOUT_FRACTION
from aaren_rl.fileio import atomic_write_json, sha256_file
from aaren_rl.train.config import TrainConfig

__all__ = [
    "ACTING",
    "ReturnsConfig",
    "RunSpec",
    "behaviour_score",
    "dataset_facts",
    "grid_specs",
    "grid_status",
    "run_one",
    "run_returns_bench",
]

GRID_ENVS = ("hopper", "halfcheetah", "walker2d")
GRID_LEVELS = ("medium", "medium-replay")
DEFAULT_DATASETS = tuple(
    f"d4rl:runs/datasets/{env}-{level}.hdf5" for env in GRID_ENVS for level in GRID_LEVELS
)
# backbone -> acting modes it is scored in (main first); acting mode -> the agent's mode.
# recurrent acts with the memory horizon chosen for the checkpoint as --horizon-selection says
# (offline: held-out episodes, eval/offline_horizon.py; online: validation episodes in the
# env, eval/horizon.py; candidates --horizon-candidates); recurrent-online (--also-online)
# with the one chosen online; recurrent-full attends to the whole episode (horizon 0).
ACTING: dict[str, tuple[str, ...]] = {
    "aaren": ("recurrent", "window", "recurrent-full"),
    "transformer": ("window", "kv-cache"),
}
ALSO_ONLINE = "recurrent-online"
AGENT_MODE = {
    "recurrent": "recurrent",
    "window": "window",
    "kv-cache": "recurrent",
    "recurrent-full": "recurrent",
    ALSO_ONLINE: "recurrent",
}
MEMORY_HORIZON = {"recurrent-full": 0}  # acting -> a fixed horizon ("recurrent": chosen)
BEST_CONVENTION = (
    "best of the evaluations every eval_every steps during training (CORL's convention); "
    "optimistic: it selects on the evaluation episodes. The final score is the main number."
)


@dataclass
class ReturnsConfig:
    """The results grid: train and score every (dataset, backbone, recipe, seed) alike."""

    datasets: tuple[str, ...] = DEFAULT_DATASETS
    """Dataset specs: d4rl:PATH, d4rl:NAME (D4RL's cache, e.g. d4rl:hopper-medium-v2),
    minari:ID. Default: the datasets made by aaren-collect in runs/datasets (docs/data.md)."""
    runs: tuple[str, ...] = ("aaren:auto", "transformer:auto")
    """backbone:recipe pairs (auto: each backbone's default recipe, episode for aaren and
    window for transformer)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds (evaluation episodes use seeds 1000 + 100 * seed + i)."""
    steps: int = 10_000
    """Gradient steps per run (DT's reference budget is 100k)."""
    eval_every: int = 1000
    """Score every acting mode every this many steps (and at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    eval_max_episode_steps: int | None = None
    """Cut evaluation episodes earlier than the env's limit (tests; default: the env's 1000)."""
    horizon_candidates: tuple[int, ...] = HORIZON_CANDIDATES
    """Memory horizons Aaren's recurrent acting chooses from at every evaluation (0: the whole
    episode)."""
    horizon_selection: Literal["offline", "online"] = "offline"
    """How Aaren's recurrent acting chooses its horizon at every evaluation. offline: by the
    action error on the run's held-out dataset episodes (never trained on; aaren-train
    --horizon-selection offline). online: by return on --eval-episodes validation episodes
    played in the env (env seeds 1,000,000 + 100 * seed + i): model selection in the
    environment, reported as such."""
    also_online: bool = False
    """With offline selection, also score acting recurrent-online (the horizon chosen online)
    so that the report shows both choices side by side."""
    holdout_fraction: float = HOLDOUT_FRACTION
    """Offline selection: the share of episodes each Aaren run holds out (at least 5, at most
    a fifth)."""
    offline_criterion: Literal["own-actions", "teacher-forced", "target-return"] = "own-actions"
    """Offline selection: the action error that decides (aaren-train --offline-criterion)."""
    eval_envs: int = 10
    """Environments stepped in lockstep per evaluation (batched agent calls). Episode i has seed
    1000 + 100 * seed + i whatever this is; returns agree with one env to float rounding."""
    warmup_steps: int | None = None
    """Linear learning-rate warm-up. Default: steps // 10 (DT's 10k at its 100k budget)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where runs train: auto uses a GPU when the task was given one."""
    executor: Literal["ray", "local"] = "ray"
    """ray: Ray tasks (pip install 'aaren-rl[ray]'); local: a process pool on this machine."""
    address: str | None = None
    """Ray cluster to join (e.g. auto); default: start Ray on this machine."""
    num_cpus: int | None = None
    """CPUs for the local Ray instance or processes of the local pool (default: all)."""
    gpu_per_run: float = 1 / 16
    """Fraction of a GPU each run asks for when there are GPUs (1/16: 16 runs per GPU)."""
    checkpoint_every: int = 500
    """Checkpoint interval of each run (an interrupted run loses at most this many steps)."""
    model: BackboneConfig = field(default_factory=BackboneConfig)
    """Size of the backbone stack, as in aaren-train (DT: dim 128, 3 layers, dropout 0.1)."""
    context_length: int = 20
    """K, for the window recipe and window acting (DT: 20)."""
    episode_length: int = 1000
    """Longest training window of the episode recipe."""
    precision: str | None = None
    """Training precision passed to the trainer (fp32, bf16, auto); default: its own."""
    overrides: tuple[str, ...] = ()
    """TrainConfig overrides applied to every run, field=value (model.x for the backbone's),
    e.g. model.activation=relu loss_reduction=sum; recorded in every run's settings."""
    out_dir: Path | None = None
    """Per-run JSON, summary and curves. Default: docs/results/returns-{steps/1000}k."""
    work_dir: Path | None = None
    """Training runs (checkpoints). Default: runs/returns-{steps/1000}k."""
    summary_only: bool = False
    """Only rebuild the summary (tables, curves) from the JSON files."""
    status: bool = False
    """Only print where each run of the grid stands (done, at step N from its checkpoint, or
    not started) and how many are left; starts nothing."""
    docs: Path | None = None
    """Also rewrite the grid section of this markdown page (e.g. docs/results.md)."""
    track: bool = False
    """Log each training run to W&B (offline mode without network)."""

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every", "eval_episodes", "eval_envs", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
        for run in self.runs:
            backbone, _, recipe = run.partition(":")
            if backbone not in ACTING or recipe not in ("auto", "window", "episode"):
                raise ConfigError(
                    f"--runs {run!r}: expected BACKBONE:RECIPE with BACKBONE in "
                    f"{', '.join(ACTING)} and RECIPE in auto, window, episode"
                )
        check_horizon_candidates(self.horizon_candidates)
        self.grid_options  # noqa: B018  (validates the executor flags)

    @property
    def budget_tag(self) -> str:
        return f"{self.steps // 1000}k" if self.steps % 1000 == 0 else str(self.steps)

    @property
    def resolved_out_dir(self) -> Path:
        return self.out_dir or Path("docs/results") / f"returns-{self.budget_tag}"

    @property
    def resolved_work_dir(self) -> Path:
        return self.work_dir or Path("runs") / f"returns-{self.budget_tag}"

    @property
    def resolved_warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else self.steps // 10

    @property
    def stages(self) -> list[int]:
        return [*range(self.eval_every, self.steps, self.eval_every), self.steps]

    @property
    def grid_options(self) -> GridOptions:
        return GridOptions(
            executor=self.executor,
            address=self.address,
            num_cpus=self.num_cpus,
            gpu_per_task=self.gpu_per_run,
            use_gpu=self.device != "cpu",
        )


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid (a task): what to train, and the grid it belongs to."""

    dataset: str
    backbone: str
    recipe: str
    seed: int
    cfg: ReturnsConfig
    root: str
    """Directory the grid was launched from (relative paths are relative to it)."""

    @property
    def dataset_name(self) -> str:
        return Path(self.dataset.split(":", 1)[-1]).name.removesuffix(".hdf5").removesuffix(".h5")

    @property
    def resolved_recipe(self) -> str:
        """The recipe the trainer resolves ``auto`` to for this backbone."""
        train = TrainConfig(dataset=self.dataset, backbone=self.backbone, recipe=self.recipe)  # type: ignore[arg-type]
        return train.resolved_recipe

    @property
    def name(self) -> str:
        return f"{self.dataset_name}__{self.backbone}__{self.resolved_recipe}__s{self.seed}"

    @property
    def actings(self) -> tuple[str, ...]:
        extra = self.backbone == "aaren" and self.cfg.also_online
        extra = extra and self.cfg.horizon_selection == "offline"
        return ACTING[self.backbone] + ((ALSO_ONLINE,) if extra else ())

    def result_path(self, acting: str) -> Path:
        return Path(self.root) / self.cfg.resolved_out_dir / f"{self.name}__{acting}.json"

    @property
    def run_dir(self) -> Path:
        return Path(self.root) / self.cfg.resolved_work_dir / self.name

    @property
    def done(self) -> bool:
        return all(self.result_path(a).exists() for a in self.actings)


def grid_specs(cfg: ReturnsConfig, root: str | None = None) -> list[RunSpec]:
    root = root or os.getcwd()
    return [
        RunSpec(d, *run.split(":", 1), s, cfg, root)
        for d in cfg.datasets
        for run in cfg.runs
        for s in cfg.seeds
    ]


# ----------------------------------------------------------------------------- one run


def dataset_file(spec: str) -> Path | None:
    """The file behind a dataset spec (for its sha256); None when there is no single file."""
    from aaren_rl.envs.d4rl_names import is_d4rl_name, resolve_d4rl_name

    scheme, sep, rest = spec.partition(":")
    if sep and scheme == "d4rl":
        path = Path(rest).expanduser()
        return path if path.exists() or not is_d4rl_name(rest) else resolve_d4rl_name(rest)
    if sep and scheme == "demo":
        from aaren_rl.envs.datasets import DEMO_DIR

        return DEMO_DIR / f"{rest}-demo.hdf5"
    if sep and scheme == "minari":
        from minari.storage.datasets_root_dir import get_dataset_path

        return get_dataset_path(rest) / "data" / "main_data.hdf5"
    return Path(spec) if spec.endswith((".hdf5", ".h5")) else None


def behaviour_score(ds: Any) -> float | None:
    """The behaviour policy's D4RL-normalised score: the mean over the dataset's episodes,
    with the file's reference scores, else its env's; None when neither is known."""
    from aaren_rl.envs import get_env_spec

    lo, hi = ds.reference_scores or (None, None)
    if (lo is None or hi is None) and ds.env_id:
        try:
            env = get_env_spec(ds.env_id)
            lo, hi = env.random_score, env.expert_score
        except EnvError:  # an env this toolkit has no scores for
            pass
    if lo is None or hi is None:
        return None
    return float(np.mean(100.0 * (ds.episode_returns - lo) / (hi - lo)))


def dataset_facts(spec: str, ds: Any = None) -> dict[str, Any]:
    """sha256, env and the behaviour policy's normalised score (its episodes' mean).

    ``ds``: the dataset ``spec`` names, when the caller has loaded it already."""
    from aaren_rl.envs import load_dataset

    ds = ds if ds is not None else load_dataset(spec)
    behaviour = behaviour_score(ds)
    path = dataset_file(spec)
    return {
        "dataset_sha256": sha256_file(path) if path is not None and path.is_file() else None,
        # a slim copy (bench/gpu/slim.py) names the file it was made from
        "dataset_source_sha256": ds.metadata.get("source_sha256"),
        "env_id": ds.env_id,
        "behaviour_normalized_score": behaviour,
        "transitions": ds.num_transitions,
        "episodes": len(ds.trajectories),
    }


def _train_config(spec: RunSpec, steps: int, resume: bool) -> TrainConfig:
    cfg = spec.cfg
    tc = TrainConfig(
        dataset=spec.dataset,
        backbone=spec.backbone,  # type: ignore[arg-type]
        recipe=spec.resolved_recipe,  # type: ignore[arg-type]
        model=replace(cfg.model),
        **({} if cfg.precision is None else {"precision": cfg.precision}),
        context_length=cfg.context_length,
        episode_length=cfg.episode_length,
        steps=steps,
        seed=spec.seed,
        warmup_steps=cfg.resolved_warmup,  # explicit: every stage keeps one schedule
        device=cfg.device,
        eval_episodes=0,
        checkpoint_every=cfg.checkpoint_every,
        run_dir=spec.run_dir,
        resume=resume,
        threads=1,
        progress=False,
        track=cfg.track,
        wandb_group=f"returns-{spec.dataset_name}",
        horizon_selection=cfg.horizon_selection,
        horizon_candidates=cfg.horizon_candidates,
        holdout_fraction=cfg.holdout_fraction,
        offline_criterion=cfg.offline_criterion,
    )
    if cfg.overrides:
        from aaren_rl.bench.overrides import apply_overrides, parse_overrides

        tc = apply_overrides(tc, parse_overrides(cfg.overrides, "--overrides"))
    return tc


def _offline_choice(spec: RunSpec, ckpt: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The horizon chosen offline on the run's held-out episodes (recorded in its checkpoint)."""
    from aaren_rl.agents import DecisionAgent
    from aaren_rl.envs import load_dataset
    from aaren_rl.eval.offline_horizon import choose_memory_horizon_offline

    record = read_metadata(ckpt).get("horizon_selection") or {}
    heldout = record.get("heldout_episodes") or []
    if not heldout:
        raise ConfigError(
            f"{spec.run_dir} was trained on every episode (no held-out episodes in its "
            "checkpoint): its horizon cannot be chosen offline. Score it with "
            "--horizon-selection online, or start it again in a new --work-dir"
        )
    if "dataset" not in data:  # loaded once per evaluation stage
        data["dataset"] = load_dataset(spec.dataset)
    agent = DecisionAgent.load(ckpt)
    return choose_memory_horizon_offline(
        agent.model,
        data["dataset"],
        heldout,
        agent.return_scale,
        spec.cfg.horizon_candidates,
        spec.cfg.offline_criterion,
        agent.state_mean,
        agent.state_std,
        agent.target_return,
    ).to_dict()


def _online_choice(spec: RunSpec, ckpt: Path) -> dict[str, Any]:
    """The horizon chosen online: by return on validation episodes played in the env."""
    from aaren_rl.agents import DecisionAgent
    from aaren_rl.eval.horizon import choose_memory_horizon

    cfg = spec.cfg
    return choose_memory_horizon(
        lambda h: DecisionAgent.load(ckpt, memory_horizon=h),
        str(read_metadata(ckpt)["env_id"]),
        spec.seed,
        cfg.horizon_candidates,
        cfg.eval_episodes,
        cfg.eval_envs,
        cfg.eval_max_episode_steps,
    ).to_dict()


def _evaluate(spec: RunSpec, acting: str, cache: dict[Any, Any] | None = None) -> dict[str, Any]:
    """Score one acting mode of the run's checkpoint. ``cache`` (one per evaluation stage)
    keeps scores by (agent mode, horizon): an acting whose horizon another acting already
    played (recurrent with H = 0 and recurrent-full; offline and online choosing alike) is
    not played again, the episodes being seeded alike."""
    cfg, ckpt = spec.cfg, spec.run_dir / "checkpoint"
    cache = {} if cache is None else cache
    horizon, choice, selection = MEMORY_HORIZON.get(acting), None, None
    aaren = spec.backbone == "aaren"
    recurrent = aaren and acting == "recurrent"  # the one acting a trained horizon decides
    trained = int(read_metadata(ckpt).get("train_memory_horizon") or 0) if recurrent else 0
    if trained:  # trained as it acts (--overrides
        horizon, selection = trained, "trained"  # train_memory_horizon=H): nothing to choose
    elif recurrent and cfg.horizon_selection == "offline":
        choice = _offline_choice(spec, ckpt, cache)
    elif aaren and acting in ("recurrent", ALSO_ONLINE):
        choice = _online_choice(spec, ckpt)
    if choice is not None:
        horizon, selection = choice["memory_horizon"], choice["selection"]
    key = (AGENT_MODE[acting], horizon)
    if key not in cache:
        cache[key] = score_checkpoint(
            ckpt,
            AGENT_MODE[acting],
            spec.seed,
            cfg.eval_episodes,
            cfg.eval_max_episode_steps,
            cfg.eval_envs,
            horizon,
        )
    return {**cache[key], "horizon_choice": choice, "horizon_selection": selection}


def _train_stage(spec: RunSpec, stage: int, progress: dict[str, Any]) -> None:
    """Train (or resume) up to ``stage`` steps; adds to the run's wall-clock."""
    from aaren_rl.train.loop import TRAINER_STATE, train

    ckpt = spec.run_dir / "checkpoint"
    tc = _train_config(spec, stage, resume=(ckpt / TRAINER_STATE).exists())
    if tc.resume and json.loads((ckpt / "agent.json").read_text()).get("step", 0) >= stage:
        return  # trained this far already (stopped while scoring): train() refuses 0 new steps
    t0 = time.perf_counter()
    result = train(tc)
    timing = progress["timing"]
    timing["train_seconds"] += time.perf_counter() - t0
    if result.steps and not np.isnan(result.seconds_per_step):
        timing["seconds_per_step"].append(result.seconds_per_step)
    # the precision the trainer used (--precision auto resolved)
    progress["precision"] = {"fp32": "float32", "bf16": "bfloat16 autocast"}.get(
        result.precision, result.precision
    )


def _point(ev: dict[str, Any]) -> dict[str, Any]:
    """One evaluation on a learning curve (with the memory horizon, where one was chosen)."""
    point = {k: ev[k] for k in ("episodes", "normalized_mean", "normalized_std", "return_mean")}
    if ev.get("horizon_choice"):
        point["memory_horizon"] = ev["memory_horizon"]
    return point


def _score_stage(spec: RunSpec, stage: int, progress: dict[str, Any]) -> None:
    t0 = time.perf_counter()
    point: dict[str, Any] = {"step": stage}
    cache: dict[Any, Any] = {}
    for acting in spec.actings:
        ev = _evaluate(spec, acting, cache)
        point[acting] = _point(ev)
        if stage == spec.cfg.steps:
            progress["final"][acting] = ev
    progress["timing"]["eval_seconds"] += time.perf_counter() - t0
    progress["curve"].append(point)


def _score_new_actings(spec: RunSpec, progress: dict[str, Any]) -> list[str]:
    """Score, on the final checkpoint only, acting modes added after the run was scored.

    Their curve then has one point (the final step) and their best is their final score;
    the JSON says so (``curve_note``). Returns the actings scored.
    """
    new = [a for a in spec.actings if a not in progress["final"]]
    if not new:
        return []
    t0 = time.perf_counter()
    last = next(c for c in progress["curve"] if c["step"] == spec.cfg.steps)
    cache: dict[Any, Any] = {}
    for acting in new:
        ev = _evaluate(spec, acting, cache)
        last[acting] = _point(ev)
        progress["final"][acting] = ev
    progress["timing"]["eval_seconds"] += time.perf_counter() - t0
    return new


def run_one(spec: RunSpec) -> str:
    """Train and score one run (resuming where it stopped); writes its JSON files."""
    import torch

    os.chdir(spec.root)
    torch.set_num_threads(1)  # one thread per task; the grid runs tasks side by side
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if spec.done:
        return f"{spec.name}: already done"
    run_dir = spec.run_dir
    if run_dir.exists() and not (run_dir / "checkpoint").exists():
        shutil.rmtree(run_dir)  # stopped before its first checkpoint: nothing to resume
    progress_path = run_dir / "grid-progress.json"
    progress: dict[str, Any] = (
        json.loads(progress_path.read_text())
        if progress_path.exists()
        else {
            "curve": [],
            "final": {},
            "timing": {"train_seconds": 0.0, "eval_seconds": 0.0, "seconds_per_step": []},
        }
    )
    facts = dataset_facts(spec.dataset)
    started_on = progress.setdefault("dataset_sha256", facts["dataset_sha256"])
    if started_on != facts["dataset_sha256"]:
        raise DatasetError(
            f"{spec.dataset} changed since {spec.name} started (sha256 {started_on[:12]}… then, "
            f"{str(facts['dataset_sha256'])[:12]}… now); delete {run_dir} to start it again"
        )
    for stage in spec.cfg.stages:
        if any(c["step"] == stage for c in progress["curve"]):
            continue
        _train_stage(spec, stage, progress)
        _score_stage(spec, stage, progress)
        atomic_write_json(progress_path, progress, indent=1)
    if _score_new_actings(spec, progress):
        atomic_write_json(progress_path, progress, indent=1)
    device = _device_name(spec.cfg.device)
    for acting in spec.actings:
        record = {**_record(spec, acting, progress, facts, device), "cpu": cpu_record()}
        atomic_write_json(spec.result_path(acting), record)
    final = progress["final"][spec.actings[0]]["normalized_mean"]
    return f"{spec.name}: final {spec.actings[0]} score {final:.1f}"


def _device_name(asked: str) -> str:
    import torch

    if asked != "cpu" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    model = cpu_record()["model"]
    if model == "unknown":
        model = platform.processor() or platform.machine()
    return f"cpu ({model}, {os.cpu_count()} cores)"


def _train_settings(spec: RunSpec) -> dict[str, Any]:
    """The trainer's settings for this run, as it resolves them (model size, recipe, batch,
    schedule, knobs), without the paths."""
    tc = _train_config(spec, spec.cfg.steps, resume=False)
    out = {
        k: v
        for k, v in tc.to_dict().items()
        if k not in ("run_dir", "dataset", "resume", "track", "wandb_group", "progress")
    }
    out.update(
        recipe=tc.resolved_recipe,
        batch_size=tc.resolved_batch_size,
        warmup_steps=tc.warmup_steps,
        threads=1,
    )
    return out


def _curve_note(progress: dict[str, Any], acting: str) -> str | None:
    """Why an acting mode's curve lacks steps the run was scored at, or None."""
    missing = [str(c["step"]) for c in progress["curve"] if acting not in c]
    if not missing:
        return None
    return f"not scored at steps {', '.join(missing)} (acting mode added after those evaluations)"


def _record(
    spec: RunSpec, acting: str, progress: dict[str, Any], facts: dict[str, Any], device: str
) -> dict[str, Any]:
    import gymnasium
    import mujoco
    import torch

    from aaren_rl import __version__

    cfg, ev = spec.cfg, progress["final"][acting]
    curve = [{"step": c["step"], **c[acting]} for c in progress["curve"] if acting in c]
    best = max(curve, key=lambda c: (c["normalized_mean"], -c["step"]))
    timing = progress["timing"]
    sps = timing["seconds_per_step"]
    return {
        "dataset": spec.dataset_name,
        "dataset_spec": spec.dataset,
        **facts,
        "backbone": spec.backbone,
        "recipe": spec.resolved_recipe,
        "acting": acting,
        "mode": AGENT_MODE[acting],
        "seed": spec.seed,
        "steps": cfg.steps,
        **{k: ev[k] for k in ("normalized_mean", "normalized_std", "return_mean", "return_std")},
        "returns": ev["returns"],
        "lengths": ev["lengths"],
        "best_normalized_mean": best["normalized_mean"],
        "best_step": best["step"],
        "best_convention": BEST_CONVENTION,
        "curve": curve,
        "curve_note": _curve_note(progress, acting),
        "memory_horizon": ev.get("memory_horizon"),
        "horizon_selection": ev.get("horizon_selection"),
        "horizon_choice": ev.get("horizon_choice"),
        "precision": progress.get("precision", "float32"),
        "device": device,
        "settings": {
            **_train_settings(spec),
            "overrides": list(cfg.overrides),
            "eval_every": cfg.eval_every,
            "eval_episodes": cfg.eval_episodes,
            "eval_envs": min(cfg.eval_envs, cfg.eval_episodes),
            "eval_seeds": f"1000 + 100 * seed + i, i < {cfg.eval_episodes}",
        },
        "versions": {
            "aaren_rl": __version__,
            "torch": torch.__version__,
            "gymnasium": gymnasium.__version__,
            "mujoco": mujoco.__version__,
            "python": sys.version.split()[0],
        },
        "timing": {
            "train_seconds": timing["train_seconds"],
            "eval_seconds": timing["eval_seconds"],
            "wall_seconds": timing["train_seconds"] + timing["eval_seconds"],
            "train_seconds_per_step": float(np.median(sps)) if sps else None,
            "act_us_per_call": ev.get("act_us_per_call"),
        },
    }


# ----------------------------------------------------------------------------- the grid


def grid_status(cfg: ReturnsConfig) -> list[tuple[str, str]]:
    """(run name, where it stands) for every run of the grid, printed as a table."""
    from aaren_rl.train.trainer import checkpoint_step

    rows = []
    for spec in grid_specs(cfg):
        ckpt = spec.run_dir / "checkpoint"
        if spec.done:
            state = "done" + _wall_clock(spec.result_path(spec.actings[0]))
        elif (step := checkpoint_step(ckpt)) is not None:
            state = f"checkpoint at step {step} of {cfg.steps} (running, or resumes from it)"
        elif ckpt.exists():
            state = f"its checkpoint cannot be read: move {spec.run_dir} aside to start it again"
        else:
            state = "not started"
        rows.append((spec.name, state))
    width = max(len(n) for n, _ in rows)
    for name, state in rows:
        print(f"{name:{width}s}  {state}")
    done = sum(state.startswith("done") for _, state in rows)
    print(f"{done} of {len(rows)} runs done; results in {cfg.resolved_out_dir}")
    return rows


def _wall_clock(result: Path) -> str:
    """' (N min)' from a result file's timing, or why it cannot say."""
    try:
        return f" ({json.loads(result.read_text())['timing']['wall_seconds'] / 60:.0f} min)"
    except (OSError, ValueError, KeyError, TypeError):
        return f" ({result.name} has no readable timing)"


def run_returns_bench(cfg: ReturnsConfig) -> list[dict[str, Any]]:
    """Run what is missing of the grid, then summarise; returns the summary rows."""
    from aaren_rl.bench.returns_report import summarize_returns

    if cfg.status:
        grid_status(cfg)
        return []
    out_dir = cfg.resolved_out_dir
    if not cfg.summary_only:
        _check_datasets(cfg)  # before anything is created
    out_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.summary_only:
        pending = [s for s in grid_specs(cfg) if not s.done]
        print(f"{len(pending)} runs to do: " + ", ".join(s.name for s in pending), flush=True)
        failed = run_grid(run_one, pending, cfg.grid_options)
        if failed:
            summarize_returns(out_dir, docs=cfg.docs)
            raise RuntimeError(f"{len(failed)} run(s) failed:\n" + "\n".join(failed))
    return summarize_returns(out_dir, docs=cfg.docs)


def _check_datasets(cfg: ReturnsConfig) -> None:
    """Fail before starting any task when a dataset file is missing (say how to make it)."""
    for spec in cfg.datasets:
        path = dataset_file(spec)  # d4rl names raise their own message here
        if path is not None and not path.is_file():
            stem = path.name.removesuffix(".hdf5")
            env, _, level = stem.partition("-")
            raise DatasetError(
                f"{spec}: {path} does not exist. Make it with: aaren-collect --env {env} "
                f"--seed 0 --levels {level or 'medium'} --no-minari --hdf5-dir {path.parent} "
                "(docs/data.md lists the commands and the sha256 of each file)"
            )
