# signalroom: `make run` starts the demo, `make test` runs every check. See README.md.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
UV_VERSION := 0.13.9
STAMP  := $(VENV)/.installed
# Some machines set this; without cached bytecode every server start re-compiles its imports.
unexport PYTHONDONTWRITEBYTECODE
# Debian packages the tests start for real: PostgreSQL (state store), Prometheus and promtool
# (differential tests of rules and queries), Alertmanager and amtool (alert manager), Chromium
# (browser tests of the UI, driven by playwright-core from ui/).
TEST_DEBS := postgresql prometheus prometheus-alertmanager chromium

.PHONY: help install run test lint typecheck pytest bench lock ui clean

help:
	@echo "make run      set up and start signalroom with the demo configuration on http://127.0.0.1:8290"
	@echo "make test     install what the tests need and run lint, type checks and the whole test suite"
	@echo "make install  set up the virtual environment only"
	@echo "make bench    run the benchmarks and record their results in bench/results/"
	@echo "make lock     re-resolve requirements.lock after changing dependencies in pyproject.toml"

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip sync --quiet --python $(BIN)/python requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib src > /dev/null || true
	@touch $@

# The UI is rebuilt only when its sources change. `npm install` with the committed lock, not
# `npm ci`: npm 11 leaves other platforms' optional packages (rollup's native builds) out of
# the lock, which `npm ci` then refuses.
UI_SOURCES := $(shell find ui/src ui/public ui/index.html ui/vite.config.ts ui/tsconfig.json \
                ui/package.json ui/package-lock.json -type f 2>/dev/null)
UI_BUILD := src/signalroom/web/static/index.html

ui: $(UI_BUILD)

$(UI_BUILD): $(UI_SOURCES)
	cd ui && npm install --no-audit --no-fund && npm run build
	@touch $@

# The server, and the simulator sending the seed companies' traffic to it once it is ready.
run: install ui
	@$(BIN)/signalroom serve --config examples/demo.yml --data-dir data --log-format console \
	    --log-level warning & server=$$!; \
	trap 'kill $$server 2>/dev/null; wait $$server' EXIT INT TERM; \
	until curl -sf http://127.0.0.1:8290/-/ready >/dev/null; do \
	    kill -0 $$server 2>/dev/null || exit 1; sleep 0.2; done; \
	echo "signalroom is up: open http://127.0.0.1:8290 (Ctrl-C stops)"; \
	$(BIN)/signalroom simulate --url http://127.0.0.1:8290

test: install ui
	scripts/install-system-deps.sh $(TEST_DEBS)
	$(MAKE) lint typecheck pytest

lint:
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m bench

lock:
	$(UV) pip compile --quiet --python $(BIN)/python pyproject.toml --extra dev -o requirements.lock

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
