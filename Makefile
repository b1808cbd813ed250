# The two commands of a fresh machine: `make run` and `make test`.
# Both install what they need: uv (through pip when missing), the Python workspace from
# uv.lock, and the Debian packages the tests use (PostgreSQL's server binaries).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# torch, when a plugin needs it, must be the local CPU build, not a multi-GB CUDA one.
ifneq ($(wildcard /opt/wheels),)
export UV_FIND_LINKS ?= /opt/wheels
endif
export UV_LINK_MODE ?= copy
# compile bytecode at install: where PYTHONDONTWRITEBYTECODE is set, every process would
# otherwise compile torch, transformers and mlflow again on import (seconds each time)
export UV_COMPILE_BYTECODE ?= 1
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
APT_GET := $(if $(filter 0,$(shell id -u)),apt-get,sudo apt-get)

.PHONY: help bootstrap uv sync system-deps run-deps web-deps console console-build console-check run test checks pytest-only lint typecheck pytest bench clean

help:
	@echo "make run    start the platform with embedded defaults on http://127.0.0.1:8000"
	@echo "make test   lint, type-check and run every test"
	@echo "make bench  run the benchmarks in bench/"

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
		python3 -m pip install --quiet uv

# the dev group (tools, the example plugin from tests/) is not a default group
# (pyproject.toml): ask for it here
sync: uv
	$(UV) sync --frozen --all-packages --group dev

# Debian packages: bubblewrap, the sandbox the local executor runs pipeline stages in
# (without it a server running as root refuses to start stages), for `make run` and the
# tests; for the tests also PostgreSQL's server binaries (they start their own server in a
# temp dir) and Chromium (the console's browser tests; Playwright drives it, it never
# downloads a browser of its own).
RUN_DEBIAN_PACKAGES := $(if $(wildcard /usr/bin/bwrap),,bubblewrap)
DEBIAN_PACKAGES := $(RUN_DEBIAN_PACKAGES) \
	$(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql) \
	$(if $(wildcard /usr/bin/chromium),,chromium)
define apt_install
	@if [ -n "$(strip $(1))" ]; then \
		echo "installing Debian packages: $(strip $(1))"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq \
			--no-install-recommends $(1) >/dev/null; \
	fi
endef
system-deps:
	$(call apt_install,$(DEBIAN_PACKAGES))
run-deps:
	$(call apt_install,$(RUN_DEBIAN_PACKAGES))

bootstrap: sync

# The web console (web/): npm packages from package-lock.json, the typed API client
# regenerated from the OpenAPI document, a type-check, and a build into the core package
# (core/src/llmops/console, generated and gitignored; the core's wheel carries it).
web/node_modules/.package-lock.json: web/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "the console needs Node.js >= 20.19 and npm"; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

web-deps: web/node_modules/.package-lock.json

console: sync web-deps console-build

console-build:
	$(UV) run --no-sync llmops openapi -o web/openapi.json
	cd web && npm run --silent build

# make test: the committed client must match the API, and the console's own unit tests
console-check: sync web-deps
	$(UV) run --no-sync llmops openapi -o web/openapi.json
	cd web && npm run --silent api:check && npm run --silent test

# The platform without the dev group (which holds the example plugin from tests/), with
# the train extra so that `llmops example train` has torch and transformers to run.
run: uv run-deps web-deps
	$(UV) sync --frozen --all-packages --no-dev --extra train
	$(MAKE) --no-print-directory console-build
	$(UV) run --no-sync llmops up

lint: sync
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .

typecheck: sync
	$(UV) run --no-sync mypy

# the suite on every core (pytest-xdist); tests that share a session's server run in
# one worker (conftest.py: one xdist group per folder)
PYTEST_PARALLEL := -n auto --dist loadgroup

pytest: sync system-deps console
	$(UV) run --no-sync pytest $(PYTEST_PARALLEL)

# make test: the checks (lint, types, the console's client and unit tests) take one core
# while pytest takes the other, once what both need is installed and built
test: sync system-deps console
	$(MAKE) --no-print-directory -j2 checks pytest-only

checks: lint typecheck console-check

pytest-only:
	$(UV) run --no-sync pytest $(PYTEST_PARALLEL)

bench: sync system-deps
	$(UV) run --no-sync python bench/run.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache dist
