# Two commands on a fresh machine (README):  make demo  |  make test
# Both create .venv and install everything into it first (once; redone when
# pyproject.toml changes). torch is installed first: sam2 is an sdist that builds against
# it; SAM2_BUILD_CUDA=0 skips its optional CUDA extension (only a post-processing speed-up).

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
CORES ?= 2
STAMP := $(VENV)/.installed

.PHONY: install demo test lint paper-smoke report clean-results

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	SAM2_BUILD_CUDA=0 $(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES) --rerun-incomplete
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES) --report results/report.html

test: install
	$(BIN)/ruff check .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest

# snakemake's own lint is a test (tests/test_workflow.py): it allows exactly one finding,
# the per-rule conda environments this workflow does not have (README: install)
lint: install
	$(BIN)/ruff check .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q tests/test_workflow.py -k lint

# The paper run's whole DAG at toy sizes (config/paper-smoke.yaml) on miniature archives of
# the 14 datasets, every job of it (~15 min on 2 cores). `make test` runs it with the
# comparison rows on a covering set of entries (config/paper-smoke-rows.yaml).
# SMOKE_DIR=<folder> keeps its results to look at.
paper-smoke: install
	PATH="$(CURDIR)/$(BIN):$$PATH" PAPER_SMOKE=full $(BIN)/pytest -q tests/test_paper_smoke.py

clean-results:
	rm -rf results/datasets results/models results/predictions results/metrics \
	       results/prompts results/report results/logs results/nnunet .snakemake
