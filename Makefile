# Two commands on a fresh machine:  make demo  |  make test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
CORES ?= 2

.PHONY: setup demo test test-all dryrun rulegraph report slurm-up slurm-down slurm-demo container-cpu clean-results

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
	$(BIN)/pytest -m "not slurm and not container" --durations=15

test-all: setup  ## the suites make test leaves out: a real local SLURM cluster, podman containers (.ci/run runs both)
	$(BIN)/pytest -m "slurm or container" --durations=10

dryrun: setup
	$(BIN)/snakemake -n --configfile config/demo.yaml

rulegraph: setup  ## redraw workflow/report/rulegraph.svg (README) from the real study's config; needs graphviz
	$(BIN)/snakemake --rulegraph --configfile config/config.yaml | dot -Tsvg > workflow/report/rulegraph.svg

report: setup  ## results/report.html after a run (summary table, per-category figures, compute per rule)
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml
	$(BIN)/snakemake --report results/report.html --configfile config/demo.yaml

slurm-up:  ## a single-node SLURM cluster with 2 fake GPUs on this machine (root; installs slurm-wlm + munge)
	tests/cluster/slurm_up.sh start

slurm-down:  ## stop the daemons slurm-up started
	tests/cluster/slurm_up.sh stop

slurm-demo: setup slurm-up  ## the demo through profiles/slurm on the local cluster
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --profile profiles/slurm --configfile config/demo.yaml

container-cpu:  ## the small offline CPU test image localhost/mmgenrec-cpu:test (podman; root)
	containers/build_cpu_image.sh

clean-results:
	rm -rf results resources logs benchmarks/*/ .snakemake
