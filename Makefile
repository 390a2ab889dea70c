# Entry points: `make run` (the default experiment), `make check` (the fast tier) and
# `make test` (everything CI runs).
# Both create .venv on first use: torch first (the 2.14.1/0.29.1 pair installs from the
# machine's local wheels; PyPI's torchvision does not work beside other torch builds), then
# this package with its workflow and test extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.isplit-installed
CORES ?= $(shell nproc)
CONFIG ?= config/config.yaml
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: venv run check test lint unit integration clean-results

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e ".[test,ns3]"
	touch $@

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)
	$(BIN)/snakemake --configfile $(CONFIG) --report results/report.html

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .
	$(BIN)/ruff check
	$(BIN)/ruff format --check

# the fast tier (< 3 min on 2 cores): tiny networks, no workflow runs
unit: $(STAMP)
	$(BIN)/pytest -q -m "not slow" tests/unit

check: lint unit

# workflow runs, killed-and-resumed training, exports, and the real SLURM test where allowed
integration: $(STAMP)
	$(BIN)/pytest -q -m slow tests/unit
	$(BIN)/pytest -q tests/integration tests/cluster

test: check integration

clean-results:
	rm -rf results logs benchmarks
