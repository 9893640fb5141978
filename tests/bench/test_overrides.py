"""bench/overrides.py: field=value overrides and named rows of them, applied to TrainConfig."""

from __future__ import annotations

import pytest

from aaren_rl.bench.overrides import apply_overrides, parse_overrides, parse_row
from aaren_rl.errors import ConfigError
from aaren_rl.train.config import TrainConfig


def test_rows_parse_and_apply() -> None:
    name, over = parse_row("mix:model.activation=gelu,learning_rate=3e-4,warmup_steps=10000")
    assert name == "mix"
    assert over == {"model.activation": "gelu", "learning_rate": 3e-4, "warmup_steps": 10000}
    tc = apply_overrides(TrainConfig(), over)
    assert tc.model.activation == "gelu" and tc.learning_rate == 3e-4
    assert tc.resolved_warmup == 10000 and TrainConfig().model.activation == "relu"
    assert parse_row("baseline") == ("baseline", {})
    assert parse_overrides(("padding=left", "track=true"), "--overrides") == {
        "padding": "left",
        "track": True,
    }


def test_bad_overrides_name_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="unknown field 'model.actvation'"):
        apply_overrides(TrainConfig(), {"model.actvation": "relu"})
    with pytest.raises(ConfigError, match="field=value"):
        parse_row("x:relu")
    with pytest.raises(ConfigError, match="--overrides: expected field=value"):
        parse_overrides(("=1",), "--overrides")
    with pytest.raises(ConfigError, match="plain name"):
        parse_row(":padding=left")
