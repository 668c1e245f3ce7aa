# LPL: `make test` and `make figures` work on a fresh clone: they create .venv and install what is needed.
# GPU users: `make TORCH_SPEC="torch>=2.2" test` (or any pip spec) to take another torch build.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Machines that keep local wheels (the CPU torch build) in /opt/wheels use them first.
PIP_FIND ?= $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lpl-installed

.PHONY: install data-check test lint format figures theory-figures study-figures study study-quick ablation bench gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_FIND) "$(TORCH_SPEC)"
	$(PY) -m pip install -q $(PIP_FIND) -e ".[dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# The notebooks and the live figures train on the real Fashion-MNIST: if it is missing, say where it was
# looked for and how to get it, before anything starts.
data-check: $(STAMP)
	@$(VENV)/bin/lpl-train run fmnist_lt100_ce --dry-run >/dev/null

test: lint data-check
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbmake notebooks

theory-figures: $(STAMP)
	$(PY) -m lpl_theory figures --out figures

# Theory meets experiment, a short live Fig. 11 run, and the study's tables and figures from the committed
# per-run results (figures/study-runs.jsonl; `make study` retrains them).
study-figures: $(STAMP)
	$(PY) -m lpl_train.theory_check --out figures
	$(PY) -m lpl_train.study --fig11-live
	$(PY) -m lpl_train.study --report-only
	$(PY) -m lpl_train.study --report-only --quick

figures: data-check theory-figures study-figures

# The CPU-scale study on Fashion-MNIST (about 45 CPU-minutes; resumable) and its few-minute smoke version.
study: $(STAMP)
	$(PY) -m lpl_train.study --jobs 2

study-quick: $(STAMP)
	$(PY) -m lpl_train.study --quick --jobs 2

# The LPL long-tail ablation (docs/study.md; resumable, several CPU-hours): the main study, the key
# comparison trained 48 epochs and on the full training set, then the records and tables in figures/.
ABLATION_JOBS ?= 1
ablation: $(STAMP)
	$(PY) -m lpl_train.study --study lpl_train/configs/study/ablation.toml --out runs/ablation --figures runs/ablation/report --jobs $(ABLATION_JOBS)
	$(PY) -m lpl_train.study --study lpl_train/configs/study/ablation_e48.toml --out runs/ablation-e48 --figures runs/ablation-e48/report --jobs $(ABLATION_JOBS)
	$(PY) -m lpl_train.study --study lpl_train/configs/study/ablation_full_e12.toml --out runs/ablation-full-e12 --figures runs/ablation-full-e12/report --jobs $(ABLATION_JOBS)
	$(PY) -m lpl_train.ablation --collect runs/ablation runs/ablation-e48 runs/ablation-full-e12

# Performance benchmarks (ratios measured side by side; see the README's Benchmarks section).
bench: $(STAMP)
	$(PY) benchmarks/bench_theory.py --repeats 3
	$(PY) benchmarks/bench_lpl.py --quick
	$(PY) benchmarks/bench_loader.py

# Training throughput on a GPU (CE vs LPL, eager vs compiled, bf16); shortened on a CPU-only machine.
gpu-check: $(STAMP)
	PYTHON=$(PY) benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
