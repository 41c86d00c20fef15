# One entry point, the same locally and in CI: `make check` = lint + types + tests.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install check lint typecheck test format bench bench-quick

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

check: lint typecheck test

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy

test: install
	$(PY) -m pytest

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: install
	$(PY) bench/bench.py
	$(PY) bench/startup.py

bench-quick: install
	$(PY) bench/bench.py --quick
	$(PY) bench/startup.py --runs 2
