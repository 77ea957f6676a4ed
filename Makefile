# Two commands set everything up on a fresh machine: `make lab` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# OpenMP's default spin-wait costs about 3x on small CPU machines; see README.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: lab test chromium notebooks bench lint clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# BasicSR is the reference for the EDVR interoperability tests. Its package metadata
	# pulls in a build of its CUDA ops, so install it (and what its archs import) alone.
	$(PY) -m pip install --quiet setuptools
	$(PY) -m pip install --quiet --no-build-isolation --no-deps basicsr==1.4.2 addict yapf lmdb pyyaml future
	@touch $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

test: $(STAMP) chromium
	DALIGN_PROFILE=quick $(PY) -m pytest

# tests/test_browser.py drives Debian's chromium; install it where we can (root with apt-get),
# else the test is skipped with a message (and fails under CI=true).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium is not installed (apt-get install chromium): the browser test will be skipped"

notebooks: $(STAMP)
	DALIGN_PROFILE=quick $(PY) scripts/execute_notebooks.py notebooks/*.py

bench: $(STAMP)
	$(PY) -m dalign_nb.bench dcn
	$(PY) -m dalign_nb.bench train
	$(PY) -m dalign_nb.bench widgets

lint: $(STAMP)
	$(VENV)/bin/ruff check dalign_nb tests scripts notebooks

clean-venv:
	rm -rf $(VENV)
