# Two entry points: `make demo` (complete small study on the built-in corpus, CPU is
# enough) and `make test`. Both create .venv from requirements.txt on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo
DEMO_DATA := $(DEMO_DIR)/data
DEMO_RUNS := $(DEMO_DIR)/runs
DEMO_ANALYSIS := $(DEMO_DIR)/analysis
NUM_PROC ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: setup data demo-data demo demo-grid demo-epochs test clean-demo

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

setup: $(VENV)/.installed

# the default study's dataset (configs/study.yaml: dataset): the built-in corpus at block_size 1024
data: data_out/builtin/stats.json

data_out/builtin/stats.json: $(VENV)/.installed
	$(PY) scripts/prepare_data.py --source builtin --output data_out/builtin --block-size 1024 --num-proc $(NUM_PROC)

# the demo studies' dataset (configs/demo_study.yaml: dataset): the built-in corpus at block_size 256
demo-data: $(DEMO_DATA)/stats.json

$(DEMO_DATA)/stats.json: $(VENV)/.installed
	$(PY) scripts/prepare_data.py --source builtin --output $(DEMO_DATA) --block-size 256 --num-proc $(NUM_PROC)

# A study, then its analysis: $(1) study file, $(2) study folder, $(3) analysis folder, $(4) extra run_study.py flags. The
# analysis runs even if a run failed (it reports what finished); the target fails when either failed.
define study_then_analysis
	$(PY) scripts/run_study.py --dataset $(DEMO_DATA) --output-dir $(2) --study $(1) $(4); \
	status=$$?; \
	$(PY) scripts/analyze.py --runs $(2) --output $(3); \
	analysis=$$?; \
	if [ $$analysis -eq 0 ]; then echo "Report: $(3)/report.md"; fi; \
	if [ $$status -ne 0 ]; then exit $$status; fi; \
	exit $$analysis
endef

demo: $(DEMO_DATA)/stats.json
	$(call study_then_analysis,configs/demo_study.yaml,$(DEMO_RUNS),$(DEMO_ANALYSIS),)

# the demo plus 13 IsoFLOP runs (configs/demo_grid_study.yaml) in the same folder: reuses the demo's
# runs and learning rates, then the report adds L(D), L(C), IsoFLOP profiles and the joint law L(N, D)
demo-grid: $(DEMO_DATA)/stats.json
	$(call study_then_analysis,configs/demo_grid_study.yaml,$(DEMO_RUNS),$(DEMO_ANALYSIS),)

# repeated data: 3 sizes x 3 token budgets, each from the whole split and from 3 unique-data sizes (4 to 128
# epochs), as cooldown branches (configs/demo_epochs_study.yaml), in demo/epochs, then the analysis with the
# data-constrained law (R_D*)
demo-epochs: $(DEMO_DATA)/stats.json
	$(call study_then_analysis,configs/demo_epochs_study.yaml,$(DEMO_DIR)/epochs,$(DEMO_DIR)/epochs/analysis,--parallel 2)

test: setup
	$(PY) -m pytest

clean-demo:
	rm -rf $(DEMO_DIR)
