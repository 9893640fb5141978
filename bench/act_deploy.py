"""Per-action cost of the deployment paths (issue 7): batch 1, one thread, d 128, 3 layers.

    python bench/act_deploy.py            # writes docs/results/deploy.json and deploy.png
    python bench/act_deploy.py --help

Two levels per path, at t = 10 and t = 1000 (median over steps t-9..t of ``repeats`` 1000-step
episodes, interleaved so background load hits all paths alike):
- ``step``: the bare recurrent update (model call only);
- ``agent``: ``predict`` of the agent (normalisation, rtg bookkeeping, checks, numpy I/O).
The ONNX ``step`` is ``session.run`` with a feed dict; ``OnnxAgent.predict`` uses I/O binding
to preallocated buffers instead (~10 us less per call), so it can be cheaper than ``step``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aaren_rl.aaren_policy import DecisionModel, DecisionModelConfig  # noqa: E402
from aaren_rl.aaren_policy.fused import FusedAarenPolicy, trace_policy  # noqa: E402
from aaren_rl.agents import DecisionAgent  # noqa: E402
from aaren_rl.agents.onnx_agent import OnnxAgent  # noqa: E402
from aaren_rl.deploy.export import ExportConfig, TracedAgent, export_onnx  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=1000, help="episode length timed (t = 1..steps)")
    p.add_argument("--repeats", type=int, default=3, help="episodes per path (interleaved)")
    p.add_argument(
        "--out-dir", type=Path, default=Path("docs/results"), help="deploy.json/.png go here"
    )
    p.add_argument(
        "--d3rlpy-json",
        type=Path,
        default=None,
        help="a JSON with 'act_ms_median' measured for d3rlpy's DT on this machine "
        "(bench/peer/d3rlpy_dt.py); its line is drawn and the speed-ups are computed against it",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    STEPS, REPEATS, out_dir = args.steps, args.repeats, args.out_dir  # noqa: N806
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = DecisionModel(DecisionModelConfig(11, 3)).eval()  # d 128, 3 layers, 1 head
    kw = {"state_mean": np.zeros(11), "state_std": np.ones(11), "return_scale": 1000.0}
    tmp = Path(tempfile.mkdtemp(prefix="act-deploy-"))
    ckpt = DecisionAgent(model, **kw, target_return=3600.0, env_id="hopper").save(tmp / "ckpt")
    onnx_path = export_onnx(ExportConfig(ckpt, tmp / "policy.onnx"))
    policy = FusedAarenPolicy(model)
    traced = trace_policy(policy)
    onnx_agent = OnnxAgent(onnx_path)
    sess, names = onnx_agent.session, onnx_agent.output_names

    obs_t, rtg_t = torch.randn(1, 11), torch.full((1, 1), 3.6)
    obs_np = np.random.default_rng(0).standard_normal((STEPS, 1, 11)).astype(np.float32)

    def step_unfused():  # DecisionModel.act + observe_action (Backbone.step x 3)
        st = model.init_state(1)

        def f(t: int) -> None:
            nonlocal st
            tt = torch.tensor([t])
            a, st = model.act(rtg_t, obs_t, tt, st)
            st = model.observe_action(a, tt, st)

        return f

    def step_fused():
        st = policy.init_state(1)

        def f(t: int) -> None:
            nonlocal st
            _, st = policy(obs_t, rtg_t, torch.tensor([t]), st)

        return f

    def step_traced():
        st = tuple(policy.init_state(1))

        def f(t: int) -> None:
            nonlocal st
            st = tuple(traced(obs_t, rtg_t, torch.tensor([t]), *st)[1:])

        return f

    def step_onnx():
        feeds = {"obs": obs_np[0], "prev_reward": np.zeros(1), **onnx_agent.initial_state(1)}

        def f(t: int) -> None:
            outs = dict(zip(names, sess.run(names, feeds)))
            feeds.update({k: outs[v] for k, v in onnx_agent.state_next.items()})

        return f

    def agent(a):  # noqa: ANN001, ANN202
        def make():
            a.reset(1)

            def f(t: int) -> None:
                a.predict(obs_np[t], np.zeros(1), np.array([t == 0]))

            return f

        return make

    paths = {
        ("torch eager, unfused (model.act + observe_action)", "step"): step_unfused,
        ("torch eager, fused", "step"): step_fused,
        ("TorchScript trace of fused", "step"): step_traced,
        ("ONNX Runtime", "step"): step_onnx,
        ("torch eager, unfused (model.act + observe_action)", "agent"): agent(
            DecisionAgent(model, **kw, target_return=3600.0, fused=False)
        ),
        ("torch eager, fused", "agent"): agent(DecisionAgent(model, **kw, target_return=3600.0)),
        ("TorchScript trace of fused", "agent"): agent(
            TracedAgent(model, **kw, target_return=3600.0)
        ),
        ("ONNX Runtime", "agent"): agent(onnx_agent),
    }
    times = {k: np.empty((REPEATS, STEPS)) for k in paths}
    with torch.inference_mode():
        for make in paths.values():  # warm-up
            f = make()
            for t in range(50):
                f(t)
        for r in range(REPEATS):
            for k, make in paths.items():
                f = make()
                gc.collect()
                gc.disable()
                for t in range(STEPS):
                    t0 = time.perf_counter_ns()
                    f(t)
                    times[k][r, t] = (time.perf_counter_ns() - t0) / 1e3
                gc.enable()
                print(f"repeat {r + 1} {k}: median {np.median(times[k][r]):.0f} us", flush=True)
    rows = []
    for (name, level), tt in times.items():
        rows.append(
            {
                "path": name,
                "level": level,
                "us_t10": float(np.median(tt[:, 0:10])),
                "us_t1000": float(np.median(tt[:, STEPS - 10 :])),
                "us_all_median": float(np.median(tt)),
            }
        )
    sizes = {
        "onnx_file_bytes": onnx_path.stat().st_size,
        "safetensors_bytes": (ckpt / "model.safetensors").stat().st_size,
        "state_bytes_fused_torch": policy.init_state(1).nbytes(),
        "state_bytes_onnx": sum(a.nbytes for a in onnx_agent.initial_state(1).values()),
        "onnx_nodes_optimised": _optimised_nodes(onnx_path, tmp / "optimised.onnx"),
        "params": model.num_parameters(),
    }
    result = {
        "command": "python bench/act_deploy.py " + " ".join(sys.argv[1:]),
        "setting": "batch 1, 1 thread, d 128, 3 layers, 1 head, obs 11, act 3",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load avg {os.getloadavg()[0]:.1f} at the end",
        "versions": {"torch": torch.__version__, "onnxruntime": _ort_version()},
        "rows": rows,
        "sizes": sizes,
    }
    peer_ms = None
    if args.d3rlpy_json is not None:
        peer_ms = float(json.loads(args.d3rlpy_json.read_text())["act_ms_median"])
        result["d3rlpy_act_ms_median_measured"] = peer_ms
        result["speedup_vs_d3rlpy_measured"] = {
            f"{r['path']} [{r['level']}]": peer_ms * 1e3 / r["us_t1000"] for r in rows
        }
    result["speedup_vs_d3rlpy_5.7ms_design"] = {
        f"{r['path']} [{r['level']}]": 5700.0 / r["us_t1000"] for r in rows
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "deploy.json").write_text(json.dumps(result, indent=2))
    _plot(times, out_dir / "deploy.png", peer_ms)
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


def _optimised_nodes(path: Path, out: Path) -> int:
    """Nodes left after onnxruntime's graph optimisations (each costs ~0.5-1 us per call)."""
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return len(onnx.load(str(out)).graph.node)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _plot(times: dict, path: Path, peer_ms: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (name, level), tt in times.items():
        med = np.median(tt, axis=0)
        smooth = np.convolve(med, np.ones(25) / 25, mode="valid")
        ax.plot(
            np.arange(len(smooth)) + 13,
            smooth,
            label=f"{name} [{level}]",
            ls="-" if level == "agent" else "--",
        )
    ax.axhline(5700, color="k", lw=0.8, ls=":", label="d3rlpy DT (5.7 ms, DESIGN.md)")
    if peer_ms is not None:
        ax.axhline(
            peer_ms * 1e3,
            color="r",
            lw=0.8,
            ls=":",
            label=f"d3rlpy DT measured here ({peer_ms:.2f} ms)",
        )
    ax.set_yscale("log")
    ax.set_xlabel("episode step t")
    ax.set_ylabel("time per action (us, median of repeats, 25-step mean)")
    ax.set_title("Acting cost per action, batch 1, one thread, d 128, 3 layers")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
