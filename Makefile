# resmm: every target does its own set-up, so a fresh clone needs nothing but `make train` or `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pip on these machines warns about every mirror path it skips; keep real errors only.
PIP_FILTER := { grep -v "is ignored: it is neither a file nor a directory" || true; }
PYTEST_ARGS ?=

.PHONY: train test test-fast compare demo-data system-deps clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo ">> installing resmm into $(VENV) (torch 2.13.0 CPU build, ray, mlflow, ...)"
	@$(PY) -m pip install -q torch==2.13.0 2>&1 | $(PIP_FILTER)
	@$(PY) -m pip install -q -e '.[dev]' 2>&1 | $(PIP_FILTER)
	@touch $(STAMP)

# espeak-ng voices the spoken digits of the built-in dataset.
system-deps:
	@if ! command -v espeak-ng >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo ">> installing espeak-ng (Debian)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null; \
	  else \
	    echo "espeak-ng is missing and this user cannot install it: run 'sudo apt-get install espeak-ng'" >&2; exit 2; \
	  fi; \
	fi

demo-data: $(STAMP) system-deps
	@$(PY) jobs/build_demo_data.py --if-missing

train: demo-data
	$(PY) jobs/train.py --summary-json summary.json $(ARGS)

# Every fusion plus the unimodal baselines on the demo; writes benchmarks/results/compare.{md,json}.
compare: demo-data
	$(PY) jobs/compare.py $(ARGS)

test: $(STAMP) system-deps
	$(PY) -m pytest -ra $(PYTEST_ARGS)

# Fast iteration loop: everything but the end-to-end tests that start real services.
test-fast: $(STAMP) system-deps
	$(PY) -m pytest -ra -m "not e2e" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) resmm_runs mlruns mlflow.db summary.json
