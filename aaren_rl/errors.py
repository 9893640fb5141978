"""One error hierarchy for the toolkit.

Every problem the user can fix (a bad flag, a missing or malformed file, a run directory that
does not fit the command) raises a subclass of :class:`AarenError`. Its message names the
culprit (flag, file, key) and says what to do. ``AarenError`` subclasses ``ValueError`` so that
library callers who catch ``ValueError`` keep working.

Exit codes, the same for every CLI (applied in one place, :func:`aaren_rl.cli.run_cli`):

====  ==========================================================
0     success
1     a failure during the work (an I/O error, a crash: a bug)
2     bad input or usage (any ``AarenError``; tyro's own usage errors)
130   interrupted (Ctrl-C / SIGINT); the run can be resumed
143   terminated (SIGTERM: kill, systemd, Slurm, Kubernetes); the run can be resumed
====  ==========================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's ``KeyboardInterrupt`` so that the same
    clean-up runs (atomic writes abandoned, the resume hint added); exit 143."""


class AarenError(ValueError):
    """Base class of every user-facing error of aaren-rl (exit code 2)."""


class ConfigError(AarenError):
    """A flag or config value is invalid (out of range, NaN, contradicts another flag)."""


class EnvError(AarenError):
    """An environment name/id is unknown, unusable, or does not match a dataset."""


class DatasetError(AarenError):
    """A dataset is missing, malformed, unsafe, or does not fit its environment."""


class CheckpointError(AarenError):
    """A checkpoint is missing, corrupt, unsafe, or incompatible with this version."""


class RunDirError(AarenError):
    """A run directory (or output path) cannot be used as asked (resume mismatch, a file...)."""


class OutputPathError(AarenError):
    """An output path cannot be written (a directory where a file is expected, no permission...)."""


class TrainError(AarenError):
    """A training command cannot run as asked (bad run directory, resume mismatch...)."""


class EvalError(AarenError):
    """An evaluation cannot run as asked (bad agent output, env mismatch, bad flags)."""


class ExportError(AarenError):
    """A checkpoint cannot be exported as asked (unsupported backbone, bad opset...)."""


class AgentInputError(AarenError):
    """An agent was fed observations/rewards of the wrong shape or with NaN/Inf."""


class OnnxAgentError(AarenError):
    """An ONNX policy file is missing, malformed, unsafe, or fed inputs of the wrong shape."""


class DependencyNotInstalled(AarenError):
    """An optional dependency is missing; the message names the pip extra to install."""
