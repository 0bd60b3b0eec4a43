# Each command sets up .venv on first use (pip install -e '.[dev]'), then runs.
VENV   := .venv
PYTHON := $(VENV)/bin/python
SETUP  := $(VENV)/.installed

.PHONY: help train test test-full benchmark gpu-check format lint tensorboard clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(SETUP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $(SETUP)

train: $(SETUP)  ## train the default classifier (small CNN on the embedded digits)
	$(PYTHON) src/train.py $(ARGS)

test: $(SETUP)  ## the fast test suite (what CI runs)
	$(PYTHON) -m pytest $(ARGS)

test-full: $(SETUP)  ## every test, slow ones included
	$(PYTHON) -m pytest -m "slow or not slow" $(ARGS)

benchmark: $(SETUP)  ## training speed against a hand-written loop; appends to docs/benchmarks.md
	$(PYTHON) scripts/benchmark.py $(ARGS)

gpu-check: $(SETUP)  ## run the GPU paths (AMP, compile, DDP, ...) and report PASS/FAIL; needs CUDA
	$(PYTHON) scripts/gpu_check.py $(ARGS)

format: $(SETUP)  ## format and fix lint with ruff
	$(PYTHON) -m ruff format src tests scripts hydra_plugins
	$(PYTHON) -m ruff check --fix src tests scripts hydra_plugins

lint: $(SETUP)  ## check formatting and lint without changing files
	$(PYTHON) -m ruff format --check src tests scripts hydra_plugins
	$(PYTHON) -m ruff check src tests scripts hydra_plugins

tensorboard: $(SETUP)  ## compare runs in TensorBoard (http://localhost:6006)
	$(VENV)/bin/tensorboard --logdir logs

clean:  ## remove run outputs and caches (keeps .venv and data/)
	rm -rf logs outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -exec rm -rf {} +
