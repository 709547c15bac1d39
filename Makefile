# One entry point for a fresh machine. Every target creates the virtual
# environment (.venv) and installs the project into it when needed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help venv test test-all data datasets fv_vs_alexnet clean

help:
	@echo "make test       create .venv if missing, install with the dev extra, run the tests (slow ones excluded)"
	@echo "make test-all   the same, slow tests included"
	@echo "make data       obtain Fashion-MNIST (Debian package where apt-get works, else a download)"
	@echo "make datasets   obtain Fashion-MNIST, then run the 'datasets' experiment (inventory of all data sets)"
	@echo "make fv_vs_alexnet [PRESET=smoke|quick|full] [ARGS='--seeds 3 ...']"
	@echo "                obtain Fashion-MNIST, then run the main experiment (results/fv_vs_alexnet/<run-id>/)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m ''

data: $(STAMP)
	$(PY) -m experiments.fetch fashion-mnist

datasets: data
	$(PY) -m experiments.run datasets

PRESET ?= quick
ARGS   ?=

fv_vs_alexnet: data
	$(PY) -m experiments.run fv_vs_alexnet --preset $(PRESET) $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
