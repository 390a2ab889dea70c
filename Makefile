# Two entry points: `make run` (the default experiment) and `make test` (all checks).
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
# rules run `python -m isplit`: the venv's python must come first on PATH
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv run test lint unit report clean-results

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e ".[test]"
	touch $@

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)
	$(BIN)/snakemake --configfile $(CONFIG) --report results/report.html

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .
	$(BIN)/ruff check

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint unit

clean-results:
	rm -rf results logs benchmarks
