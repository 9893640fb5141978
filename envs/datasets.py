"""Offline datasets: one entry point, ``load_dataset(spec)``, for D4RL HDF5 files and Minari.

Spec strings:

- ``d4rl:PATH`` (or a bare existing path ending in ``.hdf5`` / ``.h5``): a D4RL-format HDF5 file
  with ``observations, actions, rewards, terminals, timeouts`` (``next_observations`` and
  ``infos/*`` optional, ignored), read with h5py;
- ``minari:ID``: a local Minari dataset (``minari.load_dataset``); a remote download only with
  ``load_dataset(spec, download=True)``;
- ``demo:hopper``: the small demo file shipped in ``envs/data/hopper-demo.hdf5``;
- ``d4rl:NAME`` (``d4rl:hopper-medium-v2``): D4RL's own file, read from its download cache
  (``envs/d4rl_names.py``) and evaluated in the matching v5 env with D4RL's reference returns.

Discrete spaces: integer actions ((N,) or (N, 1) ids) make a discrete-action dataset: they
are stored one-hot (``actions`` (T, n)) and ``OfflineDataset.num_actions`` is ``n`` (from the
recorded env's ``Discrete(n)``, else the ``num_actions`` attr, else ``max id + 1``).
Observations of a recorded ``Discrete`` / ``MultiDiscrete`` space (the env's, or the
``observation_nvec`` attr) are one-hot encoded as in ``envs/spaces.py``. Box data is unchanged.

Episodes are split on ``terminals | timeouts`` (D4RL convention). A trailing run of steps with
neither flag (a recording cut mid-episode) is **kept** as a truncated trajectory
(``terminated=False``), as D4RL's own ``sequence_dataset`` and CORL's DT do; the count is in
``metadata["trailing_steps_kept"]``. A dataset without a single complete episode is an error.

Example:
    >>> ds = load_dataset("d4rl:/path/hopper-medium.hdf5")  # doctest: +SKIP
    >>> ds.obs_dim, ds.num_transitions, ds.return_stats["mean"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aaren_rl.envs.dataset_safety import (
    check_external_links,
    check_minari_metadata,
    check_numeric,
    check_stored_in_file,
    hdf5_attrs,
    read_numeric_datasets,
)
from aaren_rl.errors import DatasetError, EnvError
from aaren_rl.untrusted import parse_json_text

STD_FLOOR = 1e-6  # added to the state std so constant features do not divide by zero
DEMO_DIR = Path(__file__).parent / "data"
REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
COLLECT_HINT = "Make one with: aaren-collect --env hopper --hdf5-dir DIR (see docs/data.md)."


@dataclass
class Trajectory:
    """One episode (or a truncated tail of one).

    Attributes:
        observations: (T, obs_dim) float32.
        actions: (T, act_dim) float32.
        rewards: (T,) float32.
        returns_to_go: (T,) float32, undiscounted: ``rtg[t] = sum(rewards[t:])``.
        timesteps: (T,) int64, ``0 .. T-1``.
        terminated: True if the episode ended in a terminal state (not a time-out/cut).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    returns_to_go: np.ndarray
    timesteps: np.ndarray
    terminated: bool

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def episode_return(self) -> float:
        return float(self.returns_to_go[0]) if len(self) else 0.0


@dataclass
class OfflineDataset:
    """Trajectories plus the statistics a sequence model needs.

    Attributes:
        trajectories: the episodes, in file order.
        state_mean: (obs_dim,) float32 mean of all observations.
        state_std: (obs_dim,) float32 std of all observations, plus ``STD_FLOOR``.
        spec: the spec string it was loaded from.
        env_id: Gymnasium id from the file attrs / Minari metadata, None if not recorded.
        metadata: file attrs or Minari metadata (JSON strings decoded where possible).
    """

    trajectories: list[Trajectory]
    state_mean: np.ndarray
    state_std: np.ndarray
    spec: str
    env_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    num_actions: int | None = None
    """Discrete actions: the number of choices (``actions`` are one-hot); None for Box."""

    @property
    def discrete_actions(self) -> bool:
        return self.num_actions is not None

    @property
    def obs_dim(self) -> int:
        return int(self.trajectories[0].observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.trajectories[0].actions.shape[1])

    @property
    def num_transitions(self) -> int:
        return sum(len(t) for t in self.trajectories)

    @property
    def episode_returns(self) -> np.ndarray:
        return np.array([t.episode_return for t in self.trajectories], dtype=np.float64)

    @property
    def return_stats(self) -> dict[str, float]:
        r = self.episode_returns
        return {
            "mean": float(r.mean()),
            "std": float(r.std()),
            "min": float(r.min()),
            "max": float(r.max()),
            "median": float(np.median(r)),
        }

    @property
    def reference_scores(self) -> tuple[float, float] | None:
        """``(random, expert)`` returns the dataset carries (Minari ``ref_min_score`` /
        ``ref_max_score``, or the same HDF5 attrs); None when it carries none."""
        lo, hi = self.metadata.get("ref_min_score"), self.metadata.get("ref_max_score")
        try:
            return None if lo is None or hi is None else (float(lo), float(hi))
        except (TypeError, ValueError):
            return None

    def summary(self) -> str:
        s = self.return_stats
        lengths = np.array([len(t) for t in self.trajectories])
        return (
            f"{self.spec}: env={self.env_id}, {self.num_transitions} transitions, "
            f"{len(self.trajectories)} episodes (mean length {lengths.mean():.0f}, "
            f"{sum(t.terminated for t in self.trajectories)} terminated), "
            f"return {s['mean']:.1f} ± {s['std']:.1f} [{s['min']:.1f}, {s['max']:.1f}]"
        )


# ----------------------------------------------------------------------------- building


def close_open_episode(terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """``timeouts`` (a bool copy) with its last step set when the data ends mid-episode.

    A recording cut (a step budget, a checkpoint boundary, a stream that simply stops) is
    marked as a time-out, as D4RL does, so that the last episode is closed and every reader
    (``split_episodes``, Minari's truncations) sees where it ends. The one place that rule
    lives: aaren-collect's streams and rollouts, the Minari writer and the Minari reader use it.

    Args:
        terminals: (T,) the MDP ended at this step.
        timeouts: (T,) a time limit or a cut ended the episode at this step.
    """
    out = np.asarray(timeouts, dtype=bool).reshape(-1).copy()
    term = np.asarray(terminals, dtype=bool).reshape(-1)
    if len(out) and not (out[-1] or term[-1]):
        out[-1] = True
    return out


def split_episodes(
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminals: np.ndarray,
    timeouts: np.ndarray,
    *,
    spec: str = "<arrays>",
    env_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> OfflineDataset:
    """Validate flat D4RL-style arrays and split them into trajectories.

    Args:
        observations: (N, obs_dim); actions: (N, act_dim); rewards, terminals, timeouts: (N,).
        spec: name used in error messages and stored on the dataset.

    Raises:
        DatasetError: lengths differ, wrong ranks, NaN/Inf, or no complete episode.
    """
    arrays = {
        "observations": np.asarray(observations),
        "actions": np.asarray(actions),
        "rewards": np.asarray(rewards),
        "terminals": np.asarray(terminals),
        "timeouts": np.asarray(timeouts),
    }
    _validate_arrays(arrays, spec)
    obs = arrays["observations"].astype(np.float32, copy=False)
    act = arrays["actions"].astype(np.float32, copy=False)
    rew = arrays["rewards"].reshape(-1).astype(np.float32, copy=False)
    term = arrays["terminals"].reshape(-1).astype(bool)
    ends = term | arrays["timeouts"].reshape(-1).astype(bool)

    end_idx = np.flatnonzero(ends)
    if end_idx.size == 0:
        raise DatasetError(
            f"{spec}: no complete episode: no step has terminals or timeouts set "
            f"({len(rew)} steps). Mark episode ends in 'terminals' (MDP end) or 'timeouts' "
            "(time limit / recording cut)."
        )
    stops = end_idx + 1
    trailing = len(rew) - int(stops[-1])
    if trailing > 0:  # keep the cut tail as a truncated trajectory (see module docstring)
        stops = np.append(stops, len(rew))
    starts = np.concatenate([[0], stops[:-1]])

    trajectories = []
    for s, e in zip(starts.tolist(), stops.tolist()):
        r = rew[s:e]
        # float64 accumulation: 1000-step float32 cumsums drift by ~1e-4 of the return
        rtg = np.cumsum(r[::-1], dtype=np.float64)[::-1].astype(np.float32)
        trajectories.append(
            Trajectory(
                observations=obs[s:e],
                actions=act[s:e],
                rewards=r,
                returns_to_go=rtg,
                timesteps=np.arange(e - s, dtype=np.int64),
                terminated=bool(term[e - 1]),
            )
        )
    mean = obs.mean(axis=0, dtype=np.float64)
    std = obs.std(axis=0, dtype=np.float64) + STD_FLOOR
    meta = dict(metadata or {})
    meta["trailing_steps_kept"] = trailing
    return OfflineDataset(
        trajectories=trajectories,
        state_mean=mean.astype(np.float32),
        state_std=std.astype(np.float32),
        spec=spec,
        env_id=env_id,
        metadata=meta,
    )


def _validate_arrays(arrays: dict[str, np.ndarray], spec: str) -> None:
    n = len(arrays["rewards"])
    for key in ("observations", "actions"):
        if arrays[key].ndim != 2:
            raise DatasetError(
                f"{spec}: '{key}' must be 2-D (N, dim), got shape {arrays[key].shape}."
            )
    for key in ("rewards", "terminals", "timeouts"):
        a = arrays[key]
        if not (a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1)):
            raise DatasetError(f"{spec}: '{key}' must be 1-D (N,), got shape {a.shape}.")
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(
            f"{spec}: arrays have different lengths {lengths}; every key must have one entry "
            "per transition. Re-export the file so all keys have the same first dimension."
        )
    if n == 0:
        raise DatasetError(f"{spec}: the dataset is empty (0 transitions).")
    for key in ("observations", "actions", "rewards"):
        a = arrays[key]
        if not np.issubdtype(a.dtype, np.number):
            raise DatasetError(f"{spec}: '{key}' has non-numeric dtype {a.dtype}.")
        finite = np.isfinite(a)
        if not finite.all():
            bad = np.argwhere(~finite)[0]
            raise DatasetError(
                f"{spec}: '{key}' contains NaN/Inf ({int((~finite).sum())} values, first at "
                f"index {tuple(int(i) for i in bad)}). Clean or drop those transitions."
            )


# ----------------------------------------------------------------------------- D4RL HDF5


def _decode_attr(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str) and v[:1] in "[{":
        try:  # the capped reader: size and nesting
            return parse_json_text(v, "Minari metadata", DatasetError)
        except DatasetError:
            return v
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _hdf5_files_near(path: Path) -> list[str]:
    found: list[str] = []
    for d in {path.parent if path.parent.exists() else Path.cwd(), DEMO_DIR}:
        found += sorted(str(p) for p in d.glob("*.hdf5")) + sorted(str(p) for p in d.glob("*.h5"))
    return found


def load_d4rl_hdf5(path: str | os.PathLike, spec: str | None = None) -> OfflineDataset:
    """Read a D4RL-format HDF5 file. See :func:`load_dataset`."""
    import h5py  # light, but keep `import envs` fast

    path = Path(path).expanduser()
    spec = spec or f"d4rl:{path}"
    if path.is_dir():
        inside = sorted(str(p) for p in path.glob("*.hdf5")) + sorted(
            str(p) for p in path.glob("*.h5")
        )
        raise DatasetError(
            f"{spec}: {path} is a directory, not an HDF5 file; pass a file path"
            + (f" (HDF5 files in it: {', '.join(inside[:5])})." if inside else ".")
        )
    if not path.is_file():
        near = _hdf5_files_near(path)
        raise DatasetError(
            f"{spec}: file not found. "
            + (f"HDF5 files found locally: {', '.join(near)}. " if near else "")
            + COLLECT_HINT
        )
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{spec}: not a readable HDF5 file ({exc}).") from exc
    with f:
        missing = [k for k in REQUIRED_KEYS if k not in f]
        if missing:
            raise DatasetError(
                f"{spec}: missing HDF5 key(s) {missing}; found {sorted(f.keys())}. A D4RL file "
                f"needs {list(REQUIRED_KEYS)} (a file without 'timeouts' can be fixed by adding "
                "an all-False 'timeouts' array, marking the last step of each cut episode True)."
            )
        # numeric, in-file datasets only; attrs checked and JSON-decoded (docs/security.md)
        arrays = read_numeric_datasets(f, REQUIRED_KEYS, spec)  # whole-array reads
        meta = hdf5_attrs(f.attrs, spec)
    env_id = meta.get("env_id") or meta.get("env") or meta.get("env_name")
    num_actions = _encode_discrete(arrays, spec, meta, env_id)
    ds = split_episodes(**arrays, spec=spec, env_id=env_id, metadata=meta)
    ds.num_actions = num_actions
    _check_against_recorded_env(ds)
    return ds


# ----------------------------------------------------------------------------- Minari


def _local_minari_ids() -> list[str]:
    try:
        import minari

        return sorted(minari.list_local_datasets())
    except Exception:  # a broken local dataset must not hide the real error
        return []


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get(
        "MINARI_OFFLINE", "0"
    ) not in ("", "0"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_minari(dataset_id: str, download: bool = False, spec: str | None = None) -> OfflineDataset:
    """Read a Minari dataset into trajectories. See :func:`load_dataset`."""
    import gymnasium as gym
    import minari
    from minari.storage.datasets_root_dir import get_dataset_path

    spec = spec or f"minari:{dataset_id}"
    local = (get_dataset_path(dataset_id) / "data").exists()
    if not local:
        have = _local_minari_ids()
        root = get_dataset_path()
        listing = (
            f"Local Minari datasets under {root}: {', '.join(have)}."
            if have
            else f"No local Minari datasets under {root}."
        )
        if not download:
            raise DatasetError(
                f"{spec}: Minari dataset {dataset_id!r} not found locally. {listing} "
                "Make one with: aaren-collect --env hopper (writes aaren/hopper-medium-v0 etc.), "
                "or download it when online (aaren-train --download, or load_dataset(spec, download=True))."
            )
        if not _hub_reachable():
            raise DatasetError(
                f"{spec}: download requested but the Minari hub (huggingface.co) is not "
                f"reachable (offline, or HF_HUB_OFFLINE set). {listing}"
            )
    try:
        if not local:  # download=True (checked above): fetch, check, then load
            minari.download_dataset(dataset_id)
        # metadata.json can make Minari gym.make an entry point it names: check it first
        check_minari_metadata(get_dataset_path(dataset_id) / "data", spec)
        mds = minari.load_dataset(dataset_id)
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{spec}: Minari could not load {dataset_id!r}: {exc}") from exc
    _check_minari_file(mds, spec)

    from aaren_rl.envs.spaces import discrete_action_count, is_discrete

    for what, space, ok in (
        ("observation", mds.spec.observation_space, is_discrete(mds.spec.observation_space)),
        ("action", mds.spec.action_space, discrete_action_count(mds.spec.action_space)),
    ):
        if not isinstance(space, gym.spaces.Box) and not ok:
            raise DatasetError(
                f"{spec}: {what} space is {type(space).__name__}; supported: Box, Discrete "
                "(and MultiDiscrete observations)."
            )
    obs, act, rew, term, trunc = [], [], [], [], []
    for ep in _minari_episodes(mds, spec):
        for k in ("observations", "actions", "rewards", "terminations", "truncations"):
            check_numeric(np.asarray(ep[k]), k, spec)
        obs.append(np.asarray(ep["observations"])[:-1])  # Minari stores T+1 observations
        act.append(np.asarray(ep["actions"]))
        rew.append(np.asarray(ep["rewards"]))
        term.append(np.asarray(ep["terminations"], dtype=bool))
        # Minari episodes are complete by construction: an open end is a cut
        trunc.append(close_open_episode(term[-1], ep["truncations"]))
    if not rew:
        raise DatasetError(f"{spec}: the Minari dataset has no episodes.")
    meta = {str(k): _decode_attr(v) for k, v in mds.storage.metadata.items()}
    env_spec = mds.spec.env_spec
    env_id = env_spec.id if env_spec is not None else meta.get("env_id")
    arrays = {"observations": np.concatenate(obs), "actions": np.concatenate(act)}
    num_actions = _encode_discrete(
        arrays, spec, meta, None, mds.spec.action_space, mds.spec.observation_space
    )
    ds = split_episodes(
        arrays["observations"],
        arrays["actions"],
        np.concatenate(rew),
        np.concatenate(term),
        np.concatenate(trunc),
        spec=spec,
        env_id=env_id,
        metadata=meta,
    )
    ds.num_actions = num_actions
    _check_against_recorded_env(ds)
    return ds


def _check_minari_file(mds: Any, spec: str) -> None:
    """Refuse a Minari HDF5 file with external links (h5py would open the files they name)."""
    import h5py

    path = getattr(mds.storage, "_file_path", None)
    if path is not None and Path(path).is_file():
        with h5py.File(path, "r") as f:
            check_external_links(f, spec)


def _minari_episodes(mds: Any, spec: str = "minari"):
    """Episodes of a Minari dataset as dicts of arrays.

    Fast path for the HDF5 backend with Box spaces: read each episode group with h5py
    directly (several times faster than ``iterate_episodes``, which matters for random datasets with
    tens of thousands of short episodes). Anything else goes through Minari's own API.
    """
    import h5py

    path = getattr(mds.storage, "_file_path", None)
    if mds.storage.metadata.get("data_format") == "hdf5" and path is not None:
        keys = ("observations", "actions", "rewards", "terminations", "truncations")
        with h5py.File(path, "r") as f:
            fid = f.id
            for i in mds.episode_indices:
                try:  # low-level reads: h5py's high-level objects cost ~0.3 ms each
                    ep = {}
                    for k in keys:
                        d = h5py.h5d.open(fid, f"episode_{int(i)}/{k}".encode())
                        check_stored_in_file(d, f"episode_{int(i)}/{k}", spec)
                        ep[k] = np.empty(d.shape, dtype=d.dtype)
                        d.read(h5py.h5s.ALL, h5py.h5s.ALL, ep[k])
                except DatasetError:
                    raise
                except (KeyError, TypeError, ValueError):  # dict spaces / unknown layout
                    ep = vars(next(iter(mds.iterate_episodes([int(i)]))))
                yield ep
        return
    for ep in mds.iterate_episodes():
        yield vars(ep)


# ----------------------------------------------------------------------------- discrete


def _recorded_spaces(env_id: str | None) -> tuple[Any, Any]:
    """The raw (action, observation) spaces of a recorded env that is installed here."""
    if not env_id:
        return None, None
    import gymnasium as gym

    from aaren_rl.envs.registry import get_env_spec

    try:
        env = gym.make(get_env_spec(env_id).gym_id)
    except Exception:  # not installed / unknown here: nothing to read the spaces from
        return None, None
    try:
        return env.action_space, env.observation_space
    finally:
        env.close()


def _encode_discrete(
    arrays: dict[str, np.ndarray],
    spec: str,
    meta: dict[str, Any],
    env_id: str | None,
    action_space: Any = None,
    obs_space: Any = None,
) -> int | None:
    """One-hot integer actions and discrete observations in place (module docstring).

    Returns the number of actions for a discrete-action dataset, None for Box actions.

    Raises:
        DatasetError: action ids out of range or not integral for a Discrete space, float
            actions for a Discrete space, observation ids out of range.
    """
    from aaren_rl.envs.spaces import discrete_action_count, encode_observations, is_discrete

    if action_space is None and obs_space is None:
        action_space, obs_space = _recorded_spaces(env_id)
    act = np.asarray(arrays["actions"])
    n = discrete_action_count(action_space) if action_space is not None else None
    integral = np.issubdtype(act.dtype, np.integer) and (act.ndim == 1 or act.shape[1:] == (1,))
    if n is None and integral and not isinstance(action_space, _box_type()):
        n = int(meta.get("num_actions") or (int(act.max()) + 1 if act.size else 1))
    if n is not None:
        if not integral:
            raise DatasetError(
                f"{spec}: the action space is Discrete({n}) but 'actions' are {act.dtype} of "
                f"shape {act.shape}; a discrete dataset stores integer action ids, shape (N,). "
                "Re-collect it with aaren-collect, or use the env it was collected on."
            )
        ids = act.reshape(-1).astype(np.int64)
        bad = (ids < 0) | (ids >= n)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DatasetError(
                f"{spec}: action ids must be in 0..{n - 1} (Discrete({n})); {int(bad.sum())} "
                f"are not, the first at index {i} (id {int(ids[i])})."
            )
        from aaren_rl.envs.spaces import one_hot

        arrays["actions"] = one_hot(ids, n)
    nvec = meta.get("observation_nvec")
    if obs_space is None and nvec is not None:
        import gymnasium as gym

        nvec = np.asarray(nvec, dtype=np.int64).reshape(-1)
        one = nvec.size == 1
        obs_space = gym.spaces.Discrete(int(nvec[0])) if one else gym.spaces.MultiDiscrete(nvec)
    if obs_space is not None and is_discrete(obs_space):
        obs = np.asarray(arrays["observations"])
        if not np.issubdtype(obs.dtype, np.integer) and not np.all(obs == np.round(obs)):
            raise DatasetError(
                f"{spec}: observations must be integer ids of {obs_space}, got {obs.dtype} "
                f"values like {obs.reshape(len(obs), -1)[0].tolist()}."
            )
        lo = np.asarray(getattr(obs_space, "start", 0))
        hi = lo + np.asarray(getattr(obs_space, "n", getattr(obs_space, "nvec", 1)))
        ids = obs.reshape((len(obs),) + obs_space.shape).astype(np.int64)
        if (ids < lo).any() or (ids >= hi).any():
            raise DatasetError(f"{spec}: observation ids out of the range of {obs_space}.")
        arrays["observations"] = encode_observations(ids, obs_space)
    return n


def _box_type() -> type:
    import gymnasium as gym

    return gym.spaces.Box


# ----------------------------------------------------------------------------- entry point


def load_dataset(spec: str, *, download: bool = False) -> OfflineDataset:
    """Load an offline dataset from a spec string.

    Args:
        spec: ``d4rl:PATH``, ``minari:ID``, ``demo:hopper``, or a bare ``*.hdf5``/``*.h5`` path.
        download: for ``minari:``, fetch a missing dataset from the Minari hub (fails fast,
            with a clear message, when offline). Never downloads otherwise.

    Returns:
        The :class:`OfflineDataset`.

    Raises:
        DatasetError: unknown scheme, missing file/dataset, missing keys, mismatched lengths,
            NaN/Inf, no complete episode, or dims that contradict the recorded env.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError(f"Expected a dataset spec string like 'd4rl:PATH', got {spec!r}.")
    spec = spec.strip()
    scheme, sep, rest = spec.partition(":")
    if sep and scheme == "d4rl":
        if not Path(rest).expanduser().exists():
            from aaren_rl.envs.d4rl_names import is_d4rl_name

            if is_d4rl_name(rest):  # d4rl:hopper-medium-v2, a name in D4RL's download cache
                return _load_d4rl_name(rest, spec)
        return load_d4rl_hdf5(rest, spec=spec)
    if sep and scheme == "minari":
        return load_minari(rest, download=download, spec=spec)
    if sep and scheme == "demo":
        return load_d4rl_hdf5(DEMO_DIR / f"{rest}-demo.hdf5", spec=spec)
    if spec.endswith((".hdf5", ".h5")):
        return load_d4rl_hdf5(spec, spec=spec)
    raise DatasetError(
        f"Unknown dataset spec {spec!r}. Use 'd4rl:PATH' (D4RL HDF5 file), 'minari:ID' "
        "(local Minari dataset, e.g. minari:aaren/hopper-medium-v0) or 'demo:hopper'."
    )


def _load_d4rl_name(name: str, spec: str) -> OfflineDataset:
    """A D4RL name: its cached file, evaluated in the v5 env with D4RL's reference returns."""
    from aaren_rl.envs.d4rl_names import parse_d4rl_name, resolve_d4rl_name
    from aaren_rl.envs.registry import get_env_spec

    ds = load_d4rl_hdf5(resolve_d4rl_name(name), spec=spec)
    env = get_env_spec(parse_d4rl_name(name).env)
    ds.env_id = env.gym_id  # D4RL's files do not name their (mujoco-py) env
    ds.metadata.update(ref_min_score=env.random_score, ref_max_score=env.expert_score)
    _check_against_recorded_env(ds)
    return ds


# ----------------------------------------------------------------------------- env checks


def check_dataset_matches_env(dataset: OfflineDataset, env_spec_or_env: Any) -> None:
    """Raise :class:`DatasetError` if the dataset's obs/action dims differ from the env's.

    Args:
        dataset: a loaded dataset.
        env_spec_or_env: an :class:`envs.EnvSpec`, a short name / Gymnasium id, or a ``gym.Env``.
    """
    import gymnasium as gym

    from aaren_rl.envs.registry import EnvSpec, get_env_spec, make_env

    if isinstance(env_spec_or_env, gym.Env):
        env, name, owned = env_spec_or_env, getattr(env_spec_or_env.spec, "id", "env"), False
    else:
        spec = (
            env_spec_or_env
            if isinstance(env_spec_or_env, EnvSpec)
            else get_env_spec(str(env_spec_or_env))
        )
        name = spec.gym_id
        env, owned = make_env(name), True
    from aaren_rl.envs.spaces import VectorSpaces, vector_spaces

    try:
        view = env if isinstance(env, VectorSpaces) else vector_spaces(env)  # what models see
        obs_shape = view.observation_space.shape
        act_shape = view.action_space.shape
        env_n = view.num_actions if isinstance(view, VectorSpaces) else None
    finally:
        if owned:
            env.close()
    if dataset.num_actions != env_n:
        have = "float (Box)" if dataset.num_actions is None else f"Discrete({dataset.num_actions})"
        want = "float (Box)" if env_n is None else f"Discrete({env_n})"
        raise DatasetError(
            f"{dataset.spec}: the dataset has {have} actions but {name} takes {want} actions. "
            f"Use a dataset collected on {name} (recorded env: {dataset.env_id})."
        )
    for what, got, want in (
        ("observations", dataset.obs_dim, obs_shape),
        ("actions", dataset.act_dim, act_shape),
    ):
        if len(want) != 1 or want[0] != got:
            raise DatasetError(
                f"{dataset.spec}: '{what}' have dimension {got} but {name} expects shape "
                f"{want}. Use a dataset collected on {name}, or the env it was collected on "
                f"(recorded env: {dataset.env_id})."
            )


def _check_against_recorded_env(ds: OfflineDataset) -> None:
    """If the file names its env and Gymnasium knows it, the dims must match it."""
    if not ds.env_id:
        return
    from aaren_rl.envs.registry import get_env_spec

    try:  # get_env_spec also registers the memory tasks' ids (tmaze-L, POPGym)
        get_env_spec(ds.env_id)
    except EnvError:
        return  # env not installed here: nothing to check against
    try:
        check_dataset_matches_env(ds, ds.env_id)
    except EnvError:
        return
