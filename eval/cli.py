"""``aaren-eval``: evaluate a checkpoint in its environment.

    aaren-eval --checkpoint runs/hopper/checkpoint --episodes 10 --num-envs 2 \\
        --target-return 3600 1800 --json eval.json

One table row per target return. The JSON holds the first target's result at the top level
(keys of ``EvalResult.to_dict()``: returns, lengths, terminated, truncated, seeds,
return_mean, return_std, normalized, normalized_mean, normalized_std, mode, seconds, ...)
plus ``results``, the list of every target's result, and ``checkpoint``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aaren_rl.cli import check_minimums, run_cli
from aaren_rl.cpu import cpu_record
from aaren_rl.errors import DependencyNotInstalled, EvalError
from aaren_rl.fileio import atomic_write_json

__all__ = ["EvalArgs", "check_args", "main", "run"]


@dataclass
class EvalArgs:
    """Evaluate a saved agent (either backbone) over N episodes."""

    checkpoint: Path | None = None
    """Checkpoint directory written by aaren-train (agent.json + model.safetensors)."""
    onnx: Path | None = None
    """Evaluate an exported ONNX policy (aaren-export) with onnxruntime instead of a
    checkpoint: no PyTorch is imported. Acts recurrently; --mode and --device are ignored."""
    episodes: int = 10
    """Episodes per target return (episode i is seeded seed + i)."""
    num_envs: int = 1
    """Environments stepped in lockstep; episodes are split evenly over them."""
    mode: Literal["recurrent", "window"] = "recurrent"
    """recurrent: O(1) state carried over the episode; window: re-run the last K steps (DT)."""
    target_return: tuple[float, ...] = ()
    """One or several returns-to-go to condition on; empty: the checkpoint's."""
    seed: int = 0
    """Seed of episode 0."""
    env: str | None = None
    """Environment (short name or Gymnasium id); default: the checkpoint's. Must match it."""
    context_length: int | None = None
    """Window length K for --mode window; default: the checkpoint's."""
    memory_horizon: int | None = None
    """Aaren acting recurrently: timesteps of memory, a soft window on the constant-size state
    (a token H steps old weighs e^-1 of a new one); 0: the whole episode, exact. Default: the
    checkpoint's (aaren-train --memory-horizon; the whole episode for checkpoints written
    before the option). An ONNX export carries its own (aaren-export --memory-horizon)."""
    max_episode_steps: int | None = None
    """Truncate episodes earlier than the env's time limit (quick checks)."""
    json: Path | None = None
    """Write the results here (see the module docstring for the layout). An existing file is
    replaced only if an earlier aaren-eval wrote it (or with --overwrite); never a file of the
    checkpoint, a symlink or a special file."""
    overwrite: bool = False
    """Replace an existing --json file that aaren-eval did not write."""
    video: Path | None = None
    """Record one episode (seed --seed, first target) as MP4 into this directory."""
    track: bool = False
    """Log to Weights & Biases (offline when the W&B server cannot be reached)."""
    wandb_project: str = "aaren-rl"
    """W&B project."""
    threads: int = 1
    """torch threads (small batches act fastest on one)."""
    device: Literal["cpu", "cuda"] = "cpu"
    """torch device."""
    progress: bool = True
    """Show a progress bar."""
    sample: bool = False
    """Discrete actions: sample from the policy's logits instead of taking the argmax."""


def _memory_family(gym_id: str) -> str | None:
    """``aaren/PassiveTMaze-L1500-v0`` -> ``aaren/PassiveTMaze-v0``: a memory task's id
    without its length; None for other environments."""
    import re

    if not gym_id.startswith("aaren/"):
        return None
    family, n = re.subn(r"-L\d+-", "-", gym_id)
    return family if n == 1 else None


def _check_env(args: EvalArgs, checkpoint_env: str | None) -> str:
    from aaren_rl.envs import get_env_spec

    if args.env is None:
        if checkpoint_env is None:
            raise EvalError(f"{args.checkpoint} records no env_id: pass --env")
        return checkpoint_env
    if checkpoint_env is not None:
        want, have = get_env_spec(args.env).gym_id, get_env_spec(checkpoint_env).gym_id
        family = _memory_family(want)
        if want != have and family is not None and family == _memory_family(have):
            # the same memory task at another length (T-Maze L = 1000 -> 1500): the point of
            # a memory test, same observation and action spaces
            print(f"note: {have} trained, evaluated at another memory length: {want}")
        elif want != have:
            raise EvalError(
                f"--env {args.env} ({want}) does not match the checkpoint's env {have}: "
                "the agent was trained for another environment; drop --env or pick "
                "the matching checkpoint"
            )
    return args.env


def _track(args: EvalArgs, payload: dict) -> None:
    """Log the results to W&B; falls back to offline mode, never blocks for long."""
    from aaren_rl.tracking import wandb_online_possible

    online, why = wandb_online_possible(timeout=2.0)
    if not online and os.environ.get("WANDB_MODE") != "disabled":
        os.environ["WANDB_MODE"] = "offline"
        print(f"W&B: {why}; logging offline (wandb sync later)", file=sys.stderr)
    import wandb  # checked by check_args

    name = f"{payload['env']}__eval__{args.seed}__{int(time.time())}"
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings = wandb.Settings(init_timeout=30)
    # WANDB_DIR read now: wandb's settings singleton keeps the first run's in this process
    where = os.environ.get("WANDB_DIR") or None
    try:
        run = wandb.init(project=args.wandb_project, name=name, job_type="eval", config=config,
                         settings=settings, dir=where)  # fmt: skip
    except Exception as e:  # noqa: BLE001  the probe reached a host that does not answer
        print(f"W&B: {type(e).__name__}: {str(e)[:200]}; logging offline", file=sys.stderr)
        os.environ["WANDB_MODE"] = "offline"
        try:
            run = wandb.init(project=args.wandb_project, name=name, job_type="eval",
                             config=config, settings=settings, dir=where)  # fmt: skip
        except Exception as e2:  # noqa: BLE001
            raise EvalError(
                f"--track: W&B could not start ({type(e2).__name__}: {str(e2)[:200]}); the "
                "results above are complete (and in --json if given): drop --track"
            ) from None
    try:
        for res in payload["results"]:
            run.log(
                {
                    f"eval/{k}": res[k]
                    for k in ("return_mean", "return_std", "normalized_mean", "normalized_std")
                    if res[k] is not None
                }
                | {"eval/target_return": res["target_return"]}
            )
        columns = ["target_return", "episode", "seed", "return", "length", "terminated"]
        table = wandb.Table(columns=columns)
        for res in payload["results"]:
            for i, (s, r, n, t) in enumerate(
                zip(res["seeds"], res["returns"], res["lengths"], res["terminated"])
            ):
                table.add_data(res["target_return"], i, s, r, n, t)
        run.log({"eval/episodes": table})
    finally:
        run.finish()


def _fmt(mean: float | None, std: float | None, digits: int = 1) -> str:
    return "n/a" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_table(results: list[dict]) -> str:
    """A readable table, one row per target return."""
    head = ["target", "mode", "episodes", "return", "normalized", "length", "term/trunc", "s"]
    head += ["success"]  # where the env defines it (info["success"]), else n/a
    rows = [
        [
            "n/a" if r["target_return"] is None else f"{r['target_return']:g}",
            r["mode"],
            str(r["episodes"]),
            _fmt(r["return_mean"], r["return_std"]),
            _fmt(r["normalized_mean"], r["normalized_std"]),
            f"{sum(r['lengths']) / len(r['lengths']):.0f}",
            f"{sum(r['terminated'])}/{sum(r['truncated'])}",
            f"{r['seconds']:.1f}",
            "n/a" if r.get("success_rate") is None else f"{100 * r['success_rate']:.0f}%",
        ]
        for r in results
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def check_args(args: EvalArgs) -> None:
    """Every flag and output path checked before anything is loaded or run.

    Raises:
        EvalError: a flag out of range or contradicting another one.
        ConfigError: a target return or context length that is not usable.
        OutputPathError: --json or --video cannot be written.
    """
    from aaren_rl.agents.base import (
        check_acting_options,
        check_context_length,
        check_target_return,
    )
    from aaren_rl.fileio import check_output_dir, check_output_file

    if (args.checkpoint is None) == (args.onnx is None):
        raise EvalError("pass exactly one of --checkpoint DIR and --onnx FILE")
    flags = (("--episodes", args.episodes, 1), ("--num-envs", args.num_envs, 1))
    check_minimums((*flags, ("--threads", args.threads, 1), ("--seed", args.seed, 0)), EvalError)
    if args.seed + args.episodes > 2**32:
        raise EvalError(f"--seed {args.seed}: episode seeds must stay below 2**32")
    if args.max_episode_steps is not None and args.max_episode_steps < 1:
        raise EvalError(f"--max-episode-steps must be >= 1, got {args.max_episode_steps}")
    for target in args.target_return:
        check_target_return(target)
    if args.context_length is not None:
        check_context_length(args.context_length)
        if args.onnx is not None:
            raise EvalError("--context-length is the window length of --mode window; drop it")
    if args.memory_horizon is not None and args.memory_horizon < 0:
        raise EvalError(
            f"--memory-horizon must be >= 0 timesteps (0: the whole episode), got "
            f"{args.memory_horizon}"
        )
    # the rule DecisionAgent.load applies to its arguments, here named as flags
    check_acting_options(args.mode, None, args.context_length, args.memory_horizon, EvalError, True)
    if args.memory_horizon is not None:
        if args.onnx is not None:
            raise EvalError(
                "--memory-horizon applies to a checkpoint acting with --mode recurrent (an "
                "ONNX file keeps the horizon it was exported with: aaren-export "
                "--memory-horizon); drop it"
            )
    if args.track:
        try:
            import wandb  # noqa: F401
        except ImportError as e:
            raise DependencyNotInstalled(
                "--track needs wandb: pip install 'aaren-rl[track]', or drop --track"
            ) from e
    if args.json is not None:
        source = args.checkpoint if args.checkpoint is not None else args.onnx
        check_output_file(
            args.json, "--json", inputs=[source], overwrite=args.overwrite, ours=_is_eval_json
        )
    if args.video is not None:
        check_output_dir(args.video, "--video")


def _is_eval_json(path: Path) -> bool:
    """Whether ``path`` is a results file of aaren-eval (replaced without --overwrite)."""
    from aaren_rl.untrusted import read_json

    try:
        data = read_json(path, EvalError)
    except EvalError:
        return False
    return isinstance(data, dict) and {"results", "checkpoint", "returns"} <= data.keys()


def _load_agent(args: EvalArgs):
    if args.onnx is not None:
        from aaren_rl.agents.onnx_agent import OnnxAgent

        return OnnxAgent(args.onnx, threads=args.threads)
    import torch

    from aaren_rl.agents import DecisionAgent

    if args.device == "cuda" and not torch.cuda.is_available():
        raise EvalError("--device cuda was asked for, but torch sees no CUDA device")
    if args.memory_horizon is not None:  # the backbone, from agent.json, names the flag
        from aaren_rl.agents.base import check_acting_options
        from aaren_rl.agents.checkpoint import read_metadata

        backbone = read_metadata(args.checkpoint)["model_config"].get("backbone")
        check_acting_options(args.mode, backbone, None, args.memory_horizon, EvalError, True)
    torch.set_num_threads(args.threads)
    return DecisionAgent.load(
        args.checkpoint,
        mode=args.mode,
        device=args.device,
        context_length=args.context_length,
        sample=args.sample,
        memory_horizon=args.memory_horizon,
    )


def _horizon_selection(agent: Any, given: int | None) -> str | None:
    """How the horizon the agent acts with was chosen: "given" (--memory-horizon), "offline"
    or "online" (the checkpoint's choice at the end of training), "trained" (the horizon it
    was trained with, aaren-train --train-memory-horizon), or None (none chosen, or no
    horizon applies)."""
    if getattr(agent, "acting_horizon", None) is None:
        return None
    if given is not None:
        return "given"
    metadata = getattr(agent, "metadata", None) or {}
    trained = metadata.get("train_memory_horizon")
    if isinstance(trained, int) and trained > 0 and trained == agent.acting_horizon:
        return "trained"
    record = metadata.get("horizon_selection") or {}
    choice = record.get("choice") if isinstance(record, dict) else None
    return choice.get("selection") if isinstance(choice, dict) else None


def _check_results(results: list[dict]) -> None:
    for r in results:
        if not all(math.isfinite(x) for x in r["returns"]):
            raise EvalError(
                f"target {r['target_return']}: episode returns are not finite "
                f"({r['returns'][:3]}...): the environment or agent produced NaN"
            )


def wall_clock_split(result: dict) -> dict:
    """The evaluation's wall clock split into the agent's ``predict`` calls and the rest
    (environment stepping, resets and the loop). With N envs in lockstep, one batched call
    serves every live env, so the calls are the most steps any env slot ran in all."""
    from aaren_rl.eval.rollout import _split

    lengths = result["lengths"]
    calls = max(
        sum(lengths[i] for i in block) for block in _split(len(lengths), result["num_envs"])
    )
    agent_s = result["act_us_per_call"] * calls / 1e6
    seconds = result["seconds"]
    return {
        "seconds": seconds,
        "agent_seconds": agent_s,
        "env_seconds": seconds - agent_s,
        "agent_share": agent_s / seconds if seconds > 0 else 0.0,
        "predict_calls": calls,
        "actions_per_s": result["steps"] / seconds if seconds > 0 else 0.0,
    }


def run(args: EvalArgs) -> dict:
    """Everything ``aaren-eval`` does; returns the JSON payload."""
    check_args(args)
    if args.video is not None:
        from aaren_rl.eval.video import check_video_dir, use_headless_gl

        use_headless_gl()  # before anything imports mujoco
        check_video_dir(args.video)  # moviepy installed? (fail before a long evaluation)
    from aaren_rl.eval.rollout import evaluate

    agent = _load_agent(args)
    env = _check_env(args, agent.env_id)
    targets = list(args.target_return) or [agent.target_return]
    results = []
    for target in targets:
        res = evaluate(
            agent,
            env,
            args.episodes,
            num_envs=args.num_envs,
            seed=args.seed,
            target_return=target,
            max_episode_steps=args.max_episode_steps,
            progress=args.progress,
        )
        results.append({**res.to_dict(), "wall_clock": wall_clock_split(res.to_dict())})
    _check_results(results)
    source = args.onnx if args.onnx is not None else args.checkpoint
    selection = _horizon_selection(agent, args.memory_horizon)
    payload = {
        **results[0],
        "checkpoint": str(source),
        "memory_horizon": agent.acting_horizon,
        "horizon_selection": selection,
        "results": results,
        "cpu": cpu_record(),  # the per-action timings depend on it
    }
    print(f"{agent!r} on {results[0]['env']}, seeds {args.seed}..{args.seed + args.episodes - 1}")
    if selection in ("offline", "online"):
        how = "offline, on held-out dataset episodes" if selection == "offline" else (
            "online, on validation episodes in the environment")  # fmt: skip
        print(f"memory horizon chosen {how} at the end of training (aaren-train)")
    elif selection == "trained":
        print(f"memory horizon {agent.acting_horizon}: the one it was trained with (offline)")
    print(format_table(results))
    for r in results:
        w = r["wall_clock"]
        print(
            f"wall clock {w['seconds']:.1f} s with {r['num_envs']} env(s): agent "
            f"{w['agent_seconds']:.1f} s ({w['agent_share']:.0%}, {w['predict_calls']} batched "
            f"calls), env stepping and loop {w['env_seconds']:.1f} s; "
            f"{w['actions_per_s']:,.0f} actions/s"
        )
    if args.json is not None:  # before the video: the results are never lost to a later step
        atomic_write_json(args.json, payload, indent=1)
        print(f"wrote {args.json}")
    if args.video is not None:
        from aaren_rl.eval.video import record_video

        agent.target_return = targets[0]
        files = record_video(agent, env, args.video, args.seed, 1, args.max_episode_steps)
        payload["videos"] = [str(f) for f in files]
        print("video: " + ", ".join(payload["videos"]))
        if args.json is not None:
            atomic_write_json(args.json, payload, indent=1)
    if args.track:
        _track(args, payload)
    return payload


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``aaren-eval`` (exit codes: aaren_rl.errors)."""
    import tyro

    def body() -> None:
        run(tyro.cli(EvalArgs, args=argv, description=__doc__))

    return run_cli("aaren-eval", body)


if __name__ == "__main__":
    sys.exit(main())
