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

# The lock: the exact versions the committed results were produced with (README, "Pinned installs").
LOCK := requirements-lock.txt
# Another build of the locked torch (CPU-only, another CUDA): its wheel index, e.g.
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
TORCH_PINS = $(shell grep -E '^(torch|torchvision)==' $(LOCK))

.PHONY: setup setup-latest test test-fast notebooks notebooks-check lab reproduce smoke bench gpu-check tensorboard clean

setup: $(STAMP)

# uv installs the lock about 4x faster than pip (parallel unpacking, no byte-compiling: about 50 s
# instead of about 3 minutes on 2 CPU cores). It is fetched from the package index into $(VENV)/uv/,
# beside the environment (which holds the lock alone), and given pip's index settings (index-url,
# extra-index-url, find-links: a mirror set up for pip serves it too), choosing across indexes as pip
# does. When uv cannot be had or fails, or with UV=none, pip installs the lock.
UV ?= $(VENV)/uv/bin/uv
comma := ,
pip_setting = $(strip $(or $($(1)),$(shell $(PYTHON) -m pip config get global.$(2) 2>/dev/null)))
UV_SETTINGS = UV_INDEX_STRATEGY=unsafe-best-match \
	$(if $(call pip_setting,PIP_INDEX_URL,index-url),UV_INDEX_URL="$(call pip_setting,PIP_INDEX_URL,index-url)") \
	$(if $(call pip_setting,PIP_EXTRA_INDEX_URL,extra-index-url),UV_EXTRA_INDEX_URL="$(call pip_setting,PIP_EXTRA_INDEX_URL,extra-index-url)") \
	$(if $(call pip_setting,PIP_FIND_LINKS,find-links),UV_FIND_LINKS="$(subst $() ,$(comma),$(call pip_setting,PIP_FIND_LINKS,find-links))")
PIP_LOCK_INSTALL = $(BIN)/python -m pip install --quiet --upgrade pip && $(BIN)/python -m pip install --quiet -r $(LOCK) -e ".[dev]"

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
ifeq ($(TORCH_INDEX),)
	if [ "$(UV)" != none ] && { [ -x "$(UV)" ] || $(BIN)/python -m pip install --quiet --target $(VENV)/uv uv; }; then \
	  $(UV_SETTINGS) $(UV) pip install --quiet --python $(BIN)/python -r $(LOCK) -e ".[dev]" || { $(PIP_LOCK_INSTALL); }; \
	else $(PIP_LOCK_INSTALL); fi
else
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS) --index-url $(TORCH_INDEX)
	grep -vE '^(torch|torchvision|triton|nvidia-|cuda-)' $(LOCK) > $(VENV)/lock-without-torch.txt
	$(BIN)/python -m pip install --quiet -r $(VENV)/lock-without-torch.txt -e ".[dev]"
endif
	touch $(STAMP)

# The latest releases within pyproject.toml's ranges instead of the lock (other numbers may follow).
setup-latest:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev]"
	echo latest > $(STAMP)

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

# TensorBoard over a profile's runs (live during training): make tensorboard PROFILE=paper
tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir results/$(PROFILE)/runs

reproduce: $(STAMP)
	$(BIN)/cir-lib reproduce --profile $(PROFILE)

smoke: $(STAMP)
	$(BIN)/cir-lib reproduce --profile smoke

# On a machine with CUDA: the cuda tests, the GPU benchmark and a paper dry run, one report file.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --out results/gpu-check.md

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) .pytest_cache
