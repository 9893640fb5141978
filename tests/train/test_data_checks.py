"""The target-return warning: conditioning far above every return in the data."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from aaren_rl.train.data_checks import TARGET_RETURN_WARN_RATIO, warn_target_return


def _dataset(*episode_returns: float) -> SimpleNamespace:
    # What the check reads of an OfflineDataset: its episodes' returns.
    return SimpleNamespace(episode_returns=np.array(episode_returns, dtype=np.float64))


def test_a_target_far_above_the_best_episode_warns_with_the_numbers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ds = _dataset(938.0, 1604.0, 200.0)  # halfcheetah-medium-replay's best and mean
    assert warn_target_return(ds, 6000.0)
    err = capsys.readouterr().err
    assert "6000 is 3.7x the best episode return in the dataset (1,604)" in err
    assert "aaren-eval --target-return 6000 1604" in err


@pytest.mark.parametrize("target", [1604.0, 3000.0, TARGET_RETURN_WARN_RATIO * 1604.0])
def test_a_target_within_reach_of_the_data_is_quiet(
    target: float, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not warn_target_return(_dataset(938.0, 1604.0), target)
    assert capsys.readouterr().err == ""


def test_data_without_a_positive_return_gives_no_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    assert not warn_target_return(_dataset(-150.0, -20.0), 6000.0)
    assert capsys.readouterr().err == ""


# ---- degenerate data: trains without an error, cannot train well: warned, column named ----


def _loaded(tmp_path, edit) -> object:
    import sys

    from aaren_rl.envs import load_dataset

    conftest = sys.modules["tests.conftest"]
    arrays = conftest.synthetic_arrays()
    edit(arrays)
    return load_dataset(f"d4rl:{conftest.write_h5(tmp_path / 'd.hdf5', arrays)}")


def _set(key: str, index: object, value: float):
    def edit(arrays: dict) -> None:
        arrays[key][index] = value

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("observations", (slice(None), 4), 2.5), r"observation column\(s\) 4 of .* never change"),
        (_set("observations", (slice(None), slice(None)), 1.0), r"every observation in .* is identical"),
        (_set("observations", (3, 7), 3e38), r"column\(s\) 7 of .* reach \|x\| up to 3e\+38"),
        (_set("rewards", slice(None), 1e9), r"episode returns in .* reach .*raise --return-scale"),
    ],
)  # fmt: skip
def test_degenerate_data_is_named(tmp_path, capsys, edit, message) -> None:
    import re

    from aaren_rl.train.data_checks import warn_degenerate_data

    warnings = warn_degenerate_data(_loaded(tmp_path, edit), return_scale=1000.0)
    assert len(warnings) == 1 and re.search(message, warnings[0]), warnings
    assert capsys.readouterr().err.count("[aaren-rl] warning:") == 1


def test_ordinary_data_is_quiet(tmp_path, capsys) -> None:
    from aaren_rl.train.data_checks import warn_degenerate_data

    assert warn_degenerate_data(_loaded(tmp_path, lambda a: None), return_scale=1000.0) == []
    assert capsys.readouterr().err == ""
