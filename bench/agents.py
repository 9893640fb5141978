"""The agents ``aaren-bench act`` measures, all built from the same two models.

Every agent has ``DecisionAgent``'s step API (``reset``, ``predict``, ``state_nbytes``) plus
``params`` and ``model_bytes``. They are built from a :class:`PolicySource`: either the
benchmark models of :func:`aaren_rl.bench.common.bench_model` (fresh weights, identity
normalisation) or two checkpoints (then the returns they achieve can be measured too).

=========================  ========================================================  =======
agent                      what                                                      engine
=========================  ========================================================  =======
aaren-unfused              ``model.act`` + ``observe_action`` (three backbone steps)  eager
aaren-recurrent            ``DecisionAgent`` default: the fused step                 eager
aaren-recurrent-h20        the same with a memory horizon of 20 steps                eager
aaren-window               Aaren re-running the last K steps (DT's way)              eager
transformer-window         Transformer, last K = 20 steps re-run per action          eager
transformer-kv             Transformer stepping with a KV cache (grows with t)       eager
aaren-compiled             TorchScript trace of the fused step                       TorchScript
aaren-onnx                 the ``aaren-export`` step graph                           ONNX
aaren-onnx-h20             the same, exported with a memory horizon of 20 steps      ONNX
aaren-onnx-fp16            the same, weights stored in float16                       ONNX
aaren-onnx-int8            the same, MatMul/Gemm dynamically quantised to int8       ONNX
transformer-window-onnx    the K-step window as one graph                            ONNX
transformer-kv-onnx        a KV-cache step graph, the cache grows with t             ONNX
=========================  ========================================================  =======

All ONNX agents use the same session settings (:func:`aaren_rl.agents.onnx_agent.
make_session`) and I/O binding; the Transformer graphs are in
:mod:`aaren_rl.bench.transformer_onnx`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from aaren_rl.aaren_policy import DecisionModel
from aaren_rl.aaren_policy.fused import FusedState, trace_policy
from aaren_rl.agents import DecisionAgent
from aaren_rl.agents.checkpoint import load_model
from aaren_rl.agents.onnx_agent import OnnxAgent
from aaren_rl.bench import transformer_onnx as tx
from aaren_rl.bench.common import agent_kwargs, bench_model
from aaren_rl.deploy.export import ExportConfig, export_onnx
from aaren_rl.errors import ConfigError, ExportError

__all__ = [
    "ACT_AGENTS",
    "BenchAgent",
    "PolicySource",
    "TracedAgent",
    "onnx_nodes",
    "quantize_int8",
    "weights_to_fp16",
]


class BenchAgent(Protocol):
    """What the benchmark needs: the evaluation agent API plus state size and parameters."""

    params: int

    def reset(self, num_envs: int) -> None: ...

    def predict(
        self,
        obs: np.ndarray,
        reward: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
    ) -> np.ndarray: ...

    def state_nbytes(self) -> int: ...


@dataclass
class PolicySource:
    """The two models every agent is built from, their agent settings and a scratch folder.

    Attributes:
        models: backbone name -> model.
        settings: backbone name -> ``DecisionAgent`` keyword arguments (normalisation,
            return scale, target return).
        workdir: where exported graphs are written (kept for the run's lifetime).
        env_id: the environment of the checkpoints (None for fresh benchmark models).
        context_length: K of the window agents.
        threads: torch and onnxruntime intra-op threads.
    """

    models: dict[str, DecisionModel]
    settings: dict[str, dict[str, Any]]
    workdir: Path
    env_id: str | None = None
    context_length: int = 20
    threads: int = 1
    checks: dict[str, float] = field(default_factory=dict)
    """Agent -> largest action difference from its PyTorch reference (filled on build)."""

    @classmethod
    def fresh(cls, size: Any, workdir: Path, context_length: int, threads: int) -> PolicySource:
        """Freshly initialised benchmark models of ``size`` (both backbones, same seed)."""
        models = {b: bench_model(size, b) for b in ("aaren", "transformer")}
        settings = {b: agent_kwargs(size.obs_dim) for b in models}
        return cls(models, settings, workdir, None, context_length, threads)

    @classmethod
    def from_checkpoints(
        cls, aaren: Path, transformer: Path, workdir: Path, context_length: int, threads: int
    ) -> PolicySource:
        """Two trained checkpoints (one per backbone) of the same environment."""
        models, settings, envs = {}, {}, set()
        for want, path in (("aaren", aaren), ("transformer", transformer)):
            model, meta = load_model(path, "cpu")
            if model.config.backbone != want:
                raise ConfigError(f"{path} holds a {model.config.backbone!r} model, not {want!r}")
            models[want] = model.eval()
            settings[want] = {
                "state_mean": np.asarray(meta["state_mean"], dtype=np.float32),
                "state_std": np.asarray(meta["state_std"], dtype=np.float32),
                "return_scale": float(meta["return_scale"]),
                "target_return": float(meta["target_return"]),
            }
            envs.add(meta.get("env_id"))
        if len(envs) != 1:
            raise ConfigError(f"the checkpoints are for different environments: {sorted(envs)}")
        return cls(models, settings, workdir, envs.pop(), context_length, threads)

    def agent(
        self, backbone: str, mode: str, fused: bool = True, memory_horizon: int = 0
    ) -> DecisionAgent:
        """A PyTorch ``DecisionAgent`` (the reference of every compiled path)."""
        return _Counted(
            self.models[backbone],
            **self.settings[backbone],
            mode=mode,
            context_length=self.context_length,
            env_id=self.env_id,
            fused=fused,
            memory_horizon=memory_horizon,
        )


class _Counted(DecisionAgent):
    """A DecisionAgent that also reports its parameter count (``params``)."""

    @property
    def params(self) -> int:
        return self.model.num_parameters()


class TracedAgent(_Counted):
    """``DecisionAgent`` (recurrent, Aaren) acting with a TorchScript trace of the fused step.

    The trace fixes the batch size: ``predict`` re-traces when it changes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.fused:
            raise ExportError("TracedAgent needs recurrent mode and an Aaren backbone")
        self._traced: Any = None
        self._traced_batch = 0

    def _predict_fused(
        self, obs: torch.Tensor, rtg: torch.Tensor, time: torch.Tensor, start: np.ndarray
    ) -> torch.Tensor:
        policy = self._fused_policy()
        if self._traced is None or self._traced_batch != obs.shape[0]:
            self._traced, self._traced_batch = trace_policy(policy, obs.shape[0]), obs.shape[0]
        if start.any():
            self.state = policy.reset_state(self.state, torch.as_tensor(start, device=self.device))
        action, *state = self._traced(obs, rtg, time, *self.state)
        self.state = FusedState(*state)
        return action


# ---- reduced-precision variants of an exported graph ----------------------------------------


def weights_to_fp16(src: Path, dst: Path) -> Path:
    """Store the graph's weight matrices as float16, cast back to float32 on load.

    onnxruntime's CPU kernels compute in float32 here (its constant folding turns each Cast
    of an initializer back into a float32 weight at session creation), so this halves the
    file and measures what rounding the weights to float16 costs, not fp16 arithmetic.
    Constants outside float16's range (the -1e30 mask of the score bias) stay float32.
    """
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    graph = proto.graph
    casts = []
    for init in list(graph.initializer):
        arr = numpy_helper.to_array(init)
        if arr.dtype != np.float32 or arr.ndim < 2 or arr.size < 1024:
            continue
        if not np.all(np.abs(arr) <= np.finfo(np.float16).max):
            continue
        name = init.name
        half = numpy_helper.from_array(arr.astype(np.float16), f"{name}__fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(onnx.helper.make_node("Cast", [half.name], [name], to=onnx.TensorProto.FLOAT))
    for node in reversed(casts):
        graph.node.insert(0, node)
    onnx.save(proto, str(dst))
    return dst


# vpmaddubsw (AVX2 without VNNI) multiplies uint8 activations by int8 weights and adds each
# adjacent pair into a saturating int16: 2 * 255 * |w| must stay <= 32767, so |w| <= 64.
INT16_MAX = 32767


def int16_pair_worst_case(path: Path) -> int:
    """The largest sum a saturating int16 pair of uint8 x int8 products can reach in the
    graph's int8 weight matrices (255 times the largest |w[k]| + |w[k+1]| over any column).

    Above 32767 the u8s8 kernel of a CPU without VNNI (AVX2's vpmaddubsw) clips the partial
    sum and the result depends on the CPU; at or below it every CPU computes the same exact
    integer dot product.
    """
    import onnx
    from onnx import numpy_helper

    worst = 0
    for init in onnx.load(str(path)).graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype != np.int8 or w.ndim != 2:
            continue
        k = w.shape[0] - w.shape[0] % 2
        pair = np.abs(w[0:k:2].astype(np.int64)) + np.abs(w[1:k:2].astype(np.int64))
        worst = max(worst, 255 * int(pair.max(initial=0)), 255 * int(np.abs(w).max(initial=0)))
    return worst


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantisation of the weight matmuls (per output channel; activations are
    quantised per call).

    Weights use 7 bits (``reduce_range``: [-64, 64]) so that no pair of uint8 x int8
    products can overflow int16 (``int16_pair_worst_case``). With full 8-bit weights an AVX2
    CPU without VNNI saturates those pairs: the same graph's actions were 0.40 off PyTorch
    there and 0.01 on an AVX-512 VNNI CPU. With 7 bits every CPU computes the same integers.

    Left in float32: the embedding Gemm, whose input row mixes raw returns-to-go (thousands)
    with raw observations (units), so one activation scale per call would wipe out the
    observations (measured: actions off by up to 1.8), and the attention MatMuls, whose two
    inputs are both activations.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src)).graph
    weights = {i.name for i in graph.initializer}
    exclude = []
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] not in weights:
            exclude.append(node.name)
        if node.op_type == "Gemm" and node.input[1] == "emb_w":
            exclude += [node.name, f"{node.name}_MatMul"]  # the quantiser's Gemm -> MatMul name
    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=["MatMul", "Gemm"],
        per_channel=True,
        reduce_range=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
    )
    return dst


def _median_us(call: Callable[[], Any], calls: int, warmup: int = 50) -> float:
    """Median µs of ``call()`` over ``calls`` calls, after ``warmup`` untimed ones."""
    import time

    for _ in range(warmup):
        call()
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        call()
        times[i] = time.perf_counter() - t0
    return float(np.median(times) * 1e6)


def _bound_run(
    session: Any, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]
) -> Callable[[], None]:
    """One run of ``session`` on ``inputs`` into ``outputs``, through an I/O binding made once
    (as ``OnnxAgent`` binds its step), so a timed call has no feed conversion in it."""
    from aaren_rl.agents.onnx_agent import ort_value

    values = {name: ort_value(arr) for name, arr in {**inputs, **outputs}.items()}
    binding = session.io_binding()
    for name in inputs:
        binding.bind_ortvalue_input(name, values[name])
    for name in outputs:
        binding.bind_ortvalue_output(name, values[name])

    def call(keep: dict = values) -> None:  # the default keeps the OrtValues alive
        session.run_with_iobinding(binding)

    return call


def gemv_limit_call(model: Any, threads: int) -> Callable[[], None]:
    """The floor of one action, as a call to time: one float32 matrix-vector product over
    every weight of ``model``'s linear layers (their values laid out as one (N / 128, 128)
    matrix), run by onnxruntime with the ONNX agent's session settings and I/O binding.

    An exported step reads each of those weights once per action and multiplies each once:
    the same bytes and multiply-adds, without the rest of the graph. aaren-onnx's time over
    this one is its overhead factor (the target: <= 1.3, timed in turn by
    :func:`onnx_floors`).
    """
    from onnx import TensorProto, helper, numpy_helper

    from aaren_rl.agents.onnx_agent import make_session

    flat = torch.cat(
        [m.weight.detach().float().flatten() for m in model.modules() if isinstance(m, nn.Linear)]
    ).numpy()  # nn.Linear weights only: embedding tables are looked up, not multiplied
    cols = 128
    w = np.zeros((-(-flat.size // cols), cols), dtype=np.float32)
    w.flat[: flat.size] = flat
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "gemv_limit",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cols])],
        [numpy_helper.from_array(w, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = make_session("gemv_limit.onnx", threads, proto.SerializeToString())
    x = np.random.default_rng(0).standard_normal((1, w.shape[0])).astype(np.float32)
    return _bound_run(session, {"x": x}, {"y": np.zeros((1, cols), dtype=np.float32)})


def matmul_floor_call(path: Path, threads: int) -> tuple[Callable[[], None], dict[str, Any]]:
    """The step graph's own matrix products with nothing else, as a call to time: every Gemm
    and MatMul node of the exported file at batch 1, with its weights and its input shapes
    (ONNX shape inference), each reading an input of its own, in one graph run through I/O
    binding as ``OnnxAgent`` runs the whole step. Also returns ``{"nodes", "shapes": [[rows,
    in, out], ...]}``.

    Where :func:`gemv_limit_call` is a floor from bytes (one matrix-vector product over the
    same weights), this is the floor of this graph on this onnxruntime: its matrix kernels at
    their real shapes (most see 3 token rows), one session call. The step's time above it is
    everything else: ~60 small nodes and the agent's Python.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper, shape_inference

    from aaren_rl.agents.onnx_agent import make_session

    model = onnx.load(str(path))
    for value in model.graph.input:  # the batch axis is 1
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_value = 1
    inferred = shape_inference.infer_shapes(model, data_prop=True).graph
    values = (*inferred.value_info, *inferred.input, *inferred.output)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
    types = {v.name: v.type.tensor_type.elem_type for v in values}

    def static(name: str) -> list[int]:  # a float32 activation's shape, known at batch 1
        shape = shapes.get(name)
        if not shape or 0 in shape or types.get(name) != TensorProto.FLOAT:
            raise ExportError(f"{path}: no static float32 shape for {name!r} at batch 1")
        return shape

    weights = {t.name: t for t in model.graph.initializer}
    nodes, inputs, outputs, inits, feeds, results, rows = [], [], [], [], {}, {}, []
    for k, node in enumerate(n for n in inferred.node if n.op_type in ("Gemm", "MatMul")):
        names = []
        for j, name in enumerate(node.input):
            if name in weights:
                arr = numpy_helper.to_array(weights[name])
                inits.append(numpy_helper.from_array(arr, f"w{k}_{j}"))
                names.append(f"w{k}_{j}")
            else:  # an activation: a graph input of the same shape
                shape = static(name)
                names.append(f"x{k}_{j}")
                inputs.append(helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, shape))
                feeds[names[-1]] = (
                    np.random.default_rng(k).standard_normal(shape).astype(np.float32)
                )
        out_shape = static(node.output[0])
        outputs.append(helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, out_shape))
        results[f"y{k}"] = np.zeros(out_shape, dtype=np.float32)
        nodes.append(helper.make_node(node.op_type, names, [f"y{k}"], name=f"n{k}"))
        nodes[-1].attribute.extend(node.attribute)
        first = shapes.get(node.input[0]) or list(weights[node.input[0]].dims)
        rows.append([int(np.prod(first[:-1])), first[-1], out_shape[-1]])
    graph = helper.make_graph(nodes, "matmul_floor", inputs, outputs, inits)
    proto = helper.make_model(graph, opset_imports=model.opset_import)
    session = make_session("matmul_floor.onnx", threads, proto.SerializeToString(), vet_graph=False)
    return _bound_run(session, feeds, results), {"nodes": len(nodes), "shapes": rows}


def onnx_floors(
    agent: Any, model: Any, threads: int = 1, rounds: int = 10, calls: int = 200
) -> dict[str, Any]:
    """``agent`` (an ``OnnxAgent`` of an aaren-export file) against both floors, timed in
    turn: ``rounds`` rounds of ``calls`` steps of the agent, ``calls`` GEMV-limit calls
    (:func:`gemv_limit_call`) and ``calls`` calls of the graph's matrix products alone
    (:func:`matmul_floor_call`), who goes first rotating from round to round. Interleaving in
    small blocks makes the ratios hold on a VM whose speed drifts from minute to minute
    (timed one after the other they did not). The agent acts at t >= 1000 (one 1000-step
    episode first, then on: its cost is flat in t).

    All three run through I/O binding. Returns ``{"aaren_onnx_us", "gemv_us", "matmul_us"}``
    (the median of the per-round medians), the per-round medians under ``"rounds"``,
    ``"calls_per_round"``, and the matrix products' ``nodes`` and ``shapes``. The agent is
    left mid-episode: reset it before acting with it again.
    """
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((1, agent.obs_dim)).astype(np.float32)
    reward = np.zeros(1)
    agent.reset(1)
    for _ in range(1000):
        agent.predict(obs, reward)
    matmul, info = matmul_floor_call(agent.path, threads)
    fns = {
        "aaren_onnx_us": lambda: agent.predict(obs, reward),
        "gemv_us": gemv_limit_call(model, threads),
        "matmul_us": matmul,
    }
    order = list(fns)
    per_round: dict[str, list[float]] = {k: [] for k in order}
    for r in range(rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            per_round[name].append(_median_us(fns[name], calls, warmup=10))
    out: dict[str, Any] = {k: float(np.median(v)) for k, v in per_round.items()}
    return {**out, "rounds": per_round, "calls_per_round": calls, **info}


def onnx_profile(agent: Any, calls: int = 1000, top: int = 10, warmup: int = 20) -> dict[str, Any]:
    """Where an ONNX agent's step graph spends its time: onnxruntime's own profiler over
    ``calls`` steps at batch 1 (the agent's file and session settings, state fed back),
    after ``warmup`` steps left out of the counts (the first runs allocate).

    Returns ``{"calls", "us_per_call" (sum of node times), "by_op": {op type: {"nodes",
    "us_per_call", "share"}}, "slowest": [top nodes: name, op, µs per call]}``. The node times
    leave out onnxruntime's per-call overhead outside the kernels; compare ``us_per_call``
    with the agent's timed µs per action to see it.
    """
    from aaren_rl.agents.onnx_agent import make_session

    rng = np.random.default_rng(0)
    state = agent.initial_state(1)
    feed = {
        "obs": rng.standard_normal((1, agent.obs_dim)).astype(np.float32),
        "prev_reward": np.zeros(1, dtype=np.float64),
    }
    with tempfile.TemporaryDirectory() as tmp:
        session = make_session(
            agent.sessions.path, agent.sessions.threads, profile_prefix=str(Path(tmp) / "profile")
        )
        names = agent.output_names
        for _ in range(warmup + calls):
            out = dict(zip(names, session.run(names, {**feed, **state})))
            state = {k: out[v] for k, v in agent.state_next.items()}
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    after = runs[warmup] if len(runs) > warmup else 0  # the first counted run's start
    by_node: dict[str, list] = {}
    for e in events:
        args = e.get("args", {})
        if e.get("ts", 0) < after:
            continue
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = by_node.setdefault(e["name"][: -len("_kernel_time")], [args.get("op_name"), 0])
            node[1] += e["dur"]
    total = sum(t for _, t in by_node.values())
    by_op: dict[str, dict[str, Any]] = {}
    for op, t in by_node.values():
        row = by_op.setdefault(op, {"nodes": 0, "us_per_call": 0.0})
        row["nodes"] += 1
        row["us_per_call"] += t / calls
    for row in by_op.values():
        row["share"] = row["us_per_call"] * calls / total if total else 0.0
    slowest = sorted(by_node.items(), key=lambda kv: -kv[1][1])[:top]
    return {
        "calls": calls,
        "nodes": len(by_node),
        "us_per_call": total / calls,
        "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]["us_per_call"])),
        "slowest": [
            {"node": name, "op": op, "us_per_call": t / calls} for name, (op, t) in slowest
        ],
    }


def onnx_nodes(path: Path) -> int:
    """Nodes left after onnxruntime's graph optimisations (each costs ~0.5-1 us per call)."""
    import onnx
    import onnxruntime as ort

    out = path.with_suffix(".optimised.onnx")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    n = len(onnx.load(str(out)).graph.node)
    out.unlink(missing_ok=True)
    return n


# ---- factories: name -> (source -> agent) ---------------------------------------------------


def _eager(
    backbone: str, mode: str, fused: bool = True, horizon: int = 0
) -> Callable[[PolicySource], BenchAgent]:
    return lambda src: src.agent(backbone, mode, fused, horizon)


def _compiled(src: PolicySource) -> BenchAgent:
    return TracedAgent(
        src.models["aaren"], **src.settings["aaren"], env_id=src.env_id, mode="recurrent"
    )


class _BenchOnnxAgent(OnnxAgent):
    params = 0


def _aaren_onnx(variant: str, horizon: int = 0) -> Callable[[PolicySource], BenchAgent]:
    def make(src: PolicySource) -> BenchAgent:
        folder = src.workdir / ("aaren-onnx" + (f"-h{horizon}" if horizon else ""))
        path = folder / "policy.onnx"
        if not path.exists():
            ckpt = src.agent("aaren", "recurrent").save(folder / "ckpt")
            export_onnx(ExportConfig(ckpt, path, verify=False, memory_horizon=horizon))
        if variant == "fp16":
            path = weights_to_fp16(path, folder / "policy-fp16.onnx")
        elif variant == "int8":
            path = quantize_int8(path, folder / "policy-int8.onnx")
        agent = _BenchOnnxAgent(path, threads=src.threads)
        agent.params = src.models["aaren"].num_parameters()
        name = "aaren-onnx" + ("" if variant == "fp32" else f"-{variant}")
        name += f"-h{horizon}" if horizon else ""
        src.checks[name] = tx.max_action_error(
            src.agent("aaren", "recurrent", memory_horizon=horizon), agent, agent.obs_dim
        )
        return agent

    return make


def _transformer_onnx(kind: str) -> Callable[[PolicySource], BenchAgent]:
    def make(src: PolicySource) -> BenchAgent:
        model, kw = src.models["transformer"], src.settings["transformer"]
        folded = tx.fold_normalisation(model, kw["state_mean"], kw["state_std"], kw["return_scale"])
        cfg, net = model.config, model.config.net
        common = {"obs_dim": cfg.obs_dim, "act_dim": cfg.act_dim}
        common |= {"target_return": kw["target_return"], "threads": src.threads}
        if kind == "window":
            path = tx.export_window(folded, src.context_length, src.workdir / "tx-window.onnx")
            agent: Any = tx.WindowOnnxAgent(path, context_length=src.context_length, **common)
            ref = src.agent("transformer", "window")
        else:
            path = tx.export_kv(folded, src.workdir / "tx-kv.onnx")
            dh = net.dim // net.num_heads
            agent = tx.KVOnnxAgent(path, net.num_layers, net.num_heads, dh, **common)
            ref = src.agent("transformer", "recurrent")
        agent.params = model.num_parameters()
        error = tx.max_action_error(ref, agent, cfg.obs_dim)
        src.checks[f"transformer-{kind}-onnx"] = error
        if not error <= 1e-4:
            raise ExportError(f"transformer-{kind}-onnx differs from PyTorch by {error:.3g}")
        return agent

    return make


ACT_AGENTS: dict[str, Callable[[PolicySource], BenchAgent]] = {
    "aaren-unfused": _eager("aaren", "recurrent", fused=False),
    "aaren-recurrent": _eager("aaren", "recurrent"),
    "aaren-recurrent-h20": _eager("aaren", "recurrent", horizon=20),
    "aaren-window": _eager("aaren", "window"),
    "transformer-window": _eager("transformer", "window"),
    "transformer-kv": _eager("transformer", "recurrent"),
    "aaren-compiled": _compiled,
    "aaren-onnx": _aaren_onnx("fp32"),
    "aaren-onnx-h20": _aaren_onnx("fp32", horizon=20),
    "aaren-onnx-fp16": _aaren_onnx("fp16"),
    "aaren-onnx-int8": _aaren_onnx("int8"),
    "transformer-window-onnx": _transformer_onnx("window"),
    "transformer-kv-onnx": _transformer_onnx("kv"),
}
"""Name -> factory(PolicySource) -> agent. Add further agents here."""

ENGINES = {name: "onnx" if "onnx" in name else "eager" for name in ACT_AGENTS}
ENGINES["aaren-compiled"] = "torchscript"


def temporary_workdir() -> tempfile.TemporaryDirectory:
    """A scratch folder for exported graphs (removed when the benchmark ends)."""
    return tempfile.TemporaryDirectory(prefix="aaren-bench-")
