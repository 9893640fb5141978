"""bench/peer/status.py: each d3rlpy run of a grid is reported done, running, at its saved
state's step, or not started, from the paths `make results-peer` writes; a broken state is
reported, not fatal."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def test_done_state_and_not_started(peer_status, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # relative paths, as the Makefile passes them
    out_dir = "docs/grid"
    Path(out_dir).mkdir(parents=True)
    done = f"{out_dir}/hm__d3rlpy-dt__window__s0__window.json"
    Path(done).write_text(json.dumps({"timing": {"wall_seconds": 5400.0}}))
    running = f"{out_dir}/hm__d3rlpy-dt__window__s1__window.json"
    state = Path("runs/peer-state") / running.replace("/", "_")  # the Makefile's `tr / _`
    state.mkdir(parents=True)
    torch.save({"key": "{}", "step": 3311}, state / "state.pt")
    broken = Path("runs/peer-state") / f"{out_dir}/hc__d3rlpy-dt__window__s0__window.json".replace("/", "_")  # fmt: skip
    broken.mkdir(parents=True)
    (broken / "state.pt").write_bytes(b"not a torch file")

    rc = peer_status.main(["--out-dir", out_dir, "--datasets", "hm", "hc", "--seeds", "0", "1"])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert lines[0].split() == ["hm__d3rlpy-dt__window__s0", "done", "(90", "min)"]
    assert lines[1].split()[:5] == ["hm__d3rlpy-dt__window__s1", "state", "at", "step", "3311"]
    assert lines[2].startswith("hc__d3rlpy-dt__window__s0") and "unreadable state" in lines[2]
    assert lines[3].split() == ["hc__d3rlpy-dt__window__s1", "not", "started"]
    assert lines[4] == "1 of 4 d3rlpy runs done; results in docs/grid"
    assert (broken / "state.pt").read_bytes() == b"not a torch file"  # read, never touched


def test_a_run_that_holds_its_lock_is_running(peer_status, tmp_path: Path, capsys):
    import fcntl

    out_dir = str(tmp_path / "grid")
    state = tmp_path / "peer-state" / f"{out_dir}/hm__d3rlpy-dt__window__s0__window.json".replace("/", "_")  # fmt: skip
    state.mkdir(parents=True)
    argv = ["--out-dir", out_dir, "--datasets", "hm", "--seeds", "0"]
    argv += ["--state-root", str(tmp_path / "peer-state")]
    status = peer_status
    with open(state / "lock", "a") as held:  # as d3rlpy_dt.py's hold_lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        status.main(argv)
        assert capsys.readouterr().out.splitlines()[0].endswith("running, no state saved yet")
        torch.save({"step": 250}, state / "state.pt")
        status.main(argv)
        assert capsys.readouterr().out.splitlines()[0].endswith("running, state saved at step 250")
    status.main(argv)  # the holder is gone: the same state is one to resume from
    assert capsys.readouterr().out.splitlines()[0].endswith("state at step 250 (resumes from it)")
