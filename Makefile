# Two entry points for a newcomer: `make demo` and `make test`. Each builds its own virtual environment.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= $(abspath ../shared/data)
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
export DATASET_LAKE ?= $(CURDIR)/data/lake
export CRAWL_LANDING ?= $(SHARED)/crawl
export QUALITY_REFERENCE ?= $(SHARED)/quality

.PHONY: install install-dev demo test dev bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/dataset-assets run --landing $(CRAWL_LANDING) --lake $(DATASET_LAKE)

test: install-dev
	$(PY) -m pytest -q

dev: install-dev
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/dagster dev -m dataset_assets.definitions

bench: install-dev
	$(PY) benchmarks/crawl_docs_throughput.py
	$(PY) benchmarks/seeds_scoring.py

clean:
	rm -rf data/lake data/dagster_home data/landing
