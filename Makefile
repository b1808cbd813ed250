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
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
APT_GET := $(if $(filter 0,$(shell id -u)),apt-get,sudo apt-get)

.PHONY: help bootstrap uv sync system-deps run test lint typecheck pytest bench clean

help:
	@echo "make run    start the platform with embedded defaults on http://127.0.0.1:8000"
	@echo "make test   lint, type-check and run every test"
	@echo "make bench  run the benchmarks in bench/"

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
		python3 -m pip install --quiet uv

sync: uv
	$(UV) sync --frozen --all-packages

# PostgreSQL's server binaries: the tests start their own server in a temp dir.
system-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing PostgreSQL server binaries (Debian package postgresql)"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq \
			--no-install-recommends postgresql >/dev/null; \
	fi

bootstrap: sync

# The platform without the dev group (which holds the example plugin from tests/).
run: uv
	$(UV) sync --frozen --all-packages --no-dev
	$(UV) run --no-sync llmops up

lint: sync
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: sync
	$(UV) run mypy

pytest: sync system-deps
	$(UV) run pytest

test: lint typecheck pytest

bench: sync system-deps
	$(UV) run python bench/run.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache dist
