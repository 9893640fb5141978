"""The bad-input matrix: every CLI and the Python API, fed what a hostile new user would feed.

Each case runs one command (in-process through its ``main(argv)``, or a few as subprocesses)
or one API call (through ``aaren_rl.cli.run_cli``, the same mapping the CLIs use) and asserts:

- the exit code (2: bad input or usage; 1: a failure during the work; 130: interrupted);
- one message naming the culprit (the flag, file or key), and no traceback;
- that no existing file changed (SHA-256 of every file under the case's folder before and
  after) and that a failing command created nothing (no empty run or work directory).

Every case gets its own folder (also its working directory, so that relative defaults land
there) holding copies of a tiny checkpoint, a tiny Hopper-shaped D4RL file and, where asked,
a tiny finished training run. Counts and what is promised: docs/reliability.md.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aaren_rl.cli import run_cli

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

# ----------------------------------------------------------------------------- the harness


@dataclass(frozen=True)
class Case:
    """One bad input.

    ``args`` are CLI arguments with ``{placeholders}`` (see :class:`Ctx`); for ``cli="api"``,
    ``call(ctx)`` is run instead. ``message`` is a regular expression (placeholders filled in)
    that the output must match; ``setup(ctx)`` prepares the bad input before the files are
    hashed. ``usage``: tyro's own usage error (a box, not one ``error:`` line).
    """

    cli: str
    name: str
    message: str
    args: tuple[str, ...] = ()
    call: Callable[[Ctx], Any] | None = None
    setup: Callable[[Ctx], None] | None = None
    code: int = 2
    usage: bool = False
    needs_run: bool = False
    patch: tuple[str, Callable[..., Any]] | None = None  # "module:name" replaced during the run
    env: tuple[tuple[str, str], ...] = ()  # environment variables ("" unsets)
    hide: str | None = None  # a module whose import fails (an optional dependency not installed)
    created_ok: tuple[str, ...] = ()  # files a case may create (e.g. offline W&B logs)
    xfail: str | None = None


@dataclass
class Ctx:
    """The case's folder and its copies of the shared inputs."""

    tmp: Path
    ckpt: Path
    ds: Path
    run: Path | None
    file: Path  # an existing plain file, for "a file where a directory is expected"
    extra: dict[str, Path] = field(default_factory=dict)

    def fill(self, s: str) -> str:
        names = {"tmp": self.tmp, "ckpt": self.ckpt, "ds": self.ds, "run": self.run,
                 "file": self.file, **self.extra}  # fmt: skip
        return s.format(**{k: str(v) for k, v in names.items()})


MAINS = {
    "train": "aaren_rl.train.cli:main",
    "eval": "aaren_rl.eval.cli:main",
    "collect": "aaren_rl.collect.collect:main",
    "export": "aaren_rl.deploy.export:main",
    "bench": "aaren_rl.bench.cli:main",
}
PROGRAM = {k: f"aaren-{k}" for k in MAINS} | {"api": "api"}


def _main(cli: str) -> Callable[[list[str]], Any]:
    module, name = MAINS[cli].split(":")
    return getattr(importlib.import_module(module), name)


def _run_in_process(case: Case, ctx: Ctx) -> int:
    if case.cli == "api":
        return run_cli("api", lambda: (case.call(ctx), None)[1])
    try:
        code = _main(case.cli)([ctx.fill(a) for a in case.args])
    except SystemExit as e:  # tyro's usage errors; a main that exits with a message
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 1
        return 0 if e.code is None else int(e.code)
    return 0 if code is None else int(code)


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(root)) + "/"] = "dir"
    return out


# ----------------------------------------------------------------------------- shared inputs


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny checkpoint, a tiny D4RL file and (lazily) a tiny finished run, made once."""
    conftest = sys.modules["tests.conftest"]
    root = tmp_path_factory.mktemp("pristine")
    ds = conftest.make_hopper_like_hdf5(root / "tiny-hopper.hdf5")
    ckpt = conftest.tiny_agent("aaren").save(root / "ckpt")
    return {"root": root, "ds": ds, "ckpt": ckpt}


def _tiny_run(pristine: dict[str, Path]) -> Path:
    """A finished 4-step run. Its dataset spec is relative (``d4rl:tiny-hopper.hdf5``), so a
    resumed copy reads the copy of the dataset in its case's folder (the working directory)."""
    run = pristine["root"] / "run"
    if not run.exists():
        from aaren_rl.train.cli import main

        cwd = os.getcwd()
        os.chdir(pristine["root"])
        try:
            rc = main(["--dataset", f"d4rl:{pristine['ds'].name}", "--steps", "4",
                       "--model.dim", "16", "--model.num-layers", "1", "--eval-episodes", "0",
                       "--checkpoint-every", "2", "--batch-size", "2", "--episode-length", "40",
                       "--context-length", "5", "--run-dir", "run", "--no-progress"])  # fmt: skip
        finally:
            os.chdir(cwd)
        assert rc == 0, "the tiny training run the resume cases start from failed"
    return run


@pytest.fixture
def ctx(pristine: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ctx:
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    monkeypatch.chdir(case_dir)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    ckpt = shutil.copytree(pristine["ckpt"], case_dir / "ckpt")
    ds = shutil.copy(pristine["ds"], case_dir / "tiny-hopper.hdf5")
    file = case_dir / "a-file"
    file.write_text("keep me\n")
    return Ctx(tmp=case_dir, ckpt=Path(ckpt), ds=Path(ds), run=None, file=file)


def _check(case: Case, ctx: Ctx, capsys: pytest.CaptureFixture, code: int) -> None:
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == case.code, f"exit code {code}, expected {case.code}\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    message = ctx.fill(case.message)
    assert re.search(message, text, re.S), f"no {message!r} in:\n{text[-3000:]}"
    if case.code not in (0, 130) and not case.usage:
        prog = PROGRAM[case.cli]
        lines = [ln for ln in text.splitlines() if ln.startswith(f"{prog}: error:")]
        assert len(lines) == 1, f"expected one '{prog}: error:' line:\n{text[-3000:]}"


# ----------------------------------------------------------------------------- helpers for cases


def _write(path: str, text: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        p = Path(ctx.fill(path))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    return setup


def _edit_json(path: str, edit: Callable[[dict], Any]) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        p = Path(ctx.fill(path))
        data = json.loads(p.read_text())
        data = edit(data) or data
        p.write_text(json.dumps(data))

    return setup


def _nan_weights(ctx: Ctx) -> None:
    from safetensors.torch import load_file, save_file

    w = load_file(str(ctx.ckpt / "model.safetensors"))
    for v in w.values():
        v.fill_(float("nan"))
    save_file(w, str(ctx.ckpt / "model.safetensors"))


def _dataset(name: str, **change: Any) -> Callable[[Ctx], None]:
    """Write ``{tmp}/NAME``: the synthetic arrays with ``change`` applied (None drops a key)."""

    def setup(ctx: Ctx) -> None:
        conftest = sys.modules["tests.conftest"]
        arrays = conftest.synthetic_arrays()
        for k, v in change.items():
            if v is None:
                arrays.pop(k)
            else:
                arrays[k] = v(arrays[k]) if callable(v) else v
        conftest.write_h5(ctx.tmp / name, arrays, env_id="Hopper-v5")

    return setup


def _poke(key: str, index: int, value: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a.reshape(len(a), -1)[index, 0] = value
        return a

    return f


def _onnx_without_metadata(ctx: Ctx) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(ctx.tmp / "plain.onnx"))


def _load(spec: str) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        from aaren_rl.envs import load_dataset

        return load_dataset(ctx.fill(spec))

    return call


def _agent(ctx: Ctx, **kw: Any):
    from aaren_rl.agents import DecisionAgent

    return DecisionAgent.load(ctx.ckpt, **kw)


def _raise_interrupt(*args: Any, **kwargs: Any) -> Any:
    raise KeyboardInterrupt  # Ctrl-C in the middle of the work


def _must_not_run(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the work started although the input was bad")


# A bad input must be refused before the work starts: these raise if it starts anyway.
BEFORE_ANY_WORK = {
    "eval": ("aaren_rl.eval.rollout:run_episodes", _must_not_run),
    "collect": ("aaren_rl.collect.collect:Collector.train", _must_not_run),
}


def _raise_disk_full(path: Any, *args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _replace_dataset(ctx: Ctx) -> None:
    """The run's dataset file is replaced at the same path by other data."""
    sys.modules["tests.conftest"].make_hopper_like_hdf5(ctx.ds, seed=7)


FAST_EVAL = ("--checkpoint", "{ckpt}", "--episodes", "1", "--max-episode-steps", "3",
             "--no-progress")  # fmt: skip
TRAIN = ("--dataset", "d4rl:{ds}", "--steps", "2", "--model.dim", "16", "--model.num-layers",
         "1", "--eval-episodes", "0", "--no-progress", "--run-dir", "{tmp}/run-new")  # fmt: skip
COLLECT = ("--work-dir", "{tmp}/work", "--hdf5-dir", "{tmp}/h5", "--no-minari")

# ----------------------------------------------------------------------------- aaren-eval

EVAL = [
    Case(
        "eval",
        "checkpoint-missing",
        r"no checkpoint directory at {tmp}/nope",
        ("--checkpoint", "{tmp}/nope", "--no-progress"),
    ),
    Case(
        "eval",
        "checkpoint-is-a-file",
        r"no checkpoint directory at {file}",
        ("--checkpoint", "{file}", "--no-progress"),
    ),
    Case(
        "eval",
        "checkpoint-empty-dir",
        r"{tmp}/empty is not a complete checkpoint",
        ("--checkpoint", "{tmp}/empty", "--no-progress"),
        setup=lambda c: (c.tmp / "empty").mkdir(),
    ),
    Case(
        "eval",
        "agent-json-not-json",
        r"agent.json is corrupt",
        FAST_EVAL,
        setup=_write("{ckpt}/agent.json", "{not json"),
    ),
    Case(
        "eval",
        "agent-json-truncated",
        r"agent.json is corrupt",
        FAST_EVAL,
        setup=lambda c: (c.ckpt / "agent.json").write_text(
            (c.ckpt / "agent.json").read_text()[:50]
        ),
    ),
    Case(
        "eval",
        "agent-json-a-list",
        r"agent.json.*(JSON object|corrupt|lacks)",
        FAST_EVAL,
        setup=_write("{ckpt}/agent.json", "[1, 2, 3]"),
    ),
    Case(
        "eval",
        "agent-json-field-missing",
        r"lacks the field 'state_mean'",
        FAST_EVAL,
        setup=_edit_json("{ckpt}/agent.json", lambda d: d.pop("state_mean") and None),
    ),
    Case(
        "eval",
        "checkpoint-format-99",
        r"checkpoint format 99",
        FAST_EVAL,
        setup=_edit_json("{ckpt}/agent.json", lambda d: d.update(format=99)),
    ),
    Case(
        "eval",
        "weights-missing",
        r"not a complete checkpoint.*model.safetensors",
        FAST_EVAL,
        setup=lambda c: (c.ckpt / "model.safetensors").unlink(),
    ),
    Case(
        "eval",
        "weights-garbage",
        r"model.safetensors cannot be read.*corrupt",
        FAST_EVAL,
        setup=_write("{ckpt}/model.safetensors", "garbage"),
    ),
    Case(
        "eval",
        "weights-truncated",
        r"model.safetensors cannot be read.*corrupt",
        FAST_EVAL,
        setup=lambda c: (c.ckpt / "model.safetensors").write_bytes(
            (c.ckpt / "model.safetensors").read_bytes()[:300]
        ),
    ),
    Case("eval", "weights-nan", r"hold NaN or Inf.*diverged", FAST_EVAL, setup=_nan_weights),
    Case(
        "eval",
        "weights-other-size",
        r"weights do not match the model config",
        FAST_EVAL,
        setup=_edit_json("{ckpt}/agent.json", lambda d: d["model_config"]["net"].update(dim=32)),
    ),
    Case(
        "eval",
        "json-is-a-directory",
        r"--json {tmp}/outdir: that is a directory",
        (*FAST_EVAL, "--json", "{tmp}/outdir"),
        setup=lambda c: (c.tmp / "outdir").mkdir(),
    ),
    Case(
        "eval",
        "json-under-a-file",
        r"--json {file}/r.json: {file} is a file",
        (*FAST_EVAL, "--json", "{file}/r.json"),
    ),
    Case(
        "eval",
        "json-unwritable",
        r"--json /proc/aaren/r.json: cannot write into /proc",
        (*FAST_EVAL, "--json", "/proc/aaren/r.json"),
    ),
    Case(
        "eval",
        "target-return-nan",
        r"target return must be a finite number, got nan",
        (*FAST_EVAL, "--target-return", "nan"),
    ),
    Case(
        "eval",
        "target-return-inf",
        r"target return must be a finite number, got inf",
        (*FAST_EVAL, "--target-return", "3600", "inf"),
    ),
    Case(
        "eval",
        "context-length-0",
        r"context length must be an integer in \[1, 65536\], got 0",
        (*FAST_EVAL, "--mode", "window", "--context-length", "0"),
    ),
    Case(
        "eval",
        "context-length-negative",
        r"context length must be .*got -3",
        (*FAST_EVAL, "--mode", "window", "--context-length", "-3"),
    ),
    Case(
        "eval",
        "context-length-recurrent",
        r"--context-length is the window length",
        (*FAST_EVAL, "--context-length", "5"),
    ),
    Case("eval", "episodes-0", r"--episodes must be >= 1, got 0", (*FAST_EVAL, "--episodes", "0")),
    Case(
        "eval",
        "episodes-negative",
        r"--episodes must be >= 1, got -4",
        (*FAST_EVAL, "--episodes", "-4"),
    ),
    Case("eval", "num-envs-0", r"--num-envs must be >= 1, got 0", (*FAST_EVAL, "--num-envs", "0")),
    Case("eval", "threads-0", r"--threads must be >= 1, got 0", (*FAST_EVAL, "--threads", "0")),
    Case("eval", "seed-negative", r"--seed must be >= 0, got -1", (*FAST_EVAL, "--seed", "-1")),
    Case(
        "eval",
        "seed-too-large",
        r"--seed 4294967296: episode seeds must stay below 2\*\*32",
        (*FAST_EVAL, "--seed", str(2**32)),
    ),
    Case(
        "eval",
        "max-episode-steps-0",
        r"--max-episode-steps must be >= 1, got 0",
        (*FAST_EVAL, "--max-episode-steps", "0"),
    ),
    Case(
        "eval",
        "env-mismatch",
        r"--env walker2d \(Walker2d-v5\) does not match",
        (*FAST_EVAL, "--env", "walker2d"),
    ),
    Case(
        "eval",
        "env-unknown",
        r"Unknown environment 'NoSuchEnv-v0'",
        (*FAST_EVAL, "--env", "NoSuchEnv-v0"),
    ),
    Case(
        "eval",
        "no-policy",
        r"pass exactly one of --checkpoint DIR and --onnx FILE",
        ("--episodes", "1"),
    ),
    Case(
        "eval",
        "checkpoint-and-onnx",
        r"pass exactly one of --checkpoint",
        (*FAST_EVAL, "--onnx", "{tmp}/p.onnx"),
    ),
    Case(
        "eval",
        "onnx-missing",
        r"no ONNX file at {tmp}/p.onnx",
        ("--onnx", "{tmp}/p.onnx", "--no-progress"),
    ),
    Case(
        "eval",
        "onnx-garbage",
        r"{tmp}/p.onnx (cannot be loaded by onnxruntime|is not a readable ONNX model)",
        ("--onnx", "{tmp}/p.onnx", "--no-progress"),
        setup=_write("{tmp}/p.onnx", "garbage"),
    ),
    Case(
        "eval",
        "onnx-not-ours",
        r"plain.onnx has no aaren-rl metadata",
        ("--onnx", "{tmp}/plain.onnx", "--no-progress"),
        setup=_onnx_without_metadata,
    ),
    Case(
        "eval",
        "video-under-a-file",
        r"--video {file}/v: {file} is a file",
        (*FAST_EVAL, "--video", "{file}/v"),
    ),
    Case(
        "eval",
        "cuda-absent",
        r"--device cuda was asked for, but torch sees no CUDA device",
        (*FAST_EVAL, "--device", "cuda"),
    ),
    Case(
        "eval",
        "track-without-wandb",
        r"--track needs wandb: pip install",
        (*FAST_EVAL, "--track"),
        hide="wandb",
    ),
    Case(
        "eval", "unknown-flag", r"Unrecognized options: --nope", (*FAST_EVAL, "--nope"), usage=True
    ),
    Case(
        "eval",
        "episodes-not-a-number",
        r"--episodes",
        (*FAST_EVAL, "--episodes", "ten"),
        usage=True,
    ),
    Case("eval", "mode-unknown", r"--mode", (*FAST_EVAL, "--mode", "cache"), usage=True),
    Case(
        "eval",
        "interrupted",
        r"aaren-eval: interrupted",
        FAST_EVAL,
        code=130,
        patch=("aaren_rl.eval.rollout:run_episodes", _raise_interrupt),
    ),
    Case(
        "eval",
        "disk-full-writing-json",
        r"{tmp}/r.json: the disk is full",
        (*FAST_EVAL, "--json", "{tmp}/r.json"),
        code=1,
        patch=("aaren_rl.eval.cli:atomic_write_json", _raise_disk_full),
    ),
]

# ----------------------------------------------------------------------------- aaren-collect

COLLECT_CASES = [
    Case(
        "collect",
        "total-timesteps-0",
        r"--total-timesteps must be >= 1, got 0",
        (*COLLECT, "--total-timesteps", "0"),
    ),
    Case(
        "collect",
        "total-timesteps-negative",
        r"--total-timesteps must be >= 1, got -5",
        (*COLLECT, "--total-timesteps", "-5"),
    ),
    Case("collect", "eval-every-0", r"--eval-every must be >= 1", (*COLLECT, "--eval-every", "0")),
    Case(
        "collect",
        "eval-episodes-0",
        r"--eval-episodes must be >= 1",
        (*COLLECT, "--eval-episodes", "0"),
    ),
    Case(
        "collect", "transitions-0", r"--transitions must be >= 1", (*COLLECT, "--transitions", "0")
    ),
    Case(
        "collect",
        "medium-fraction-nan",
        r"--medium-fraction must be in \(0, 1\], got nan",
        (*COLLECT, "--medium-fraction", "nan"),
    ),
    Case(
        "collect",
        "medium-fraction-0",
        r"--medium-fraction must be in \(0, 1\], got 0",
        (*COLLECT, "--medium-fraction", "0"),
    ),
    Case(
        "collect",
        "medium-fraction-1.5",
        r"--medium-fraction must be in \(0, 1\], got 1.5",
        (*COLLECT, "--medium-fraction", "1.5"),
    ),
    Case("collect", "seed-negative", r"--seed must be >= 0, got -1", (*COLLECT, "--seed", "-1")),
    Case(
        "collect",
        "seed-too-large",
        r"--seed must be below 2\*\*31",
        (*COLLECT, "--seed", str(2**40)),
    ),
    Case("collect", "num-envs-0", r"--num-envs must be >= 1", (*COLLECT, "--num-envs", "0")),
    Case(
        "collect", "ppo-n-steps-1", r"--ppo-n-steps must be >= 2", (*COLLECT, "--ppo-n-steps", "1")
    ),
    Case(
        "collect",
        "rollout-envs-0",
        r"--rollout-envs must be >= 1",
        (*COLLECT, "--rollout-envs", "0"),
    ),
    Case("collect", "levels-empty", r"--levels is empty", (*COLLECT, "--levels")),
    Case("collect", "level-unknown", r"--levels", (*COLLECT, "--levels", "great"), usage=True),
    Case("collect", "algo-unknown", r"--algo", (*COLLECT, "--algo", "dqn"), usage=True),
    Case(
        "collect",
        "nothing-to-write",
        r"nothing to write: --no-minari without --hdf5-dir",
        ("--work-dir", "{tmp}/work", "--no-minari"),
    ),
    Case(
        "collect",
        "namespace-with-slash",
        r"--namespace 'a/b': give a plain name",
        ("--work-dir", "{tmp}/work", "--namespace", "a/b"),
    ),
    Case(
        "collect",
        "hdf5-dir-is-a-file",
        r"--hdf5-dir {file}: that is a file",
        ("--work-dir", "{tmp}/work", "--hdf5-dir", "{file}"),
    ),
    Case(
        "collect",
        "work-dir-is-a-file",
        r"--work-dir {file}: that is a file",
        ("--work-dir", "{file}", "--hdf5-dir", "{tmp}/h5"),
    ),
    Case(
        "collect",
        "work-dir-under-a-file",
        r"--work-dir {file}/w: {file} is a file",
        ("--work-dir", "{file}/w", "--hdf5-dir", "{tmp}/h5"),
    ),
    Case(
        "collect",
        "work-dir-unwritable",
        r"--work-dir /proc/aaren: cannot write into /proc",
        ("--work-dir", "/proc/aaren", "--hdf5-dir", "{tmp}/h5"),
    ),
    Case(
        "collect",
        "env-unknown",
        r"Unknown environment 'NoSuchEnv-v0'",
        (*COLLECT, "--env", "NoSuchEnv-v0"),
    ),
    Case(
        "collect",
        "env-not-box",
        r"Blackjack-v1 has a Tuple observation space.*Box",
        (*COLLECT, "--env", "Blackjack-v1"),
    ),
    Case(
        "collect",
        "work-dir-state-corrupt",
        r"{tmp}/work/state.json is corrupt",
        COLLECT,
        setup=_write("{tmp}/work/state.json", "{half"),
    ),
    Case(
        "collect",
        "work-dir-other-collection",
        r"{tmp}/work holds a collection with",
        COLLECT,
        setup=_write(
            "{tmp}/work/state.json",
            json.dumps(
                {
                    "key": {
                        "env": "walker2d",
                        "algo": "sac",
                        "seed": 3,
                        "num_envs": 1,
                        "ppo_n_steps": 512,
                    },
                    "checkpoints": [],
                    "chunks": [],
                    "segment": -1,
                    "timings": {},
                    "written": [],
                }
            ),
        ),
    ),  # fmt: skip
]

# ----------------------------------------------------------------------------- aaren-train

TRAIN_CASES = [
    Case(
        "train",
        "dataset-missing",
        r"{tmp}/nope.hdf5: file not found",
        (*TRAIN, "--dataset", "d4rl:{tmp}/nope.hdf5"),
    ),
    Case(
        "train",
        "dataset-is-a-directory",
        r"{tmp}/dsdir is a directory, not an HDF5 file",
        (*TRAIN, "--dataset", "d4rl:{tmp}/dsdir"),
        setup=lambda c: (c.tmp / "dsdir").mkdir(),
    ),
    Case(
        "train",
        "dataset-not-hdf5",
        r"{file}: not a readable HDF5 file",
        (*TRAIN, "--dataset", "d4rl:{file}"),
    ),
    Case(
        "train",
        "dataset-scheme-unknown",
        r"Unknown dataset spec 'foo:bar'",
        (*TRAIN, "--dataset", "foo:bar"),
    ),
    Case(
        "train",
        "dataset-nan",
        r"'observations' contains NaN/Inf",
        (*TRAIN, "--dataset", "d4rl:{tmp}/nan.hdf5"),
        setup=_dataset("nan.hdf5", observations=_poke("observations", 3, np.nan)),
    ),
    Case(
        "train",
        "dataset-no-episode-end",
        r"no complete episode",
        (*TRAIN, "--dataset", "d4rl:{tmp}/open.hdf5"),
        setup=_dataset("open.hdf5", terminals=lambda a: a & False, timeouts=lambda a: a & False),
    ),
    Case(
        "train",
        "dataset-actions-out-of-range",
        r"actions.*(outside|range|\[-1, 1\])",
        (*TRAIN, "--dataset", "d4rl:{tmp}/wide.hdf5"),
        setup=_dataset("wide.hdf5", actions=lambda a: a * 5),
    ),
    Case(
        "train",
        "env-mismatch",
        r"'observations' have dimension 11 but Walker2d-v5",
        (*TRAIN, "--env", "walker2d"),
    ),
    Case("train", "steps-0", r"--steps", (*TRAIN, "--steps", "0")),
    Case("train", "learning-rate-nan", r"--learning-rate", (*TRAIN, "--learning-rate", "nan")),
    Case(
        "train", "learning-rate-negative", r"--learning-rate", (*TRAIN, "--learning-rate", "-0.1")
    ),
    Case("train", "grad-clip-negative", r"--grad-clip", (*TRAIN, "--grad-clip", "-1")),
    Case("train", "seed-negative", r"--seed", (*TRAIN, "--seed", "-1")),
    Case("train", "seed-too-large", r"--seed", (*TRAIN, "--seed", str(2**40))),
    Case("train", "batch-size-0", r"--batch-size", (*TRAIN, "--batch-size", "0")),
    Case("train", "context-length-0", r"--context-length", (*TRAIN, "--context-length", "0")),
    Case("train", "return-scale-0", r"--return-scale", (*TRAIN, "--return-scale", "0")),
    Case("train", "target-return-nan", r"--target-return", (*TRAIN, "--target-return", "nan")),
    Case("train", "model-dim-0", r"dim", (*TRAIN, "--model.dim", "0"), usage=True),
    Case(
        "train",
        "model-heads-do-not-divide",
        r"num_heads|num-heads",
        (*TRAIN, "--model.num-heads", "3"),
        usage=True,
    ),
    Case("train", "model-dropout-1.5", r"dropout", (*TRAIN, "--model.dropout", "1.5"), usage=True),
    Case("train", "run-dir-is-a-file", r"--run-dir {file}", (*TRAIN, "--run-dir", "{file}")),
    Case("train", "run-dir-under-a-file", r"{file}", (*TRAIN, "--run-dir", "{file}/run")),
    Case("train", "resume-nothing-there", r"{tmp}/run-new", (*TRAIN, "--resume")),
    Case(
        "train",
        "resume-config-corrupt",
        r"{run}/config.json",
        ("--run-dir", "{run}", "--resume", "--no-progress"),
        needs_run=True,
        setup=_write("{run}/config.json", "{half a config"),
    ),
    Case(
        "train",
        "resume-trainer-state-truncated",
        r"{run}/checkpoint",
        ("--run-dir", "{run}", "--resume", "--no-progress"),
        needs_run=True,
        setup=lambda c: (c.run / "checkpoint" / "trainer.safetensors").write_bytes(
            (c.run / "checkpoint" / "trainer.safetensors").read_bytes()[:100]
        ),
    ),
    Case(
        "train",
        "resume-weights-garbage",
        r"{run}/checkpoint",
        ("--run-dir", "{run}", "--resume", "--no-progress"),
        needs_run=True,
        setup=_write("{run}/checkpoint/model.safetensors", "garbage"),
    ),
    Case(
        "train",
        "resume-dataset-replaced",
        r"dataset.*(changed|fingerprint|sha256)",
        ("--run-dir", "{run}", "--resume", "--steps", "6", "--no-progress"),
        needs_run=True,
        setup=_replace_dataset,
    ),
    Case(
        "train",
        "resume-fewer-steps",
        r"--steps",
        ("--run-dir", "{run}", "--resume", "--steps", "2", "--no-progress"),
        needs_run=True,
    ),
    Case("train", "unknown-flag", r"Unrecognized options: --nope", (*TRAIN, "--nope"), usage=True),
]


# ----------------------------------------------------------------------------- aaren-export

EXPORT_CASES = [
    Case(
        "export",
        "checkpoint-missing",
        r"no checkpoint directory at {tmp}/nope",
        ("--checkpoint", "{tmp}/nope", "--out", "{tmp}/p.onnx"),
    ),
    Case(
        "export",
        "checkpoint-corrupt",
        r"agent.json is corrupt",
        ("--checkpoint", "{ckpt}", "--out", "{tmp}/p.onnx"),
        setup=_write("{ckpt}/agent.json", "{not json"),
    ),
    Case(
        "export",
        "weights-nan",
        r"NaN",
        ("--checkpoint", "{ckpt}", "--out", "{tmp}/p.onnx"),
        setup=_nan_weights,
    ),
    Case(
        "export",
        "out-is-a-directory-holding-another-policy-onnx",
        r"--out {tmp}/outdir/policy.onnx: the file exists and this command did not write it",
        ("--checkpoint", "{ckpt}", "--out", "{tmp}/outdir"),
        setup=_write("{tmp}/outdir/policy.onnx", "someone else's file\n"),
    ),
    Case(
        "export",
        "out-under-a-file",
        r"{file}",
        ("--checkpoint", "{ckpt}", "--out", "{file}/p.onnx"),
    ),
    Case(
        "export",
        "opset-5",
        r"--opset",
        ("--checkpoint", "{ckpt}", "--out", "{tmp}/p.onnx", "--opset", "5"),
    ),
    Case(
        "export",
        "target-return-nan",
        r"target.return",
        ("--checkpoint", "{ckpt}", "--out", "{tmp}/p.onnx", "--target-return", "nan"),
    ),
    Case(
        "export",
        "unknown-flag",
        r"Unrecognized options: --nope",
        ("--checkpoint", "{ckpt}", "--nope"),
        usage=True,
    ),
    Case(
        "export",
        "checkpoint-is-a-file",
        r"no checkpoint directory at {file}",
        ("--checkpoint", "{file}", "--out", "{tmp}/p.onnx"),
    ),
    Case(
        "export",
        "weights-garbage",
        r"model.safetensors cannot be read",
        ("--checkpoint", "{ckpt}", "--out", "{tmp}/p.onnx"),
        setup=_write("{ckpt}/model.safetensors", "garbage"),
    ),
    Case(
        "export",
        "out-unwritable",
        r"/proc/aaren/p.onnx",
        ("--checkpoint", "{ckpt}", "--out", "/proc/aaren/p.onnx"),
    ),
    Case(
        "export",
        "opset-99",
        r"--opset",
        ("--checkpoint", "{ckpt}", "--out", "{tmp}/p.onnx", "--opset", "99"),
    ),
    Case(
        "export",
        "target-return-inf",
        r"target.return",
        ("--checkpoint", "{ckpt}", "--out", "{tmp}/p.onnx", "--target-return", "inf"),
    ),
]

# ----------------------------------------------------------------------------- aaren-bench

BENCH_CASES = [
    Case("bench", "no-subcommand", r"(required|subcommand|act)", (), usage=True),
    Case("bench", "unknown-subcommand", r"nope", ("nope",), usage=True),
    Case(
        "bench",
        "act-unknown-agent",
        r"unknown agents?.*nope",
        ("act", "--agents", "nope", "--steps", "2", "--out", "{tmp}/b"),
        usage=True,
    ),
    Case(
        "bench",
        "act-steps-0",
        r"steps.*must\s+be >= 1",
        ("act", "--steps", "0", "--out", "{tmp}/b"),
        usage=True,
    ),
    Case("bench", "act-out-is-a-file", r"{file}", ("act", "--steps", "2", "--out", "{file}")),
    Case(
        "bench", "act-out-under-a-file", r"{file}/b", ("act", "--steps", "2", "--out", "{file}/b")
    ),
    Case(
        "bench",
        "act-checkpoint-missing",
        r"no checkpoint directory at {tmp}/nope",
        (
            "act",
            "--steps",
            "2",
            "--checkpoint-aaren",
            "{tmp}/nope",
            "--checkpoint-transformer",
            "{ckpt}",
            "--out",
            "{tmp}/b",
        ),
    ),
    Case("bench", "datasets-root-missing", r"{tmp}/nope", ("datasets", "--root", "{tmp}/nope")),
    Case(
        "bench",
        "train-context-length-0",
        r"--context-lengths \(0,\) and --batch-sizes",
        ("train", "--context-lengths", "0", "--batch-sizes", "4", "--out", "{tmp}/b"),
        usage=True,
    ),
    Case(
        "bench",
        "train-lengths-differ",
        r"context_lengths \(4,\) and batch_sizes \(64, 4\)",
        ("train", "--context-lengths", "4", "--out", "{tmp}/b"),
        usage=True,
    ),
    Case(
        "bench",
        "returns-dataset-missing",
        r"{tmp}/nope.hdf5",
        ("returns", "--datasets", "d4rl:{tmp}/nope.hdf5", "--out-dir", "{tmp}/b"),
    ),
    Case(
        "bench",
        "scan-repeats-0",
        r"--repeats must be >= 1",
        ("scan", "--repeats", "0", "--out", "{tmp}/b"),
        usage=True,
    ),
]

# ----------------------------------------------------------------------------- the Python API


def _predict(obs: Any, **kw: Any) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        agent = _agent(ctx)
        agent.reset(2)
        return agent.predict(np.asarray(obs, dtype=np.float64), **kw)

    return call


def _evaluate(episodes: int = 1, **kw: Any) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        from aaren_rl.eval.rollout import evaluate

        return evaluate(_agent(ctx), kw.pop("env", "hopper"), episodes, max_episode_steps=2, **kw)

    return call


def _api(name: str, message: str, call: Callable[[Ctx], Any], **kw: Any) -> Case:
    return Case("api", name, message, call=call, **kw)


def _fileio(fn: str, *args: str) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        import aaren_rl.fileio as fileio

        return getattr(fileio, fn)(*(ctx.fill(a) for a in args))

    return call


def _wandb_probe(ctx: Ctx) -> None:
    from aaren_rl.tracking import wandb_online_possible

    ok, why = wandb_online_possible(timeout=1.0)
    assert not ok
    print(f"W&B offline: {why}")


API_CASES = [
    # datasets
    _api("dataset-spec-empty", r"Expected a dataset spec string", _load("  ")),
    _api("dataset-spec-unknown", r"Unknown dataset spec 'hopper'", _load("hopper")),
    _api("dataset-missing", r"{tmp}/nope.hdf5: file not found", _load("d4rl:{tmp}/nope.hdf5")),
    _api("dataset-directory", r"{tmp} is a directory, not an HDF5 file", _load("d4rl:{tmp}")),
    _api("dataset-not-hdf5", r"{file}: not a readable HDF5 file", _load("d4rl:{file}")),
    _api(
        "dataset-key-missing",
        r"missing HDF5 key\(s\) \['timeouts'\]",
        _load("d4rl:{tmp}/x.hdf5"),
        setup=_dataset("x.hdf5", timeouts=None),
    ),
    _api(
        "dataset-lengths-differ",
        r"different lengths.*'actions': 13",
        _load("d4rl:{tmp}/x.hdf5"),
        setup=_dataset("x.hdf5", actions=lambda a: a[:-2]),
    ),
    _api(
        "dataset-obs-nan",
        r"'observations' contains NaN/Inf.*index \(4",
        _load("d4rl:{tmp}/x.hdf5"),
        setup=_dataset("x.hdf5", observations=_poke("observations", 4, np.nan)),
    ),
    _api(
        "dataset-rewards-inf",
        r"'rewards' contains NaN/Inf",
        _load("d4rl:{tmp}/x.hdf5"),
        setup=_dataset("x.hdf5", rewards=_poke("rewards", 2, np.inf)),
    ),
    _api(
        "dataset-obs-3d",
        r"'observations' must be (1-D or )?2-D",
        _load("d4rl:{tmp}/x.hdf5"),
        setup=_dataset("x.hdf5", observations=lambda a: a[:, :, None]),
    ),
    _api(
        "dataset-empty",
        r"(empty|0 transitions)",
        _load("d4rl:{tmp}/x.hdf5"),
        setup=_dataset(
            "x.hdf5",
            **{
                k: (lambda a: a[:0])
                for k in (
                    "observations",
                    "actions",
                    "rewards",
                    "terminals",
                    "timeouts",
                    "next_observations",
                )
            },
        ),
    ),  # fmt: skip
    _api(
        "dataset-no-episode-end",
        r"no complete episode",
        _load("d4rl:{tmp}/x.hdf5"),
        setup=_dataset("x.hdf5", terminals=lambda a: a & False, timeouts=lambda a: a & False),
    ),
    _api(
        "dataset-dims-vs-recorded-env",
        r"'observations' have dimension 5 but Hopper-v5",
        _load("d4rl:{tmp}/x.hdf5"),
        setup=_dataset("x.hdf5", observations=lambda a: a[:, :5]),
    ),
    _api(
        "minari-missing-offline",
        r"'aaren/nope-v0' not found locally",
        _load("minari:aaren/nope-v0"),
    ),
    _api(
        "minari-download-offline",
        r"not reachable",
        lambda c: __import__("aaren_rl.envs", fromlist=["x"]).load_dataset(
            "minari:aaren/nope-v0", download=True
        ),
    ),
    _api(
        "dataset-vs-env",
        r"'observations' have dimension 11 but Walker2d-v5",
        lambda c: __import__("aaren_rl.envs", fromlist=["x"]).check_dataset_matches_env(
            _load("d4rl:{ds}")(c), "walker2d"
        ),
    ),
    _api(
        "env-unknown",
        r"Unknown environment 'NoSuchEnv-v0'",
        lambda c: __import__("aaren_rl.envs", fromlist=["x"]).make_env("NoSuchEnv-v0"),
    ),
    _api(
        "env-not-a-string",
        r"Expected an env name or Gymnasium id, got None",
        lambda c: __import__("aaren_rl.envs", fromlist=["x"]).get_env_spec(None),
    ),
    # checkpoints and agents
    _api(
        "checkpoint-missing",
        r"no checkpoint directory at {tmp}/nope",
        lambda c: __import__("aaren_rl.agents", fromlist=["x"]).DecisionAgent.load(c.tmp / "nope"),
    ),
    _api(
        "load-target-nan",
        r"target return must be a finite number",
        lambda c: _agent(c, target_return=float("nan")),
    ),
    _api(
        "load-context-0",
        r"context length must be an integer in \[1, 65536\], got 0",
        lambda c: _agent(c, mode="window", context_length=0),
    ),
    _api("load-mode-unknown", r"unknown mode 'cache'", lambda c: _agent(c, mode="cache")),
    _api("load-nan-weights", r"NaN or Inf", lambda c: _agent(c), setup=_nan_weights),
    _api(
        "predict-obs-shape",
        r"obs has shape \(3, 11\), expected \(2, 11\)",
        _predict(np.zeros((3, 11))),
    ),
    _api("predict-obs-nan", r"obs contains NaN or Inf", _predict(np.full((2, 11), np.nan))),
    _api(
        "predict-reward-shape",
        r"reward and episode_start must have shape \(2,\)",
        _predict(np.zeros((2, 11)), reward=np.zeros(5)),
    ),
    _api(
        "reset-0-envs",
        r"num_envs must be a whole number in \[1, 65536\], got 0",
        lambda c: _agent(c).reset(0),
    ),
    _api(
        "onnx-missing",
        r"no ONNX file at {tmp}/p.onnx",
        lambda c: __import__("aaren_rl.agents.onnx_agent", fromlist=["x"]).OnnxAgent(
            c.tmp / "p.onnx"
        ),
    ),
    _api(
        "onnx-garbage",
        r"{file} (cannot be loaded by onnxruntime|is not a readable ONNX model)",
        lambda c: __import__("aaren_rl.agents.onnx_agent", fromlist=["x"]).OnnxAgent(c.file),
    ),
    # evaluation
    _api("evaluate-0-episodes", r"episodes must be >= 1 and <= 10000000, got 0", _evaluate(0)),
    _api(
        "evaluate-target-nan",
        r"target return must be a finite number",
        _evaluate(target_return=float("nan")),
    ),
    _api(
        "evaluate-wrong-env",
        r"Walker2d-v5 has observations of shape \(17,\)",
        _evaluate(env="walker2d"),
    ),
    _api(
        "evaluate-nan-actions",
        r"NaN or Inf actions",
        lambda c: __import__("aaren_rl.eval.rollout", fromlist=["x"]).evaluate(
            _NanAgent(), "hopper", 1, max_episode_steps=2
        ),
    ),
    # output paths and file writes
    _api(
        "output-file-is-a-dir",
        r"--out {tmp}: that is a directory",
        _fileio("check_output_file", "{tmp}", "--out"),
    ),
    _api(
        "output-dir-is-a-file",
        r"--out {file}: that is a file",
        _fileio("check_output_dir", "{file}", "--out"),
    ),
    _api(
        "atomic-write-under-a-file",
        r"{file}/x.txt: a part of that path is a file",
        code=1,
        call=_fileio("atomic_write_text", "{file}/x.txt", "data"),
    ),
    # W&B without network or wandb
    _api(
        "wandb-no-credentials",
        r"W&B offline: no W&B credentials",
        _wandb_probe,
        code=0,
        env=(("WANDB_MODE", ""), ("WANDB_API_KEY", ""), ("HOME", "{tmp}")),
    ),
    _api(
        "wandb-host-unreachable",
        r"W&B offline: 127.0.0.1:9 unreachable",
        _wandb_probe,
        code=0,
        env=(
            ("WANDB_MODE", ""),
            ("WANDB_API_KEY", "x" * 40),
            ("WANDB_BASE_URL", "http://127.0.0.1:9"),
        ),
    ),
    _api(
        "wandb-not-installed",
        r"--track needs Weights & Biases: pip install",
        lambda c: __import__("aaren_rl.tracking", fromlist=["x"]).WandbTracker(
            {}, c.tmp, "n", "p", None, None
        ),
        hide="wandb",
    ),
]


# ----------------------------------------------------------------------------- aaren-bench sweep
# Every integer flag of every subcommand, fed zero (where 0 means nothing), a negative and a
# huge value; then the cases the rules were written for. The subcommands' required flags get
# placeholders: the numbers are checked before anything is read.

_BENCH_REQUIRED = {
    "attention": ("--checkpoint", "{ckpt}", "--dataset", "d4rl:{ds}"),
    "horizon": ("--checkpoints", "{ckpt}"),
    "online": ("--checkpoints", "{ckpt}"),
}


def _int_fields(cls: type) -> list[str]:
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if hint is int or args == [int] or (typing.get_origin(hint) is tuple and int in args):
            out.append(f.name)
    return out


def _bench_sweep() -> list[Case]:
    from aaren_rl.bench.arguments import MAY_BE_ZERO
    from aaren_rl.bench.cli import BENCHMARKS

    cases = []
    for sub, (cls, _) in BENCHMARKS.items():
        base = (sub, *_BENCH_REQUIRED.get(sub, ()))
        fields = cls.__dataclass_fields__
        base += ("--out", "{tmp}/b") if "out" in fields else ()
        base += ("--out-dir", "{tmp}/b") if "out_dir" in fields else ()
        for name in _int_fields(cls):
            flag = "--" + name.replace("_", "-")
            bad = [("negative", "-1"), ("huge", str(10**12))]
            bad += [] if name in MAY_BE_ZERO else [("zero", "0")]
            pair = {
                "context_lengths": ("--batch-sizes", "4"),  # one batch size per K
                "batch_sizes": ("--context-lengths", "20"),
            }.get(name, ())
            named = name.replace("_", "[-_]")  # tyro's box may name the field, not the flag
            for kind, value in bad:
                cases.append(
                    Case(
                        "bench",
                        f"{sub}-{name}-{kind}",
                        named,
                        (*base, *pair, flag, value),
                        usage=True,
                    )
                )
    return cases


BENCH_SWEEP = [
    *_bench_sweep(),
    Case("bench", "train-backbone-unknown", r"--backbones 'foo': choose from aaren, transformer",
         ("train", "--backbones", "foo", "--out", "{tmp}/b")),
    Case("bench", "returns-datasets-empty", r"--datasets was given no values",
         ("returns", "--datasets", "--out-dir", "{tmp}/b")),
    Case("bench", "scan-lengths-1e11", r"--lengths 100000000000 is too large",
         ("scan", "--lengths", "100000000000", "--out", "{tmp}/b")),
    Case("bench", "scan-lengths-1e11-as-float", r"--lengths", ("scan", "--lengths", "1e11"),
         usage=True),
    Case("bench", "act-threads-0-one-line", r"--threads must be >= 1, got 0",
         ("act", "--threads", "0", "--out", "{tmp}/b")),
    Case("bench", "returns-seeds-negative-before-work", r"--seeds must be >= 0, got -1",
         ("returns", "--seeds", "-1", "--out-dir", "{tmp}/b")),
]  # fmt: skip


# ----------------------------------------------------------------------------- values, API
# Every argument of the acting API fed a wrong type, zero, a negative, a huge, a NaN/Inf or a
# non-real value; checkpoint sizes that would make the allocator fail; the acting rules the
# CLI and the API share; a target return so large that the model computes NaN.


def _acted(ctx: Ctx, obs: Any = None, reward: Any = None) -> Any:
    agent = _agent(ctx)
    agent.reset(1)
    agent.predict(np.zeros((1, 11)))
    return agent.predict(np.zeros((1, 11)) if obs is None else obs, reward)


def _evaluate_with(agent: Callable[[Ctx], Any] | None = None, **kw: Any) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx) -> Any:
        from aaren_rl.eval.rollout import evaluate

        args = {"episodes": 1, "max_episode_steps": 2, **kw}
        return evaluate(_agent(ctx) if agent is None else agent(ctx), "hopper", **args)

    return call


def _tf_checkpoint(ctx: Ctx) -> None:
    sys.modules["tests.conftest"].tiny_agent("transformer").save(ctx.tmp / "tf")


def _model_config(**change: Any) -> Callable[[Ctx], None]:
    return _edit_json("{ckpt}/agent.json", lambda d: d["model_config"].update(change))


def _net_config(**change: Any) -> Callable[[Ctx], None]:
    return _edit_json("{ckpt}/agent.json", lambda d: d["model_config"]["net"].update(change))


_NUM_ENVS = r"num_envs must be a whole number in \[1, 65536\], got "
_NO_WORK = ("aaren_rl.eval.rollout:MAX_EPISODES", 10**7)  # a no-op patch: episodes may run
VALUE_CASES = [
    *(_api(f"reset-{name}", _NUM_ENVS + re.escape(repr(v)), lambda c, v=v: _agent(c).reset(v))
      for name, v in [("1.5", 1.5), ("str", "2"), ("1e12", 10**12), ("0", 0), ("-1", -1),
                      ("true", True), ("none", None)]),
    _api("predict-strings", r"obs must hold real numbers, got dtype <U1",
         lambda c: _acted(c, np.full((1, 11), "x"))),
    _api("predict-complex", r"obs must hold real numbers, got dtype complex128",
         lambda c: _acted(c, np.ones((1, 11)) * 1j)),
    _api("predict-3e38", r"(overflow float32 once normalised|actions are NaN or Inf for obs up "
         r"to 3e\+38)", lambda c: _acted(c, np.full((1, 11), 3e38))),
    _api("predict-1e39", r"obs holds values beyond the range of float32",
         lambda c: _acted(c, np.full((1, 11), 1e39))),
    _api("predict-ragged", r"obs (is not an array of numbers|must hold real numbers)",
         lambda c: _acted(c, [[1.0, 2.0], [3.0]])),
    _api("predict-reward-inf", r"reward contains NaN or Inf", lambda c: _acted(c, None, [np.inf])),
    _api("predict-reward-nan", r"reward contains NaN or Inf", lambda c: _acted(c, None, [np.nan])),
    _api("predict-reward-string", r"reward must hold real numbers",
         lambda c: _acted(c, None, ["a"])),
    _api("load-an-int", r"directory must be a checkpoint folder path .*got 42",
         lambda c: __import__("aaren_rl.agents", fromlist=["x"]).DecisionAgent.load(42)),
    _api("load-device-unknown", r"device='nope' is not a torch device",
         lambda c: _agent(c, device="nope")),
    *([] if __import__("torch").cuda.is_available() else [
        _api("load-device-cuda-without-gpu", r"device='cuda': torch sees no CUDA device",
             lambda c: _agent(c, device="cuda"))]),
    _api("load-context-length-in-recurrent-mode", r"context_length is the window length of "
         r"mode='window'", lambda c: _agent(c, context_length=5)),
    _api("load-context-length-1e12", r"context length must be an integer in \[1, 65536\]",
         lambda c: _agent(c, mode="window", context_length=10**12)),
    _api("load-memory-horizon-in-window-mode", r"memory_horizon applies to a checkpoint acting "
         r"with mode= recurrent", lambda c: _agent(c, mode="window", memory_horizon=5)),
    _api("load-memory-horizon-for-a-transformer", r"memory_horizon is for Aaren checkpoints",
         lambda c: __import__("aaren_rl.agents", fromlist=["x"]).DecisionAgent.load(
             c.tmp / "tf", memory_horizon=5), setup=_tf_checkpoint),
    _api("load-state-std-0", r"state_std\[0\] is 0.0: observations are divided by state_std",
         lambda c: _agent(c), setup=_edit_json("{ckpt}/agent.json",
                                                 lambda d: d["state_std"].__setitem__(0, 0.0))),
    _api("load-checkpoint-context-length-1e12", r"(context length must be an integer in|context_length = 1000000000000 is outside)",
         lambda c: _agent(c, mode="window"),
         setup=_edit_json("{ckpt}/agent.json", lambda d: d.update(context_length=10**12))),
    _api("load-checkpoint-chunk-size-0", r"chunk_size must be in \[1, ", lambda c: _agent(c),
         setup=_net_config(chunk_size=0)),
    _api("load-checkpoint-dim-1e9", r"(model_config has a size above|dim must be in)", lambda c: _agent(c),
         setup=_net_config(dim=10**9)),
    _api("load-checkpoint-max-timestep-1e12", r"(model_config has a size above|max_timestep must be at most)",
         lambda c: _agent(c), setup=_model_config(max_timestep=10**12)),
    _api("load-checkpoint-obs-dim-1e12", r"(model_config has a size above|obs_dim must be at most)", lambda c: _agent(c),
         setup=_model_config(obs_dim=10**12)),
    _api("evaluate-seed-negative", r"seed must be >= 0", _evaluate_with(seed=-1)),
    _api("evaluate-seed-float", r"seed must be a whole number, got 0.5", _evaluate_with(seed=0.5)),
    _api("evaluate-episodes-1.5", r"episodes must be a whole number, got 1.5",
         _evaluate_with(episodes=1.5)),
    _api("evaluate-episodes-1e12", r"episodes must be >= 1 and <= 10000000",
         _evaluate_with(episodes=10**12)),
    _api("evaluate-num-envs-0", r"num_envs must be >= 1", _evaluate_with(num_envs=0)),
    _api("evaluate-num-envs-1e9", r"num_envs must be >= 1 and <= 65536",
         _evaluate_with(num_envs=10**9)),
    _api("evaluate-max-steps-string", r"max_episode_steps must be a whole number",
         _evaluate_with(max_episode_steps="3")),
    _api("evaluate-an-object", r"agent must have reset\(num_envs\) and predict",
         _evaluate_with(agent=lambda c: object())),
    Case("eval", "context-length-1e9", r"context length must be an integer in \[1, 65536\]",
         (*FAST_EVAL, "--mode", "window", "--context-length", "1000000000")),
    Case("eval", "checkpoint-state-std-0", r"state_std\[0\] is 0.0", FAST_EVAL,
         setup=_edit_json("{ckpt}/agent.json", lambda d: d["state_std"].__setitem__(0, 0.0))),
    Case("eval", "checkpoint-context-length-1e12", r"(context length must be an integer in|context_length = 1000000000000 is outside)",
         (*FAST_EVAL, "--mode", "window"),
         setup=_edit_json("{ckpt}/agent.json", lambda d: d.update(context_length=10**12))),
    Case("eval", "checkpoint-chunk-size-0", r"chunk_size must be in \[1, ", FAST_EVAL,
         setup=_net_config(chunk_size=0)),
    Case("eval", "target-return-1e30-is-named", r"target return 1e\+30.*inputs far outside|"
         r"target return 1e\+30 is 1e\+27", (*FAST_EVAL, "--target-return", "1e30"),
         patch=_NO_WORK),
    Case("export", "target-return-1e30-is-named", r"--target-return target return 1e\+30 is "
         r"1e\+27 after the return scale 1000", ("--checkpoint", "{ckpt}", "--out",
                                                   "{tmp}/p.onnx", "--target-return", "1e30")),
    Case("collect", "datasets-larger-than-the-disk",
         r"{tmp}/h5: the disk is full.*--hdf5-dir: the datasets needs about [\d,]+ MiB, "
         r"[\d,]+ MiB free", (*COLLECT, "--transitions", str(10**12)), code=1,
         patch=BEFORE_ANY_WORK["collect"]),
    Case("collect", "env-pendulum-actions-outside-tanh",
         r"--env Pendulum-v1: Pendulum-v1's actions span \[-2, 2\], outside the \[-1, 1\]",
         ("--env", "Pendulum-v1", *COLLECT)),
    Case("collect", "env-cartpole-discrete", r"--env CartPole-v1: CartPole-v1 has Discrete "
         "actions", ("--env", "CartPole-v1", *COLLECT)),
    *(Case("collect", f"namespace-{name}", r"--namespace .*: give a plain name",
           ("--work-dir", "{tmp}/work", "--namespace", value))
      for name, value in [("space", "has space"), ("empty", ""), ("slash", "a/b"),
                          ("dot", ".hidden"), ("unicode", "dätä")]),
    Case("train", "memory-horizon-for-a-transformer", r"--memory-horizon is for --backbone aaren",
         (*TRAIN, "--backbone", "transformer", "--memory-horizon", "5")),
]  # fmt: skip


# ----------------------------------------------------------------------------- outputs
# The one overwrite rule (aaren_rl.fileio.check_output_file): never an input of the same
# command, never a symlink or special file, never an existing file this command did not write
# (unless --overwrite). Generated per output flag and per kind of thing already at the path.


def _symlink(link: str, target: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        Path(ctx.fill(link)).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(ctx.fill(target), ctx.fill(link))

    return setup


def _hardlink(link: str, target: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        Path(ctx.fill(link)).parent.mkdir(parents=True, exist_ok=True)
        os.link(ctx.fill(target), ctx.fill(link))

    return setup


def _fifo(path: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        Path(ctx.fill(path)).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(ctx.fill(path))

    return setup


def _device(path: str) -> Callable[[Ctx], None]:
    """A character device (/dev/null's numbers) at ``path``; skipped where mknod is denied."""

    def setup(ctx: Ctx) -> None:
        import stat

        Path(ctx.fill(path)).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mknod(ctx.fill(path), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except OSError as e:
            pytest.skip(f"cannot make a device node here: {e}")

    return setup


_IS_INPUT = r": that file belongs to {ckpt}, an input of this command"
_LINK = r": that is a symbolic link"
_SPECIAL = r": that is a special file"
_NOT_OURS = r": the file exists and this command did not write it; pass --overwrite"


def _output_cases(cli: str, base: tuple[str, ...], flag: str, out: str) -> list[Case]:
    """One case per thing that may already be at an output path ``out`` of ``cli``."""
    at = lambda what: (*base, flag, what)  # noqa: E731
    return [
        Case(cli, f"{flag[2:]}-onto-an-unrelated-file", flag + r" {file}" + _NOT_OURS,
             at("{file}")),
        Case(cli, f"{flag[2:]}-onto-a-symlink", _LINK, at(out), setup=_symlink(out, "{file}")),
        Case(cli, f"{flag[2:]}-onto-a-dangling-symlink", _LINK, at(out),
             setup=_symlink(out, "{tmp}/nowhere")),
        Case(cli, f"{flag[2:]}-onto-a-fifo", _SPECIAL, at(out), setup=_fifo(out)),
        Case(cli, f"{flag[2:]}-onto-a-device", _SPECIAL, at(out), setup=_device(out)),
        Case(cli, f"{flag[2:]}-onto-a-read-only-file", r"read-only|did not write", at(out),
             setup=lambda c, o=out: (_write(o, "x\n")(c), os.chmod(c.fill(o), 0o444))[0]),
    ]  # fmt: skip


def _onto_checkpoint(cli: str, base: tuple[str, ...], flag: str) -> list[Case]:
    """``flag`` onto the files of the checkpoint the command reads (never, even --overwrite)."""
    at = lambda what: (*base, flag, what)  # noqa: E731
    return [
        Case(cli, f"{flag[2:]}-onto-checkpoint-weights", _IS_INPUT,
             at("{ckpt}/model.safetensors")),
        Case(cli, f"{flag[2:]}-onto-checkpoint-agent-json", _IS_INPUT, at("{ckpt}/agent.json")),
        Case(cli, f"{flag[2:]}-onto-checkpoint-weights-with-overwrite", _IS_INPUT,
             (*at("{ckpt}/model.safetensors"), "--overwrite")),
        Case(cli, f"{flag[2:]}-onto-a-hard-link-to-the-weights",
             r"that is {ckpt}/model.safetensors, an input", at("{tmp}/w.out"),
             setup=_hardlink("{tmp}/w.out", "{ckpt}/model.safetensors")),
        Case(cli, f"{flag[2:]}-onto-a-symlink-to-agent-json", _LINK, at("{tmp}/a.out"),
             setup=_symlink("{tmp}/a.out", "{ckpt}/agent.json")),
    ]  # fmt: skip


def _written_with(transitions: int) -> Callable[[Ctx], None]:
    """A work dir whose state.json says it wrote hopper-random.hdf5 with other settings."""

    def setup(ctx: Ctx) -> None:
        key = {"env": "hopper", "algo": "ppo", "seed": 0, "num_envs": 4, "ppo_n_steps": 512}
        target = str(ctx.tmp / "h5" / "hopper-random.hdf5")
        recipe = f"aaren-collect --env hopper ... --transitions {transitions} --seed 0"
        state = {"key": key, "checkpoints": [], "chunks": [], "segment": -1, "timings": {},
                 "written": [["hdf5", target, recipe]]}  # fmt: skip
        _write("{tmp}/work/state.json", json.dumps(state))(ctx)
        _write("{tmp}/h5/hopper-random.hdf5", "old data\n")(ctx)

    return setup


def _huge_rewards(ctx: Ctx) -> None:
    """The tiny dataset with rewards x 1e37: returns-to-go overflow float32 to inf."""
    _dataset("huge.hdf5", rewards=lambda r: r * np.float32(1e37))(ctx)


NON_FINITE_LOSS = Case(
    "train", "rewards-1e37-non-finite-loss",
    r"step 1: the training loss is (nan|inf).*not a finite number.*no checkpoint was written.*"
    r"--return-scale",
    ("--dataset", "d4rl:{tmp}/huge.hdf5", *TRAIN[2:], "--memory-horizon", "0"),
    setup=_huge_rewards,  # 3 episodes: none to hold out for the offline horizon choice
    created_ok=("run-new",),  # the run directory (config.json, metrics.jsonl), no checkpoint
)  # fmt: skip


_EXPORT = ("--checkpoint", "{ckpt}", "--no-verify")
_H5 = "{tmp}/h5/hopper-random.hdf5"
OUTPUT_CASES = [
    NON_FINITE_LOSS,
    *_output_cases("eval", FAST_EVAL, "--json", "{tmp}/r.json"),
    *_onto_checkpoint("eval", FAST_EVAL, "--json"),
    *_output_cases("export", _EXPORT, "--out", "{tmp}/p.onnx"),
    *_onto_checkpoint("export", _EXPORT, "--out"),
    Case("eval", "json-onto-the-onnx-it-evaluates", r"--json {tmp}/plain.onnx: that is "
         r"{tmp}/plain.onnx, an input of this command", ("--onnx", "{tmp}/plain.onnx", "--json",
         "{tmp}/plain.onnx", "--no-progress"), setup=_onnx_without_metadata),
    Case("export", "out-into-a-directory-holding-a-symlink", _LINK,
         (*_EXPORT, "--out", "{tmp}/d/"), setup=_symlink("{tmp}/d/policy.onnx", "{file}")),
    Case("collect", "hdf5-onto-an-unrelated-file", r"--hdf5-dir .*hopper-random.hdf5" + _NOT_OURS,
         COLLECT, setup=_write(_H5, "not a dataset\n")),
    Case("collect", "hdf5-onto-a-symlink", _LINK, COLLECT, setup=_symlink(_H5, "{file}")),
    Case("collect", "hdf5-onto-a-fifo", _SPECIAL, COLLECT, setup=_fifo(_H5)),
    Case("collect", "hdf5-written-with-other-transitions",
         r"hopper-random.hdf5 was written by this work dir with other settings .*--transitions "
         r"1000.*pass --overwrite", COLLECT, setup=_written_with(1000)),
    Case("collect", "minari-dataset-exists",
         r"Minari dataset aaren/hopper-random-v0 already exists .*did not write it",
         ("--work-dir", "{tmp}/work", "--levels", "random"),
         setup=lambda c: (c.tmp / "minari/aaren/hopper-random-v0").mkdir(parents=True),
         env=(("MINARI_DATASETS_PATH", "{tmp}/minari"),)),
]  # fmt: skip


class _NanAgent:
    def reset(self, num_envs: int = 1) -> None:
        self.n = num_envs

    def predict(self, obs, reward=None, episode_start=None):
        return np.full((self.n, 3), np.nan, dtype=np.float32)


CASES = (EVAL + COLLECT_CASES + TRAIN_CASES + EXPORT_CASES + BENCH_CASES + API_CASES
         + OUTPUT_CASES + BENCH_SWEEP + VALUE_CASES)  # fmt: skip


def _params(cases: list[Case]) -> list[Any]:
    out = []
    for c in cases:
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        out.append(pytest.param(c, id=f"{c.cli}:{c.name}", marks=marks))
    return out


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_input(
    case: Case,
    ctx: Ctx,
    pristine: dict[str, Path],
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if case.needs_run:
        ctx.run = Path(shutil.copytree(_tiny_run(pristine), ctx.tmp / "run"))
    if case.setup is not None:
        case.setup(ctx)
    patch = case.patch or BEFORE_ANY_WORK.get(case.cli) if case.code == 2 else case.patch
    if patch is not None:
        module, name = patch[0].split(":")
        target = importlib.import_module(module)
        for attr in name.split(".")[:-1]:  # "Class.method"
            target = getattr(target, attr)
        monkeypatch.setattr(target, name.split(".")[-1], patch[1])
    for k, v in case.env:
        if v:
            monkeypatch.setenv(k, ctx.fill(v))
        else:
            monkeypatch.delenv(k, raising=False)
    if case.hide is not None:
        monkeypatch.setitem(sys.modules, case.hide, None)  # `import wandb` fails
    capsys.readouterr()
    before = _snapshot(ctx.tmp)
    shared_before = _snapshot(pristine["root"])
    code = _run_in_process(case, ctx)
    after = _snapshot(ctx.tmp)
    _check(case, ctx, capsys, code)
    changed = [k for k, h in before.items() if after.get(k) != h]
    assert not changed, f"files changed or removed: {changed}"
    created = [k for k in after if k not in before and not k.startswith(case.created_ok)]
    assert not created, f"a failing command left files behind: {created}"
    assert _snapshot(pristine["root"]) == shared_before


# ----------------------------------------------------------------------------- subprocesses


def _sub(args: list[str], **kw: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([PY, *args], capture_output=True, text=True, env=env, timeout=120, **kw)


def test_subprocess_eval_bad_flag_exit_code(pristine: dict[str, Path], tmp_path: Path) -> None:
    """The console-script path (a real process, a real exit status)."""
    (tmp_path / "out").mkdir()
    p = _sub(["-m", "aaren_rl.eval.cli", "--checkpoint", str(pristine["ckpt"]), "--json",
              str(tmp_path / "out"), "--no-progress"])  # fmt: skip
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("aaren-eval: error: --json")
    assert "Traceback" not in p.stderr and not list((tmp_path / "out").iterdir())


def _default_sigint() -> None:
    """In the child: SIGINT back to its default. A test runner started in the background by
    a non-interactive shell (``cmd &``) inherits SIGINT ignored, and so would the child, which
    is not what a user at a terminal gets."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("sig", "code", "message"),
    [
        (signal.SIGINT, 130, "aaren-eval: interrupted"),  # Ctrl-C
        (signal.SIGTERM, 143, "aaren-eval: terminated (SIGTERM)"),  # kill, systemd, Slurm
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_subprocess_signal_during_evaluation(
    pristine: dict[str, Path], tmp_path: Path, sig: int, code: int, message: str
) -> None:
    """A stop signal while episodes run: its exit code, one line, nothing written."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "r.json"
    proc = subprocess.Popen(
        [PY, "-m", "aaren_rl.eval.cli", "--checkpoint", str(pristine["ckpt"]), "--episodes",
         "1000", "--json", str(out)],  # fmt: skip
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=_default_sigint,
    )  # fmt: skip
    seen = ""
    deadline = time.monotonic() + 90
    while "eval:" not in seen and time.monotonic() < deadline:  # the progress bar is up
        seen += proc.stderr.read(1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert message in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow
def test_subprocess_collect_locks_its_work_dir_and_stops_on_sigterm(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second aaren-collect on a work dir in use is refused with the first one's PID; the
    first, sent SIGTERM while training, exits 143 saying how to resume, and writes no dataset."""
    from aaren_rl.collect.collect import main as collect_main

    work, h5 = tmp_path / "work", tmp_path / "h5"
    args = [
        "--env",
        "hopper",
        "--total-timesteps",
        "1000000",
        "--eval-every",
        "1000000",
        "--work-dir",
        str(work),
        "--no-minari",
        "--hdf5-dir",
        str(h5),
        "--levels",
        "random",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [PY, "-m", "aaren_rl.collect.collect", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not (work / "state.json").exists() and time.monotonic() < deadline:  # training
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.05)
    try:
        capsys.readouterr()
        assert collect_main(args) == 2
        err = capsys.readouterr().err
        assert f"--work-dir {work} is in use by PID {proc.pid}" in err and "Traceback" not in err
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "aaren-collect: terminated (SIGTERM); rerun the same command to resume" in err
    assert "Traceback" not in err and not h5.exists()
    assert not (tmp_path / ".work.lock").exists()


def test_subprocess_disk_full_keeps_the_old_file(tmp_path: Path) -> None:
    """A write that hits the file-size limit (``ulimit -f``): exit 1, the path and what to do,
    and the previous version of the file intact (atomic writes)."""
    target = tmp_path / "results.json"
    target.write_text('{"old": true}\n')
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from aaren_rl.cli import run_cli
        from aaren_rl.fileio import atomic_write_bytes
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        sys.exit(run_cli("aaren-x", lambda: atomic_write_bytes({str(target)!r}, b"x" * 10**6)))
    """)
    p = _sub(["-c", script])
    assert p.returncode == 1, p.stderr
    assert "grew past the size limit" in p.stderr and "Traceback" not in p.stderr
    assert target.read_text() == '{"old": true}\n'
    assert [f.name for f in tmp_path.iterdir()] == ["results.json"]  # no temporary left


def test_subprocess_hdf5_dataset_past_the_size_limit(tmp_path: Path) -> None:
    """aaren-collect's D4RL writer on a disk that fills (``ulimit -f``): one line naming the
    file, exit 1; no h5py traceback storm, no segfault, the previous file intact."""
    target = tmp_path / "hopper-random.hdf5"
    target.write_bytes(b"the previous dataset\n")
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np
        from aaren_rl.cli import run_cli
        from aaren_rl.envs.writers import write_d4rl_hdf5
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        g, n = np.random.default_rng(0), 20_000
        arrays = {{"observations": g.random((n, 11), np.float32), "actions": g.random((n, 3),
                  np.float32), "rewards": g.random(n, np.float32), "terminals": np.zeros(n, bool),
                  "timeouts": np.zeros(n, bool)}}
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 18, 1 << 18))
        sys.exit(run_cli("aaren-collect", lambda: write_d4rl_hdf5({str(target)!r}, arrays)))
    """)
    p = _sub(["-c", script])
    assert p.returncode == 1, p.stderr[-2000:]
    assert p.stderr.strip().splitlines() == [
        f"aaren-collect: error: {target}: the file grew past the size limit (ulimit -f): "
        "raise it and run again"
    ], p.stderr[-2000:]
    assert target.read_bytes() == b"the previous dataset\n"
    assert [f.name for f in tmp_path.iterdir()] == [target.name]  # no temporary left


def test_the_matrix_is_big_enough() -> None:
    assert len(CASES) >= 100
    assert {c.cli for c in CASES} == {"train", "eval", "collect", "export", "bench", "api"}
    assert len({(c.cli, c.name) for c in CASES}) == len(CASES)  # unique ids
