# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?=

.PHONY: install run test lint unit e2e bench soak clean postgresql sandbox-openapi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The sign-in tests' OpenID provider (oidc-provider, from the npm registry; needs Node >= 20).
OIDC_PROVIDER := tests/oidc-provider/node_modules/.installed
$(OIDC_PROVIDER): tests/oidc-provider/package.json tests/oidc-provider/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm (Node >= 20) is needed for the sign-in tests' OpenID provider" >&2; exit 1; }
	cd tests/oidc-provider && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# With CONFIG=FILE (or a gateway.yaml here) serve it; otherwise start `l7proxy demo`.
run: install
	@if [ -n "$(CONFIG)" ]; then exec $(BIN)/l7proxy serve --config "$(CONFIG)"; \
	elif [ -f gateway.yaml ]; then exec $(BIN)/l7proxy serve --config gateway.yaml; \
	else exec $(BIN)/l7proxy demo; fi

# The sandbox's OpenAPI schemas, from kube's own as the kubernetes-validate package ships them.
sandbox-openapi: install
	$(BIN)/python -m l7proxy.tools.sandbox.openapi_build

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install postgresql
	$(BIN)/pytest -q -m "not e2e"

e2e: install $(OIDC_PROVIDER) postgresql
	$(BIN)/pytest -q -m e2e

test: lint $(OIDC_PROVIDER) postgresql
	$(BIN)/pytest -q

# The state store's tests run a real PostgreSQL server: Debian's package, when missing.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

# The benchmark's system tools, from Debian's packages (apt-get only when one is missing).
BENCH_TOOLS := nginx h2load wrk curl
BENCH_PACKAGES := nginx nghttp2-client wrk curl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BENCH_ARGS ?=

# The bench's Python peer, mitmproxy from PyPI, in a venv of its own (its dependencies are
# not the project's).
PEERS := bench/.peers
$(PEERS)/bin/mitmdump:
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet mitmproxy

# l7proxy against nginx proxy_pass and mitmproxy; writes bench/RESULTS.md and
# bench/results/latest.json.
bench: install $(PEERS)/bin/mitmdump
	@for tool in $(BENCH_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BENCH_PACKAGES); \
	fi
	@test -x $(BIN)/py-spy || $(BIN)/python -m pip install --quiet py-spy
	$(BIN)/python bench/run.py $(BENCH_ARGS)

SOAK_ARGS ?=

# Mixed kubectl traffic through the gateway (30 minutes unless SOAK_ARGS="--minutes N");
# writes bench/SOAK.md and bench/results/soak.json. Not part of `make test`. The gateway runs
# on jemalloc, as in the image (Debian's libjemalloc2, installed when missing).
soak: install
	@ls /usr/lib/*-linux-gnu/libjemalloc.so.2 >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q libjemalloc2; }
	nice $(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
