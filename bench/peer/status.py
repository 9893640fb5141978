"""Where each d3rlpy peer run of a grid stands; starts nothing.

    python bench/peer/status.py --out-dir docs/results/returns-10k-offline \
        --datasets hopper-medium-replay halfcheetah-medium --seeds 0 1 2

One line per (dataset, seed), in the order given: ``done`` (its JSON exists; the run's
wall-clock), ``running`` (a run holds its state's lock now), ``state at step N`` (a saved state
that `make results-peer` continues from), or ``not started``. The paths are the ones `make
results-peer` uses: the JSON ``OUT_DIR/<dataset>__d3rlpy-dt__window__s<seed>__window.json`` and
its state ``STATE_ROOT/<that path with / as _>/state.pt``, so pass --out-dir as the Makefile's
PEER_DIR. A state is read with ``torch.load(weights_only=True)`` (no code runs); one that
cannot be read is reported, not fatal. Runs in the main venv or in .venv-d3rlpy (torch is all
it needs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def run_status(out: Path, state_dir: Path) -> str:
    if out.is_file():
        try:
            wall = json.loads(out.read_text())["timing"]["wall_seconds"]
            return f"done ({wall / 60:.0f} min)"
        except (OSError, ValueError, KeyError, TypeError):
            return "done (its JSON has no timing)"
    state = state_dir / "state.pt"
    running = is_locked(state_dir / "lock")
    if not state.is_file():
        return "running, no state saved yet" if running else "not started"
    import torch

    try:
        step = int(torch.load(state, map_location="cpu", weights_only=True)["step"])
    except Exception as e:  # a truncated or foreign file: say so, go on with the others
        return f"unreadable state {state} ({type(e).__name__})"
    return f"running, state saved at step {step}" if running else f"state at step {step} (resumes from it)"  # fmt: skip


def is_locked(lock: Path) -> bool:
    """Whether a run holds ``lock`` now (d3rlpy_dt.py's hold_lock); the file is not changed."""
    import fcntl

    if not lock.is_file():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", required=True, help="the grid's folder, as PEER_DIR")
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--state-root", type=Path, default=Path("runs/peer-state"))
    args = p.parse_args(argv)
    rows = []
    for ds in args.datasets:
        for s in args.seeds:
            out = f"{args.out_dir}/{ds}__d3rlpy-dt__window__s{s}__window.json"  # as the Makefile
            state_dir = args.state_root / out.replace("/", "_")
            rows.append((f"{ds}__d3rlpy-dt__window__s{s}", run_status(Path(out), state_dir)))
    width = max(len(name) for name, _ in rows)
    for name, status in rows:
        print(f"{name:<{width}}  {status}")
    done = sum(status.startswith("done") for _, status in rows)
    print(f"{done} of {len(rows)} d3rlpy runs done; results in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
