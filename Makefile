# aaren-rl: `make demo` trains and evaluates an Aaren agent; `make test` runs lint + tests.
# Both set up their own virtual environment first (torch CPU build, then the project).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aaren-installed
DEMO_STEPS ?= 600
DEMO_DIR ?= runs/demo
DEMO_PRECISION ?= auto

.PHONY: cpu-checks peer-setup results-tmaze setup test test-avx2 test-fast lint demo clean results results-datasets results-offline results-offline-status results-status results-gpu results-peer results-1k

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned to the local CPU build: an open-ended torch requirement
	# installed first would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	@if $(PY) -m pip list 2>/dev/null | grep -iE '^(nvidia-|triton)'; then \
		echo "error: CUDA packages were installed (see above); expected the CPU torch build"; exit 1; fi
	touch $(STAMP)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The d3rlpy peer's own venv (d3rlpy pins gymnasium 1.0.0; bench/peer/setup_d3rlpy.sh, about
# 40 s with pip's cache): `make test` builds it too, so that the peer's tests
# (tests/bench/test_d3rlpy_resume.py) run the real d3rlpy instead of skipping. VENV is set
# here: the script would otherwise install into a VENV exported for the main venv.
PEER_SETUP := VENV=$(CURDIR)/.venv-d3rlpy bash bench/peer/setup_d3rlpy.sh
PEER_STAMP := .venv-d3rlpy/.aaren-installed
$(PEER_STAMP): bench/peer/setup_d3rlpy.sh
	@mkdir -p runs/logs
	@echo "setting up .venv-d3rlpy (log: runs/logs/setup-d3rlpy.log)"
	@$(PEER_SETUP) >> runs/logs/setup-d3rlpy.log 2>&1 || { tail -n 30 runs/logs/setup-d3rlpy.log; exit 1; }
	touch $(PEER_STAMP)
peer-setup: $(PEER_STAMP)

test: lint peer-setup
	HF_HUB_OFFLINE=1 WANDB_MODE=offline MUJOCO_GL=egl $(PY) -m pytest -q -p no:cacheprovider

# Tests on an emulated AVX2-only CPU (no AVX-512 / BF16 / VNNI / AMX) with qemu-user, from
# any x86-64 host (tools/emulate-avx2). Emulation runs ~40x slower, so by default the tests
# whose results could depend on the CPU's kernels: the model's numerics and precisions, the
# agents, export and ONNX (fp32 / fp16 / int8), the CPU module (about an hour; 30 s natively).
# The whole suite: make test-avx2 AVX2_TESTS=tests (hours).
AVX2_TESTS ?= tests/aaren_policy tests/agents tests/deploy tests/bench/test_act.py \
	tests/bench/test_attention.py tests/bench/test_bench_train.py tests/test_cpu.py
test-avx2: setup
	HF_HUB_OFFLINE=1 WANDB_MODE=offline MUJOCO_GL=egl tools/emulate-avx2 $(PY) -m pytest -q \
		-p no:cacheprovider $(AVX2_TESTS)

test-fast: setup
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -q -m "not slow"

# The Passive T-Maze from the main commands (aaren-collect + aaren-train + aaren-eval), 3 seeds:
# success at L = 1000, 1500 and 3000 after training at L <= 300 (docs/memory.md). Resumable.
results-tmaze: setup
	MUJOCO_GL=egl studies/tmaze_main_cli.sh 0 1 2

demo: setup
	$(PY) -m aaren_rl.train.demo --steps $(DEMO_STEPS) --run-dir $(DEMO_DIR) --precision $(DEMO_PRECISION)

# `make cpu-checks`: what depends on this CPU, measured in one go into
# docs/results/cpu/<cpu>/ (<cpu>: the model name and its widest vector path, e.g.
# amd-epyc-7b13-avx2): the DT training step in fp32 against d3rlpy's at one thread and on
# every core, the threading benchmark with 0, 1 and 2 busy processes, ONNX acting against
# its floors with the per-node profile, and `make demo`, timed (and again in fp32, the AVX2
# path, where auto picks bf16). Every JSON records the CPU's
# flags. About 30 minutes on 2 cores; leave the machine otherwise idle
# (docs/benchmarks.md, "Which CPU"). CPU_CHECKS_QUICK=1 (any non-empty value): a smoke run
# of the same steps.
CPU_TAG = $(eval CPU_TAG := $(shell $(PY) -c "from aaren_rl.cpu import cpu_tag; print(cpu_tag())" 2>/dev/null))$(CPU_TAG)
CPU_DIR ?= docs/results/cpu/$(CPU_TAG)
CPU_CHECKS_QUICK ?=
CPU_STEPS = $(if $(CPU_CHECKS_QUICK),--steps 2 --warmup 0,--steps 7)
cpu-checks: SHELL := /bin/bash
cpu-checks: setup
	@test -n "$(CPU_TAG)" || { echo "cpu-checks: cannot name this CPU (aaren_rl.cpu.cpu_tag)"; exit 2; }
	@mkdir -p $(CPU_DIR) runs/logs
	@echo "cpu-checks: $(CPU_TAG) -> $(CPU_DIR)"
	$(PEER_SETUP) >> runs/logs/setup-d3rlpy.log 2>&1 || echo "d3rlpy venv not set up: its rows are left out"
	$(PY) -m aaren_rl.bench.cli train --context-lengths 20 --batch-sizes 64 --precision fp32 \
	  $(CPU_STEPS) --threads 1 --out $(CPU_DIR)/train-t1
	$(PY) -m aaren_rl.bench.cli train --context-lengths 20 --batch-sizes 64 --precision fp32 \
	  $(CPU_STEPS) --threads $(shell nproc) --out $(CPU_DIR)/train-tall
	$(PY) -m aaren_rl.bench.cli threads --backbones aaren transformer --load-session other \
	  $(if $(CPU_CHECKS_QUICK),--repeats 1 --steps 2 --loads 0 1,--repeats 3 --steps 6) --out $(CPU_DIR)/threads
	$(PY) -m aaren_rl.bench.cli act --agents aaren-onnx aaren-onnx-int8 aaren-onnx-fp16 \
	  transformer-window-onnx --num-envs 1 --repeats 3 --profile-onnx \
	  $(if $(CPU_CHECKS_QUICK),--quick) --out $(CPU_DIR)/act
	@set -eo pipefail; start=$$(date +%s); $(MAKE) --no-print-directory demo DEMO_DIR=runs/demo-cpu-checks \
	  $(if $(CPU_CHECKS_QUICK),DEMO_STEPS=5) 2>&1 | tee $(CPU_DIR)/demo.log; \
	  echo "make demo: $$(( $$(date +%s) - start )) s in all (setup done)" | tee -a $(CPU_DIR)/demo.log
	@if [ "$$($(PY) -c "from aaren_rl.aaren_policy.precision import resolve_precision; print(resolve_precision('auto', 'cpu'))")" != fp32 ]; then \
	  set -eo pipefail; start=$$(date +%s); $(MAKE) --no-print-directory demo DEMO_DIR=runs/demo-cpu-checks-fp32 \
	  DEMO_PRECISION=fp32 $(if $(CPU_CHECKS_QUICK),DEMO_STEPS=5) 2>&1 | tee $(CPU_DIR)/demo-fp32.log; \
	  echo "make demo DEMO_PRECISION=fp32: $$(( $$(date +%s) - start )) s in all (setup done)" | tee -a $(CPU_DIR)/demo-fp32.log; fi

# ---- the results grid (docs/results.md) -------------------------------------------------
# `make results`: the CPU grid on this machine: hopper/halfcheetah/walker2d x medium and
# medium-replay (made first with aaren-collect when missing, docs/data.md), Aaren and the
# Transformer, 3 seeds, 10k steps, scored every 1000; Ray tasks, one per CPU (RESULTS_CPUS).
# Resumable: stop it at any point and run it again. d3rlpy's rows: `make results-peer`.
# In the background:
#   nohup make results >/dev/null 2>&1 &      (log: runs/logs/results.log)
# `make results-gpu`: the full DT budget (100k steps) of the same grid on one CUDA GPU, runs
# side by side on the one device (each asks Ray for GPU_PER_RUN of it: 1/16 = 16 at a time).
# On an offline box without Ray: run bench/gpu/fetch_wheels.sh where there is network, carry
# .whl/ and runs/datasets/, then `make results-gpu GPU_EXECUTOR=local` (a pool of GPU_JOBS).
RESULTS_CPUS ?= $(shell nproc)
RESULTS_ARGS ?=
GRID_ENVS := hopper halfcheetah walker2d
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_EXECUTOR ?= ray
GPU_JOBS ?= 16
GPU_PER_RUN ?= 0.0625
GPU_EVAL_EVERY ?= 5000
RESULTS_STEPS ?= 10000
RESULTS_EVAL_EVERY ?= 1000
PEER_DATASETS ?= hopper-medium walker2d-medium
PEER_SEEDS ?= 0 1 2
PEER_JOBS ?= $(RESULTS_CPUS)
PEER_STEPS ?= $(RESULTS_STEPS)
PEER_EVAL_EVERY ?= $(RESULTS_EVAL_EVERY)
PEER_DIR = docs/results/returns-$(shell echo $$(($(PEER_STEPS) / 1000)))k
PEER_SUMMARY = --docs docs/results.md  # the grid section of this page is rebuilt too
PEER_EVAL_AT = $(shell seq -s, $(PEER_EVAL_EVERY) $(PEER_EVAL_EVERY) $$(($(PEER_STEPS) - 1)))
results results-datasets results-offline results-gpu results-peer results-1k: SHELL := /bin/bash

results-datasets: setup
	@mkdir -p runs/logs runs/datasets
	@for env in $(GRID_ENVS); do \
	  if [ ! -f runs/datasets/$$env-medium.hdf5 ] || [ ! -f runs/datasets/$$env-medium-replay.hdf5 ]; then \
	    echo "collecting $$env (aaren-collect, seed 0; docs/data.md)"; \
	    OMP_NUM_THREADS=1 nice -n 10 $(VENV)/bin/aaren-collect --env $$env --seed 0 \
	      --levels medium medium-replay expert --no-minari --hdf5-dir runs/datasets \
	      --work-dir runs/collect/$$env-ppo-s0 >> runs/logs/collect-$$env.log 2>&1 || exit 1; \
	  fi; done
	@$(PY) -m aaren_rl.bench.cli datasets > runs/logs/datasets-check.log 2>&1 \
	  && echo "datasets: the files here match their records in docs/results/datasets.json" \
	  || echo "datasets: NOT the published files (runs/logs/datasets-check.log; docs/data.md, 'Datasets check')"

results: results-datasets
	set -o pipefail; HF_HUB_OFFLINE=1 MUJOCO_GL=egl nice -n 10 $(PY) -m aaren_rl.bench.cli returns \
	  --steps $(RESULTS_STEPS) --eval-every $(RESULTS_EVAL_EVERY) --device cpu --num-cpus $(RESULTS_CPUS) \
	  --docs docs/results.md $(RESULTS_ARGS) 2>&1 | tee -a runs/logs/results.log

# `make results-offline`: the 10k grid again with Aaren's horizon chosen offline (the default
# since 0.3: held-out dataset episodes, docs/training.md) and, beside it, the horizon chosen
# online (--also-online, labelled so), the whole episode and the window; the Transformer runs
# again too, on the same files (aaren-collect on another CPU kind makes other files than the
# published ones: docs/data.md); then d3rlpy's DT on the four datasets it had not run on. Its
# own folders (the published grid in docs/results/returns-10k stays); resumable.
#   nohup make results-offline >/dev/null 2>&1 &      (log: runs/logs/results-offline.log)
OFFLINE_OUT ?= docs/results/returns-10k-offline
OFFLINE_ARGS ?= --runs aaren:auto transformer:auto --also-online --executor local \
  --out-dir $(OFFLINE_OUT) --work-dir runs/returns-10k-offline
OFFLINE_PEER ?= hopper-medium-replay walker2d-medium-replay halfcheetah-medium halfcheetah-medium-replay
results-offline: results-datasets
	set -o pipefail; HF_HUB_OFFLINE=1 MUJOCO_GL=egl nice -n 10 $(PY) -m aaren_rl.bench.cli returns \
	  --steps $(RESULTS_STEPS) --eval-every $(RESULTS_EVAL_EVERY) --device cpu --num-cpus $(RESULTS_CPUS) \
	  $(OFFLINE_ARGS) 2>&1 | tee -a runs/logs/results-offline.log
	$(MAKE) results-peer PEER_DATASETS="$(OFFLINE_PEER)" PEER_DIR=$(OFFLINE_OUT) PEER_SUMMARY=

results-offline-status: setup
	@$(PY) -m aaren_rl.bench.cli returns --status --steps $(RESULTS_STEPS) $(OFFLINE_ARGS)
	@$(PY) bench/peer/status.py --out-dir $(OFFLINE_OUT) --datasets $(OFFLINE_PEER) --seeds $(PEER_SEEDS)

# `make results-peer`: d3rlpy's DT (its own venv, bench/peer/) on PEER_DATASETS, the same
# files, seeds, steps, warm-up (steps / 10) and scoring as `make results`; a run whose JSON
# exists is skipped; an interrupted one continues from its last saved state, under
# runs/peer-state/ (saved every 250 steps and at each evaluation; after SIGTERM or Ctrl-C, at
# the step it stopped at). Its JSON go to PEER_DIR, the folder of the grid it is compared with
# (results-offline passes its own: runs on other files must not share a table), which is then
# summarised again.
results-peer: setup
	@mkdir -p runs/logs
	$(PEER_SETUP) >> runs/logs/setup-d3rlpy.log 2>&1
	for ds in $(PEER_DATASETS); do for s in $(PEER_SEEDS); do \
	  out=$(PEER_DIR)/$${ds}__d3rlpy-dt__window__s$${s}__window.json; \
	  [ -f $$out ] || echo "$$ds $$s $$out"; done; done | \
	xargs -r -P $(PEER_JOBS) -L 1 bash -c 'OMP_NUM_THREADS=1 nice -n 10 .venv-d3rlpy/bin/python \
	  bench/peer/d3rlpy_dt.py --dataset runs/datasets/$$0.hdf5 --seed $$1 --steps $(PEER_STEPS) \
	  --warmup $(shell echo $$(($(PEER_STEPS) / 10))) --eval-at $(PEER_EVAL_AT) --eval-episodes 10 \
	  --curve-episodes 10 --threads 1 --log-every 500 --out $$2 --state-dir runs/peer-state/$$(echo $$2 | tr / _) \
	  >> runs/logs/peer-$$0-s$$1.log 2>&1 && echo "done: $$2"'
	$(PY) -m aaren_rl.bench.cli returns --steps $(PEER_STEPS) --summary-only --out-dir $(PEER_DIR) \
	  $(PEER_SUMMARY)

# `make results-status`: where each run of `make results` and `make results-peer` stands (done,
# its checkpoint's or saved state's step, or not started); starts nothing.
results-status: setup
	@$(PY) -m aaren_rl.bench.cli returns --status --steps $(RESULTS_STEPS) $(RESULTS_ARGS)
	@$(PY) bench/peer/status.py --out-dir $(PEER_DIR) --datasets $(PEER_DATASETS) --seeds $(PEER_SEEDS)

# `make results-1k`: the 1000-step comparison on both Hopper datasets (docs/results.md, "At
# 1,000 steps"): Aaren, the Transformer and d3rlpy's DT, 3 seeds, scored every 250 steps.
results-1k:
	$(MAKE) results GRID_ENVS=hopper RESULTS_STEPS=1000 RESULTS_EVAL_EVERY=250 \
	  RESULTS_ARGS="--datasets d4rl:runs/datasets/hopper-medium.hdf5 d4rl:runs/datasets/hopper-medium-replay.hdf5"
	$(MAKE) results-peer RESULTS_STEPS=1000 RESULTS_EVAL_EVERY=250 PEER_DATASETS="hopper-medium hopper-medium-replay"

results-gpu:
	@mkdir -p runs/logs
	set -o pipefail; \
	if ! $(GPU_PY) -c "import aaren_rl.bench.returns, gymnasium, mujoco, tyro" 2>/dev/null; then \
	  eval "$$(PY=$(GPU_PY) bash bench/gpu/install.sh)"; fi; \
	HF_HUB_OFFLINE=1 MUJOCO_GL=egl $(GPU_PY) -m aaren_rl.bench.cli returns \
	  --steps 100000 --eval-every $(GPU_EVAL_EVERY) --device cuda --executor $(GPU_EXECUTOR) \
	  --num-cpus $(GPU_JOBS) --gpu-per-run $(GPU_PER_RUN) \
	  --docs docs/results.md $(RESULTS_ARGS) 2>&1 | tee -a runs/logs/results-gpu.log

clean:
	rm -rf $(VENV) .venv-d3rlpy .pytest_cache .ruff_cache runs
