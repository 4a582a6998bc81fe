# tidecast — `make demo` then `make test` on a fresh machine. `make help` lists everything.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXAMPLE ?= examples/power

.DEFAULT_GOAL := help
.PHONY: help install system-deps demo demo-scale test test-faults fuzz lint format clean bench audit test-infra

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# `make demo` installs the runtime and what the example uses (the MLP needs torch: `neural`);
# `make test`/`make install` add every other extra and the test tooling.
DEMO_STAMP := $(VENV)/.installed-demo

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then echo "full install present"; \
	else $(BIN)/pip install --quiet -e ".[neural]"; fi
	@touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[neural,dask,report,dashboard,test]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install tidecast with every extra and the test tooling

demo: $(DEMO_STAMP) ## Run the example pipeline end to end and print the leaderboard (lean install)
	cd $(EXAMPLE) && ../../$(BIN)/tidecast run

demo-scale: $(STAMP) ## The 1,000-meter example (EXECUTOR=dask runs it on a local Dask cluster)
	$(BIN)/python examples/meters/make_data.py
	cd examples/meters && ../../$(BIN)/tidecast $(if $(filter dask,$(EXECUTOR)),--env dask) run $(if $(filter dask,$(EXECUTOR)),--force backtest)

APT_PACKAGES := chromium chromium-driver poppler-utils libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core

system-deps: ## Debian packages for the browser test and PDF reports (chromium, chromedriver, poppler, pango)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v pdftoppm >/dev/null \
	    && ldconfig -p | grep -q libpangoft2; then echo "system packages present"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	else echo "install these Debian packages for the browser/PDF tests: $(APT_PACKAGES)"; fi

test: $(STAMP) system-deps ## Install the test extras (and system packages) and run the whole test suite
	$(BIN)/ruff check tidecast tests
	$(BIN)/python -m pytest -q

test-faults: $(STAMP) ## The fault suites in full: every kill point, 4 racing runs, full/read-only stores, server faults
	TIDECAST_FAULTS_FULL=1 $(BIN)/python -m pytest -q tests/faults

test-infra: $(STAMP) ## The production topology, for real: PostgreSQL, an MLflow server, Dask worker processes (as root: installs postgresql)
	PYTHON=$(BIN)/python scripts/infra-deps.sh
	TIDECAST_INFRA=1 $(BIN)/python -m pytest -q --timeout=900 --durations=10 tests/infra

fuzz: $(STAMP) ## Thorough fuzzing: thousands of fresh random specs, data files and requests per test (minutes)
	HYPOTHESIS_PROFILE=thorough $(BIN)/python -m pytest -q tests/fuzz

lint: $(STAMP) ## ruff check, and lint-imports: the layer contract of .importlinter (docs/architecture.md)
	$(BIN)/ruff check tidecast tests bench examples
	$(BIN)/lint-imports

format: $(STAMP) ## ruff format + fix imports
	$(BIN)/ruff check --fix tidecast tests bench examples
	$(BIN)/ruff format tidecast tests bench examples

bench: $(STAMP) ## Run the benchmarks (minutes) and print their tables
	$(BIN)/python bench/backtest.py

audit: $(STAMP) ## pip-audit of .venv (exit 0 with one line when the vulnerability service is unreachable)
	PYTHON=$(BIN)/python scripts/audit.sh

clean: ## Remove caches and the example's state (keeps .venv)
	rm -rf .pytest_cache .ruff_cache .hypothesis $(EXAMPLE)/.tidecast $(EXAMPLE)/tidecast.lock
