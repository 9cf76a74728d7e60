# Two commands set everything up on a fresh machine:
#   make reproduce   run the whole pipeline on the embedded mini benchmark
#   make test        run the test suite (builds .venv first when needed)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= mini
PYTEST_ARGS ?=

.PHONY: setup test test-fast reproduce smoke bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not notebooks and not slow" $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(BIN)/cir-lib reproduce --profile $(PROFILE)

smoke: $(STAMP)
	$(BIN)/cir-lib reproduce --profile smoke

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) .pytest_cache
