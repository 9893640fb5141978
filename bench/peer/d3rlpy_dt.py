"""Peer result: d3rlpy's DecisionTransformer on our D4RL-format HDF5 data, scored like ours.

Runs in its own virtual environment (d3rlpy pins gymnasium 1.0.0; see setup_d3rlpy.sh) and
imports nothing from aaren-rl, except that it reads the HDF5 file through aaren-rl's checks
(``aaren_rl/hdf5_checks.py``, loaded by path: numpy and h5py only). Writes one JSON in the schema of ``aaren-bench returns``
(``docs/results/returns/<dataset>__d3rlpy-dt__window__window__s<seed>.json``); its summary
(which reads every ``*__*.json`` there) picks it up beside Aaren-DT and Transformer-DT.

    .venv-d3rlpy/bin/python bench/peer/d3rlpy_dt.py \\
        --dataset data/hopper-medium.hdf5 --steps 1200 --seed 0 \\
        --eval-at 400,800,1200 --eval-episodes 10 --threads 1 \\
        --out docs/results/returns/hopper-medium__d3rlpy-dt__window__window__s0.json

Model and optimiser: d3rlpy's reproduction settings for DT (its
reproductions/offline/decision_transformer.py), which are the DT reference ones: context 20,
embed 128 (a linear observation encoder), 3 layers, 1 head, dropout 0.1, AdamW lr 1e-4,
weight decay 1e-4, linear warm-up, grad-norm clip 0.25, batch 64, rewards x 0.001,
standardised observations. Only the warm-up length is scaled to the short budget.

Training time per step: the wall time between consecutive optimisation steps inside
``fit`` (batch sampling + forward/backward/step + d3rlpy's bookkeeping), evaluation excluded;
the JSON reports the median, as aaren-train does.

Evaluation: d3rlpy's ``as_stateful_wrapper(target_return)`` (a window over the last K steps,
re-run for every action), Gymnasium Hopper-v5, episode i of seed S reset with
``1000 + 100 * S + i``, at most 1000 steps, actions clipped to the action space (as
aaren-rl's evaluation does). Intermediate points (--eval-at) use --curve-episodes episodes (default
half of --eval-episodes, as ``aaren-bench returns``); the final point uses --eval-episodes.
Standard deviations are population ones (ddof = 0), as aaren-rl's evaluation.

Resume (--state-dir DIR): the run saves its state to ``DIR/state.pt`` at every --eval-at point,
every --save-every steps (250) and when it gets SIGTERM or Ctrl-C (at the end of the step under
way): d3rlpy's model and optimiser (with the learning-rate schedule), the random generators
(Python's, NumPy's, torch's: d3rlpy samples batches from NumPy's global one) and the record so
far. Run the same command again and it continues from there; the JSON names the steps it
resumed at (``resumed_at``) and is the one an uninterrupted run writes (the same batches, the
same scores; only the timings differ). A state saved with other settings is refused. The state
is read with ``torch.load(weights_only=True)`` (no code runs) and removed once the JSON is
written. A kill -9 loses at most --save-every steps. While a run goes on it holds a lock on
DIR (``DIR/lock``): a second run of the same command is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# env id -> (D4RL random score, D4RL expert score, DT's target return); the same values as
# aaren-rl's envs/registry.py (this script imports nothing from aaren-rl). A file written by
# aaren-collect names its env (attribute env_id) and its reference scores (ref_min_score,
# ref_max_score); those win when present.
TASKS = {
    "Hopper-v5": (-20.272305, 3234.3, 3600.0),
    "HalfCheetah-v5": (-280.178953, 12135.0, 6000.0),
    "Walker2d-v5": (1.629008, 4592.3, 5000.0),
}
BEST_CONVENTION = (
    "best of the evaluations every eval_every steps during training (CORL's convention); "
    "optimistic: it selects on the evaluation episodes. The final score is the main number."
)


def normalized(ret: float, refs: tuple[float, float]) -> float:
    lo, hi = refs
    return 100.0 * (ret - lo) / (hi - lo)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hdf5_checks():
    """aaren-rl's HDF5 checks (``aaren_rl/hdf5_checks.py``: numpy and h5py only), loaded by
    path: this venv has no aaren-rl, but the file is read through the project's checks (no
    external links or storage, no declared size the file does not hold)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "aaren_rl" / "hdf5_checks.py"
    spec = importlib.util.spec_from_file_location("aaren_rl_hdf5_checks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# A plain Gymnasium id: gym.make("pkg:Env-v0") would import the module pkg a file names.
PLAIN_ENV_ID = r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*"


def resolve_task(args: argparse.Namespace, p: argparse.ArgumentParser) -> None:
    """Env id, reference scores and target return: flags, else the file, else the table."""
    import re

    import h5py

    with h5py.File(args.dataset, "r") as f:
        hdf5_checks().check_external_links(f, str(args.dataset), SystemExit)
        attrs = {
            k: f.attrs[k] for k in ("env_id", "ref_min_score", "ref_max_score") if k in f.attrs
        }
    env = args.env or (str(attrs["env_id"]) if "env_id" in attrs else None)
    if env is None:
        p.error(f"{args.dataset} does not name its environment (no env_id attribute): pass --env")
    if not args.env and not re.fullmatch(PLAIN_ENV_ID, env[:200]):
        p.error(f"{args.dataset} names the env {env[:80]!r}, not a plain Gymnasium id: pass --env")
    has_refs = "ref_min_score" in attrs and "ref_max_score" in attrs
    if env not in TASKS and (args.target_return is None or not has_refs):
        p.error(f"unknown env {env!r}: known {sorted(TASKS)}; or pass --target-return with a "
                "file that has ref_min_score / ref_max_score")  # fmt: skip
    lo, hi, target = TASKS.get(env, (None, None, None))
    if has_refs:
        lo, hi = float(attrs["ref_min_score"]), float(attrs["ref_max_score"])
    args.env, args.refs = env, (lo, hi)
    if args.target_return is None:
        args.target_return = target


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True, type=Path, help="D4RL-format HDF5 file")
    p.add_argument("--steps", type=int, required=True, help="gradient steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes at the final step")
    p.add_argument(
        "--eval-at", type=str, default="", help="comma-separated step counts to score at"
    )
    p.add_argument(
        "--curve-episodes",
        type=int,
        default=None,
        help="episodes at intermediate --eval-at points (default: eval-episodes // 2, min 1)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="JSON to write (atomically); an existing file is never overwritten",
    )
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu:0", help="d3rlpy device: cpu:0 or cuda:0")
    p.add_argument("--warmup", type=int, default=200, help="linear learning-rate warm-up steps")
    p.add_argument(
        "--target-return",
        type=float,
        default=None,
        help="DT's conditioning return (default: the env's: hopper 3600, halfcheetah 6000, "
        "walker2d 5000)",
    )
    p.add_argument(
        "--env", default=None, help="Gymnasium env id (default: the file's env_id attribute)"
    )
    p.add_argument("--max-episode-steps", type=int, default=1000)
    p.add_argument("--context", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--log-every", type=int, default=100, help="progress line every N steps")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="save the run's state here at every --eval-at point, every --save-every steps and "
        "on SIGTERM / Ctrl-C, and continue from it when it exists (default: no resume)",
    )
    p.add_argument(
        "--save-every",
        type=int,
        default=250,
        help="with --state-dir, also save the state every N steps, so that a kill -9 loses at "
        "most N steps (0: only at --eval-at points and on a signal)",
    )
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    if args.eval_episodes < 1:
        p.error("--eval-episodes must be >= 1")
    if args.save_every < 0:
        p.error("--save-every must be >= 0")
    try:
        points = {int(s) for s in args.eval_at.split(",") if s.strip()}
    except ValueError:
        p.error(f"--eval-at must be comma-separated integers, got {args.eval_at!r}")
    bad = sorted(s for s in points if s < 1 or s > args.steps)
    if bad:
        p.error(f"--eval-at points must lie in 1..--steps ({args.steps}): {bad}")
    args.eval_points = sorted(points | {args.steps})
    if args.curve_episodes is None:
        args.curve_episodes = max(1, args.eval_episodes // 2)
    args.dataset_spec = f"d4rl:{args.dataset}"  # as given (a path relative to the project)
    args.dataset = args.dataset.resolve()
    args.out = args.out.resolve()
    if args.state_dir is not None:
        args.state_dir = args.state_dir.resolve()
    if not args.dataset.is_file():
        p.error(f"dataset not found: {args.dataset}")
    resolve_task(args, p)
    args.dataset_sha256 = sha256_file(args.dataset)  # once: the record and the state name it
    return args


def load_d4rl(path: Path):
    """MDPDataset from a D4RL HDF5 file; terminals and timeouts kept apart."""
    import h5py

    checks = hdf5_checks()
    with h5py.File(path, "r") as f:
        missing = [
            k for k in ("observations", "actions", "rewards", "terminals", "timeouts") if k not in f
        ]
        if missing:
            raise SystemExit(f"{path}: missing D4RL keys {missing}")
        checks.check_external_links(f, str(path), SystemExit)

        def read(key: str) -> np.ndarray:  # in-file, numeric, as large as stored
            return checks.read_numeric(f, key, str(path), SystemExit)

        obs = np.asarray(read("observations"), dtype=np.float32)
        act = np.asarray(read("actions"), dtype=np.float32)
        rew = np.asarray(read("rewards"), dtype=np.float32)
        term = np.asarray(read("terminals")).astype(bool)
        tout = np.asarray(read("timeouts")).astype(bool)
    # d3rlpy asserts the two never coincide; a step that is both is a terminal.
    both = int((term & tout).sum())
    tout &= ~term
    # A trailing partial episode (neither flag on the last row) is dropped by d3rlpy's
    # episode generator; say so rather than lose it silently.
    trailing = 0 if (term[-1] or tout[-1]) else len(term) - 1 - int(np.flatnonzero(term | tout)[-1])
    from d3rlpy.dataset import MDPDataset  # after the file passed the checks

    ds = MDPDataset(
        observations=obs,
        actions=act,
        rewards=rew,
        terminals=term.astype(np.float32),
        timeouts=tout.astype(np.float32),
    )
    ends = np.flatnonzero(term | tout)
    episode_returns = [float(x.sum()) for x in np.split(rew, ends + 1)[: len(ends)]]
    info = {
        "episode_returns_mean": float(np.mean(episode_returns)) if episode_returns else None,
        "transitions": int(len(rew)),
        "episodes": int((term | tout).sum()),
        "terminals": int(term.sum()),
        "timeouts": int(tout.sum()),
        "terminal_and_timeout": both,
        "trailing_dropped": int(trailing),
    }
    return ds, info


def evaluate(algo, env, target_return: float, episodes: int, seed: int, max_steps: int):
    """Returns, lengths and per-action wall times of d3rlpy's stateful wrapper."""
    wrapper = algo.as_stateful_wrapper(target_return=target_return)
    low, high = env.action_space.low, env.action_space.high
    returns, lengths, act_times = [], [], []
    for i in range(episodes):
        wrapper.reset()
        obs, _ = env.reset(seed=1000 + 100 * seed + i)
        reward, ret, length = 0.0, 0.0, 0
        while True:
            t0 = time.perf_counter()
            action = wrapper.predict(np.asarray(obs, dtype=np.float32), reward)
            act_times.append(time.perf_counter() - t0)
            obs, reward, term, trunc, _ = env.step(np.clip(action, low, high))
            reward = float(reward)
            ret += reward
            length += 1
            if term or trunc or length >= max_steps:
                break
        returns.append(ret)
        lengths.append(length)
    return returns, lengths, act_times


def summarize(returns: list[float], refs: tuple[float, float]) -> dict:
    r = np.asarray(returns, dtype=float)
    n = np.array([normalized(x, refs) for x in r])
    return {
        "return_mean": float(r.mean()),
        "return_std": float(r.std()),
        "normalized_mean": float(n.mean()),
        "normalized_std": float(n.std()),
    }


def write_atomic(path: Path, write, binary: bool = False) -> None:
    """``write(f)`` into a temporary file beside ``path``, then rename it over ``path``: a
    reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, lambda f: f.write(json.dumps(data, indent=1) + "\n"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.state_dir is not None:
        lock = hold_lock(args.state_dir)  # noqa: F841 (held until the process ends)
    if args.out.exists():  # a finished run's record (or a file this script did not write)
        raise SystemExit(f"{args.out} exists: this script never overwrites it; move it away to run again")  # fmt: skip
    # A plain `kill` (SIGTERM) should still remove the temporary directory below; with
    # --state-dir, the run first finishes its step and saves its state (Progress.__call__).
    signal.signal(signal.SIGTERM, _on_signal)
    if args.state_dir is not None:
        signal.signal(signal.SIGINT, _on_signal)
    workdir = Path(tempfile.mkdtemp(prefix="d3rlpy_dt_"))
    # d3rlpy's logs and MuJoCo's MUJOCO_LOG.TXT land in the cwd: keep both out of the repo.
    os.chdir(workdir)
    try:
        return run(args, workdir)
    finally:
        os.chdir("/")
        shutil.rmtree(workdir, ignore_errors=True)


def hold_lock(state_dir: Path):
    """Lock ``state_dir`` for this process (released when it ends, kill -9 included), so that
    two runs of one command never train and save the same state, nor both write its JSON."""
    import fcntl

    state_dir.mkdir(parents=True, exist_ok=True)
    f = open(state_dir / "lock", "a")  # noqa: SIM115 (open for the process's lifetime)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise SystemExit(
            f"{state_dir}: another run of this command holds it; wait for it to end or stop it"
        ) from None
    return f


STOP: list[int] = []  # the signal that asked the run to stop, once the step under way ends
SAVES_STATE = False  # True while a run with --state-dir trains: stop at the end of the step


def _on_signal(signum: int, frame: object) -> None:
    if not SAVES_STATE:
        sys.exit(128 + signum)
    STOP.append(signum)


def state_key(args: argparse.Namespace) -> dict:
    """What a saved state must match to be continued: everything that changes the run."""
    keys = ("seed", "steps", "eval_points", "eval_episodes", "curve_episodes", "warmup",
            "target_return", "env", "max_episode_steps", "context", "batch_size", "device")  # fmt: skip
    return {"dataset_sha256": args.dataset_sha256, **{k: getattr(args, k) for k in keys}}


def save_state(args: argparse.Namespace, algo, progress: Progress, step: int) -> None:
    """Model, optimiser, random generators and the record so far, in one atomic file."""
    import random

    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "key": json.dumps(state_key(args)),
        "step": step,
        "modules": {k: v.state_dict() for k, v in algo.impl._checkpointer.modules.items()},
        "rng_torch": torch.get_rng_state(),
        "rng_numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "rng_python": json.dumps(random.getstate()),
        "progress": json.dumps(progress.to_dict()),
    }
    write_atomic(args.state_dir / "state.pt", lambda f: torch.save(state, f), binary=True)


def load_state(args: argparse.Namespace) -> dict | None:
    """The saved state (None if there is none); SystemExit if it belongs to other settings."""
    import torch

    path = None if args.state_dir is None else args.state_dir / "state.pt"
    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never runs code
        saved = json.loads(state["key"])
    except Exception as e:  # a truncated or foreign file: say which, lose nothing
        raise SystemExit(
            f"{path}: not a state this script saved ({e}); move it away to start over"
        ) from None
    now = state_key(args)
    diff = sorted(k for k in now if json.dumps(now[k]) != json.dumps(saved.get(k)))
    if diff:
        raise SystemExit(
            f"{path}: saved with other settings ({', '.join(diff)}); run the same command, "
            "or move the state away to start over"
        )
    return state


def restore_rng(state: dict) -> None:
    import random

    import torch

    torch.set_rng_state(state["rng_torch"])
    r = state["rng_numpy"]
    keys = r["keys"].numpy().astype(np.uint32)
    np.random.set_state((r["kind"], keys, r["pos"], r["has_gauss"], r["gauss"]))
    version, internal, gauss = json.loads(state["rng_python"])
    random.setstate((version, tuple(internal), gauss))


def make_algo(args: argparse.Namespace):
    """d3rlpy's DecisionTransformer with its reproduction settings (the DT reference ones)."""
    import d3rlpy

    config = d3rlpy.algos.DecisionTransformerConfig(
        batch_size=args.batch_size,
        learning_rate=1e-4,
        optim_factory=d3rlpy.optimizers.AdamWFactory(
            weight_decay=1e-4,
            clip_grad_norm=0.25,
            lr_scheduler_factory=d3rlpy.optimizers.WarmupSchedulerFactory(warmup_steps=args.warmup),
        ),
        encoder_factory=d3rlpy.models.VectorEncoderFactory([128], exclude_last_activation=True),
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
        reward_scaler=d3rlpy.preprocessing.MultiplyRewardScaler(0.001),
        position_encoding_type=d3rlpy.PositionEncodingType.SIMPLE,
        context_size=args.context,
        num_heads=1,
        num_layers=3,
        attn_dropout=0.1,
        resid_dropout=0.1,
        embed_dropout=0.1,
        activation_type="relu",
        max_timestep=args.max_episode_steps,
    )
    return config.create(device=args.device)


class Progress:
    """The per-step callback of ``fit``: step times, progress lines, evaluations.

    Attributes filled during training: ``step_times`` (s between consecutive steps, the
    evaluation excluded), ``curve`` (one entry per --eval-at point), ``final`` (the last
    evaluation's returns, lengths and action times), ``eval_seconds``.
    """

    def __init__(self, args: argparse.Namespace, env, saved: dict | None = None) -> None:
        self.args, self.env = args, env
        self.points = set(args.eval_points)
        self.step_times: list[float] = []
        self.curve: list[dict] = []
        self.final: dict = {}
        self.eval_seconds = 0.0
        self.fit_seconds_before = 0.0  # earlier segments of a resumed run
        self.resumed_at: list[int] = []
        self.offset = 0  # steps done before this segment
        if saved is not None:
            for k, v in saved.items():
                setattr(self, k, v)
        self.last: float | None = None
        self.t_start = time.perf_counter()

    def to_dict(self) -> dict:
        keys = ("step_times", "curve", "eval_seconds", "resumed_at")
        return {**{k: getattr(self, k) for k in keys},
                "fit_seconds_before": self.fit_seconds_before + time.perf_counter() - self.t_start}  # fmt: skip

    def __call__(self, algo, epoch: int, step_in_segment: int) -> None:
        args = self.args
        total_step = self.offset + step_in_segment
        now = time.perf_counter()
        if self.last is not None:  # step 1 also pays for building the model: not timed
            self.step_times.append(now - self.last)
        if args.log_every and total_step % args.log_every == 0:
            med = float(np.median(self.step_times)) if self.step_times else math.nan
            print(
                f"[d3rlpy-dt] step {total_step}/{args.steps}  median {med:.3f} s/step  "
                f"elapsed {now - self.t_start:.0f} s",
                flush=True,
            )
        if total_step in self.points:
            self._evaluate(algo, total_step)
        if args.state_dir is not None and total_step < args.steps:
            every = args.save_every and total_step % args.save_every == 0
            if STOP or total_step in self.points or every:
                save_state(args, algo, self, total_step)
            if STOP:
                print(f"[d3rlpy-dt] stopped at step {total_step} (signal {STOP[0]}); state saved "
                      f"in {args.state_dir}: run the same command to continue", flush=True)  # fmt: skip
                raise SystemExit(128 + STOP[0])
        self.last = time.perf_counter()  # evaluation time excluded from the next step

    def _evaluate(self, algo, total_step: int) -> None:
        args = self.args
        last = total_step == args.steps
        episodes = args.eval_episodes if last else args.curve_episodes
        t0 = time.perf_counter()
        rets, lens, acts = evaluate(
            algo, self.env, args.target_return, episodes, args.seed, args.max_episode_steps
        )
        self.eval_seconds += time.perf_counter() - t0
        s = summarize(rets, args.refs)
        self.curve.append(
            {
                "step": total_step,
                "episodes": episodes,
                **s,
                "act_ms_median": 1000 * float(np.median(acts)),
            }  # fmt: skip
        )
        print(
            f"[d3rlpy-dt] eval @ {total_step}: return {s['return_mean']:.1f} ± "
            f"{s['return_std']:.1f}, normalised {s['normalized_mean']:.1f} ± "
            f"{s['normalized_std']:.1f} over {episodes} episodes "
            f"(lengths {lens}); {1000 * np.median(acts):.2f} ms/action",
            flush=True,
        )
        if last:
            self.final = {"returns": rets, "lengths": lens, "act_times": acts, **s}


def settings(args: argparse.Namespace, n_params: int, data_info: dict) -> dict:
    """The run's settings as recorded in its JSON."""
    import d3rlpy
    import gymnasium as gym
    import torch

    return {
        "env": args.env,
        "dim": 128,
        "num_layers": 3,
        "num_heads": 1,
        "context_length": args.context,
        "batch_size": args.batch_size,
        "learning_rate": 1e-4,
        "optimizer": "AdamW (d3rlpy AdamWFactory)",
        "weight_decay": 1e-4,
        "warmup_steps": args.warmup,
        "grad_clip": 0.25,
        "dropout": {"attn": 0.1, "resid": 0.1, "embed": 0.1},
        "activation": "relu",
        "observation_encoder": "VectorEncoderFactory([128], exclude_last_activation=True)",
        "position_encoding": "SIMPLE (learned timestep embedding, max_timestep 1000)",
        "reward_scaler": "MultiplyRewardScaler(0.001)",
        "observation_scaler": "StandardObservationScaler",
        "target_return": args.target_return,
        "max_episode_steps": args.max_episode_steps,
        "threads": args.threads,
        "device": args.device,
        "eval_seeds": f"1000 + 100 * seed + i, i < {args.eval_episodes}",
        "curve_episodes": args.curve_episodes,
        "action_clip": "np.clip to the env's action space",
        "parameters": int(n_params),
        "dataset_info": data_info,
        "versions": {
            "d3rlpy": d3rlpy.__version__,
            "torch": torch.__version__,
            "gymnasium": gym.__version__,
            "mujoco": __import__("mujoco").__version__,
            "python": sys.version.split()[0],
        },
    }


def make_record(
    args: argparse.Namespace, progress: Progress, n_params: int, data_info: dict, fit_s: float
) -> dict:
    """The JSON record, in the schema of ``aaren-bench returns``."""
    import d3rlpy

    final, times = progress.final, progress.step_times
    best = max(progress.curve, key=lambda c: (c["normalized_mean"], -c["step"]))
    behaviour = data_info["episode_returns_mean"]
    curve_keys = ("step", "episodes", "return_mean", "normalized_mean", "normalized_std",
                  "act_ms_median")  # fmt: skip
    return {
        "dataset": args.dataset.stem,
        "dataset_spec": args.dataset_spec,
        "dataset_sha256": args.dataset_sha256,
        "env_id": args.env,
        "behaviour_normalized_score": None
        if behaviour is None
        else normalized(behaviour, args.refs),
        "transitions": data_info["transitions"],
        "episodes": data_info["episodes"],
        "backbone": "d3rlpy-dt",
        "recipe": "window",
        "acting": "window",
        "mode": "window",
        "seed": args.seed,
        "steps": args.steps,
        "returns": final["returns"],
        "lengths": final["lengths"],
        "return_mean": final["return_mean"],
        "return_std": final["return_std"],
        "normalized_mean": final["normalized_mean"],
        "normalized_std": final["normalized_std"],
        "train_seconds_per_step": float(np.median(times)) if times else None,
        "train_seconds_per_step_mean": float(np.mean(times)) if times else None,
        "act_ms_median": 1000 * float(np.median(final["act_times"])),
        "act_us_per_call": 1e6 * float(np.mean(final["act_times"])),
        "best_normalized_mean": best["normalized_mean"],
        "best_step": best["step"],
        "best_convention": BEST_CONVENTION,
        "curve": [{k: c[k] for k in curve_keys} for c in progress.curve],
        "device": args.device,
        "precision": "float32",
        "timing": {
            "wall_seconds": fit_s,
            "train_seconds": fit_s - progress.eval_seconds,
            "eval_seconds": progress.eval_seconds,
            "train_seconds_per_step": float(np.median(times)) if times else None,
        },
        "d3rlpy_version": d3rlpy.__version__,
        "wall_seconds": {"fit_total": fit_s, "evaluation": progress.eval_seconds},
        "settings": settings(args, n_params, data_info),
        "resumed_at": progress.resumed_at,
    }


def fit_segments(points: list[int], start: int) -> list[tuple[int, int, int]]:
    """The ``fit`` calls that train from step ``start`` to the last point, as (first step,
    last step, steps per epoch). Evaluation happens in the per-step callback; d3rlpy logs a
    line and commits its metrics once per epoch, so an epoch is the gcd of the distances to
    the points. A run resumed between two points (a --save-every state, a signal) first trains
    up to the next point as one epoch: measured from such a step the gcd is often 1, a log
    line at every step. Splitting ``fit`` changes no result: its batches come from NumPy's
    global generator whatever the epochs (tests/bench/test_d3rlpy_resume.py)."""
    ahead = [p for p in points if p > start]
    segments, first = [], start
    if start and start not in points:
        segments.append((start, ahead[0], ahead[0] - start))
        first = ahead[0]
    rest = [p - first for p in ahead if p > first]
    if rest:
        segments.append((first, ahead[-1], math.gcd(*rest)))
    return segments


def run(args: argparse.Namespace, workdir: Path) -> int:
    import d3rlpy
    import gymnasium as gym
    import torch
    from d3rlpy.algos.utility import build_scalers_with_trajectory_slicer
    from d3rlpy.logging import FileAdapterFactory

    global SAVES_STATE
    torch.set_num_threads(args.threads)
    state = load_state(args)
    d3rlpy.seed(args.seed)
    dataset, data_info = load_d4rl(args.dataset)
    print(f"[d3rlpy-dt] {args.dataset.name}: {data_info}", flush=True)
    dt = make_algo(args)
    # What fit does first (scalers, then the model), done here so that a saved state can be
    # loaded into the model before training goes on.
    build_scalers_with_trajectory_slicer(dt, dataset)
    dt.build_with_dataset(dataset)
    env = gym.make(args.env)
    start = 0
    if state is None:
        progress = Progress(args, env)
    else:
        for k, v in dt.impl._checkpointer.modules.items():
            v.load_state_dict(state["modules"][k])
        restore_rng(state)
        start = int(state["step"])
        saved = json.loads(state["progress"])
        saved["resumed_at"] = [*saved["resumed_at"], start]
        progress = Progress(args, env, {**saved, "offset": start})
        print(f"[d3rlpy-dt] resumed at step {start} from {args.state_dir}", flush=True)
    SAVES_STATE = args.state_dir is not None
    t_fit = time.perf_counter()
    for first, last, per_epoch in fit_segments(args.eval_points, start):
        progress.offset = first
        dt.fit(
            dataset,
            n_steps=last - first,
            n_steps_per_epoch=per_epoch,
            experiment_name=f"dt_{args.dataset.stem}_s{args.seed}",
            with_timestamp=True,
            logger_adapter=FileAdapterFactory(root_dir=str(workdir / "d3rlpy_logs")),
            show_progress=False,
            save_interval=(last - first) // per_epoch + 1,  # never write model snapshots
            callback=progress,
        )
    SAVES_STATE = False
    fit_seconds = progress.fit_seconds_before + time.perf_counter() - t_fit
    env.close()
    if not progress.final:
        raise RuntimeError("final evaluation did not run")
    n_params = sum(p.numel() for p in dt.impl.modules.transformer.parameters())
    record = make_record(args, progress, n_params, data_info, fit_seconds)
    write_json_atomic(args.out, record)
    if args.state_dir is not None and (args.state_dir / "state.pt").is_file():
        (args.state_dir / "state.pt").unlink()  # ours, and the JSON now holds all of it
    print(
        f"[d3rlpy-dt] wrote {args.out}: normalised {record['normalized_mean']:.1f} ± "
        f"{record['normalized_std']:.1f}, {record['train_seconds_per_step']:.3f} s/step, "
        f"{record['act_ms_median']:.2f} ms/action",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
