"""Self-describing, atomically written checkpoints.

A checkpoint is a directory:

    model.safetensors   the decision model's weights
    agent.json          what is needed to act: model config, state mean/std, return scale,
                        target returns, env id, dataset spec, training step, package and
                        format versions (docs/style.md, "What that means for us" 6)
    trainer.json        (training runs only) optimiser, scheduler, RNG and sampler state:
    trainer.safetensors JSON + tensors, no pickle (train/trainer_state.py)

It is written into a temporary sibling directory and swapped into place, so a reader (or a
crash) sees either the old checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from aaren_rl.aaren_policy import DecisionModel, DecisionModelConfig, __version__
from aaren_rl.errors import AarenError, CheckpointError, ConfigError
from aaren_rl.fileio import recover_directory
from aaren_rl.folders import check_folder, check_inside
from aaren_rl.untrusted import check_dataclass_dict, check_env_id, check_number_list, read_json

# CheckpointError lives in aaren_rl.errors; it is importable from here and from aaren_rl.agents.
# Checkpoints are written with aaren_rl.fileio.atomic_directory (see DecisionAgent.save).
__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "MODEL_LIMITS",
    "check_model_size",
    "load_model",
    "read_metadata",
    "save_model",
]

CHECKPOINT_FORMAT = 1
WEIGHTS = "model.safetensors"
METADATA = "agent.json"


def save_model(directory: Path, model: DecisionModel, metadata: dict[str, Any]) -> None:
    """Write weights and metadata into ``directory`` (which should be a temporary one)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS))
    meta = {
        "format": CHECKPOINT_FORMAT,
        "package_version": __version__,
        "model_config": model.config.to_dict(),
        **metadata,
    }
    # Inside the temporary directory of ``atomic_directory``, which fsyncs and swaps it whole.
    (directory / METADATA).write_text(json.dumps(meta, indent=2))


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """Read and check ``agent.json`` of a checkpoint directory."""
    directory = Path(directory)
    recover_directory(directory)
    meta_path = directory / METADATA
    if not directory.is_dir():
        raise CheckpointError(
            f"no checkpoint directory at {directory}; pass the run's checkpoint folder "
            "(e.g. runs/NAME/checkpoint) written by aaren-train"
        )
    check_folder(directory, CheckpointError)  # no special files, no links out of it
    present = [
        (directory / n).exists() or (directory / n).is_symlink() for n in (METADATA, WEIGHTS)
    ]
    if not all(present):
        raise CheckpointError(
            f"{directory} is not a complete checkpoint: expected {METADATA} and {WEIGHTS}"
        )
    check_inside(directory, directory / WEIGHTS, CheckpointError)  # a regular file, no link
    meta = read_json(meta_path, CheckpointError, root=directory)  # size- and depth-capped
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path} is corrupt: it must hold a JSON object")
    fmt = meta.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{directory} has checkpoint format {fmt!r}; this aaren-rl {__version__} reads format "
            f"{CHECKPOINT_FORMAT}. Retrain, or load it with the aaren-rl version that wrote it "
            f"({meta.get('package_version', 'unknown')})."
        )
    for key in ("model_config", "state_mean", "state_std", "return_scale"):
        if key not in meta:
            raise CheckpointError(f"{meta_path} lacks the field {key!r}: the checkpoint is corrupt")
    check_metadata(meta, meta_path)
    return meta


MAX_MODEL_INT = 2**24  # no other integer of a model config is larger
# Each size a model config, agent.json or config.json may name (real models are far below:
# the DT recipe is obs 17, act 6, dim 128, 3 layers, 1 head, K = 20, 1000 timesteps), and
# the products that decide memory. A file passing each field's bound could still ask for
# 2^24 timestep rows x 1024 dims (64 GB): the products are bounded too.
MODEL_LIMITS = {
    "obs_dim": 2**20,
    "act_dim": 2**16,
    "dim": 2**13,
    "num_heads": 2**8,
    "num_layers": 2**8,
    "ffn_dim": 2**15,
    "chunk_size": 2**16,
    "state_encoder_hidden": 2**13,
    "max_timestep": 2**20,
    "context_length": 2**12,
    "episode_length": 2**16,
    "batch_size": 2**16,
}
MAX_MODEL_PARAMS = 2**27  # weights (512 MiB of float32; DT-size models have ~1M)
MAX_ACTIVATIONS = 2**30  # batch x window x 3 x dim, one layer (DT recipe: 64 x 20 x 3 x 128 = 2^19)


def check_model_size(cfg: dict[str, Any], where: str, error: type[AarenError], **extra: Any) -> int:
    """Bound every size of a model config (a ``DecisionModelConfig`` dict, its ``net``
    nested, or a flat ``BackboneConfig`` dict) and ``extra`` ones (``context_length``,
    ``episode_length``, ``batch_size``), each by ``MODEL_LIMITS`` and their products by
    ``MAX_MODEL_PARAMS`` / ``MAX_ACTIVATIONS``; returns the estimated parameter count.
    Values of other types are left to the type checks.
    """
    net = cfg.get("net") if isinstance(cfg.get("net"), dict) else cfg
    values = {**cfg, **net, **extra}
    for key, limit in MODEL_LIMITS.items():
        v = values.get(key)
        if type(v) is int and not 0 <= v <= limit:
            raise error(f"{where}: {key} = {v} is outside 0..{limit} (docs/security.md)")

    def size(key: str, default: int) -> int:
        v = values.get(key)
        return v if type(v) is int else default

    dim, layers = size("dim", 128), size("num_layers", 3)
    ffn = size("ffn_dim", 4 * dim)
    width = max(dim, size("state_encoder_hidden", 128))
    params = (
        layers * (4 * dim * dim + 2 * dim * ffn)
        + size("max_timestep", 1000) * dim
        + (size("obs_dim", 0) + size("act_dim", 0) + 2) * width
        + width * dim
    )
    if params > MAX_MODEL_PARAMS:
        raise error(
            f"{where}: the model it describes has ~{params:.3g} weights (dim {dim}, "
            f"{layers} layers, ffn {ffn}, max_timestep {size('max_timestep', 1000)}), more "
            f"than the {MAX_MODEL_PARAMS} allowed (docs/security.md)"
        )
    window = max(size("context_length", 1), size("episode_length", 1))
    activations = size("batch_size", 1) * window * 3 * dim
    if activations > MAX_ACTIVATIONS:
        raise error(
            f"{where}: batch x window x 3 tokens x dim = {activations:.3g} values per layer, "
            f"more than the {MAX_ACTIVATIONS} allowed (docs/security.md)"
        )
    return params


def check_metadata(meta: Any, where: str | Path) -> None:
    """Check the types and sizes of ``agent.json`` before anything is built from it.

    A checkpoint may come from someone else (docs/security.md): the model config must fill
    :class:`DecisionModelConfig` with the right types and sane sizes (a config asking for a
    10^12-wide layer would exhaust memory before the weights are compared), the
    normalisation statistics must be finite lists of ``obs_dim`` numbers, and the env id a
    plain Gymnasium id (an id with ``module:`` would make Gymnasium import that module).

    Raises:
        CheckpointError: naming the file and the field at fault.
    """
    err = CheckpointError
    if not isinstance(meta, dict):
        raise err(f"{where} must hold a JSON object, got {type(meta).__name__}")
    cfg = meta["model_config"]
    check_dataclass_dict(DecisionModelConfig, cfg, f"{where}: model_config", err)
    ints = [v for v in (*cfg.values(), *(cfg.get("net") or {}).values()) if type(v) is int]
    if any(v > MAX_MODEL_INT for v in ints):
        raise err(f"{where}: model_config has a size above {MAX_MODEL_INT}: {str(cfg)[:200]}")
    obs_dim = cfg.get("obs_dim")
    for key in ("state_mean", "state_std"):
        check_number_list(meta[key], f"{where}: {key}", err, length=obs_dim)
    for key in ("return_scale", "target_return"):
        v = meta.get(key, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise err(f"{where}: {key} must be a finite number, got {v!r:.60}")
    if "target_returns" in meta:
        check_number_list(meta["target_returns"], f"{where}: target_returns", err)
    for key in ("context_length", "step"):
        v = meta.get(key)
        if v is not None and (type(v) is not int or not 0 <= v <= 2**62):
            raise err(f"{where}: {key} must be a non-negative integer, got {v!r:.60}")
    context = meta.get("context_length")
    check_model_size(cfg, f"{where}: model_config", err, context_length=context)
    check_env_id(meta.get("env_id"), f"{where}: env_id", err)


def check_device(device: object) -> torch.device:
    """``device`` as a ``torch.device`` that this machine has.

    Raises:
        ConfigError: not a device name, or a CUDA device where torch sees none.
    """
    try:
        dev = torch.device(device)  # type: ignore[arg-type]
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device={device!r} is not a torch device (e.g. 'cpu', 'cuda')") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={device!r}: torch sees no CUDA device on this machine; use device='cpu'"
        )
    return dev


def load_model(
    directory: str | Path, device: torch.device | str = "cpu"
) -> tuple[DecisionModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint; returns ``(model, metadata)``."""
    from safetensors.torch import load_file

    device = check_device(device)  # before the files: a missing GPU is not a corrupt file
    directory = Path(directory)
    meta = read_metadata(directory)
    try:
        config = DecisionModelConfig.from_dict(meta["model_config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"{directory}: its model config does not fit this version: {e}"
        ) from e
    model = DecisionModel(config)
    try:
        weights = load_file(str(directory / WEIGHTS), device=str(device))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(
            f"{directory / WEIGHTS} cannot be read ({e}): the file is corrupt"
        ) from e
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"{directory}: weights do not match the model config: {e}") from e
    if missing or unexpected:
        raise CheckpointError(
            f"{directory}: weights do not match the model config (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    bad = [k for k, w in weights.items() if w.is_floating_point() and not torch.isfinite(w).all()]
    if bad:
        raise CheckpointError(
            f"{directory / WEIGHTS}: {len(bad)} weight tensor(s) hold NaN or Inf (first: "
            f"{bad[0]}): the training diverged. Use an earlier checkpoint, or retrain with a "
            "lower learning rate / gradient clipping"
        )
    return model.to(device).eval(), meta
