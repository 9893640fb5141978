"""aaren-bench act: its agents act like their PyTorch references, records and tables add up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aaren_rl.aaren_policy import BackboneConfig
from aaren_rl.bench import transformer_onnx as tx
from aaren_rl.bench.act import (
    ActBenchConfig,
    ActRecord,
    act_targets,
    run_act_bench,
    summarize,
    throughput,
)
from aaren_rl.bench.agents import (
    ACT_AGENTS,
    INT16_MAX,
    PolicySource,
    int16_pair_worst_case,
    onnx_nodes,
    onnx_profile,
)
from aaren_rl.errors import ConfigError

TINY = dict(model=BackboneConfig(dim=16, num_layers=1, num_heads=1, dropout=0.0))
EAGER = ("aaren-recurrent", "aaren-window", "transformer-window", "transformer-kv")


def _source(tmp_path: Path, context_length: int = 4) -> PolicySource:
    return PolicySource.fresh(ActBenchConfig(**TINY), tmp_path, context_length, 1)


def test_eager_records_state_and_sizes(tmp_path: Path) -> None:
    cfg = ActBenchConfig(steps=12, repeats=2, context_length=4, agents=EAGER, **TINY)
    recs, agents = run_act_bench(cfg, _source(tmp_path), log=lambda s: None)
    assert len(recs) == 4 * 12 and {r.num_envs for r in recs} == {1}
    by: dict[str, list[ActRecord]] = {}
    for r in recs:
        by.setdefault(r.agent, []).append(r)
    assert [r.t for r in by["aaren-recurrent"]] == list(range(1, 13))
    assert len({r.state_bytes for r in by["aaren-recurrent"]}) == 1  # O(1) state
    kv = [r.state_bytes for r in by["transformer-kv"]]
    assert kv == sorted(kv) and kv[-1] > kv[0]  # the KV cache grows
    assert len({r.state_bytes for r in by["transformer-window"]}) == 1  # K-sized buffers
    assert all(r.time_us_p90 >= r.time_us_median > 0 for r in recs)
    params = {a: rs[0].params for a, rs in by.items()}
    assert params["aaren-recurrent"] - params["transformer-kv"] == 16  # one query per layer
    rows = summarize(recs, ts=(1, 10))
    assert len(rows) == 4 * 2 and {r["t"] for r in rows} == {1, 10}


@pytest.mark.parametrize("kind", ["window", "kv"])
def test_transformer_onnx_agents_equal_pytorch(make_agent, tmp_path: Path, kind: str) -> None:
    """Two heads, a real normalisation and per-row restarts: the graphs act like PyTorch."""
    rng = np.random.default_rng(0)
    mean, std = rng.standard_normal(11), rng.uniform(0.5, 2.0, 11)
    mode = "window" if kind == "window" else "recurrent"
    ref = make_agent("transformer", mode, context_length=5, state_mean=mean, state_std=std)
    folded = tx.fold_normalisation(ref.model, mean, std, ref.return_scale)
    net = ref.model.config.net
    common = {"obs_dim": 11, "act_dim": 3, "target_return": ref.target_return}
    if kind == "window":
        path = tx.export_window(folded, 5, tmp_path / "w.onnx")
        agent = tx.WindowOnnxAgent(path, context_length=5, **common)
    else:
        path = tx.export_kv(folded, tmp_path / "kv.onnx")
        agent = tx.KVOnnxAgent(path, net.num_layers, net.num_heads, net.dim // net.num_heads,
                               **common)  # fmt: skip
    assert tx.max_action_error(ref, agent, 11, num_envs=3, steps=25) <= 1e-5
    assert agent.state_nbytes() > 0


def test_kv_onnx_state_grows_three_slots_per_step(tmp_path: Path) -> None:
    src = _source(tmp_path)
    agent = ACT_AGENTS["transformer-kv-onnx"](src)
    agent.reset(1)
    sizes = []
    for t in range(4):
        agent.predict(np.zeros((1, 11)), np.zeros(1), np.array([t == 0]))
        sizes.append(agent.state_nbytes())
    steps = np.diff(sizes)
    assert len(set(steps)) == 1 and steps[0] == 3 * 2 * 16 * 4 + 3 * 4  # k, v and bias slots
    assert src.checks["transformer-kv-onnx"] <= 1e-5


def test_batched_records_and_throughput(tmp_path: Path) -> None:
    cfg = ActBenchConfig(steps=6, repeats=1, num_envs=(1, 3), batch_steps=4, batch_repeats=1,
                         agents=("aaren-recurrent", "aaren-onnx", "transformer-window-onnx"),
                         **TINY)  # fmt: skip
    recs, _ = run_act_bench(cfg, _source(tmp_path), log=lambda s: None)
    assert {(r.num_envs, max(q.t for q in recs if q.num_envs == r.num_envs)) for r in recs} == {
        (1, 6),
        (3, 4),
    }
    rows = {(r["agent"], r["num_envs"]): r for r in throughput(recs)}
    assert len(rows) == 3 * 2
    r = rows[("aaren-onnx", 3)]
    assert r["actions_per_s"] == pytest.approx(3e6 / r["time_us_per_call"])
    assert (
        rows[("aaren-recurrent", 3)]["state_bytes_end"]
        == 3 * rows[("aaren-recurrent", 1)]["state_bytes_end"]
    )
    assert {r["agent"] for r in summarize(recs)} == set(cfg.agents)  # batch 1 only


def _rec(agent: str, t: int, us: float, n: int = 1, state: int = 100) -> ActRecord:
    return ActRecord(agent, n, t, us, us, state, 1, 1)


def test_targets_compare_the_right_agents() -> None:
    recs = []
    for t in range(1, 1001):
        recs += [_rec("aaren-onnx", t, 50.0), _rec("transformer-window-onnx", t, 300.0)]
        recs += [_rec("transformer-kv-onnx", t, 100.0 + 0.2 * t)]
    recs += [_rec("aaren-recurrent", 1, 100.0, 256), _rec("transformer-window", 1, 400.0, 256)]
    targets = {t["target"]: t for t in act_targets(recs, d3rlpy_ms=2.0)}
    assert targets["aaren-onnx <= 60 µs per action at batch 1, t=1000"]["met"]
    assert targets["aaren-onnx at t=1000 >= 5x faster than transformer-window-onnx"]["met"]
    kv = targets["aaren-onnx at t=1000 >= 10x faster than transformer-kv-onnx"]
    assert not kv["met"] and kv["measured"].startswith("5.99x")  # (100 + 0.2 * 998) / 50
    assert targets["aaren-onnx time at t=1000 within 10% of t=10"]["met"]
    assert not targets["aaren-onnx >= 50x faster than d3rlpy DT (measured here)"]["met"]  # 40x
    tp = targets["aaren-recurrent actions/s at 256 envs >= 5x transformer-window's"]
    assert not tp["met"] and tp["measured"].startswith("4.00x")


def test_the_gemv_target_uses_only_the_floors_timed_in_turn() -> None:
    recs = [_rec("aaren-onnx", t, 50.0) for t in range(1, 1001)]
    in_turn = "aaren-onnx at t>=1000 <= 1.3x the fp32 GEMV limit (interleaved)"
    assert not any("GEMV" in t["target"] for t in act_targets(recs))  # no floors, no target
    for step, met in ((12.9, True), (13.1, False)):  # the records' 50 µs do not count
        floors = {"aaren_onnx_us": step, "gemv_us": 10.0, "matmul_us": 5.0}
        targets = {t["target"]: t for t in act_targets(recs, floors=floors)}
        assert targets[in_turn]["met"] is met
        assert "matrix products alone: 5 µs" in targets[in_turn]["measured"]


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="unknown agents"):
        ActBenchConfig(agents=("nope",))
    with pytest.raises(ConfigError, match="both --checkpoint-aaren"):
        ActBenchConfig(checkpoint_aaren=Path("x"))
    with pytest.raises(ConfigError, match="needs trained checkpoints"):
        ActBenchConfig(eval_episodes=2)
    with pytest.raises(ConfigError, match="num-envs"):
        ActBenchConfig(num_envs=(0,))
    quick = ActBenchConfig(quick=True, num_envs=(1, 256))
    assert (quick.steps, quick.repeats, quick.num_envs, quick.batch_steps) == (30, 1, (1, 4), 5)


def test_checkpoints_are_the_source(make_agent, tmp_path: Path) -> None:
    a = make_agent("aaren").save(tmp_path / "a")
    t = make_agent("transformer").save(tmp_path / "t")
    src = PolicySource.from_checkpoints(a, t, tmp_path, 20, 1)
    assert src.env_id == "Hopper-v5" and src.models["aaren"].config.net.dim == 16
    with pytest.raises(ConfigError, match="not 'aaren'"):
        PolicySource.from_checkpoints(t, t, tmp_path, 20, 1)


def test_reduced_precision_variants_act_close_and_shrink_the_file(tmp_path: Path) -> None:
    src = PolicySource.fresh(
        ActBenchConfig(model=BackboneConfig(dim=64, num_layers=2, dropout=0.0)), tmp_path, 4, 1
    )
    agents = {v: ACT_AGENTS[v](src) for v in ("aaren-onnx", "aaren-onnx-fp16", "aaren-onnx-int8")}
    size = {v: a.model_bytes for v, a in agents.items()}
    assert size["aaren-onnx-fp16"] < 0.6 * size["aaren-onnx"]
    assert size["aaren-onnx-int8"] < 0.7 * size["aaren-onnx"]  # the timestep table stays float
    assert src.checks["aaren-onnx"] <= 1e-5
    assert src.checks["aaren-onnx-fp16"] <= 1e-2  # finite: the -1e30 mask stayed float32
    assert src.checks["aaren-onnx-int8"] <= 0.1  # the embedding Gemm stayed float32
    # No int16 pair can saturate, so a CPU without VNNI computes the integers this one does.
    int8_file = src.workdir / "aaren-onnx" / "policy-int8.onnx"
    assert int16_pair_worst_case(int8_file) <= INT16_MAX


def test_onnx_profile_counts_every_node_of_the_step_graph_once_per_call(tmp_path: Path) -> None:
    src = PolicySource.fresh(
        ActBenchConfig(model=BackboneConfig(dim=32, num_layers=2, dropout=0.0)), tmp_path, 4, 1
    )
    agent = ACT_AGENTS["aaren-onnx"](src)
    prof = onnx_profile(agent, calls=5, warmup=2)
    assert prof["calls"] == 5
    assert prof["nodes"] == onnx_nodes(tmp_path / "aaren-onnx" / "policy.onnx")
    assert sum(r["nodes"] for r in prof["by_op"].values()) == prof["nodes"]
    assert {"Gemm", "Softmax", "LayerNormalization"} <= set(prof["by_op"])
    assert sum(r["share"] for r in prof["by_op"].values()) == pytest.approx(1.0)
    assert prof["us_per_call"] == pytest.approx(
        sum(r["us_per_call"] for r in prof["by_op"].values())
    )
    assert len(prof["slowest"]) == 10
    assert prof["slowest"][0]["us_per_call"] >= prof["slowest"][-1]["us_per_call"]


def test_int16_pair_worst_case_flags_full_range_int8_weights(tmp_path: Path) -> None:
    """The check sees what AVX2's vpmaddubsw would clip: a pair of -128 / 127 weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def graph_with(w: np.ndarray) -> Path:
        init = numpy_helper.from_array(w, "w")
        node = helper.make_node("Identity", ["w"], ["y"])
        out = helper.make_tensor_value_info("y", TensorProto.INT8, list(w.shape))
        path = tmp_path / f"g{int(np.abs(w).max())}.onnx"
        onnx.save(helper.make_model(helper.make_graph([node], "g", [], [out], [init])), path)
        return path

    full = np.array([[127, 1], [-128, 2], [3, 4]], dtype=np.int8)
    assert int16_pair_worst_case(graph_with(full)) == 255 * 255 > INT16_MAX
    reduced = np.array([[64, 1], [-64, 2], [3, 4]], dtype=np.int8)
    assert int16_pair_worst_case(graph_with(reduced)) == 255 * 128 <= INT16_MAX


def test_the_memory_horizon_agents_act_like_their_reference(tmp_path: Path) -> None:
    """aaren-onnx-h20 is checked against the PyTorch agent with the same horizon, and both
    keep the whole-episode agents' state size (the horizon adds no state)."""
    src = _source(tmp_path)
    onnx_h = ACT_AGENTS["aaren-onnx-h20"](src)
    assert src.checks["aaren-onnx-h20"] <= 1e-5
    eager_h, eager = ACT_AGENTS["aaren-recurrent-h20"](src), ACT_AGENTS["aaren-recurrent"](src)
    assert eager_h.memory_horizon == 20 and eager.memory_horizon == 0
    onnx = ACT_AGENTS["aaren-onnx"](src)
    for agent in (onnx_h, eager_h, eager, onnx):
        agent.reset(2)
        for t in range(3):
            agent.predict(np.zeros((2, 11)), np.zeros(2), np.array([t == 0] * 2))
    assert eager_h.state_nbytes() == eager.state_nbytes()
    assert onnx_h.state_nbytes() == onnx.state_nbytes()
