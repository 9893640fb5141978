"""Pick the training recipe from an ablation, by a rule fixed before the results are seen.

The rule (docs/research/recipe.md, "The ablation, as far as it ran here"): a row *helps* when its score,
averaged over every (dataset, backbone) cell at each backbone's main acting mode (Aaren acting
recurrently, the Transformer through its window), is above the baseline's by more than
``margin`` normalised points. Every row that helps is adopted, for both backbones alike;
when two adopted rows set the same field (``relu`` and ``gelu-tanh`` both set the activation),
the one that helps more wins. Rows that change precision (speed, not recipe) and composite
rows (several fields at once) are reported but never adopted.

A one-off study tool, not part of the installed package (run it from the repository root):

    python -m studies.recipe_choice --summary runs/ablation/summary.json \\
        --rows baseline relu:model.activation=relu ...   # the same --rows as the ablation
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from aaren_rl.bench.overrides import parse_row
from aaren_rl.errors import ConfigError

MAIN_ACTING = {"aaren": "recurrent", "transformer": "window"}
NOT_RECIPE = ("precision",)


def row_gains(summary: list[dict[str, Any]]) -> dict[str, float]:
    """Mean difference to the baseline over the (dataset, backbone) cells, main acting mode."""
    cells: dict[str, list[float]] = {}
    for rec in summary:
        if MAIN_ACTING.get(rec["backbone"]) == rec["acting"] and rec["row"] != "baseline":
            cells.setdefault(rec["row"], []).append(float(rec["vs_baseline"]))
    return {row: float(np.mean(v)) for row, v in cells.items()}


def choose(
    summary: list[dict[str, Any]], rows: list[str], margin: float = 0.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The adopted overrides and one line of reasoning per row."""
    defs = dict(parse_row(r) for r in rows)
    gains = row_gains(summary)
    verdicts, by_field = [], {}
    for row, gain in sorted(gains.items(), key=lambda kv: -kv[1]):
        over = defs.get(row)
        if over is None:
            raise ConfigError(f"row {row!r} is in the summary but not in --rows")
        if any(k.split(".")[-1] in NOT_RECIPE for k in over):
            why = "precision: a speed setting, not part of the recipe"
        elif len(over) != 1:
            why = "composite row: reported only"
        elif gain <= margin:
            why = f"does not help ({gain:+.1f} <= {margin:+.1f})"
        elif next(iter(over)) in by_field:
            why = f"helps ({gain:+.1f}) but {by_field[next(iter(over))]} sets the same field"
        else:
            by_field[next(iter(over))] = row
            why = f"helps ({gain:+.1f}): adopted"
        verdicts.append({"row": row, "overrides": over, "gain": gain, "verdict": why})
    adopted = {k: v for row in by_field.values() for k, v in defs[row].items()}
    return adopted, verdicts


@dataclass
class ChoiceArgs:
    """Pick the recipe from an ablation summary (prints field=value overrides)."""

    summary: Path = Path("runs/ablation/summary.json")
    """summary.json written by python -m studies.ablation."""
    rows: list[str] = field(default_factory=list)
    """The ablation's --rows (NAME:field=value,...), to map row names to overrides."""
    margin: float = 0.0
    """A row is adopted when it beats the baseline by more than this (normalised points)."""
    out: Path | None = None
    """Also write the choice (overrides and verdicts) as JSON here."""


def main() -> None:
    args = tyro.cli(ChoiceArgs)
    if not args.summary.is_file():
        raise SystemExit(f"recipe_choice: {args.summary} not found: run the ablation first")
    adopted, verdicts = choose(json.loads(args.summary.read_text()), args.rows, args.margin)
    for v in verdicts:
        print(f"# {v['row']:>12}: {v['verdict']}")
    if args.out is not None:
        from aaren_rl.fileio import atomic_write_json

        atomic_write_json(args.out, {"adopted": adopted, "verdicts": verdicts})
    print(
        " ".join(
            f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in adopted.items()
        )
    )


if __name__ == "__main__":
    main()
