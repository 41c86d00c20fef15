# One entry point, the same locally and in CI: `make check` = lint + types + tests.
VENV ?= .venv
PY := $(VENV)/bin/python
# Test workers. Run one at a time, the suite leaves the CPU idle about half its wall time (it waits on
# redis-server, server processes and sleeps), so more workers than a 2-core machine's cores pay; 6
# starved processes into their start bounds there, 4 did not. Each worker starts its own
# redis-server(s) on free loopback ports (tests/conftest.py). `make test WORKERS=2` to change.
WORKERS ?= 4

.PHONY: install check lint typecheck test format bench bench-quick screenshots soak

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

# mypy's `files` (pyproject.toml): the package, tests and bench.
typecheck: install
	$(PY) -m mypy

# --dist loadfile keeps a module's tests on one worker, so its module-scoped servers start once.
# Coverage's floor is `fail_under` in pyproject.toml.
test: install
	$(PY) -m pytest -n $(WORKERS) --dist loadfile \
		--cov=mcp_agentbus --cov-report=term-missing:skip-covered

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: install
	$(PY) bench/bench.py
	$(PY) bench/startup.py
	$(PY) bench/dashboard.py

bench-quick: install
	$(PY) bench/bench.py --quick
	$(PY) bench/startup.py --runs 2
	$(PY) bench/dashboard.py --quick

# The README's dashboard screenshots (docs/*.png), from a scene on a bus of their own (needs chromium).
screenshots: install
	$(PY) docs/screenshots.py

# The soak with the default settings for 10 minutes (after the short one with lowered bounds): about 11 min.
soak: install
	$(PY) bench/bench.py --only soak --soak-minutes 10 --json bench/results/soak.json
