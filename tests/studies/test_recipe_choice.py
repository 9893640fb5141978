"""studies/recipe_choice.py: the fixed rule that turns an ablation into the default recipe."""

from __future__ import annotations

import pytest

from aaren_rl.errors import ConfigError
from studies.recipe_choice import choose, row_gains

ROWS = [
    "baseline",
    "relu:model.activation=relu",
    "gelu-tanh:model.activation=gelu_tanh",
    "loss-sum:loss_reduction=sum",
    "lr:learning_rate=3e-4",
    "bf16:precision=bf16",
    "both:model.activation=relu,loss_reduction=sum",
]


def cells(row: str, aaren: float, transformer: float) -> list[dict]:
    """Summary records of one row: main acting modes plus a window score that must not count."""
    return [
        {"row": row, "backbone": "aaren", "acting": "recurrent", "vs_baseline": aaren},
        {"row": row, "backbone": "aaren", "acting": "window", "vs_baseline": -100.0},
        {"row": row, "backbone": "transformer", "acting": "window", "vs_baseline": transformer},
    ]


def test_only_rows_that_help_on_average_are_adopted():
    summary = [
        *cells("relu", 4.0, 2.0),  # helps by 3
        *cells("gelu-tanh", 1.0, 1.0),  # helps by 1, same field as relu: relu wins
        *cells("loss-sum", 5.0, -6.0),  # -0.5 on average: not adopted
        *cells("lr", 0.5, 0.3),  # helps, but not by more than the margin below
        *cells("bf16", 9.0, 9.0),  # precision is never part of the recipe
        *cells("both", 9.0, 9.0),  # composite rows are reported only
    ]
    assert row_gains(summary)["relu"] == pytest.approx(3.0)
    adopted, verdicts = choose(summary, ROWS, margin=0.5)
    assert adopted == {"model.activation": "relu"}
    why = {v["row"]: v["verdict"] for v in verdicts}
    assert "same field" in why["gelu-tanh"] and "does not help" in why["lr"]
    assert "precision" in why["bf16"] and "composite" in why["both"]
    assert choose(summary, ROWS, margin=0.0)[0] == {
        "model.activation": "relu",
        "learning_rate": 3e-4,
    }


def test_a_row_missing_from_the_definitions_is_an_error():
    with pytest.raises(ConfigError, match="relu"):
        choose(cells("relu", 1.0, 1.0), ["baseline"])
