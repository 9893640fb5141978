#!/usr/bin/env bash
# Download, on a machine with network, the wheels the results grid needs on an offline GPU box
# that already has Python 3.12, torch (CUDA), numpy, h5py, matplotlib, safetensors and tqdm,
# but not gymnasium, mujoco or tyro. Then check that they install and import without an index.
#
#   bash bench/gpu/fetch_wheels.sh            # -> .whl/ (git-ignored), prints the total size
#   (on the GPU box)  bash bench/gpu/install.sh && make results-gpu GPU_EXECUTOR=local
#
# Versions are the ones this repository is tested with (the venv of `make setup`). Ray is NOT
# fetched: its wheel alone is ~80 MB (ray 2.60, cp312), more than a 64 MiB transfer allows; on
# such a box the grid runs with `--executor local` (a process pool sharing the one GPU). Where
# Ray fits, add it with: WITH_RAY=1 bash bench/gpu/fetch_wheels.sh (ray + msgpack, jsonschema,
# attrs, referencing, rpds-py, jsonschema-specifications, click, filelock, protobuf, pyyaml,
# requests and their own deps; see `pip show ray`).
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=${DEST:-.whl}
PY_VERSION=${PY_VERSION:-3.12}
PIP=${PIP:-.venv/bin/pip}
mkdir -p "$DEST"

# name==version, one a line: the grid's imports beyond the box's own packages, --no-deps.
WHEELS=(
  gymnasium==1.4.0            # environments (Gymnasium API, MuJoCo v5 tasks)
  cloudpickle==3.1.3          # gymnasium
  farama-notifications==0.0.6 # gymnasium
  typing-extensions==4.16.0   # gymnasium, tyro (newer than some torch installs bring)
  mujoco==4.0.0               # MuJoCo Python bindings (pure Python since 4.0) ...
  mujoco-core==4.0.0          # ... and the compiled engine (cp312 manylinux wheel)
  glfw==2.11.0                # imported by `import mujoco`
  imageio==2.38.1             # imported by gymnasium's MuJoCo envs (needs pillow: matplotlib's)
  packaging==26.4             # gymnasium's MuJoCo rendering (matplotlib brings one too)
  tyro==1.0.17                # command lines (aaren-bench, aaren-train)
  docstring-parser==0.18.0    # tyro
  typeguard==4.6.1            # tyro
)
if [[ "${WITH_RENDER:-0}" == 1 ]]; then  # videos (aaren-eval --video): OpenGL, 3 MB
  WHEELS+=(pyopengl==3.1.10)
fi
if [[ "${WITH_RAY:-0}" == 1 ]]; then
  WHEELS+=(ray==2.60.0 msgpack jsonschema jsonschema-specifications referencing rpds-py attrs
           click filelock protobuf pyyaml requests charset-normalizer idna urllib3 certifi packaging)
fi

# Pure-Python wheels match any platform; compiled ones must be cp312 manylinux x86_64.
"$PIP" download --quiet --no-deps --only-binary=:all: --dest "$DEST" \
  --python-version "$PY_VERSION" --implementation cp --abi "cp${PY_VERSION/./}" --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any \
  "${WHEELS[@]%%#*}"

echo "wheels in $DEST:"
ls -1 "$DEST"
du -ch "$DEST"/*.whl | tail -1

# Check: install them alone (no index, no deps) into a fresh target and import what the grid
# imports. Needs a Python $PY_VERSION here (e.g. pyenv) and numpy for it; skipped otherwise.
if [[ -z "${CHECK_PY:-}" ]]; then
  for c in ~/.pyenv/versions/$PY_VERSION*/bin/python "$(command -v "python$PY_VERSION" || true)"; do
    if [[ -x "$c" ]] && "$c" -c pass 2>/dev/null; then CHECK_PY=$c; break; fi
  done
fi
if [[ -z "${CHECK_PY:-}" ]]; then
  echo "no python$PY_VERSION here: install check skipped"; exit 0
fi
CHECK=$(mktemp -d)
trap 'rm -rf "$CHECK"' EXIT
"$PIP" download --quiet --no-deps --only-binary=:all: --dest "$CHECK/numpy" \
  --python-version "$PY_VERSION" --implementation cp --abi "cp${PY_VERSION/./}" \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  numpy pillow  # the GPU box has its own (numpy; pillow with matplotlib): stand-ins here
"$CHECK_PY" -m pip install --quiet --no-index --no-deps --target "$CHECK/site" "$DEST"/*.whl "$CHECK/numpy"/*.whl
PYTHONPATH="$CHECK/site" PYTHONNOUSERSITE=1 "$CHECK_PY" -s - <<'PY'
import gymnasium as gym, mujoco, tyro
env = gym.make("Hopper-v5")
obs, _ = env.reset(seed=0)
for _ in range(10):
    obs, *_ = env.step(env.action_space.sample())
print(f"ok: gymnasium {gym.__version__}, mujoco {mujoco.__version__}, tyro {tyro.__version__}; "
      f"Hopper-v5 stepped, obs {obs.shape}")
PY
