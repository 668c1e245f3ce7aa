# LPL: `make test` and `make figures` work on a fresh clone: they create .venv and install what is needed.
# GPU users: `make TORCH_SPEC="torch>=2.3" test` (or any pip spec) to take another torch build.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Further pip specs installed with torch and kept by the project's install, e.g. the oldest supported versions:
# make VENV=.venv-oldest PYTHON=python3.10 TORCH_SPEC=torch==2.3.1 PINS="numpy==1.24.4 scipy==1.10.1" test
PINS ?=
# Machines that keep local wheels (the CPU torch build) in /opt/wheels use them first.
PIP_FIND ?= $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lpl-installed
# The torch spec and pins the venv was installed with: rewritten only when TORCH_SPEC or PINS change, so
# that `make TORCH_SPEC=... test` on an existing .venv reinstalls torch instead of keeping the old one.
TORCH_STAMP := $(VENV)/.lpl-torch-spec

.PHONY: install data-check test lint format figures theory-figures study-figures study study-quick ablation notebooks bench gpu-check clean FORCE

install: $(STAMP)

$(TORCH_STAMP): FORCE
	@mkdir -p $(VENV)
	@printf '%s\n' '$(TORCH_SPEC) $(PINS)' | cmp -s - $@ || printf '%s\n' '$(TORCH_SPEC) $(PINS)' > $@

$(STAMP): pyproject.toml $(TORCH_STAMP)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_FIND) "$(TORCH_SPEC)" $(PINS)
	$(PY) -m pip install -q $(PIP_FIND) -e ".[dev]" $(PINS)
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
	$(PY) -m pytest -q --durations=20 tests
	$(PY) -m pytest -q --nbmake notebooks

theory-figures: $(STAMP)
	$(PY) -m lpl_theory figures --out figures

# Theory meets experiment, a short live Fig. 11 run, and the study's tables and figures from the committed
# per-run records (lpl_train/configs/study/fmnist-runs.jsonl; `make study` retrains them).
study-figures: $(STAMP)
	$(PY) -m lpl_train.theory_check --out figures
	$(VENV)/bin/lpl-train study --fig11-live
	$(VENV)/bin/lpl-train study fmnist --report-only
	$(PY) -m lpl_train.ablation --report-only

figures: data-check theory-figures study-figures

# The CPU-scale study on Fashion-MNIST (resumable; docs/study.md gives the times measured on 2 cores): it
# rewrites the committed records. The quick smoke version writes everything into runs/study-quick/.
study: $(STAMP)
	$(VENV)/bin/lpl-train study fmnist --jobs 2 --records lpl_train/configs/study/fmnist-runs.jsonl

study-quick: $(STAMP)
	$(VENV)/bin/lpl-train study fmnist --quick --jobs 2

# The notebooks executed in place, so that readers on a code host see their outputs (figures included).
# Execution timestamps are dropped, so a re-run changes only what the notebooks compute.
notebooks: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --nbmake --overwrite notebooks
	$(PY) -c "import glob, nbformat; [nbformat.write(nb, p) for p in sorted(glob.glob('notebooks/*.ipynb')) \
	  for nb in [nbformat.read(p, as_version=4)] if [c.metadata.pop('execution', None) for c in nb.cells] or 1]"

# The LPL long-tail ablation (docs/study.md; resumable, several CPU-hours): the main study, the key
# comparison trained 48 epochs and on the full training set (baselines, then LPL), LPL with LDAM-DRW's cosine
# head and DRW, the key comparison with a ResNet-8 for 60 epochs on the full training set and at 10:1 (at the
# points of 100:1 and searched at 10:1), then the records and tables in figures/.
ABLATION_JOBS ?= 1
ablation: $(STAMP)
	$(PY) -m lpl_train.study --study lpl_train/configs/study/ablation.toml --out runs/ablation --figures runs/ablation/report --jobs $(ABLATION_JOBS)
	$(PY) -m lpl_train.study --study lpl_train/configs/study/ablation_e48.toml --out runs/ablation-e48 --figures runs/ablation-e48/report --jobs $(ABLATION_JOBS)
	$(PY) -m lpl_train.study --study lpl_train/configs/study/ablation_full_e12.toml --out runs/ablation-full-e12 --figures runs/ablation-full-e12/report --jobs $(ABLATION_JOBS)
	$(PY) -m lpl_train.study --study lpl_train/configs/study/ablation_full_e12_lpl.toml --out runs/ablation-full-e12-lpl --figures runs/ablation-full-e12-lpl/report --jobs $(ABLATION_JOBS)
	$(PY) -m lpl_train.study --study lpl_train/configs/study/ablation_q5.toml --out runs/ablation-q5 --figures runs/ablation-q5/report --jobs $(ABLATION_JOBS)
	$(PY) -m lpl_train.study --study lpl_train/configs/study/ablation_resnet_e60.toml --out runs/ablation-resnet-e60 --figures runs/ablation-resnet-e60/report --jobs $(ABLATION_JOBS)
	$(PY) -m lpl_train.study --study lpl_train/configs/study/ablation_lt10.toml --out runs/ablation-lt10 --figures runs/ablation-lt10/report --jobs $(ABLATION_JOBS)
	$(PY) -m lpl_train.study --study lpl_train/configs/study/ablation_lt10_search.toml --out runs/ablation-lt10-search --figures runs/ablation-lt10-search/report --jobs $(ABLATION_JOBS)
	$(PY) -m lpl_train.ablation --collect runs/ablation runs/ablation-e48 runs/ablation-full-e12 runs/ablation-full-e12-lpl runs/ablation-q5 runs/ablation-resnet-e60 runs/ablation-lt10 runs/ablation-lt10-search

# Performance benchmarks (ratios measured side by side; see the README's Benchmarks section).
bench: $(STAMP)
	$(PY) benchmarks/bench_theory.py --repeats 3
	$(PY) benchmarks/bench_lpl.py --quick
	$(PY) benchmarks/bench_loader.py

# Training throughput on a GPU (bare loop vs engine, CE vs LPL, eager vs captured, one run vs N at once,
# bf16); shortened on a CPU-only machine.
gpu-check: $(STAMP)
	PYTHON=$(PY) benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
