# wxstream — every command a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help install run demo test test-fast lint format bench k8s sysdeps clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[local,dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install wxstream with its pinned dependencies

run: install  ## start Redis and the three services against the real WeChat
	$(BIN)/python -m tools.devstack run

demo: install  ## the same against the WeChat simulator (no phone needed)
	$(BIN)/python -m tools.devstack demo

sysdeps:  ## install the system packages the tests drive (Debian's chromium), where missing
	@bash tools/sysdeps.sh

test: install sysdeps  ## lint, then every test (real Redis, simulator, uvicorn, Chromium)
	$(MAKE) lint
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install  ## the tests without the slow and browser ones
	$(BIN)/pytest -m 'not slow and not browser' $(PYTEST_ARGS)

lint: install  ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: install  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install  ## benchmarks beside their peers; writes bench/REPORT.md
	$(BIN)/python -m bench.run

k8s:  ## render every kustomize overlay into .run/k8s/
	@mkdir -p .run/k8s
	@for o in deploy/k8s/overlays/*/; do n=$$(basename $$o); kubectl kustomize $$o > .run/k8s/$$n.yaml && echo "rendered .run/k8s/$$n.yaml"; done

clean:  ## remove the virtualenv and run folder
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache
