"""bench/peer/d3rlpy_dt.py --state-dir: a run stopped by SIGTERM or killed with SIGKILL
continues where its state was saved and writes the JSON an uninterrupted run writes; a state
saved with other settings is refused. The first three tests run the real d3rlpy in its own venv
(bench/peer/setup_d3rlpy.sh), skipped where there is none; the rest need only torch and run
everywhere."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEER = ROOT / ".venv-d3rlpy" / "bin" / "python"

needs_d3rlpy = pytest.mark.skipif(
    not PEER.exists(),
    reason="no .venv-d3rlpy: d3rlpy pins gymnasium 1.0.0 and lives in its own venv "
    "(bash bench/peer/setup_d3rlpy.sh)",
)


def _cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [str(PEER), str(ROOT / "bench/peer/d3rlpy_dt.py"), "--dataset", str(data),
            "--env", "Hopper-v5", "--steps", "8", "--eval-at", "4", "--eval-episodes", "2",
            "--curve-episodes", "1", "--warmup", "2", "--threads", "1", "--log-every", "1",
            "--max-episode-steps", "1000", "--out", str(out), *extra]  # fmt: skip


def _scores(path: Path) -> tuple:
    rec = json.loads(path.read_text())
    return rec["returns"], [(c["step"], c["return_mean"]) for c in rec["curve"]]


@needs_d3rlpy
def test_sigterm_then_the_same_command_gives_the_uninterrupted_json(synth, tmp_path: Path):
    data = synth.hopper_like(tmp_path / "h.hdf5", episodes=12)
    subprocess.run(_cmd(data, tmp_path / "full.json"), check=True, capture_output=True)

    out, state = tmp_path / "res.json", tmp_path / "state"
    log = tmp_path / "run.log"
    with log.open("w") as f:
        proc = subprocess.Popen(_cmd(data, out, "--state-dir", str(state)), stdout=f, stderr=f)
        deadline = time.monotonic() + 300
        while "step 5/8" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=300) == 128 + signal.SIGTERM, log.read_text()
    assert "state saved" in log.read_text() and not out.exists()
    assert (state / "state.pt").is_file()

    other = subprocess.run(_cmd(data, out, "--state-dir", str(state), "--seed", "1"),
                           capture_output=True, text=True)  # fmt: skip
    assert other.returncode != 0 and "saved with other settings (seed)" in other.stderr
    assert (state / "state.pt").is_file() and not out.exists()  # nothing lost

    done = subprocess.run(
        _cmd(data, out, "--state-dir", str(state)), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "resumed at step" in done.stdout
    rec = json.loads(out.read_text())
    assert rec["resumed_at"] and 5 <= rec["resumed_at"][0] < 8
    assert _scores(out) == _scores(tmp_path / "full.json")  # the same batches, the same scores
    assert not (state / "state.pt").exists()  # removed once the JSON holds it all


@needs_d3rlpy
def test_kill_9_loses_at_most_save_every_steps(synth, tmp_path: Path):
    """No signal handler runs on SIGKILL: the state saved every --save-every steps is what is
    left, and the same command continues from it to the uninterrupted JSON, here through two
    fit calls (from step 6 to the point at 8, then to 9; fit_segments)."""
    data = synth.hopper_like(tmp_path / "h.hdf5", episodes=12)
    # 9 steps, points at 4 and 8, 10 episodes at each: after "step 7/9" (no save at 7) the
    # run still has step 8's update and 10 episodes before its next save, time enough for
    # the kill to land first even on a loaded machine.
    run = ("--steps", "9", "--eval-at", "4,8", "--curve-episodes", "10", "--eval-episodes", "10")
    subprocess.run(_cmd(data, tmp_path / "full.json", *run), check=True, capture_output=True)

    out, state = tmp_path / "res.json", tmp_path / "state"
    log = tmp_path / "run.log"
    cmd = _cmd(data, out, "--state-dir", str(state), "--save-every", "3", *run)
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=f)
        deadline = time.monotonic() + 300
        while "step 7/9" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        proc.kill()
        assert proc.wait(timeout=60) == -signal.SIGKILL, log.read_text()
    assert not out.exists() and (state / "state.pt").is_file()

    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # saved at 3 (--save-every), 4 (--eval-at) and 6; killed after step 7
    assert json.loads(out.read_text())["resumed_at"] == [6]
    assert _scores(out) == _scores(tmp_path / "full.json")


_SPLIT_FIT = """
import importlib.util, sys
import d3rlpy, torch
from d3rlpy.algos.utility import build_scalers_with_trajectory_slicer
from d3rlpy.logging import NoopAdapterFactory
spec = importlib.util.spec_from_file_location("peer", sys.argv[1])
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)
args = peer.parse_args(sys.argv[2:])
def train(segments):
    d3rlpy.seed(0)
    data, _ = peer.load_d4rl(args.dataset)
    dt = peer.make_algo(args)
    build_scalers_with_trajectory_slicer(dt, data)
    dt.build_with_dataset(data)
    for n, per_epoch in segments:
        dt.fit(data, n_steps=n, n_steps_per_epoch=per_epoch, show_progress=False,
               logger_adapter=NoopAdapterFactory(), save_interval=n + 1)
    return dt.impl.modules.transformer.state_dict()
one, split = train([(6, 3)]), train([(1, 1), (5, 5)])
print("same" if all(torch.equal(one[k], split[k]) for k in one) else "differ")
"""


@needs_d3rlpy
def test_splitting_fit_changes_no_weight(synth, tmp_path: Path):
    """fit_segments' premise: two fit calls (1 + 5 steps) train the same weights as one (6)."""
    data = synth.hopper_like(tmp_path / "h.hdf5", episodes=12)
    argv = _cmd(data, tmp_path / "o.json")[2:]
    script = ROOT / "bench/peer/d3rlpy_dt.py"
    done = subprocess.run([str(PEER), "-c", _SPLIT_FIT, str(script), *argv], cwd=tmp_path,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "same"


def test_save_every_must_not_be_negative(d3rlpy_peer, synth, tmp_path: Path, capsys):
    data = synth.hopper_like(tmp_path / "h.hdf5", episodes=12)
    with pytest.raises(SystemExit):
        d3rlpy_peer.parse_args(_cmd(data, tmp_path / "o.json", "--save-every", "-1")[2:])
    assert "--save-every must be >= 0" in capsys.readouterr().err


def test_a_state_of_other_settings_or_a_foreign_file_is_refused(synth, d3rlpy_peer, tmp_path: Path):
    """The checks before any training: they need torch only, so they run in every CI."""
    import torch

    peer = d3rlpy_peer
    data = synth.hopper_like(tmp_path / "h.hdf5", episodes=12)
    state = tmp_path / "state"
    args = peer.parse_args(_cmd(data, tmp_path / "o.json", "--state-dir", str(state))[2:])
    assert peer.load_state(args) is None  # nothing saved yet: a fresh run
    state.mkdir()
    (state / "state.pt").write_bytes(b"not a torch file")
    with pytest.raises(SystemExit, match="not a state this script saved"):
        peer.load_state(args)
    assert (state / "state.pt").read_bytes() == b"not a torch file"  # left where it is
    other = peer.parse_args(_cmd(data, tmp_path / "o.json", "--seed", "1", "--steps", "9")[2:])
    torch.save({"key": json.dumps(peer.state_key(other))}, state / "state.pt")
    with pytest.raises(SystemExit, match=r"saved with other settings \(eval_points, seed, steps\)"):
        peer.load_state(args)
    torch.save({"key": json.dumps(peer.state_key(args)), "step": 4}, state / "state.pt")
    assert peer.load_state(args)["step"] == 4


def test_a_run_resumed_between_points_trains_to_the_next_point_first(d3rlpy_peer):
    """d3rlpy logs once per epoch: a resume at step 3,311 must not make every step an epoch."""
    seg = d3rlpy_peer.fit_segments
    points = list(range(1000, 10001, 1000))
    assert seg(points, 0) == [(0, 10000, 1000)]
    assert seg(points, 3000) == [(3000, 10000, 1000)]  # a state saved at an evaluation
    assert seg(points, 3311) == [(3311, 4000, 689), (4000, 10000, 1000)]
    assert seg(points, 9750) == [(9750, 10000, 250)]
    assert seg([300, 1000], 0) == [(0, 1000, 100)]
    assert seg([4, 8], 6) == [(6, 8, 2)]


def test_a_second_run_on_a_held_state_is_refused(d3rlpy_peer, synth, tmp_path: Path):
    """Two runs of one command must not train and save the same state: the second stops with
    one line before anything is read or written."""
    import fcntl

    data = synth.hopper_like(tmp_path / "h.hdf5", episodes=12)
    state = tmp_path / "state"
    state.mkdir()
    with open(state / "lock", "a") as held:  # what a run in progress holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        argv = _cmd(data, tmp_path / "o.json", "--state-dir", str(state))[2:]
        with pytest.raises(SystemExit, match="another run of this command holds it"):
            d3rlpy_peer.main(argv)
    assert not (tmp_path / "o.json").exists() and not (state / "state.pt").exists()
    lock = d3rlpy_peer.hold_lock(state)  # free again once the holder is gone
    lock.close()


def test_an_existing_result_is_never_overwritten(d3rlpy_peer, synth, tmp_path: Path):
    data = synth.hopper_like(tmp_path / "h.hdf5", episodes=12)
    out = tmp_path / "o.json"
    out.write_text("a finished run's record\n")
    for extra in ((), ("--state-dir", str(tmp_path / "state"))):
        with pytest.raises(SystemExit, match="exists: this script never overwrites it"):
            d3rlpy_peer.main(_cmd(data, out, *extra)[2:])
    assert out.read_text() == "a finished run's record\n"
