#!/usr/bin/env bash
# On an offline GPU box (Python 3.12 + torch CUDA, numpy, h5py, matplotlib, safetensors, tqdm):
# unpack the wheels of .whl/ (made by bench/gpu/fetch_wheels.sh) into a site folder and make
# this checkout importable as aaren_rl without building or installing it: the folders named in
# pyproject.toml's [tool.setuptools.package-dir] are linked under one import root, as an
# install does. Prints the environment to use (eval it):
#
#   eval "$(bash bench/gpu/install.sh)" && python -m aaren_rl.bench.cli returns --help
#
# PYTHONSAFEPATH=1 keeps the checkout's own aaren_rl/ folder (the base modules only) from
# shadowing the linked package when Python runs from the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
SITE=${AAREN_SITE:-/tmp/aaren-site}
mkdir -p "$SITE"
shopt -s nullglob
for whl in .whl/*.whl; do  # a wheel is a zip of its site-packages files: no pip needed
  stamp="$SITE/.unpacked-$(basename "$whl")"
  [[ -e "$stamp" ]] || { "$PY" -m zipfile -e "$whl" "$SITE" && touch "$stamp"; }
done
rm -rf "$SITE/aaren_rl"
"$PY" - "$SITE" <<'PY' >&2
import sys, tomllib
from pathlib import Path

site, repo = Path(sys.argv[1]), Path.cwd()
dirs = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
root = site / "aaren_rl"
root.mkdir()
for f in (repo / "aaren_rl").glob("*.py"):
    (root / f.name).symlink_to(f)
for name, folder in dirs.items():
    (root / name.split(".", 1)[1]).symlink_to(repo / folder)
print(f"aaren_rl -> {repo} ({', '.join(dirs)}) in {site}")
PY
echo "export PYTHONPATH=$SITE\${PYTHONPATH:+:\$PYTHONPATH} PYTHONSAFEPATH=1 MUJOCO_GL=egl"
