# Two commands set everything up on a fresh machine:
#   make reproduce   run the whole pipeline on the embedded mini benchmark
#   make test        run the test suite (builds .venv first when needed)
# For students: `make lab` opens the five notebooks in JupyterLab; `make notebooks` normalizes them
# (strips outputs and widget state, keeps your edits) before a commit.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= mini
PYTEST_ARGS ?=

.PHONY: setup test test-fast notebooks notebooks-check lab reproduce smoke bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP) notebooks-check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) notebooks-check
	$(BIN)/python -m pytest -m "not notebooks and not slow" $(PYTEST_ARGS)

# The .ipynb files are the source: this strips outputs, execution counts and widget state in place.
notebooks: $(STAMP)
	$(BIN)/python tools/normalize_notebooks.py

notebooks-check: $(STAMP)
	@$(BIN)/python tools/normalize_notebooks.py --check

# JupyterLab at the project root (so results/ and data/ are reachable), the series open in order.
# LAB_ARGS go to `jupyter lab` (e.g. LAB_ARGS="--port 8890 --no-browser"); `make lab PROFILE=smoke`
# runs the five notebooks on that profile (CIR_LIB_PROFILE; without PROFILE: local_profile.txt, else mini).
LAB_ARGS ?=
lab: $(STAMP)
	$(if $(filter command line environment,$(origin PROFILE)),CIR_LIB_PROFILE=$(PROFILE) )$(BIN)/python tools/lab.py $(LAB_ARGS)

reproduce: $(STAMP)
	$(BIN)/cir-lib reproduce --profile $(PROFILE)

smoke: $(STAMP)
	$(BIN)/cir-lib reproduce --profile smoke

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) .pytest_cache
