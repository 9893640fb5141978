"""aaren-rl: offline reinforcement learning with Aaren (attention as an RNN).

One distribution, one import root. The rooms of the repository are installed under it
(``pyproject.toml`` maps each folder with setuptools' ``package-dir``), so installing
aaren-rl adds a single top-level name to site-packages:

=========================  ==============  ==================================================
import                     folder          what
=========================  ==============  ==================================================
``aaren_rl.aaren_policy``  aaren_policy/   the model library: prefix scan, Aaren, Transformer
``aaren_rl.envs``          envs/           environments, datasets, samplers, scores
``aaren_rl.agents``        agents/         acting agents and checkpoints (ONNX agent torch-free)
``aaren_rl.eval``          eval/           rollouts, ``aaren-eval``, video
``aaren_rl.deploy``        deploy/         ``aaren-export`` (ONNX), the traced step
``aaren_rl.train``         train/          configs, the trainer, ``aaren-train``, DDP
``aaren_rl.collect``       collect/        ``aaren-collect``: SB3 behaviour policies, datasets
``aaren_rl.bench``         bench/          ``aaren-bench``: act, train, returns, memory, peers
=========================  ==============  ==================================================

The modules in this folder (errors, cli, file I/O, untrusted-input checks, tracking) sit below every room; the layering
is described in ``docs/design.md`` and checked by ``tests/test_layering.py``.
"""

__version__ = "0.2.0"

# Short OpenMP spinning unless the user chose a policy: this must run before torch loads its
# OpenMP runtime, which reads the environment once (aaren_rl/cpu.py says why).
from aaren_rl.cpu import keep_freed_memory as _keep_freed_memory  # noqa: E402
from aaren_rl.cpu import set_wait_policy as _set_wait_policy  # noqa: E402

_set_wait_policy()
# Freed activations are reused, not faulted in again every training step (aaren_rl/cpu.py).
_keep_freed_memory()
