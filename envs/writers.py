"""Write flat D4RL-style arrays as a D4RL HDF5 file or a Minari dataset, atomically.

Both writers build the output under a temporary path next to the destination, fsync it and
move it into place (``aaren_rl.fileio``), so an interrupted write never leaves a half-written
dataset.

Arrays follow D4RL: ``observations (N, obs_dim)``, ``actions (N, act_dim)``, ``rewards (N,)``,
``terminals (N,)``, ``timeouts (N,)``, ``next_observations (N, obs_dim)``; episodes end at
``terminals | timeouts``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from aaren_rl.envs.datasets import close_open_episode
from aaren_rl.errors import DatasetError
from aaren_rl.fileio import atomic_directory, atomic_write_bytes, check_free_space

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


def _attr(v: Any) -> Any:
    """HDF5 attrs take scalars and strings; everything else becomes JSON."""
    if isinstance(v, (str, int, float, bool, np.integer, np.floating, np.bool_)):
        return v
    return json.dumps(v, default=float)


def write_d4rl_hdf5(
    path: str | os.PathLike,
    arrays: dict[str, np.ndarray],
    attrs: dict[str, Any] | None = None,
    compression: str | None = "gzip",
) -> Path:
    """Write a D4RL-format HDF5 file (float32 / bool, gzip) atomically. Returns the path."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    missing = [k for k in D4RL_KEYS[:5] if k not in arrays]
    if missing:
        raise DatasetError(f"write_d4rl_hdf5({path}): missing arrays {missing}.")
    # Built in memory, then written like every other file: HDF5's own writes to a full disk
    # (or past ulimit -f) fail over and over while its objects are freed and can end in a
    # segfault; a plain write fails once, with one OSError, and leaves the old file intact.
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        for k in D4RL_KEYS:
            if k not in arrays:
                continue
            a = np.asarray(arrays[k])
            if k in ("terminals", "timeouts"):
                a = a.astype(bool)
            elif not np.issubdtype(a.dtype, np.integer):  # integer ids (discrete) stay ints
                a = a.astype(np.float32)
            f.create_dataset(k, data=a, compression=compression)
        for k, v in (attrs or {}).items():
            f.attrs[k] = _attr(v)
    atomic_write_bytes(path, image.getbuffer())
    return path


def _float_or_ids(a: np.ndarray) -> np.ndarray:
    """float32, except integer ids (discrete spaces), which stay integers."""
    a = np.asarray(a)
    return a if np.issubdtype(a.dtype, np.integer) else a.astype(np.float32)


def _episode_slices(terminals: np.ndarray, timeouts: np.ndarray) -> list[tuple[int, int]]:
    ends = np.flatnonzero(np.asarray(terminals, bool) | np.asarray(timeouts, bool)) + 1
    if len(ends) == 0 or ends[-1] != len(terminals):
        ends = np.append(ends, len(terminals))
    starts = np.concatenate([[0], ends[:-1]])
    return list(zip(starts.tolist(), ends.tolist()))


def write_minari(
    dataset_id: str,
    arrays: dict[str, np.ndarray],
    env_id: str,
    *,
    algorithm_name: str,
    description: str,
    extra_metadata: dict[str, Any] | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    root: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a Minari dataset with ``minari.create_dataset_from_buffers`` (HDF5 backend).

    Needs no ``minari[create]`` extra (no jax): episode buffers are built directly from
    arrays. Built under a hidden temporary root (``minari list local`` skips hidden folders)
    and moved into ``root/dataset_id``.

    Args:
        dataset_id: ``namespace/name-vN``, e.g. ``aaren/hopper-medium-v0``.
        arrays: D4RL arrays including ``next_observations`` (Minari stores T+1 observations).
        env_id: Gymnasium id the data was collected on.
        extra_metadata: JSON-able; stored under the ``aaren`` metadata key as a JSON string.
        root: datasets root; default ``MINARI_DATASETS_PATH`` or ``~/.minari/datasets``.
        overwrite: replace an existing dataset with this id.

    Returns:
        The dataset directory.
    """
    import minari
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.namespace import create_namespace, list_local_namespaces
    from minari.storage.datasets_root_dir import get_dataset_path

    if "next_observations" not in arrays:
        raise DatasetError(
            f"write_minari({dataset_id}): 'next_observations' is required (Minari stores the "
            "final observation of every episode)."
        )
    root = Path(root) if root is not None else get_dataset_path()
    root.mkdir(parents=True, exist_ok=True)
    final = root / dataset_id
    if final.exists() and not overwrite:
        raise DatasetError(
            f"Minari dataset {dataset_id} already exists at {final}; pass overwrite=True "
            "(aaren-collect --overwrite) or bump the version (-v1)."
        )
    # Minari's HDF5 writes to a full disk fail over and over and can end in a segfault
    # (see write_d4rl_hdf5): refuse first, with the sizes, when the arrays cannot fit.
    check_free_space(root, sum(np.asarray(a).nbytes for a in arrays.values()), dataset_id)
    obs, nxt, act = (
        _float_or_ids(arrays[k]) for k in ("observations", "next_observations", "actions")
    )
    rew = np.asarray(arrays["rewards"], np.float64)
    term = np.asarray(arrays["terminals"], bool)
    tout = np.asarray(arrays["timeouts"], bool)
    buffers = []
    for i, (s, e) in enumerate(_episode_slices(term, tout)):
        trunc = close_open_episode(term[s:e], tout[s:e])  # a cut is a truncation in Minari
        buffers.append(
            EpisodeBuffer(
                id=i,
                observations=np.concatenate([obs[s:e], nxt[e - 1 : e]]),  # (T+1, obs_dim)
                actions=act[s:e],
                rewards=rew[s:e],
                terminations=term[s:e],
                truncations=trunc,
            )
        )
    old_env = os.environ.get("MINARI_DATASETS_PATH")
    try:
        with atomic_directory(final) as tmp:
            # Minari writes {root}/{dataset_id}/...; build under a hidden root inside the
            # temporary directory, then lift the dataset's files up into it.
            build = tmp / ".build"
            os.environ["MINARI_DATASETS_PATH"] = str(build)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # author/email/permalink nags
                ds = minari.create_dataset_from_buffers(
                    dataset_id=dataset_id,
                    buffer=buffers,
                    env=env_id,
                    algorithm_name=algorithm_name,
                    author="aaren-rl aaren-collect",
                    author_email="n/a",
                    code_permalink="collect/collect.py (aaren-rl)",
                    description=description,
                    ref_min_score=ref_min_score,
                    ref_max_score=ref_max_score,
                    data_format="hdf5",
                )
                meta = {"aaren": json.dumps(extra_metadata or {}, default=float)}
                ds.storage.update_metadata(meta)
            del ds
            for item in (build / dataset_id).iterdir():
                os.replace(item, tmp / item.name)
            shutil.rmtree(build)
            os.environ["MINARI_DATASETS_PATH"] = str(root)
            namespace = parse_dataset_id(dataset_id)[0]
            if namespace is not None and namespace not in list_local_namespaces():
                create_namespace(namespace, description="Datasets made by aaren-collect.")
    finally:
        if old_env is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old_env
    return final
