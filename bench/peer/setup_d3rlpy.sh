#!/usr/bin/env bash
# Builds the separate virtual environment for the d3rlpy peer (d3rlpy pins gymnasium 1.0.0,
# which the main venv cannot share). Idempotent: re-running only fills in what is missing.
#
#   bash bench/peer/setup_d3rlpy.sh            # creates /work/main/.venv-d3rlpy (repo root/.venv-d3rlpy)
#   VENV=/some/path bash bench/peer/setup_d3rlpy.sh
#   TORCH_INDEX_URL=<a CPU-only torch wheel index> bash bench/peer/setup_d3rlpy.sh
#       (on a machine without a local torch 2.13.0+cpu wheel; pip's find-links here has one)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv-d3rlpy}"
PYTHON="${PYTHON:-python3}"   # 3.11 here
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
D3RLPY_VERSION="${D3RLPY_VERSION:-2.8.1}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --upgrade pip wheel >/dev/null

# 1. torch FIRST, pinned: a CPU build (a local wheel here, or PyTorch's CPU wheel elsewhere).
#    An unpinned torch pulled in by d3rlpy would resolve to the multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${PIP[@]}" install --extra-index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
  else
    "${PIP[@]}" install "torch==$TORCH_VERSION"
  fi
fi

# 2. d3rlpy (pins gymnasium==1.0.0), h5py, and MuJoCo for Hopper-v5 via gymnasium's extra.
#    torch is repeated with its pin so the resolver keeps the CPU build.
"${PIP[@]}" install "torch==$TORCH_VERSION" "d3rlpy==$D3RLPY_VERSION" h5py "gymnasium[mujoco]==1.0.0"

# 3. No CUDA stack may have come in.
if "${PIP[@]}" list --format=freeze 2>/dev/null | grep -i -E '^(nvidia-|triton)'; then
  echo "ERROR: CUDA packages were installed into $VENV (see above)" >&2
  exit 1
fi

# Smoke check, run in a temporary directory so that MuJoCo's MUJOCO_LOG.TXT stays out of the repo.
SMOKE_DIR="$(mktemp -d)"
trap 'rm -rf "$SMOKE_DIR"' EXIT
cd "$SMOKE_DIR"
"$VENV/bin/python" - <<'PY'
import d3rlpy, gymnasium, mujoco, torch, h5py
print(f"d3rlpy {d3rlpy.__version__}  torch {torch.__version__}  gymnasium {gymnasium.__version__}  "
      f"mujoco {mujoco.__version__}  h5py {h5py.__version__}")
env = gymnasium.make("Hopper-v5")
obs, _ = env.reset(seed=0)
assert obs.shape == (11,), obs.shape
env.close()
print("Hopper-v5 OK")
PY
