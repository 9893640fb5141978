"""D4RL dataset *names* (``d4rl:hopper-medium-v2``) resolved to D4RL's own download cache.

Users who already ran D4RL have its HDF5 files on disk, under the folder D4RL downloads to:
``$D4RL_DATASET_DIR`` when set, else ``~/.d4rl/datasets`` (``d4rl/offline_env.py``:
``set_dataset_path(os.environ.get('D4RL_DATASET_DIR', os.path.expanduser('~/.d4rl/datasets')))``).
A file keeps the last component of its download URL as its name (``filepath_from_url``), and
the URLs (``d4rl/gym_mujoco/__init__.py``, ``d4rl/infos.py``) follow three patterns:

=====  ================================================  ==============================
name   URL folder                                        file name
=====  ================================================  ==============================
v2     ``offline_rl/gym_mujoco_v2/``                     ``hopper_medium_replay-v2.hdf5``
v1     ``offline_rl/gym_mujoco_v1/``                     ``hopper_medium_replay-v1.hdf5``
v0     ``offline_rl/gym_mujoco/``                        ``hopper_mixed.hdf5`` (replay),
                                                         ``hopper_medium.hdf5``
=====  ================================================  ==============================

(v0 named its replay buffers ``*_mixed`` and Walker2d's ``walker_mixed``.) The dataset is
then evaluated in the matching Gymnasium v5 environment with D4RL's reference returns, which
the registry holds (``envs/registry.py``). D4RL's v0 files have no ``timeouts`` key and are
refused by the loader with a message that says so; v1 and v2 load as they are.

This module only names files; reading them is :func:`aaren_rl.envs.datasets.load_d4rl_hdf5`.

Example:
    >>> from aaren_rl.envs.d4rl_names import parse_d4rl_name
    >>> parse_d4rl_name("hopper-medium-replay-v2").file_name
    'hopper_medium_replay-v2.hdf5'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from aaren_rl.errors import DatasetError

__all__ = ["D4RLName", "d4rl_dataset_dir", "is_d4rl_name", "parse_d4rl_name", "resolve_d4rl_name"]

ENV_VAR = "D4RL_DATASET_DIR"
DEFAULT_DIR = "~/.d4rl/datasets"
URL_ROOT = "http://rail.eecs.berkeley.edu/datasets/offline_rl"
ENVS = ("hopper", "halfcheetah", "walker2d", "ant")
LEVELS = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay")
_NAME = re.compile(
    rf"^(?P<env>{'|'.join(ENVS)})-(?P<level>{'|'.join(sorted(LEVELS, key=len, reverse=True))})"
    r"-v(?P<version>[012])$"
)


@dataclass(frozen=True)
class D4RLName:
    """One D4RL locomotion dataset name, split into its parts.

    Attributes:
        env: ``hopper``, ``halfcheetah``, ``walker2d`` or ``ant`` (the registry's short names).
        level: ``medium``, ``medium-replay``, ...
        version: 0, 1 or 2.
    """

    env: str
    level: str
    version: int

    @property
    def name(self) -> str:
        return f"{self.env}-{self.level}-v{self.version}"

    @property
    def file_name(self) -> str:
        """The file name D4RL gives the download (the URL's last component)."""
        if self.version == 0:
            stem = (
                self.env
                if not (self.env == "walker2d" and self.level == "medium-replay")
                else "walker"
            )
            level = "mixed" if self.level == "medium-replay" else self.level.replace("-", "_")
            return f"{stem}_{level}.hdf5"
        return f"{self.env}_{self.level.replace('-', '_')}-v{self.version}.hdf5"

    @property
    def url(self) -> str:
        folder = "gym_mujoco" if self.version == 0 else f"gym_mujoco_v{self.version}"
        return f"{URL_ROOT}/{folder}/{self.file_name}"


def is_d4rl_name(text: str) -> bool:
    """True for ``hopper-medium-v2``-style names (not paths)."""
    return _NAME.match(text.strip()) is not None


def parse_d4rl_name(text: str) -> D4RLName:
    """Split a D4RL name; raises :class:`DatasetError` for anything else."""
    m = _NAME.match(text.strip())
    if m is None:
        raise DatasetError(
            f"{text!r} is not a D4RL locomotion dataset name: expected ENV-LEVEL-vN with ENV in "
            f"{', '.join(ENVS)}, LEVEL in {', '.join(LEVELS)} and N in 0, 1, 2 "
            "(e.g. hopper-medium-v2)."
        )
    return D4RLName(m["env"], m["level"], int(m["version"]))


def d4rl_dataset_dir() -> tuple[Path, str]:
    """D4RL's download folder and where that choice came from (for messages)."""
    value = os.environ.get(ENV_VAR)
    if value:
        return Path(value).expanduser(), f"${ENV_VAR}"
    return Path(DEFAULT_DIR).expanduser(), f"the default {DEFAULT_DIR} (${ENV_VAR} is not set)"


def resolve_d4rl_name(text: str) -> Path:
    """The cached file of a D4RL name; a :class:`DatasetError` that says where it looked and
    how to get the file when it is not there."""
    name = parse_d4rl_name(text)
    folder, origin = d4rl_dataset_dir()
    path = folder / name.file_name
    if path.is_file():
        return path
    raise DatasetError(
        f"d4rl:{name.name}: D4RL's file {name.file_name} is not in {folder} ({origin}). "
        f"Get it with: mkdir -p {folder} && wget -P {folder} {name.url} "
        f"(or point ${ENV_VAR} at the folder that holds it; or make a dataset of your own "
        "with aaren-collect, see docs/data.md)."
    )
