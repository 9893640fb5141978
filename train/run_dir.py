"""The run directory: checked before any work starts, created only once everything else is.

    config.json      the TrainConfig (``--resume`` takes the run's values from it)
    dataset.json     where the data was: the spec as typed, the file's absolute path and
                     sha256, the arrays' fingerprint (``--resume`` from another folder, or
                     with the same data under another path, finds and checks it)
    metrics.jsonl    train/ and eval/ metrics, one JSON record per line
    checkpoint/      the latest checkpoint, swapped in atomically (``aaren_rl.fileio``):
                     model.safetensors + agent.json (the agent), trainer.json +
                     trainer.safetensors (optimiser, scheduler, RNG and sampler state, the
                     dataset fingerprint; see ``train/trainer_state.py``)

Every problem raises :class:`~aaren_rl.errors.RunDirError` naming the path and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aaren_rl.agents.checkpoint import check_model_size
from aaren_rl.errors import RunDirError
from aaren_rl.fileio import atomic_write_json, recover_directory, remove_stale_temporaries
from aaren_rl.folders import check_folder
from aaren_rl.train.config import TrainConfig
from aaren_rl.train.trainer_state import has_trainer_state
from aaren_rl.untrusted import check_dataclass_dict, check_env_id, read_json

__all__ = [
    "CONFIG",
    "DATASET_RECORD",
    "dataset_file",
    "read_dataset_record",
    "write_dataset_record",
    "check_new_run_dir",
    "check_resumable",
    "create_run_dir",
    "read_saved_config",
    "saved_train_config",
]

CONFIG = "config.json"
DATASET_RECORD = "dataset.json"
CHECKPOINT = "checkpoint"
# Model-size fields that sat at the top level of config.json before they moved into `model`.
_LEGACY_MODEL_FIELDS = ("dim", "num_layers", "num_heads", "dropout")


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse a path that cannot hold a new run; creates nothing."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {run_dir} is a file, not a directory; choose another path")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise RunDirError(
            f"{run_dir} already holds a run; pass --resume to continue it, or choose a new "
            "--run-dir (nothing was overwritten)"
        )
    existing = next(p for p in (run_dir, *run_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise RunDirError(
            f"cannot write the run directory {run_dir}: {existing} is a file, not a directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"cannot write the run directory {run_dir}: {existing} is not writable")


def create_run_dir(run_dir: Path, cfg: TrainConfig) -> None:
    """Create the run directory and write its config.json (the run's first file)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / CONFIG, cfg.to_dict())
    except OSError as e:
        raise RunDirError(f"cannot write the run directory {run_dir}: {e.strerror or e}") from e


def check_resumable(run_dir: Path) -> None:
    """Refuse a run directory with nothing to resume; finish an interrupted checkpoint swap and
    remove the temporaries a killed checkpoint write left behind (call it on one process)."""
    _require_run_dir(run_dir)
    # no special files, no symlinks out of the run dir (metrics.jsonl, wandb/, checkpoint/):
    # nothing is read or written outside it (aaren_rl.folders)
    check_folder(run_dir, RunDirError, shallow=("wandb",))  # W&B's old run folders: its own
    ckpt = run_dir / CHECKPOINT
    recover_directory(ckpt)
    remove_stale_temporaries(ckpt)
    if not (run_dir / CONFIG).is_file() or not has_trainer_state(ckpt):
        raise RunDirError(
            f"nothing to resume in {run_dir}: no {CONFIG} or no checkpoint with trainer state "
            "(the run stopped before its first checkpoint). Start it again without --resume "
            "in a new --run-dir."
        )


def _require_run_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        what = "is a file" if run_dir.exists() else "does not exist"
        raise RunDirError(f"--run-dir {run_dir} {what}: there is no run to --resume there")


def read_saved_config(run_dir: Path) -> dict[str, Any]:
    """The run's config.json as a dict whose keys and value types fit :class:`TrainConfig`
    (reads only: safe on every process)."""
    _require_run_dir(run_dir)
    path = run_dir / CONFIG
    if not (path.exists() or path.is_symlink()):  # a link or FIFO: read_json says what it is
        raise RunDirError(
            f"nothing to resume in {run_dir}: no {CONFIG}. Start a new run without --resume."
        )
    saved = read_json(path, RunDirError, root=run_dir)
    if isinstance(saved, dict) and "model" not in saved:  # before `model` held the size
        legacy = {k: saved.pop(k) for k in _LEGACY_MODEL_FIELDS if k in saved}
        if legacy:
            saved["model"] = legacy
    check_dataclass_dict(TrainConfig, saved, str(path), RunDirError)
    check_env_id(saved.get("env"), f"{path}: env", RunDirError)  # no "module:" (docs/security.md)
    sizes = {k: saved[k] for k in ("context_length", "episode_length", "batch_size") if k in saved}
    model = {**(saved.get("model") or {}), "max_timestep": saved.get("max_timestep", 1000)}
    check_model_size(model, str(path), RunDirError, **sizes)  # each size and their products
    return saved


def saved_train_config(run_dir: Path) -> TrainConfig:
    """The run's TrainConfig (run_dir and resume set for this resume)."""
    saved = read_saved_config(run_dir)
    try:
        cfg = TrainConfig(**{**saved, "run_dir": run_dir, "resume": True})
        cfg.validate()
    except ValueError as e:
        raise RunDirError(f"{run_dir / CONFIG} holds an invalid configuration: {e}") from e
    return cfg


def dataset_file(spec: str) -> Path | None:
    """The file a ``d4rl:PATH`` (or bare ``.hdf5``/``.h5``) spec names, absolute, if it exists
    from here; None for other specs (Minari ids, demos, D4RL names in its cache)."""
    scheme, sep, rest = spec.strip().partition(":")
    path = rest if sep and scheme == "d4rl" else spec if spec.endswith((".hdf5", ".h5")) else None
    if path is None or not Path(path).expanduser().is_file():
        return None
    return Path(path).expanduser().resolve()


def write_dataset_record(run_dir: Path, spec: str, fingerprint: str) -> None:
    """Record where the run's data is (see the module docstring)."""
    from aaren_rl.fileio import sha256_file

    path = dataset_file(spec)
    record = {
        "spec": spec,
        "path": None if path is None else str(path),
        "sha256": None if path is None else sha256_file(path),
        "fingerprint": fingerprint,
    }
    atomic_write_json(run_dir / DATASET_RECORD, record)


def read_dataset_record(run_dir: Path) -> dict[str, Any]:
    """The run's dataset.json ({} for runs written before it existed, or if unreadable)."""
    path = run_dir / DATASET_RECORD
    if not path.is_file():
        return {}
    try:
        record = read_json(path, RunDirError)
    except RunDirError:
        return {}
    return record if isinstance(record, dict) else {}
