# Two commands on a fresh machine:  make demo  |  make test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
CORES ?= 2

.PHONY: setup demo test test-all dryrun rulegraph clean-results

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

demo: setup  ## the whole pipeline on the embedded default (synthetic data, tiny models, CPU)
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml
	@echo; echo "results/summary.md:"; cat results/summary.md

test: setup  ## fast suite + the end-to-end demo run (no SLURM, no containers)
	$(BIN)/pytest -m "not slurm and not container"

test-all: setup  ## everything, including the SLURM and container suites
	$(BIN)/pytest

dryrun: setup
	$(BIN)/snakemake -n --configfile config/demo.yaml

rulegraph: setup
	$(BIN)/snakemake --rulegraph mermaid-js --configfile config/demo.yaml

clean-results:
	rm -rf results resources logs benchmarks/*/ .snakemake
