# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?=

.PHONY: install run test lint unit e2e bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# With CONFIG=FILE (or a gateway.yaml here) serve it; otherwise say how to write one.
run: install
	@if [ -n "$(CONFIG)" ]; then exec $(BIN)/l7proxy serve --config "$(CONFIG)"; \
	elif [ -f gateway.yaml ]; then exec $(BIN)/l7proxy serve --config gateway.yaml; \
	else exec $(BIN)/l7proxy; fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest -q -m "not e2e"

e2e: install
	$(BIN)/pytest -q -m e2e

test: lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
