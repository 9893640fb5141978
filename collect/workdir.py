"""aaren-collect's work directory, read without running code from it (docs/security.md).

The work dir holds the behaviour policy's checkpoints, its training transitions and cached
rollouts. Stable-Baselines3's own formats are pickle-based (``VecNormalize.save`` and
``save_replay_buffer`` are plain pickles; a model zip's ``data`` entry holds cloudpickled
objects), so loading a crafted work dir with them runs any code its author chose. Here:

- **formats that hold data only.** VecNormalize statistics and replay buffers are ``.npz``
  arrays (read with ``allow_pickle=False``); training chunks and rollouts are ``.npz`` too;
  ``state.json`` and ``manifest.json`` are JSON, checked for types before use.
- **SB3 model zips without unpickling.** :func:`load_sb3_model` reads the zip's ``data``
  JSON itself and hands SB3 a ``custom_objects`` entry for *every* cloudpickled item (taken
  from a freshly built model of the same algorithm and spaces), so SB3 never calls
  ``cloudpickle.loads``; every ``.pth`` entry must load with
  ``torch.load(weights_only=True)`` (tensors and plain containers only) before SB3 sees it.
- **a manifest of what this tool wrote.** Every file is recorded with its sha256 in
  ``manifest.json`` (written atomically) right after it is saved, and checked before it is
  loaded: a file missing from the manifest, or whose hash differs, is refused with an error
  naming it. This catches a file swapped into a work dir; a whole crafted work dir can also
  carry a matching manifest, which is why the formats above are what makes loading safe.

A work dir written by an older aaren-collect (pickled ``*_vecnorm.pkl``, no manifest) is
refused as a whole, with the reason and what to do.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from aaren_rl.errors import RunDirError
from aaren_rl.fileio import atomic_path, atomic_write_json
from aaren_rl.folders import check_folder, check_inside, open_file
from aaren_rl.untrusted import MAX_JSON_BYTES, check_zip, parse_json_text, read_json

__all__ = [
    "MANIFEST",
    "Manifest",
    "check_state",
    "load_npz",
    "load_replay_buffer",
    "load_sb3_model",
    "load_vecnormalize",
    "obs_normalizer",
    "save_npz",
    "save_replay_buffer",
    "save_vecnormalize",
]

MANIFEST = "manifest.json"
SUBDIRS = ("ckpt", "replay", "rollouts")  # the only folders the manifest may name files in
MAX_ZIP_BYTES = 256 * 2**20  # uncompressed size of one SB3 model zip (ours are < 1 MB)
MAX_NPZ_BYTES = 4 * 2**30  # uncompressed size of one .npz (a 1M-step SAC buffer: ~0.4 GB)


def _sha256(path: Path, root: Path) -> str:
    """sha256 of a regular file inside ``root`` (no symlinks, no FIFOs: aaren_rl.folders)."""
    h = hashlib.sha256()
    with open_file(path, RunDirError, "rb", root) as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- manifest


class Manifest:
    """``manifest.json``: the sha256 of every file aaren-collect wrote into its work dir."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self.path = self.dir / MANIFEST
        self.files: dict[str, str] = {}
        # no special files, no links out of the work dir (aaren_rl.folders), before any read
        check_folder(self.dir, RunDirError)
        if self.path.exists() or self.path.is_symlink():
            doc = read_json(self.path, RunDirError, root=self.dir)
            files = doc.get("files") if isinstance(doc, dict) else None
            if (
                not isinstance(files, dict)
                or doc.get("format") != 1
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
            ):
                raise RunDirError(
                    f"{self.path} is not an aaren-collect manifest (format 1, files: name -> "
                    "sha256). Use another --work-dir, or delete this one to start over."
                )
            self.files = files

    def exists(self) -> bool:
        return self.path.exists()

    def _resolve(self, rel: str) -> Path:
        """``rel`` as a path inside one of the work dir's subfolders, or a RunDirError."""
        p = PurePosixPath(rel) if isinstance(rel, str) else None
        if (
            p is None
            or p.is_absolute()
            or ".." in p.parts
            or len(p.parts) != 2
            or p.parts[0] not in SUBDIRS
        ):
            raise RunDirError(
                f"{self.dir}: state.json names the file {rel!r:.80}, which is not a file of this "
                f"work dir ({', '.join(SUBDIRS)}/NAME). Refusing to load it."
            )
        return check_inside(self.dir, self.dir / p, RunDirError)

    def record(self, rel: str) -> None:
        """Add the file ``rel`` (just written) with its hash; the manifest is saved atomically."""
        self.files[rel] = _sha256(self._resolve(rel), self.dir)
        self.save()

    def forget(self, rel: str) -> None:
        if self.files.pop(rel, None) is not None:
            self.save()

    def save(self) -> None:
        atomic_write_json(self.path, {"format": 1, "files": self.files}, indent=1)

    def has(self, rel: str) -> bool:
        return rel in self.files and self._resolve(rel).is_file()

    def verified(self, rel: str) -> Path:
        """The path of ``rel`` once its hash matches the manifest.

        Raises:
            RunDirError: the file is not in the manifest (this tool did not write it), is
                missing, or its content changed since it was written.
        """
        path = self._resolve(rel)
        want = self.files.get(rel)
        if want is None:
            raise RunDirError(
                f"{path} is not listed in {self.path}: aaren-collect did not write it, so it "
                "is not loaded. Remove it, or use a fresh --work-dir."
            )
        if not path.is_file():
            raise RunDirError(
                f"{path} is missing (listed in {self.path}); the work dir is incomplete."
            )
        got = _sha256(path, self.dir)
        if got != want:
            raise RunDirError(
                f"{path} changed since aaren-collect wrote it (sha256 {got[:12]}..., manifest "
                f"{want[:12]}...); refusing to load it. Restore it, or use a fresh --work-dir."
            )
        return path


# ----------------------------------------------------------------------------- arrays


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write arrays as an uncompressed ``.npz`` atomically (numeric dtypes only)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})


def load_npz(path: Path, root: Path | None = None) -> dict[str, np.ndarray]:
    """Read an ``.npz`` without pickle: object arrays raise instead of being unpickled.

    Before anything is read, the zip's entries are checked: uncompressed (as ``np.savez``
    writes them: no zip bomb possible), at most ``MAX_NPZ_BYTES`` in all, and every array's
    declared shape must fit its entry, so a small file cannot make numpy allocate a huge
    array. ``root``: the work dir
    (no symlinks below it).
    """
    with open_file(path, RunDirError, "rb", root) as f:
        if not zipfile.is_zipfile(f):
            raise RunDirError(
                f"{path} cannot be read as plain arrays: it is not an .npz (zip) file, and "
                "nothing else (a pickle) is ever loaded"
            )
        infos = check_zip(f, str(path), RunDirError, MAX_NPZ_BYTES)
        if any(i.compress_type != zipfile.ZIP_STORED for i in infos):
            raise RunDirError(
                f"{path} has compressed entries; aaren-collect writes uncompressed .npz files "
                "(np.savez), so an entry can never unpack to more than the file's size"
            )
        try:
            with zipfile.ZipFile(f) as z:
                for info in infos:
                    _check_npy_header(z, info, path)
            f.seek(0)
            with np.load(f, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except RunDirError:
            raise
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            raise RunDirError(f"{path} cannot be read as plain arrays ({e})") from e


def _check_npy_header(z: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> None:
    """An entry's ``.npy`` header declares no more array bytes than the entry holds."""
    from numpy.lib import format as npy

    with z.open(info) as member:
        version = npy.read_magic(member)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"entry {info.filename!r}: unknown .npy version {version}")
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = read(member)
    declared = math.prod(shape) * dtype.itemsize
    if declared > info.file_size:
        raise RunDirError(
            f"{path}: entry {info.filename!r} declares a {shape} {dtype} array ({declared} "
            f"bytes) in {info.file_size} bytes; refusing it"
        )


_RMS = ("mean", "var", "count")
_VN_SCALARS = ("clip_obs", "clip_reward", "gamma", "epsilon", "norm_obs", "norm_reward")


def save_vecnormalize(venv: Any, path: Path) -> None:
    """VecNormalize's statistics as arrays (what ``VecNormalize.save`` pickles, minus code)."""
    arrays = {f"obs_{k}": getattr(venv.obs_rms, k) for k in _RMS}
    arrays |= {f"ret_{k}": getattr(venv.ret_rms, k) for k in _RMS}
    arrays |= {k: np.asarray(getattr(venv, k)) for k in _VN_SCALARS}
    save_npz(path, **arrays)


def _vecnorm_arrays(path: Path, obs_dim: int | None) -> dict[str, np.ndarray]:
    z = load_npz(path)
    need = [f"obs_{k}" for k in _RMS] + [f"ret_{k}" for k in _RMS] + list(_VN_SCALARS)
    missing = [k for k in need if k not in z]
    if missing:
        raise RunDirError(f"{path} lacks {missing}: not VecNormalize statistics")
    for k in need:
        if z[k].dtype.kind not in "biuf":
            raise RunDirError(f"{path}: {k!r} has dtype {z[k].dtype}, not a number")
    if obs_dim is not None and (z["obs_mean"].shape, z["obs_var"].shape) != ((obs_dim,),) * 2:
        raise RunDirError(f"{path}: statistics of shape {z['obs_mean'].shape}, env has {obs_dim}")
    return z


def obs_normalizer(path: Path, obs_dim: int) -> Callable[[np.ndarray], np.ndarray]:
    """VecNormalize's observation transform, from statistics saved by :func:`save_vecnormalize`."""
    z = _vecnorm_arrays(path, obs_dim)
    mean, var = z["obs_mean"], z["obs_var"]
    eps, clip = float(z["epsilon"]), float(z["clip_obs"])
    return lambda obs: np.clip((obs - mean) / np.sqrt(var + eps), -clip, clip)


def load_vecnormalize(path: Path, venv: Any) -> Any:
    """A ``VecNormalize`` around ``venv`` with the statistics of ``path`` (training mode)."""
    from stable_baselines3.common.vec_env import VecNormalize

    z = _vecnorm_arrays(path, venv.observation_space.shape[0])
    kw = {k: (bool if k.startswith("norm") else float)(z[k]) for k in _VN_SCALARS}
    vn = VecNormalize(venv, training=True, **kw)
    for prefix, rms in (("obs", vn.obs_rms), ("ret", vn.ret_rms)):
        rms.mean = z[f"{prefix}_mean"].astype(np.float64)
        rms.var = z[f"{prefix}_var"].astype(np.float64)
        rms.count = float(z[f"{prefix}_count"])
    return vn


_BUFFER = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def save_replay_buffer(model: Any, path: Path) -> None:
    """An off-policy model's replay buffer as arrays (``save_replay_buffer`` pickles it)."""
    buf = model.replay_buffer
    arrays = {k: getattr(buf, k) for k in _BUFFER if getattr(buf, k, None) is not None}
    save_npz(path, pos=np.asarray(buf.pos), full=np.asarray(buf.full), **arrays)


def load_replay_buffer(model: Any, path: Path) -> None:
    """Fill ``model.replay_buffer`` from :func:`save_replay_buffer`'s arrays (shapes checked)."""
    z = load_npz(path)
    buf = model.replay_buffer
    for k in _BUFFER:
        have = getattr(buf, k, None)
        if have is None:
            continue
        if k not in z or z[k].shape != have.shape or z[k].dtype.kind not in "biuf":
            got = z[k].shape if k in z else "missing"
            raise RunDirError(f"{path}: {k!r} is {got}, the replay buffer needs {have.shape}")
        setattr(buf, k, z[k].astype(have.dtype, copy=False))
    pos = int(z.get("pos", np.asarray(-1)))
    if not 0 <= pos <= buf.buffer_size:
        raise RunDirError(f"{path}: buffer position {pos} is outside 0..{buf.buffer_size}")
    buf.pos, buf.full = pos, bool(z.get("full", np.asarray(False)))


# ----------------------------------------------------------------------------- SB3 model zips


def _zip_data(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``data`` JSON of an SB3 zip and its ``.pth`` entries, loaded weights-only."""
    import torch

    try:
        # sizes of every entry checked before one is decompressed (no zip bombs)
        infos = check_zip(path, str(path), RunDirError, MAX_ZIP_BYTES)
        with zipfile.ZipFile(path) as z:
            if z.getinfo("data").file_size > MAX_JSON_BYTES:
                raise RunDirError(f"{path}: entry 'data' is larger than {MAX_JSON_BYTES} bytes")
            data = parse_json_text(z.read("data"), f"{path} (entry 'data')", RunDirError)
            tensors = {}
            for info in infos:
                if info.filename.endswith(".pth"):
                    raw = io.BytesIO(z.read(info))
                    # a .pth is a zip too: torch allocates what its entries declare
                    if not zipfile.is_zipfile(raw):
                        raise RunDirError(
                            f"{path}: entry {info.filename!r} is not plain tensors (not a "
                            "torch zip; a bare pickle is never loaded); refusing"
                        )
                    where = f"{path} (entry {info.filename!r})"
                    check_zip(raw, where, RunDirError, MAX_ZIP_BYTES)
                    try:  # tensors and plain containers only; a pickle calling code raises
                        tensors[info.filename] = torch.load(
                            raw, map_location="cpu", weights_only=True
                        )
                    except Exception as e:
                        raise RunDirError(
                            f"{path}: entry {info.filename!r} is not plain tensors ({e}); refusing"
                        ) from e
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise RunDirError(f"{path} is not a stable-baselines3 model zip ({e})") from e
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: entry 'data' must be a JSON object")
    return data, tensors


# Structural entries taken from the fresh model even when stored as plain JSON: they only
# configure classes, and must match the algorithm we build anyway.
_FROM_FRESH = ("policy_kwargs", "rollout_buffer_kwargs", "replay_buffer_kwargs")


def load_sb3_model(cls: type, path: Path, fresh: Any, env: Any = None) -> Any:
    """``cls.load(path)`` with nothing unpickled.

    Args:
        cls: the SB3 algorithm class (PPO, SAC, TD3).
        path: the model zip (verified against the manifest by the caller).
        fresh: a newly built model of the same class, spaces and hyper-parameters; every
            cloudpickled entry of ``data`` (spaces, policy class, schedules, buffers of the
            last observation...) is replaced by its attribute instead of being unpickled.
        env: the env to attach (training), or None (prediction only).

    Raises:
        RunDirError: the zip is malformed, a ``.pth`` entry is not plain tensors, a
            pickled entry has no counterpart on the fresh model, or the torch variables
            name attributes the algorithm does not save.
    """
    data, tensors = _zip_data(path)
    custom = {}
    for key, value in data.items():
        pickled = isinstance(value, dict) and ":serialized:" in value
        if pickled or key in _FROM_FRESH:
            if not hasattr(fresh, key):
                raise RunDirError(
                    f"{path}: entry {key!r} is a pickled object {cls.__name__} does not save; "
                    "refusing to unpickle it"
                )
            custom[key] = getattr(fresh, key)
    state_dicts, variables = fresh._get_torch_save_params()
    allowed = {f"{n}.pth" for n in state_dicts} | {"pytorch_variables.pth"}
    extra = sorted(set(tensors) - allowed)
    names = tensors.get("pytorch_variables.pth") or {}
    if extra or not isinstance(names, dict) or not set(names) <= set(variables):
        raise RunDirError(
            f"{path}: unexpected torch entries {extra or sorted(names)} for {cls.__name__}; "
            "refusing to load it"
        )
    return cls.load(path, env=env, device="cpu", custom_objects=custom)


# ----------------------------------------------------------------------------- state.json


def _fail(path: Path, what: str) -> RunDirError:
    return RunDirError(
        f"{path}: {what}. It was not written by this aaren-collect; use another --work-dir, "
        "or delete this one to start over."
    )


def check_state(state: Any, path: Path) -> dict[str, Any]:
    """Check ``state.json``'s types before the collector uses it; returns it."""
    if not isinstance(state, dict):
        raise _fail(path, "must hold a JSON object")
    shape = {"key": dict, "checkpoints": list, "chunks": list, "segment": int, "timings": dict,
             "written": list}  # fmt: skip
    for k, t in shape.items():
        if type(state.get(k)) is not t:
            raise _fail(path, f"{k!r} must be a {t.__name__}")
    num = (int, float)
    for c in state["checkpoints"]:
        ok = isinstance(c, dict) and type(c.get("step")) is int and isinstance(c.get("model"), str)
        ok = ok and all(isinstance(c.get(k), num) for k in ("return", "std"))
        ok = ok and all(
            c.get(k) is None or isinstance(c[k], str) for k in ("vecnorm", "replay_buffer")
        )
        if not ok:
            raise _fail(path, f"checkpoint entry {json.dumps(c)[:120]} is malformed")
    for c in state["chunks"]:
        if not (isinstance(c, dict) and isinstance(c.get("file"), str)
                and type(c.get("segment")) is int and type(c.get("step")) is int):  # fmt: skip
            raise _fail(path, f"chunk entry {json.dumps(c)[:120]} is malformed")
    if not all(isinstance(v, num) for v in state["timings"].values()):
        raise _fail(path, "'timings' must map names to seconds")
    if not all(
        isinstance(w, list) and all(isinstance(x, str) for x in w) for w in state["written"]
    ):
        raise _fail(path, "'written' must be a list of [kind, target] pairs")
    return state
