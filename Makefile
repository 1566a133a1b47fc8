# wilor_ros developer entry points. `make setup` once; `make demo` runs the main job;
# `make test` sets up if needed, lints and runs the whole test suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint format clean

setup:
	@bash scripts/setup.sh

demo: setup
	@$(VENV)/bin/wilor-ros demo-main

lint: setup
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

format: setup
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

test: setup
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(PY) -m pytest wilor_ros/test

clean:
	rm -rf build $(VENV)
