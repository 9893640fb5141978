"""Project errors for the data side. Both subclass ValueError, so callers may catch either."""

from __future__ import annotations


class EnvError(ValueError):
    """An environment name/id is unknown, unusable, or does not match a dataset."""


class DatasetError(ValueError):
    """A dataset is missing, malformed, or does not fit its environment.

    The message names the file/key/field at fault and says what to do.
    """
