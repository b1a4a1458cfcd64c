# htsweep — the two commands are `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.htsweep-installed
WORKDIR ?= runs/quickstart
PYTEST_ARGS ?=

.PHONY: run test test-slow lint bench bench-table install clean

# A torch that the system Python already has (e.g. a CUDA build on a cluster) is reused through
# --system-site-packages; otherwise the venv gets the local CPU build, torch==2.13.0, before
# anything else can ask pip for a (CUDA-laden) newer one.
$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  if python3 -c "import torch" 2>/dev/null; then python3 -m venv --system-site-packages $(VENV); \
	  else python3 -m venv $(VENV); fi; fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

install: $(STAMP)

run: install
	$(VENV)/bin/htsweep run sweeps/examples/quickstart.yaml --workdir $(WORKDIR) --overwrite

test: install
	$(PY) -m pytest -m "not slow" --timeout=900 htsweep analysis trainers services sweeps tests $(PYTEST_ARGS)

test-slow: install
	HTSWEEP_SLOW=1 $(PY) -m pytest --timeout=1800 htsweep analysis trainers services sweeps tests $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check htsweep analysis trainers services sweeps tests benchmarks conftest.py

bench: install
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/bench_analysis.py
	$(PY) benchmarks/bench_phases.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_actor.py
	$(PY) benchmarks/readme_table.py

# the README's benchmark table, re-rendered from benchmarks/results/*.json
bench-table: install
	$(PY) benchmarks/readme_table.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
