"""aaren-collect's work dir: crafted files never run code (docs/security.md).

Each crafted file carries a pickle payload that would create a marker file when unpickled;
every test asserts a clear error (or a safe load) and that the marker never appears. One
test first proves that the crafted model zip *does* run its payload under plain
``PPO.load``, so the others test something real.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from aaren_rl.collect.collect import Args, Collector
from aaren_rl.collect.workdir import (
    Manifest,
    load_replay_buffer,
    load_vecnormalize,
    obs_normalizer,
    save_replay_buffer,
    save_vecnormalize,
)
from aaren_rl.errors import RunDirError


class _Payload:
    """Unpickling this touches ``marker``: the stand-in for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickle_payload(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _collector(work: Path) -> Collector:
    return Collector(Args(env="hopper", num_envs=1, work_dir=work))


def _write_state(work: Path, ckpt: dict, chunks: list | None = None) -> None:
    (work / "ckpt").mkdir(parents=True, exist_ok=True)
    key = {"env": "hopper", "algo": "ppo", "seed": 0, "num_envs": 1, "ppo_n_steps": 512}
    state = {"key": key, "checkpoints": [ckpt], "chunks": chunks or [], "segment": 0,
             "timings": {}, "written": []}  # fmt: skip
    (work / "state.json").write_text(json.dumps(state))


def _write_manifest(work: Path, *rels: str, sha: str | None = None) -> None:
    files = {r: sha or _sha(work / r) for r in rels}
    (work / "manifest.json").write_text(json.dumps({"format": 1, "files": files}))


def _ckpt(model: str = "ckpt/step_000000512.zip", vecnorm: str | None = None) -> dict:
    return {"step": 512, "model": model, "vecnorm": vecnorm, "return": 1.0, "std": 0.0}


@pytest.fixture
def ppo_zip(tmp_path: Path) -> Path:
    """A real (untrained) PPO Hopper model saved by SB3, as aaren-collect makes them."""
    import stable_baselines3 as sb3
    from stable_baselines3.common.vec_env import DummyVecEnv

    from aaren_rl.envs import make_env

    venv = DummyVecEnv([lambda: make_env("Hopper-v5")])
    model = sb3.PPO("MlpPolicy", venv, n_steps=512, batch_size=64, device="cpu", seed=0)
    path = tmp_path / "clean.zip"
    model.save(path)
    venv.close()
    return path


def _with_pickled_entry(src: Path, dst: Path, key: str, payload: bytes) -> Path:
    """Copy an SB3 zip, putting a cloudpickle-style entry ``key`` into its ``data`` JSON."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            raw = zin.read(info)
            if info.filename == "data":
                data = json.loads(raw)
                data[key] = {":type:": "x", ":serialized:": base64.b64encode(payload).decode()}
                raw = json.dumps(data).encode()
            zout.writestr(info, raw)
    return dst


def _with_entry(src: Path, dst: Path, name: str, raw: bytes) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, raw if info.filename == name else zin.read(info))
    return dst


# ----------------------------------------------------------------------------- the work dir


def test_a_work_dir_without_manifest_is_refused_as_a_whole(tmp_path: Path):
    marker = tmp_path / "MARKER"
    work = tmp_path / "work"
    _write_state(work, _ckpt(vecnorm="ckpt/step_000000512_vecnorm.pkl"))
    (work / "ckpt" / "step_000000512_vecnorm.pkl").write_bytes(_pickle_payload(marker))
    with pytest.raises(RunDirError, match="older aaren-collect.*pickle"):
        _collector(work)
    assert not marker.exists()


def test_a_file_missing_from_the_manifest_is_not_loaded(tmp_path: Path, ppo_zip: Path):
    marker = tmp_path / "MARKER"
    work = tmp_path / "work"
    _write_state(work, _ckpt(vecnorm="ckpt/step_000000512_vecnorm.npz"))
    (work / "ckpt" / "step_000000512.zip").write_bytes(ppo_zip.read_bytes())
    (work / "ckpt" / "step_000000512_vecnorm.npz").write_bytes(_pickle_payload(marker))
    _write_manifest(work, "ckpt/step_000000512.zip")  # the statistics file is not listed
    c = _collector(work)
    with pytest.raises(RunDirError, match=r"step_000000512_vecnorm\.npz is not listed"):
        c.policy_fn(c.state["checkpoints"][0], deterministic=True)
    assert not marker.exists()


def test_a_file_whose_hash_changed_is_not_loaded(tmp_path: Path, ppo_zip: Path):
    marker = tmp_path / "MARKER"
    work = tmp_path / "work"
    _write_state(work, _ckpt())
    model = work / "ckpt" / "step_000000512.zip"
    model.write_bytes(ppo_zip.read_bytes())
    _write_manifest(work, "ckpt/step_000000512.zip")
    _with_pickled_entry(ppo_zip, model, "observation_space", _pickle_payload(marker))  # swapped
    c = _collector(work)
    with pytest.raises(RunDirError, match=r"step_000000512\.zip changed since aaren-collect"):
        c.policy_fn(c.state["checkpoints"][0], deterministic=True)
    assert not marker.exists()


def test_pickled_statistics_are_refused_even_with_a_matching_manifest(tmp_path: Path, ppo_zip):
    """A whole crafted work dir can carry a manifest that matches: the formats must hold."""
    marker = tmp_path / "MARKER"
    work = tmp_path / "work"
    _write_state(work, _ckpt(vecnorm="ckpt/step_000000512_vecnorm.npz"))
    (work / "ckpt" / "step_000000512.zip").write_bytes(ppo_zip.read_bytes())
    (work / "ckpt" / "step_000000512_vecnorm.npz").write_bytes(_pickle_payload(marker))
    _write_manifest(work, "ckpt/step_000000512.zip", "ckpt/step_000000512_vecnorm.npz")
    c = _collector(work)
    with pytest.raises(RunDirError, match="cannot be read as plain arrays"):
        c.policy_fn(c.state["checkpoints"][0], deterministic=True)
    assert not marker.exists()


@pytest.mark.parametrize("path", ["../outside.zip", "/tmp/abs.zip", "ckpt/../../x.zip", "x.zip"])
def test_state_json_cannot_point_outside_the_work_dir(tmp_path: Path, path: str):
    work = tmp_path / "work"
    _write_state(work, _ckpt(model=path))
    (work / "manifest.json").write_text(json.dumps({"format": 1, "files": {path: "0" * 64}}))
    c = _collector(work)
    with pytest.raises(RunDirError, match="not a file of this work dir"):
        c.policy_fn(c.state["checkpoints"][0], deterministic=True)


@pytest.mark.parametrize(
    "bad",
    [
        {"checkpoints": "ckpt/x.zip"},
        {"checkpoints": [{"step": "512", "model": "ckpt/x.zip", "return": 1.0, "std": 0.0}]},
        {"chunks": [{"file": 3, "segment": 0, "step": 1}]},
        {"segment": "0"},
    ],
)
def test_state_json_with_wrong_types_is_refused(tmp_path: Path, bad: dict):
    work = tmp_path / "work"
    _write_state(work, _ckpt())
    state = {**json.loads((work / "state.json").read_text()), **bad}
    (work / "state.json").write_text(json.dumps(state))
    with pytest.raises(RunDirError, match="state.json"):
        _collector(work)


# ----------------------------------------------------------------------------- SB3 model zips


def test_the_crafted_zip_runs_its_payload_under_plain_ppo_load(tmp_path: Path, ppo_zip: Path):
    """The control: what the loaders below refuse is a real attack on SB3's own loader."""
    marker = tmp_path / "MARKER"
    evil = _with_pickled_entry(ppo_zip, tmp_path / "evil.zip", "evil", _pickle_payload(marker))
    code = (
        "import stable_baselines3 as sb3\n"
        "try:\n"
        f"    sb3.PPO.load({str(evil)!r}, device='cpu')\n"
        "except Exception:\n"
        "    pass\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, timeout=300)
    assert marker.exists(), "plain PPO.load did not run the crafted payload: the test is void"


@pytest.mark.parametrize("key", ["observation_space", "lr_schedule", "_last_obs"])
def test_pickled_entries_of_the_model_zip_are_never_unpickled(tmp_path, ppo_zip, key):
    """Known pickled entries are replaced by the fresh model's objects: the policy loads."""
    marker = tmp_path / "MARKER"
    work = tmp_path / "work"
    _write_state(work, _ckpt())
    _with_pickled_entry(ppo_zip, work / "ckpt" / "step_000000512.zip", key, _pickle_payload(marker))
    _write_manifest(work, "ckpt/step_000000512.zip")
    c = _collector(work)
    act = c.policy_fn(c.state["checkpoints"][0], deterministic=True)
    assert act(np.zeros((2, 11))).shape == (2, 3)
    assert not marker.exists()


def test_an_unknown_pickled_entry_is_refused(tmp_path: Path, ppo_zip: Path):
    marker = tmp_path / "MARKER"
    work = tmp_path / "work"
    _write_state(work, _ckpt())
    _with_pickled_entry(
        ppo_zip, work / "ckpt" / "step_000000512.zip", "evil", _pickle_payload(marker)
    )
    _write_manifest(work, "ckpt/step_000000512.zip")
    c = _collector(work)
    with pytest.raises(RunDirError, match="'evil' is a pickled object PPO does not save"):
        c.policy_fn(c.state["checkpoints"][0], deterministic=True)
    assert not marker.exists()


def test_a_pickle_payload_in_a_torch_entry_is_refused(tmp_path: Path, ppo_zip: Path):
    marker = tmp_path / "MARKER"
    work = tmp_path / "work"
    _write_state(work, _ckpt())
    zpath = work / "ckpt" / "step_000000512.zip"
    _with_entry(ppo_zip, zpath, "policy.pth", _pickle_payload(marker))
    _write_manifest(work, "ckpt/step_000000512.zip")
    c = _collector(work)
    with pytest.raises(RunDirError, match="'policy.pth' is not plain tensors"):
        c.policy_fn(c.state["checkpoints"][0], deterministic=True)
    assert not marker.exists()


# ----------------------------------------------------------------------------- array formats


def _venv(n: int = 2):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from aaren_rl.envs import make_env

    venv = VecNormalize(DummyVecEnv([lambda: make_env("Hopper-v5")] * n), clip_obs=7.0)
    venv.reset()
    for _ in range(20):
        venv.step(np.stack([venv.action_space.sample() for _ in range(n)]))
    return venv


def test_vecnormalize_statistics_round_trip_as_arrays(tmp_path: Path):
    from stable_baselines3.common.vec_env import DummyVecEnv

    from aaren_rl.envs import make_env

    venv = _venv()
    save_vecnormalize(venv, tmp_path / "vn.npz")
    obs = np.random.default_rng(0).normal(size=(4, 11))
    got = obs_normalizer(tmp_path / "vn.npz", 11)(obs)
    np.testing.assert_allclose(got, venv.normalize_obs(obs), rtol=1e-5)
    back = load_vecnormalize(tmp_path / "vn.npz", DummyVecEnv([lambda: make_env("Hopper-v5")] * 2))
    for a, b in ((venv.obs_rms, back.obs_rms), (venv.ret_rms, back.ret_rms)):
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.var, b.var)
        assert a.count == b.count
    assert (back.clip_obs, back.gamma, back.training) == (7.0, venv.gamma, True)
    with pytest.raises(RunDirError, match="env has 5"):
        obs_normalizer(tmp_path / "vn.npz", 5)


def test_replay_buffer_round_trips_and_refuses_a_pickle(tmp_path: Path):
    import stable_baselines3 as sb3

    marker = tmp_path / "MARKER"
    model = sb3.SAC("MlpPolicy", "Pendulum-v1", buffer_size=64, learning_starts=10, device="cpu")
    model.learn(30)
    save_replay_buffer(model, tmp_path / "rb.npz")
    other = sb3.SAC("MlpPolicy", "Pendulum-v1", buffer_size=64, device="cpu")
    load_replay_buffer(other, tmp_path / "rb.npz")
    np.testing.assert_array_equal(
        other.replay_buffer.observations, model.replay_buffer.observations
    )
    assert other.replay_buffer.pos == model.replay_buffer.pos == 30
    (tmp_path / "evil.npz").write_bytes(_pickle_payload(marker))
    with pytest.raises(RunDirError, match="plain arrays"):
        load_replay_buffer(other, tmp_path / "evil.npz")
    assert not marker.exists()


def test_manifest_records_and_verifies(tmp_path: Path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "a.npz").write_bytes(b"abc")
    m = Manifest(tmp_path)
    m.record("ckpt/a.npz")
    assert Manifest(tmp_path).verified("ckpt/a.npz") == tmp_path / "ckpt" / "a.npz"
    (tmp_path / "ckpt" / "a.npz").write_bytes(b"abd")
    with pytest.raises(RunDirError, match="changed since"):
        Manifest(tmp_path).verified("ckpt/a.npz")
    (tmp_path / "manifest.json").write_text('{"format": 1, "files": []}')
    with pytest.raises(RunDirError, match="not an aaren-collect manifest"):
        Manifest(tmp_path)


@pytest.mark.slow
def test_sac_collection_resumes_from_array_checkpoints(tmp_path: Path, monkeypatch):
    """A real SAC run, interrupted after its first checkpoint and resumed: the replay buffer
    and the model come back from the npz / zip formats, each verified by the manifest."""
    import aaren_rl.collect.collect as cc

    args = Args(env="hopper", algo="sac", total_timesteps=240, eval_every=120, eval_episodes=1,
                transitions=200, levels=("expert",), rollout_envs=2, work_dir=tmp_path / "work",
                minari=False, hdf5_dir=tmp_path / "h5")  # fmt: skip
    real_checkpoint = Collector.checkpoint

    def checkpoint_then_ctrl_c(self, model, venv):
        real_checkpoint(self, model, venv)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Collector, "checkpoint", checkpoint_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            cc.collect(args)
    restored = []
    real_load = cc.load_replay_buffer

    def spy(model, path):
        real_load(model, path)
        restored.append((path.name, model.replay_buffer.pos))

    monkeypatch.setattr(cc, "load_replay_buffer", spy)
    cc.collect(args)
    assert restored == [("step_000000120_replay_buffer.npz", 120)]
    work = tmp_path / "work"
    files = json.loads((work / "manifest.json").read_text())["files"]
    assert "ckpt/step_000000240_replay_buffer.npz" in files
    assert "ckpt/step_000000120_replay_buffer.npz" not in files  # stale buffer forgotten
    assert not (work / "ckpt" / "step_000000120_replay_buffer.npz").exists()
    assert not list(work.rglob("*.pkl"))
    assert {f"ckpt/step_000000{s}.zip" for s in (120, 240)} <= set(files)
