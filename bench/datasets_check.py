"""Check D4RL-format dataset files: their own attrs, and the record of the published ones.

Usage:
    aaren-bench datasets                         # runs/datasets/*.hdf5 against docs/results/datasets.json
    aaren-bench datasets --root DIR --expect None --big  # other files: attrs only; time a 1M load
    aaren-bench datasets --write-record FILE     # record these files (sha256, counts, scores)

For each ``*.hdf5`` under ``--root`` it loads the file (timed), then compares
- its ``transitions`` / ``episodes`` / ``episode_return_mean`` attrs (as ``aaren-collect``
  writes them) with what the loader finds. Some D4RL-style files count only the episodes that
  ended naturally in these attrs (the last episode, cut by the recording, is left out); the
  check accepts either count and says which matched;
- the file's sha256, transitions, episodes and behaviour score with its row in the record
  (``--expect``, by file name): the datasets behind docs/results.md, so that a rebuild with
  ``aaren-collect`` (docs/data.md) can be checked byte for byte. A file the record does not
  name is checked against its attrs only.

Exit status 1 if any check fails. A benchmark, not a test: it needs the files.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aaren_rl.bench.returns import dataset_facts
from aaren_rl.cli import run_cli
from aaren_rl.envs import load_dataset
from aaren_rl.errors import DatasetError
from aaren_rl.fileio import atomic_write_json
from aaren_rl.untrusted import read_json

RECORD = Path("docs/results/datasets.json")


def describe(path: Path) -> tuple[dict[str, Any], Any]:
    """What the loader finds in ``path``: counts, returns, score, sha256 and load time."""
    t0 = time.perf_counter()
    ds = load_dataset(f"d4rl:{path}")
    load_s = time.perf_counter() - t0
    facts = dataset_facts(f"d4rl:{path}", ds)
    rets, norm = ds.episode_returns, facts["behaviour_normalized_score"]
    return {
        "sha256": facts["dataset_sha256"],
        "env_id": ds.env_id,
        "transitions": facts["transitions"],
        "episodes": facts["episodes"],
        "return_mean": round(float(rets.mean()), 3),
        "return_std": round(float(rets.std()), 3),
        "behaviour_normalized": None if norm is None else round(norm, 3),
        "load_seconds": round(load_s, 3),
    }, ds


def attrs_check(ds: Any) -> str | None:
    """None when the file has no count attrs; else 'ok (...)' or 'MISMATCH (...)' naming the
    attrs that disagree with what the loader finds."""
    meta = ds.metadata
    if all(meta.get(k) is None for k in ("transitions", "episodes", "episode_return_mean")):
        return None
    rets = ds.episode_returns
    last = ds.trajectories[-1]
    cut = last.timesteps.size > 0 and not last.terminated
    variants = [("all episodes", rets)] + ([("natural ends", rets[:-1])] if cut else [])
    first: list[str] = []  # what is wrong when every episode counts (the usual convention)
    for name, r in variants:
        wrong = []
        if meta.get("transitions") is not None and int(meta["transitions"]) != ds.num_transitions:
            wrong.append(f"transitions {meta['transitions']} vs {ds.num_transitions}")
        if meta.get("episodes") is not None and int(meta["episodes"]) != len(r):
            wrong.append(f"episodes {meta['episodes']} vs {len(r)}")
        mean = meta.get("episode_return_mean")
        if mean is not None and not np.isclose(r.mean(), float(mean), rtol=1e-5):
            wrong.append(f"episode_return_mean {float(mean):.2f} vs {r.mean():.2f}")
        if not wrong:
            return f"ok ({name})"
        first = first or wrong
    return "MISMATCH (attr vs file: " + ", ".join(first) + ")"


def record_check(got: dict[str, Any], want: dict[str, Any] | None) -> str | None:
    """None when the record has no row for the file; else 'ok' or what differs."""
    if want is None:
        return None
    bad = [
        f"{k} {got[k]} vs {want.get(k)}"
        for k in ("transitions", "episodes")
        if got[k] != want.get(k)
    ]
    gn, wn = got["behaviour_normalized"], want.get("behaviour_normalized")
    if gn is not None and wn is not None and abs(gn - wn) > 0.05:
        bad.append(f"behaviour {gn:.1f} vs {wn:.1f}")
    if got["sha256"] != want.get("sha256"):
        bad.append(f"sha256 {got['sha256'][:12]}… vs {str(want.get('sha256'))[:12]}…")
    return "ok" if not bad else "DIFFERS (file vs record): " + ", ".join(bad)


def read_record(path: Path) -> dict[str, dict[str, Any]]:
    """The ``files`` table of a record written by ``--write-record``: file name -> row."""
    hint = "rewrite it with --write-record, or pass --expect another file (None: attrs only)"
    if not path.is_file():
        raise DatasetError(
            f"the record {path} does not exist: {hint}; run from the repository root"
        )
    data = read_json(path, DatasetError)  # size-capped; unreadable or invalid JSON: DatasetError
    try:
        files = data["files"]
        bad = [k for k, v in files.items() if not isinstance(v, dict) or "sha256" not in v]
    except (KeyError, TypeError, AttributeError) as e:
        raise DatasetError(f"{path} is not a datasets record ({e}); {hint}") from e
    if bad:
        raise DatasetError(f"{path}: rows without a sha256 for {', '.join(bad)}; {hint}")
    return files


def time_big(path: Path, target: int = 1_000_000) -> None:
    """Time loading a gzip D4RL file of >= ``target`` transitions (``path`` repeated)."""
    import tempfile

    import h5py

    from aaren_rl.envs.writers import write_d4rl_hdf5
    from aaren_rl.hdf5_checks import read_numeric  # in-file, numeric, as large as stored

    with h5py.File(path) as f:
        reps = -(-target // len(f["rewards"]))
        arrays = {  # the top-level arrays (D4RL's own files also hold groups of metadata)
            k: np.concatenate([read_numeric(f, k, str(path), DatasetError)] * reps)
            for k, v in f.items()
            if isinstance(v, h5py.Dataset)
        }
        env_id = f.attrs.get("env_id", "Hopper-v5")
    with tempfile.TemporaryDirectory() as d:
        big = write_d4rl_hdf5(Path(d) / "big.hdf5", arrays, {"env_id": env_id})
        t0 = time.perf_counter()
        ds = load_dataset(f"d4rl:{big}")
        print(
            f"{ds.num_transitions}-transition gzip file ({path.name} x {reps}): "
            f"{len(ds.trajectories)} episodes, load {time.perf_counter() - t0:.2f}s"
        )


@dataclass
class DatasetsConfig:
    """Check D4RL-format HDF5 files against their own attrs and against the record of the
    results grid's datasets (also ``python -m aaren_rl.bench.datasets_check``)."""

    root: Path = Path("runs/datasets")
    """Folder whose ``*.hdf5`` files are checked (``make results`` writes the grid's here)."""
    expect: Path | None = RECORD
    """The record to compare with (sha256, transitions, episodes, behaviour score per file
    name; a missing record is an error); ``None``: attrs-only checks, for files that are not
    the grid's."""
    write_record: Path | None = None
    """Write the record of the files checked here (atomically), e.g. after a new collection."""
    big: bool = False
    """Also time loading a 1M-transition gzip file (the first file, repeated)."""


def run_datasets(cfg: DatasetsConfig) -> int:
    """Check every ``*.hdf5`` under ``cfg.root``; 0 if all pass, 1 otherwise."""
    root = Path(cfg.root)
    files = sorted(root.glob("*.hdf5"))
    if not files:
        raise DatasetError(
            f"no *.hdf5 datasets under {root}: make them with `make results` or aaren-collect "
            "(docs/data.md), or pass --root FOLDER"
        )
    record = read_record(Path(cfg.expect)) if cfg.expect is not None else {}
    rows, ok, same = {}, True, 0
    for path in files:
        got, ds = describe(path)
        checks = {"attrs": attrs_check(ds), "record": record_check(got, record.get(path.name))}
        good = all(c is None or c.startswith("ok") for c in checks.values())
        ok &= good
        same += checks["record"] == "ok"
        norm = got["behaviour_normalized"]
        print(
            f"{'OK  ' if good else 'FAIL'} {path.name:32s} load {got['load_seconds']:5.2f}s  "
            f"{got['transitions']:>7} transitions  {got['episodes']:>5} episodes  "
            f"return {got['return_mean']:7.1f} ± {got['return_std']:6.1f}  "
            f"normalised {'-' if norm is None else f'{norm:.1f}'}  "
            + "  ".join(f"[{k}: {v or 'none'}]" for k, v in checks.items())
        )
        rows[path.name] = {k: v for k, v in got.items() if k != "load_seconds"}
    if record:
        absent = sorted(set(record) - set(rows))
        print(
            f"{same} of the record's {len(record)} files here and identical"
            + (f"; not in {root}: {', '.join(absent)}" if absent else "")
        )
    if cfg.write_record is not None:
        atomic_write_json(cfg.write_record, {"root": str(root), "files": rows})
        print(f"record of {len(rows)} files written to {cfg.write_record}")
    if cfg.big:
        time_big(files[0])
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m aaren_rl.bench.datasets_check`` (the same as ``aaren-bench datasets``)."""
    import tyro

    return run_cli(
        "aaren-bench datasets", lambda: run_datasets(tyro.cli(DatasetsConfig, args=argv))
    )


if __name__ == "__main__":
    sys.exit(main())
