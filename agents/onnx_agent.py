"""An agent that acts with an exported step graph in onnxruntime: no PyTorch on this path.

Same step API as ``agents.DecisionAgent`` (SB3-style)::

    agent = OnnxAgent("policy.onnx")
    agent.reset(num_envs)
    action = agent.predict(obs, reward, episode_start)

The graph (``aaren_rl.deploy.export``, contract in docs/deployment.md) does normalisation,
return-to-go bookkeeping and the recurrent update; this class only keeps the state tensors
between calls and writes the initial rows where an episode starts. Everything it needs (sizes,
target return, the input/output names) is read from the file's metadata.

This module imports numpy and onnxruntime only: a deployment does not need torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aaren_rl.agents.base import check_num_envs
from aaren_rl.agents.onnx_safety import check_external_data, check_model, check_onnx_metadata
from aaren_rl.agents.step_inputs import StepInputs
from aaren_rl.errors import OnnxAgentError
from aaren_rl.folders import read_bytes

__all__ = ["OnnxAgent", "OnnxAgentError", "SessionPerBatch", "make_session", "ort_value"]


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise OnnxAgentError("OnnxAgent needs onnxruntime: pip install 'aaren-rl[onnx]'") from e
    return onnxruntime


def ort_value(array: np.ndarray) -> Any:
    """An onnxruntime value that shares ``array``'s memory (for I/O binding: write the array
    in place, e.g. with ``np.copyto``, and the bound input sees it)."""
    return _ort().OrtValue.ortvalue_from_numpy(array)


MAX_ONNX_BYTES = 2**31  # protobuf's own limit for one file


def read_model(path: str | Path) -> bytes:
    """The bytes of an ONNX file (a clear error when there is none)."""
    path = Path(path)
    if not path.is_file():
        raise OnnxAgentError(f"no ONNX file at {path}; write one with aaren-export")
    return read_bytes(path, OnnxAgentError, MAX_ONNX_BYTES)  # a regular file, size-capped


def make_session(
    path: str | Path,
    threads: int = 1,
    data: bytes | None = None,
    vet_graph: bool = True,
    profile_prefix: str | None = None,
) -> Any:
    """An onnxruntime CPU session with the settings every aaren-rl ONNX path uses.

    ``threads`` intra-op threads (1: the embedded-device setting), sequential execution, all
    graph optimisations (constant folding, node fusions, pre-packed weights), and no
    spinning: with one thread the caller's thread runs every kernel, there is no pool to spin.
    ``data``: the file's bytes, read once by the caller; the session is built from them (and
    checked from them), so several sessions of one agent hold the same model even if the
    file is replaced meanwhile. A model with external data (inside its folder) is loaded from
    ``path``, where onnxruntime finds those files. ``vet_graph``: also check the graph
    (``onnx_safety.check_graph``: aaren-export's operators only, bounded sizes); only a caller
    that exported the file itself a moment ago, with other operators, passes False.
    ``profile_prefix``: run under onnxruntime's profiler, its JSON written there
    (``session.end_profiling()`` returns the file; ``aaren-bench act --profile-onnx``).
    """
    ort = _ort()
    path = Path(path)
    if data is None:
        data = read_model(path)
    # no external data outside the model's folder, only the operators and sizes we emit
    external = check_model(path, data) if vet_graph else check_external_data(path, data)
    source = str(path) if external else data
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise OnnxAgentError(f"{path} cannot be loaded by onnxruntime: {e}") from e


class SessionPerBatch:
    """onnxruntime sessions of one file, one per batch size (number of environments).

    onnxruntime plans a session's buffers (its "memory pattern") for the input shapes of the
    session's first run; runs at other shapes then go without that plan. Measured on the DT-size
    step graph at batch 1: 59 µs per call when the session's first run was at batch 1, 68 µs
    when it was at batch 2 (docs/research/acting.md). So an agent reset to a new number of
    environments acts through a session of its own for that number; the ``keep`` most
    recently used are kept. Every session is built from the file's bytes as read once here,
    so all of them hold the same model even if the file is replaced on disk later.
    """

    def __init__(
        self, path: str | Path, threads: int = 1, keep: int = 4, vet_graph: bool = True
    ) -> None:
        self.path, self.threads, self.keep = Path(path), threads, keep
        self.vet_graph = vet_graph
        self._data = read_model(self.path)
        self.first = self._make()  # read for the metadata; serves the first batch size
        self._spare: Any = self.first
        self._by_batch: dict[int, Any] = {}

    def _make(self) -> Any:
        return make_session(self.path, self.threads, self._data, self.vet_graph)

    def get(self, num_envs: int) -> Any:
        """The session for ``num_envs`` environments (made on first use)."""
        session = self._by_batch.pop(num_envs, None)
        if session is None:
            session, self._spare = self._spare or self._make(), None
        self._by_batch[num_envs] = session  # most recently used last
        while len(self._by_batch) > self.keep:
            dropped = self._by_batch.pop(next(iter(self._by_batch)))
            if dropped is self.first:
                self.first = None  # nothing keeps a dropped session alive
        return session


class OnnxAgent(StepInputs):
    """Act with an ``aaren-export`` ONNX file.

    Args:
        path: the .onnx file.
        target_return: return-to-go an episode starts from; default: the one recorded at export.
        threads: onnxruntime intra-op threads (1: the embedded-device setting).
    """

    mode = "recurrent"
    input_error = OnnxAgentError

    def __init__(
        self, path: str | Path, target_return: float | None = None, threads: int = 1
    ) -> None:
        self.path = Path(path)
        self.sessions = SessionPerBatch(self.path, threads)
        self.session = self.sessions.first
        meta = self.session.get_modelmeta().custom_metadata_map
        if "aaren.contract" not in meta:
            raise OnnxAgentError(
                f"{self.path} has no aaren-rl metadata: it was not written by aaren-export"
            )
        self.metadata: dict[str, str] = dict(meta)
        contract = check_onnx_metadata(self.metadata, self.path)  # types and sizes
        self.input_names: list[str] = contract["inputs"]
        self.output_names: list[str] = contract["outputs"]
        self.state_next: dict[str, str] = contract["state_next"]
        self.state_shapes: dict[str, list[Any]] = contract["state_shapes"]
        self._initial: dict[str, Any] = contract["initial_state"]
        # the state input that carries the action to the next call (the deferred token)
        self._action_key = next(k for k, v in self.state_next.items() if v == "action")
        self.obs_dim = int(meta["aaren.obs_dim"])
        self.act_dim = int(meta["aaren.act_dim"])
        self.env_id = meta.get("aaren.env_id") or None
        self.package_version = meta.get("aaren.package_version")
        self.target_return = float(
            meta["aaren.target_return"] if target_return is None else target_return
        )
        self._dtypes = {
            i.name: _NP_TYPES[i.type] for i in self.session.get_inputs() if i.type in _NP_TYPES
        }
        self.num_envs = 0
        self._all_started = False  # set by the first call after reset
        self.state: dict[str, np.ndarray] = {}

    @property
    def acting_horizon(self) -> int:
        """The memory horizon baked into the graph (0: the whole episode; exports made before
        the horizon existed have none and act over the whole episode)."""
        return int(self.metadata.get("aaren.memory_horizon", "0"))

    @property
    def model_bytes(self) -> int:
        """Size of the .onnx file."""
        return self.path.stat().st_size

    # ---- state --------------------------------------------------------------------------------

    def initial_state(self, num_envs: int) -> dict[str, np.ndarray]:
        """Initial state rows for ``num_envs`` fresh episodes (the graph's contract)."""
        out = {}
        for name, shape in self.state_shapes.items():
            dims = [num_envs if d == "B" else int(d) for d in shape]
            value = self._initial[name]
            value = self.target_return if value == "target_return" else float(value)
            out[name] = np.full(dims, value, dtype=self._dtypes[name])
        return out

    def reset(self, num_envs: int = 1) -> None:
        """Forget everything; prepare for ``num_envs`` parallel environments."""
        num_envs = check_num_envs(num_envs, OnnxAgentError)
        self.num_envs = num_envs
        self._fresh = self.initial_state(num_envs)
        self._started = np.zeros(num_envs, dtype=bool)
        self._all_started = False
        self._no_start = bytes(num_envs)  # N False flags, as episode_start.tobytes() gives them
        self.session = self.sessions.get(num_envs)
        self._bind(num_envs)

    def _bind(self, n: int) -> None:
        # I/O binding to preallocated buffers (~10 us less per call than session.run with a
        # dict): two state sets, A -> B and B -> A, so a call never reads what it writes.
        # OrtValues made from numpy arrays share their memory, so the inputs are refreshed
        # with np.copyto and the outputs land directly in the next call's state arrays.
        wrap = ort_value
        self._obs = np.zeros((n, self.obs_dim), dtype=np.float32)
        self._reward = np.zeros(n, dtype=np.float64)
        self._sets = [self.initial_state(n), self.initial_state(n)]
        self._values = []  # keeps the OrtValues alive as long as the bindings
        self._bindings = []
        for src, dst in ((0, 1), (1, 0)):
            binding = self.session.io_binding()
            values = [wrap(self._obs), wrap(self._reward)]
            binding.bind_ortvalue_input("obs", values[0])
            binding.bind_ortvalue_input("prev_reward", values[1])
            for name, out in self.state_next.items():
                values += [wrap(self._sets[src][name]), wrap(self._sets[dst][name])]
                binding.bind_ortvalue_input(name, values[-2])
                binding.bind_ortvalue_output(out, values[-1])
            for out in self.output_names:  # outputs that are not state (none at present)
                if out not in self.state_next.values():
                    binding.bind_output(out)
            self._values.append(values)
            self._bindings.append(binding)
        self._current = 0
        self.state = self._sets[0]

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace the carried state (e.g. restored from a log); shapes are checked."""
        n = self.num_envs
        missing = sorted(set(self.state_shapes) - set(state))
        if missing:
            raise OnnxAgentError(
                f"state lacks {missing}; expected keys {sorted(self.state_shapes)}"
            )
        checked = {}
        for name, shape in self.state_shapes.items():
            want = tuple(n if d == "B" else int(d) for d in shape)
            arr = np.asarray(state[name], dtype=self._dtypes[name])
            if arr.shape != want:
                raise OnnxAgentError(
                    f"state {name!r} has shape {arr.shape}, this policy with {n} envs expects "
                    f"{want}; call reset(num_envs) for a fresh state"
                )
            checked[name] = arr
        for name, arr in checked.items():  # into the bound buffers
            np.copyto(self.state[name], arr)

    def state_nbytes(self) -> int:
        """Bytes of the carried state (all envs)."""
        return sum(a.nbytes for a in self.state.values())

    # ---- acting -------------------------------------------------------------------------------

    def predict(
        self,
        obs: np.ndarray,
        reward: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
    ) -> np.ndarray:
        """(N, act_dim) float32 actions in [-1, 1]; arguments as ``agents.base.Agent.predict``
        (``obs`` raw: the graph normalises it; the first call treats every env as starting)."""
        if not self._steady_inputs(obs, reward, episode_start):
            obs, reward, start = self._check_inputs(obs, reward, episode_start)
            if start.any():  # the initial rows start an episode (the graph's contract)
                for name, arr in self.state.items():
                    arr[start] = self._fresh[name][start]
                self._started[:] = True
                self._all_started = True
            np.copyto(self._obs, obs)
            np.copyto(self._reward, reward)
        cur = self._current
        self.session.run_with_iobinding(self._bindings[cur])
        self._current = 1 - cur
        self.state = self._sets[1 - cur]
        return self.state[self._action_key].copy()  # the state keeps its own (deferred token)

    def _steady_inputs(
        self, obs: Any, reward: np.ndarray | None, episode_start: np.ndarray | None
    ) -> bool:
        """The common call, written into the bound buffers with the checks of
        ``_check_inputs`` but without its conversions (~3 µs of a ~60 µs call): every env has
        started, ``obs`` is an (N, obs_dim) array, ``reward`` and ``episode_start`` are (N,)
        and no episode starts. False (nothing written that matters) for any other call, which
        then goes through ``_check_inputs``."""
        n = self.num_envs
        if not (
            self._all_started
            and isinstance(obs, np.ndarray)
            and obs.shape == self._obs.shape
            and obs.dtype.kind in "biuf"  # numbers: copyto casts them as np.asarray would
            and isinstance(reward, np.ndarray)
            and reward.shape == (n,)
            and reward.dtype.kind in "biuf"
            and (
                episode_start is None
                or (  # all False, compared as bytes: np.any costs 1-3 µs on a tiny array
                    isinstance(episode_start, np.ndarray)
                    and episode_start.dtype == np.bool_
                    and episode_start.tobytes() == self._no_start
                )
            )
        ):
            return False
        np.copyto(self._obs, obs)
        self._check_finite(self._obs)
        np.copyto(self._reward, reward)
        return True

    def __repr__(self) -> str:
        return (
            f"OnnxAgent({self.path.name}, env={self.env_id}, target_return={self.target_return}, "
            f"memory_horizon={self.acting_horizon}, "
            f"aaren-rl {self.package_version})"
        )


_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
}
