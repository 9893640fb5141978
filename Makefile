# aaren-rl: `make demo` trains and evaluates an Aaren agent; `make test` runs lint + tests.
# Both set up their own virtual environment first (torch CPU build, then the project).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aaren-installed
DEMO_STEPS ?= 600
DEMO_DIR ?= runs/demo

.PHONY: setup test test-fast lint demo clean

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

test: lint
	HF_HUB_OFFLINE=1 WANDB_MODE=offline MUJOCO_GL=egl $(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -q -m "not slow"

demo: setup
	$(PY) -m aaren_rl.train.demo --steps $(DEMO_STEPS) --run-dir $(DEMO_DIR)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
