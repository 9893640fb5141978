"""Overrides of a dataclass config from the command line: ``field=value`` and named rows.

``aaren-bench returns --overrides model.activation=relu learning_rate=3e-4`` changes the
``TrainConfig`` of every run of a grid; the ablation study (``studies/ablation.py``) names
each set of overrides as a *row*, ``NAME:field=value,field=value``. Nested fields take dots
(``model.activation``); values are JSON (``1e-4``, ``10000``, ``true``) or plain strings
(``relu``). A field that does not exist or a value the dataclass refuses is a
``ConfigError`` naming it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from aaren_rl.errors import ConfigError

__all__ = ["apply_overrides", "parse_overrides", "parse_row"]


def parse_row(row: str) -> tuple[str, dict[str, Any]]:
    """``"name:a=1,model.b=x"`` -> ``("name", {"a": 1, "model.b": "x"})``."""
    name, _, spec = row.partition(":")
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--rows {row!r}: a row needs a plain name (NAME or NAME:k=v,...)")
    return name, parse_overrides(spec, f"--rows {row!r}")


def parse_overrides(spec: str | tuple[str, ...], where: str) -> dict[str, Any]:
    """``"a=1,b=x"`` or ``("a=1", "b=x")`` -> ``{"a": 1, "b": "x"}``; ``where`` names the flag."""
    items = spec if isinstance(spec, tuple) else [s for s in spec.split(",") if s.strip()]
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.strip().partition("=")
        if not eq or not key:
            raise ConfigError(f"{where}: expected field=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def apply_overrides(obj: Any, overrides: dict[str, Any]) -> Any:
    """A copy of dataclass ``obj`` with dotted-path fields replaced (nested dataclasses too)."""
    for path, value in overrides.items():
        obj = _replace_path(obj, path.split("."), value, path)
    return obj


def _replace_path(obj: Any, parts: list[str], value: Any, path: str) -> Any:
    names = {f.name for f in dataclasses.fields(obj)}
    if parts[0] not in names:
        raise ConfigError(f"unknown field {path!r} (not one of {sorted(names)})")
    if len(parts) > 1:
        value = _replace_path(getattr(obj, parts[0]), parts[1:], value, path)
    try:
        return dataclasses.replace(obj, **{parts[0]: value})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}={value!r}: {e}") from None
