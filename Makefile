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

.PHONY: train test test-fast docs compare bench demo-data stamps-data stamps-deps system-deps clean

# constraints.txt is the lock infra/Dockerfile installs from too.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo ">> installing resmm into $(VENV) (torch 2.13.0 CPU build, ray, mlflow, ... as locked in constraints.txt)"
	@$(PY) -m pip install -q -c constraints.txt torch==2.13.0 2>&1 | $(PIP_FILTER)
	@$(PY) -m pip install -q -c constraints.txt -e '.[dev]' 2>&1 | $(PIP_FILTER)
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
	@$(VENV)/bin/resmm demo-data --if-missing

# The second development corpus: Tux Paint's clip-art stamps (Debian tuxpaint-stamps-default), 16 classes.
# Train on ~/.cache/resmm/stamps-v2/train (XDG_CACHE_HOME); .../holdout holds unseen stamps, for the end only.
stamps-deps:
	@if [ ! -d /usr/share/tuxpaint/stamps ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo ">> installing tuxpaint-stamps-default (Debian, 160 MB)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tuxpaint-stamps-default >/dev/null; \
	  else \
	    echo "tuxpaint-stamps-default is missing and this user cannot install it:" \
	      "run 'sudo apt-get install tuxpaint-stamps-default'" >&2; exit 2; \
	  fi; \
	fi

stamps-data: $(STAMP) system-deps stamps-deps
	@$(VENV)/bin/resmm demo-data --corpus stamps --if-missing $(ARGS)

train: demo-data
	$(VENV)/bin/resmm train --summary-json summary.json $(ARGS)

# Every fusion, the unimodal models and the hand-written reference recipe on the demo;
# writes benchmarks/results/compare.{md,json}.
compare: demo-data
	$(VENV)/bin/resmm compare $(ARGS)

# Benchmarks against what users would pick instead; writes benchmarks/results/latest.{json,md}.
# Petastorm 0.13.1 needs pyarrow 12 and numpy<2, so it gets a venv of its own.
PETASTORM_VENV := .venv-petastorm
$(PETASTORM_VENV)/.installed:
	@test -x $(PETASTORM_VENV)/bin/python || $(PYTHON) -m venv $(PETASTORM_VENV)
	@echo ">> installing Petastorm 0.13.1 into $(PETASTORM_VENV) (pyarrow 12, numpy<2)"
	@$(PETASTORM_VENV)/bin/python -m pip install -q petastorm==0.13.1 pyarrow==12.0.1 "numpy<2" "pandas<2.3" \
	  pillow soundfile "scipy<1.14" 2>&1 | $(PIP_FILTER)
	@# The shared resampling work of every feed runs in torch, and resmm's preprocessor needs pydantic. torch goes
	@# in without its dependency on a newer setuptools, which petastorm 0.13.1 refuses (setuptools<70).
	@$(PETASTORM_VENV)/bin/python -m pip install -q "pydantic>=2" pyyaml 2>&1 | $(PIP_FILTER)
	@$(PETASTORM_VENV)/bin/python -m pip install -q --no-deps torch==2.13.0 filelock sympy mpmath networkx jinja2 \
	  markupsafe 2>&1 | $(PIP_FILTER)
	@touch $@

$(VENV)/.bench-installed: $(STAMP)
	@$(PY) -m pip install -q -e '.[dev,bench]' 2>&1 | $(PIP_FILTER)
	@touch $@

bench: demo-data $(VENV)/.bench-installed $(PETASTORM_VENV)/.installed
	$(PY) benchmarks/ingest.py $(ARGS)
	$(PY) benchmarks/train_throughput.py

test: $(STAMP) system-deps stamps-deps
	$(PY) -m pytest -ra $(PYTEST_ARGS)

# Fast iteration loop: everything but the end-to-end tests that start real services.
test-fast: $(STAMP) system-deps stamps-deps
	$(PY) -m pytest -ra -m "not e2e" $(PYTEST_ARGS)

# The manual as a site in site/: the configuration reference regenerated from the code, then mkdocs.
docs: $(STAMP)
	$(PY) -m resmm.config_reference > docs/configuration.md
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) $(PETASTORM_VENV) resmm_runs mlruns mlflow.db summary.json site
