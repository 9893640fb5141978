"""aaren-export and the onnxruntime agent: same actions as the PyTorch agent, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from aaren_rl.aaren_policy import BackboneConfig, DecisionModel, DecisionModelConfig, __version__
from aaren_rl.agents import DecisionAgent
from aaren_rl.agents.onnx_agent import OnnxAgent, OnnxAgentError
from aaren_rl.deploy.export import (
    DeployStep,
    ExportConfig,
    ExportError,
    export_onnx,
    initial_state,
    main,
)
from aaren_rl.envs import make_env

OBS, ACT = 11, 3  # Hopper-v5


def _agent(backbone: str = "aaren") -> DecisionAgent:
    torch.manual_seed(0)
    model = DecisionModel(DecisionModelConfig(OBS, ACT, backbone=backbone))  # d 128, 3 layers
    with torch.no_grad():  # move off the init (zero biases, unit LayerNorm)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    rng = np.random.default_rng(0)
    mean, std = rng.standard_normal(OBS) * 0.5, rng.uniform(0.5, 2.0, OBS)
    return DecisionAgent(model, mean, std, 1000.0, 3600.0, env_id="hopper")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("export")
    ckpt = _agent().save(root / "ckpt")
    return ckpt, export_onnx(ExportConfig(ckpt, root / "policy.onnx"))


@pytest.mark.parametrize("num_envs", [1, 3])
def test_onnx_agent_matches_torch_agent_on_hopper(
    exported: tuple[Path, Path], num_envs: int
) -> None:
    ckpt, path = exported
    torch_agent = DecisionAgent.load(ckpt)
    onnx_agent = OnnxAgent(path)
    envs = [make_env("hopper", seed=i) for i in range(num_envs)]
    obs = np.stack([e.reset(seed=i)[0] for i, e in enumerate(envs)])
    reward = np.zeros(num_envs)
    start = np.ones(num_envs, dtype=bool)
    torch_agent.reset(num_envs)
    onnx_agent.reset(num_envs)
    worst, restarts = 0.0, 0
    for _ in range(200):  # envs that fall restart: the per-row reset path is checked too
        a_torch = torch_agent.predict(obs, reward, start)
        a_onnx = onnx_agent.predict(obs, reward, start)
        worst = max(worst, float(np.abs(a_torch - a_onnx).max()))
        start = np.zeros(num_envs, dtype=bool)
        for j, env in enumerate(envs):
            obs[j], reward[j], term, trunc, _ = env.step(a_torch[j])
            if term or trunc:
                obs[j], _ = env.reset()
                start[j], restarts = True, restarts + 1
    for env in envs:
        env.close()
    assert worst <= 1e-5, worst
    assert onnx_agent.state_nbytes() == num_envs * (8 + 8 + 4 * ACT + 3 * 4 * (1 + 128))


@pytest.mark.parametrize(
    "heads, return_in_state, recency, horizon",
    [
        (1, False, 0.0, 0),
        (2, False, 0.0, 0),
        (1, True, 0.0, 0),
        (1, False, 0.2, 0),
        (2, False, 0.2, 0),
        (1, False, 0.0, 3),
        (2, False, 0.2, 3),
    ],
)
def test_deploy_step_equals_act_observe_in_float64(
    heads: int, return_in_state: bool, recency: float, horizon: int
) -> None:
    """The (c, o) pseudo-token form, folded weights and in-graph bookkeeping are exact (with
    a memory horizon: the reference ages its state between s_t and a_t, as DecisionAgent)."""
    torch.manual_seed(heads)
    net = BackboneConfig(dim=16, num_layers=3, num_heads=heads, recency_init=recency)
    cfg = DecisionModelConfig(
        OBS, ACT, net=net, max_timestep=20, return_in_state_token=return_in_state
    )
    model = DecisionModel(cfg).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    model.eval()
    gen = np.random.default_rng(heads)
    mean, std, scale, target = gen.standard_normal(OBS), gen.uniform(0.5, 2, OBS), 100.0, 50.0
    step = DeployStep(model, mean, std, scale, memory_horizon=horizon)
    b = 3
    state = {k: torch.as_tensor(v) for k, v in initial_state(step, b, target).items()}
    state["attn"] = state["attn"].double()
    state["prev_action"] = state["prev_action"].double()
    ref = [type(s)(*(x.double() for x in s)) for s in model.init_state(b)]
    rtg, t = np.full(b, target), np.zeros(b, dtype=np.int64)
    for i in range(30):  # t runs past max_timestep (clamped alike)
        obs, reward = gen.standard_normal((b, OBS)), gen.standard_normal(b)
        start = np.array([i == 0, i % 7 == 0, i in (0, 25)])
        # reference: DecisionAgent's bookkeeping around model.act / observe_action
        rtg = np.where(start, target, rtg - reward)
        t = np.where(start, 0, t + 1)
        done = torch.as_tensor(start)
        ref = model.backbone.reset_state(ref, done)
        time = torch.as_tensor(t)
        with torch.no_grad():
            a_ref, ref = model.act(
                torch.as_tensor((obs - mean) / std),
                torch.as_tensor(rtg / scale).unsqueeze(-1),
                time,
                ref,
            )
            if horizon:
                ref = model.backbone.age_state(ref, 1.0 / horizon)
            ref = model.observe_action(a_ref, time, ref)
            # Episode start: timestep -1 and rtg = target; attn and prev_action are
            # ignored there, so leave them as any finite garbage.
            state["rtg"] = torch.where(done, target, state["rtg"])
            state["timestep"] = torch.where(done, -1, state["timestep"])
            for k in ("attn", "prev_action"):
                noise = torch.randn_like(state[k]) * 5
                state[k] = torch.where(done.view(-1, *[1] * (noise.dim() - 1)), noise, state[k])
            a, rtg_next, t_next, attn = step(
                torch.as_tensor(obs),
                torch.as_tensor(reward),
                state["rtg"],
                state["timestep"],
                state["prev_action"],
                state["attn"],
            )
        torch.testing.assert_close(a, a_ref, atol=1e-10, rtol=0)
        np.testing.assert_allclose(rtg_next.numpy(), rtg, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(t_next.numpy(), t)
        state = {"rtg": rtg_next, "timestep": t_next, "prev_action": a, "attn": attn}


def test_one_head_graph_is_small_and_has_no_transpose(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    """Node count is the cost in onnxruntime (~0.5-1 us per node at this size): guard it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(exported[1]), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    assert "Transpose" not in ops
    assert len(ops) <= 85, len(ops)  # 80 with onnxruntime 1.32 (156 before the (c, o) form)


def test_metadata_records_env_sizes_target_and_version(exported: tuple[Path, Path]) -> None:
    meta = {p.key: p.value for p in onnx.load(str(exported[1])).metadata_props}
    assert meta["aaren.env_id"] == "hopper"
    assert (meta["aaren.obs_dim"], meta["aaren.act_dim"]) == ("11", "3")
    assert float(meta["aaren.target_return"]) == 3600.0
    assert meta["aaren.package_version"] == __version__
    assert "state_next" in meta["aaren.contract"]


def test_transformer_export_is_refused_with_the_reason(tmp_path: Path, capsys) -> None:
    ckpt = _agent("transformer").save(tmp_path / "ckpt")
    with pytest.raises(ExportError, match="KV cache that grows"):
        export_onnx(ExportConfig(ckpt, tmp_path / "p.onnx"))
    assert main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "p.onnx")]) == 2
    assert "aaren-export: error:" in capsys.readouterr().err
    assert not (tmp_path / "p.onnx").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--opset", "16"], "--opset 16 is not supported"),
        (["--opset", "21"], "--opset 21 is not supported"),
        (["--target-return", "nan"], "--target-return must be a finite number"),
        (["--target-return", "inf"], "--target-return must be a finite number"),
        (["--target-return", "-inf"], "--target-return must be a finite number"),
    ],
)
def test_bad_flags_fail_before_any_work(tmp_path: Path, capsys, flags, message) -> None:
    # The checkpoint does not exist: the flags are checked before it is read.
    out = tmp_path / "p.onnx"
    assert main(["--checkpoint", str(tmp_path / "missing"), "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_out_that_is_a_directory_gets_policy_onnx_inside(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    """--out DIR (existing) or --out new/ (a trailing slash) writes policy.onnx inside, never
    a file named like the folder; a second export replaces its own file without --overwrite."""
    ckpt = str(exported[0])
    (tmp_path / "old").mkdir()
    assert main(["--checkpoint", ckpt, "--out", str(tmp_path / "old"), "--no-verify"]) == 0
    assert (tmp_path / "old" / "policy.onnx").is_file()
    assert main(["--checkpoint", ckpt, "--out", f"{tmp_path / 'new'}/", "--no-verify"]) == 0
    assert (tmp_path / "new" / "policy.onnx").is_file()
    assert main(["--checkpoint", ckpt, "--out", f"{tmp_path / 'new'}/", "--no-verify"]) == 0


def test_an_unrelated_file_is_replaced_only_with_overwrite(
    exported: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    out = tmp_path / "p.onnx"
    out.write_text("keep me\n")
    assert main(["--checkpoint", str(exported[0]), "--out", str(out), "--no-verify"]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "keep me\n"
    args = ["--checkpoint", str(exported[0]), "--out", str(out), "--no-verify", "--overwrite"]
    assert main(args) == 0
    assert OnnxAgent(out).obs_dim == 11


def test_opset_20_exports_the_same_policy(exported: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "o20.onnx"
    assert main(["--checkpoint", str(exported[0]), "--out", str(out), "--opset", "20"]) == 0
    obs = np.random.default_rng(0).standard_normal((2, 11))
    np.testing.assert_allclose(
        OnnxAgent(out).predict(obs), OnnxAgent(exported[1]).predict(obs), atol=1e-6
    )


def test_bad_shapes_give_clear_errors(exported: tuple[Path, Path]) -> None:
    agent = OnnxAgent(exported[1])
    agent.reset(2)
    with pytest.raises(OnnxAgentError, match=r"obs has shape \(2, 7\), expected \(2, 11\)"):
        agent.predict(np.zeros((2, 7)))
    with pytest.raises(OnnxAgentError, match=r"expected \(2, 11\)"):
        agent.predict(np.zeros((3, 11)))
    state = agent.initial_state(2)
    state["attn"] = state["attn"][:, :2]
    with pytest.raises(OnnxAgentError, match="state 'attn' has shape"):
        agent.set_state(state)
    with pytest.raises(OnnxAgentError, match="NaN"):
        agent.predict(np.full((2, 11), np.nan))


def test_cli_writes_a_file(exported: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "cli.onnx"
    assert main(["--checkpoint", str(exported[0]), "--out", str(out), "--no-verify"]) == 0
    assert OnnxAgent(out).predict(np.zeros(11)).shape == (1, 3)


def test_onnx_agent_does_not_import_torch() -> None:
    code = "import sys, aaren_rl.agents.onnx_agent; assert 'torch' not in sys.modules, 'torch imported'"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_aaren_eval_onnx_matches_the_checkpoint_without_importing_torch(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    ckpt, onnx_path = exported
    out_onnx, out_ckpt = tmp_path / "onnx.json", tmp_path / "ckpt.json"
    common = ["--episodes", "2", "--num-envs", "2", "--max-episode-steps", "60", "--no-progress"]
    code = (
        "import sys; from aaren_rl.eval.cli import main; "
        f"rc = main(['--onnx', {str(onnx_path)!r}, '--json', {str(out_onnx)!r}, *{common!r}]); "
        "assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch imported'"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
    from aaren_rl.eval.cli import main as eval_main

    assert eval_main(["--checkpoint", str(ckpt), "--json", str(out_ckpt), *common]) == 0
    a, b = json.loads(out_onnx.read_text()), json.loads(out_ckpt.read_text())
    assert a["lengths"] == b["lengths"]
    assert a["memory_horizon"] == b["memory_horizon"] == 0  # the export's / the checkpoint's
    np.testing.assert_allclose(a["returns"], b["returns"], rtol=1e-4)
    for r in (a, b):  # the wall clock split: one batched call per step of the longest slot
        w = r["wall_clock"]
        assert w["predict_calls"] == max(r["lengths"])  # 2 episodes on 2 envs
        assert w["agent_seconds"] + w["env_seconds"] == pytest.approx(r["seconds"])
        assert 0 < w["agent_share"] < 1


def test_aaren_eval_needs_exactly_one_source(exported: tuple[Path, Path], capsys) -> None:
    from aaren_rl.eval.cli import main as eval_main

    assert eval_main(["--episodes", "1"]) == 2
    assert "exactly one of --checkpoint" in capsys.readouterr().err


def test_each_batch_size_acts_through_its_own_session(exported: tuple[Path, Path]) -> None:
    # onnxruntime plans a session's memory for its first run's shapes (SessionPerBatch)
    agent = OnnxAgent(exported[1])
    first = agent.session
    agent.reset(2)
    assert agent.session is first  # the session that read the metadata serves the first size
    agent.reset(1)
    one = agent.session
    assert one is not first
    agent.reset(2)
    assert agent.session is first
    agent.reset(1)
    assert agent.session is one
    for n in range(3, 3 + agent.sessions.keep):
        agent.reset(n)
    assert agent.sessions.get(1) is not one  # the least recently used were dropped
    assert agent.sessions.first is None  # the first one too: nothing keeps it alive


def test_every_session_holds_the_model_as_first_read(
    exported: tuple[Path, Path], make_agent, tmp_path: Path
) -> None:
    live = tmp_path / "live.onnx"
    live.write_bytes(exported[1].read_bytes())
    agent, reference = OnnxAgent(live), OnnxAgent(exported[1])
    agent.reset(1)
    other = export_onnx(
        ExportConfig(make_agent(seed=5).save(tmp_path / "other"), tmp_path / "o.onnx")
    )
    live.write_bytes(other.read_bytes())  # replaced on disk after the agent loaded it
    obs = np.random.default_rng(1).standard_normal((2, 11)).astype(np.float32)
    agent.reset(2)  # a new batch size: a new session, from the bytes read at construction
    reference.reset(2)
    np.testing.assert_array_equal(agent.predict(obs), reference.predict(obs))


def test_steady_call_path_equals_the_checked_path(exported: tuple[Path, Path]) -> None:
    # the same stream fed as exact float32 / float64 / bool arrays (the steady path) and as
    # lists (every call through _check_inputs) gives the same actions, restarts included
    gen = np.random.default_rng(3)
    obs = gen.standard_normal((40, 2, 11)).astype(np.float32)
    rewards = gen.standard_normal((40, 2))
    starts = np.zeros((40, 2), dtype=bool)
    starts[0] = starts[25, 1] = True
    fast, slow = OnnxAgent(exported[1]), OnnxAgent(exported[1])
    fast.reset(2)
    slow.reset(2)
    checked = []  # the calls of `fast` that went through _check_inputs
    original = fast._check_inputs
    fast._check_inputs = lambda *a: checked.append(True) or original(*a)  # type: ignore[method-assign]
    for t in range(40):
        a = fast.predict(obs[t], rewards[t], starts[t])
        b = slow.predict(obs[t].tolist(), rewards[t].tolist(), starts[t].tolist())
        np.testing.assert_array_equal(a, b)
    assert len(checked) == 2  # the two calls where an episode starts; the 38 others: steady
    as_objects = obs[1].astype(object)  # not numbers: the checked path converts them
    np.testing.assert_array_equal(fast.predict(as_objects, rewards[1], starts[1]),
                                  slow.predict(obs[1], rewards[1], starts[1]))  # fmt: skip
    assert len(checked) == 3
    with pytest.raises(OnnxAgentError, match="NaN"):
        fast.predict(np.full((2, 11), np.inf, dtype=np.float32), rewards[0], starts[1])
    with pytest.raises(OnnxAgentError, match="reward and episode_start"):
        fast.predict(obs[0], rewards[0][:1], starts[1])
    np.testing.assert_array_equal(  # a refused call changed nothing
        fast.predict(obs[0], rewards[0], starts[1]), slow.predict(obs[0], rewards[0], starts[1])
    )


def test_an_export_with_a_memory_horizon_acts_like_the_torch_agent(tmp_path: Path) -> None:
    """The horizon is baked into the graph (and its metadata); onnxruntime agrees with the
    PyTorch agent given the same horizon, and differs from the whole-episode export."""
    ckpt = _agent().save(tmp_path / "ckpt")
    path = export_onnx(ExportConfig(ckpt, tmp_path / "h5.onnx", memory_horizon=5))
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["aaren.memory_horizon"] == "5"
    full = OnnxAgent(export_onnx(ExportConfig(ckpt, tmp_path / "full.onnx")))
    torch_agent, onnx_agent = DecisionAgent.load(ckpt, memory_horizon=5), OnnxAgent(path)
    assert "memory_horizon=5" in repr(onnx_agent)
    env = make_env("hopper", seed=0)
    obs, reward, start = env.reset(seed=0)[0][None], np.zeros(1), np.ones(1, dtype=bool)
    for agent in (torch_agent, onnx_agent, full):
        agent.reset(1)
    worst, apart = 0.0, 0.0
    for _ in range(60):
        a_torch = torch_agent.predict(obs, reward, start)
        worst = max(worst, float(np.abs(a_torch - onnx_agent.predict(obs, reward, start)).max()))
        apart = max(apart, float(np.abs(a_torch - full.predict(obs, reward, start)).max()))
        start = np.zeros(1, dtype=bool)
        obs[0], reward[0], term, trunc, _ = env.step(a_torch[0])
        if term or trunc:
            break
    env.close()
    assert worst <= 1e-5, worst
    assert apart > 1e-3, apart


def test_a_negative_memory_horizon_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--memory-horizon must be >= 0"):
        export_onnx(ExportConfig(tmp_path / "ckpt", tmp_path / "p.onnx", memory_horizon=-1))


def test_an_export_with_a_recency_slope_runs_in_onnxruntime(tmp_path: Path) -> None:
    """A model trained with --model.recency-init: the exported file, not only the traced
    module, acts like the PyTorch agent in onnxruntime (and with a memory horizon on top)."""
    torch.manual_seed(0)
    net = BackboneConfig(recency_init=0.05)
    model = DecisionModel(DecisionModelConfig(OBS, ACT, net=net))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    agent = DecisionAgent(model, np.zeros(OBS), np.ones(OBS), 1000.0, 3600.0, env_id="hopper")
    ckpt = agent.save(tmp_path / "ckpt")
    for horizon in (0, 7):
        path = export_onnx(
            ExportConfig(ckpt, tmp_path / f"h{horizon}.onnx", memory_horizon=horizon)
        )
        torch_agent = DecisionAgent.load(ckpt, memory_horizon=horizon)
        onnx_agent = OnnxAgent(path)
        rng = np.random.default_rng(horizon)
        torch_agent.reset(2), onnx_agent.reset(2)
        worst = 0.0
        for t in range(40):
            obs, reward = rng.standard_normal((2, OBS)), rng.standard_normal(2)
            start = np.array([t == 0, t in (0, 17)])
            a = torch_agent.predict(obs, reward, start)
            worst = max(worst, float(np.abs(a - onnx_agent.predict(obs, reward, start)).max()))
        assert worst <= 1e-5, (horizon, worst)
