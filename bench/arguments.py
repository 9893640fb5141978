"""One set of rules for every ``aaren-bench`` subcommand's numbers, checked before any work.

Each subcommand's config is a dataclass parsed by tyro; tyro checks types, not ranges. This
module walks the parsed config's fields and refuses, with one ``ConfigError`` naming the flag,
a count that is zero or negative, a size so large that allocating it would fail (or run for
days), a list flag given with no values, an unknown backbone and a number that is NaN or
infinite. The rules go by field name, so a new subcommand gets them without code here: a
field is a count (>= 1) unless :data:`MAY_BE_ZERO` lists it.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from aaren_rl.errors import ConfigError

__all__ = ["MAY_BE_ZERO", "check_bench_args"]

MAY_BE_ZERO = frozenset(
    {"seed", "seeds", "eval_episodes", "horizons", "horizon_candidates", "warmup",
     "warmup_steps", "compile_max_k", "sequential_max_t", "full_window_max", "loads"}
)  # fmt: skip
"""Integer fields where 0 means something (a seed, "no scoring", "the whole episode", "no
busy process")."""

SIZES = frozenset(
    {"obs_dim", "act_dim", "dim", "lengths", "sequences", "chunks", "context_length",
     "context_lengths", "batch_sizes", "batch_size", "num_envs", "window", "episode_length",
     "steps", "curriculum", "acting_only"}
)  # fmt: skip
"""Fields that size an allocation (a tensor, a batch of environments, an episode buffer)."""

MAX_SIZE = 1_000_000
MAX_COUNT = 10**9
MAX_SEED = 2**31 - 1
EMPTY_OK = frozenset({"agents", "sequences", "overrides", "compile", "acting_only"})  # empty: none
BACKBONES = ("aaren", "transformer")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_int(name: str, value: int) -> None:
    low = 0 if name in MAY_BE_ZERO else 1
    if value < low:
        raise ConfigError(f"{_flag(name)} must be >= {low}, got {value}")
    high = MAX_SEED if name in ("seed", "seeds") else MAX_SIZE if name in SIZES else MAX_COUNT
    if value > high:
        raise ConfigError(
            f"{_flag(name)} {value} is too large (at most {high:,}): it would not fit in "
            "memory or would run for days"
        )


def _check_value(name: str, value: Any) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        _check_int(name, value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{_flag(name)} must be a finite number, got {value}")
    elif isinstance(value, float) and value <= 0 and name not in MAY_BE_ZERO:
        raise ConfigError(f"{_flag(name)} must be > 0, got {value}")
    elif isinstance(value, str) and name in ("backbones", "backbone") and value not in BACKBONES:
        raise ConfigError(f"{_flag(name)} {value!r}: choose from {', '.join(BACKBONES)}")
    elif isinstance(value, str) and name == "datasets" and not value.strip():
        raise ConfigError(f"{_flag(name)}: an empty dataset name")


def check_bench_args(config: Any) -> None:
    """Check every number, list and backbone name of a parsed subcommand config.

    Raises:
        ConfigError: the first field that breaks a rule, named as its flag.
    """
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, tuple):
            origin = typing.get_origin(hints.get(field.name))
            rebuild = field.name == "checkpoints" and getattr(config, "summary_only", False)
            if not value and origin is tuple and field.name not in EMPTY_OK and not rebuild:
                raise ConfigError(f"{_flag(field.name)} was given no values")
            for item in value:
                _check_value(field.name, item)
        else:
            _check_value(field.name, value)
