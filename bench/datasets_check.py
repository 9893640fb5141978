"""Load the shared Hopper datasets and check their episode returns against their metadata.

Usage:
    aaren-bench datasets --root DIR          # or: python -m aaren_rl.bench.datasets_check

For each ``hopper-*.hdf5`` it prints the load time and compares, within tolerance,
- transitions / episodes / return mean ± std / D4RL-normalised mean with the README table,
- ``episode_return_mean`` / ``episodes`` in the file's HDF5 attrs. These attrs count only the
  episodes that ended naturally (the last episode, cut by the recording and marked as a
  timeout, is left out), so they are compared with that subset.
Exit status 1 if any check fails. A benchmark, not a test: it needs the files.

    aaren-bench datasets --root DIR --big

also writes a 1M-transition gzip D4RL file (five copies of hopper-medium) to a temp dir and
times ``load_dataset`` on it (the "seconds, not minutes" requirement).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aaren_rl.cli import run_cli
from aaren_rl.envs import load_dataset, normalized_score
from aaren_rl.errors import DatasetError

# The datasets' README table: transitions, episodes, return mean, std, normalised, terminals
README = {
    "hopper-medium.hdf5": (200_000, 483, 1366, 437, 42.6, 481),
    "hopper-medium_replay.hdf5": (200_000, 1238, 463, 395, 14.9, 1234),
    "hopper-best.hdf5": (200_000, 287, 2400, 848, 74.4, 202),
}


def check(path: Path) -> bool:
    t0 = time.perf_counter()
    ds = load_dataset(f"d4rl:{path}")
    load_s = time.perf_counter() - t0
    rets = ds.episode_returns
    norm = float(normalized_score(ds.env_id or "hopper", rets).mean())
    n, eps, mean, std, nrm, terms = README[path.name]
    got = (ds.num_transitions, len(rets), rets.mean(), rets.std(), norm,
           sum(t.terminated for t in ds.trajectories))  # fmt: skip
    ok = got[0] == n and got[1] == eps and got[5] == terms
    ok &= abs(got[2] - mean) <= 1.0 and abs(got[3] - std) <= 1.0 and abs(got[4] - nrm) <= 0.1
    line = (f"{path.name:28s} load {load_s:5.2f}s  {got[0]} transitions  {got[1]} episodes  "
            f"return {got[2]:.1f} ± {got[3]:.1f}  normalised {got[4]:.1f}  [README "
            f"{eps} eps, {mean} ± {std}, {nrm}]")  # fmt: skip
    attr_mean = ds.metadata.get("episode_return_mean")
    if attr_mean is not None:
        natural = (
            rets[:-1]
            if ds.trajectories[-1].timesteps.size and not ds.trajectories[-1].terminated
            else rets
        )
        a_ok = np.isclose(natural.mean(), attr_mean, rtol=1e-5) and len(natural) == ds.metadata.get(
            "episodes", len(natural)
        )
        line += f"  [attrs {ds.metadata.get('episodes')} eps, {attr_mean:.2f}: {'ok' if a_ok else 'MISMATCH'}]"
        ok &= bool(a_ok)
    print(("OK   " if ok else "FAIL ") + line)
    return ok


def time_big(medium: Path) -> None:
    import tempfile

    import h5py

    from aaren_rl.envs.writers import write_d4rl_hdf5

    with h5py.File(medium) as f:
        arrays = {k: np.concatenate([f[k][()]] * 5) for k in f}
    with tempfile.TemporaryDirectory() as d:
        path = write_d4rl_hdf5(Path(d) / "big.hdf5", arrays, {"env_id": "Hopper-v5"})
        t0 = time.perf_counter()
        ds = load_dataset(f"d4rl:{path}")
        print(
            f"1M-transition gzip file: {ds.num_transitions} transitions, "
            f"{len(ds.trajectories)} episodes, load {time.perf_counter() - t0:.2f}s"
        )


@dataclass
class DatasetsConfig:
    """Load D4RL-format Hopper files and check them against their metadata (also
    ``python -m aaren_rl.bench.datasets_check``)."""

    root: Path
    """Folder holding hopper-medium.hdf5, hopper-medium_replay.hdf5 and hopper-best.hdf5."""
    big: bool = False
    """Also time loading a 1M-transition gzip file (five copies of hopper-medium)."""


def run_datasets(cfg: DatasetsConfig) -> int:
    """Check every known file under ``cfg.root``; 0 if all pass, 1 otherwise."""
    root = Path(cfg.root)
    files = sorted(p for p in root.glob("hopper-*.hdf5") if p.name in README)
    if not files:
        raise DatasetError(f"no hopper datasets ({', '.join(README)}) under {root}")
    ok = all([check(p) for p in files])
    if cfg.big:
        time_big(root / "hopper-medium.hdf5")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m aaren_rl.bench.datasets_check`` (the same as ``aaren-bench datasets``)."""
    import tyro

    return run_cli(
        "aaren-bench datasets", lambda: run_datasets(tyro.cli(DatasetsConfig, args=argv))
    )


if __name__ == "__main__":
    sys.exit(main())
