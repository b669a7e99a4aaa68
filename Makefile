# anju — every target performs the set-up it needs, idempotently.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_SECONDS ?= 60
# Integration tests mostly wait on Mosquitto, InfluxDB and sleeps: 4 workers on 2 cores
# take the suite from ~4.5 to ~2 minutes (each worker starts its own services).
TEST_WORKERS ?= 4

.PHONY: demo test test-fast lint services browser compiled bench clean distclean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

# Debian's mosquitto, influxdb (1.6.7, v1 API) and mosquitto-clients (mosquitto_sub: the C
# ceiling of anju bench ingest) when their binaries are missing.
services:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v mosquitto_passwd >/dev/null 2>&1 || missing="$$missing mosquitto"; \
	command -v influxd >/dev/null 2>&1 || missing="$$missing influxdb"; \
	command -v mosquitto_sub >/dev/null 2>&1 || missing="$$missing mosquitto-clients"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing with apt-get"; \
	    $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "anju needs Mosquitto and InfluxDB 1.x:$$missing is missing."; \
	    echo "Install them, e.g. 'brew install mosquitto influxdb@1', and run make again."; \
	    exit 1; \
	  fi; \
	fi

# Debian's chromium for the console's browser tests (driven by Playwright's Python client
# with executable_path; `playwright install` is never run) when it is missing.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium with apt-get"; \
	    $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	  else \
	    echo "chromium is missing: the console's browser tests will be skipped."; \
	  fi; \
	fi
	@# a CJK font, so that the report's screenshots show its Chinese (docs/report.md)
	@if [ -d /usr/share/fonts ] && ! ls /usr/share/fonts/truetype/wqy >/dev/null 2>&1 \
	    && command -v apt-get >/dev/null 2>&1; then \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    fonts-wqy-microhei || echo "no CJK font: report screenshots will show boxes"; \
	fi

demo: $(STAMP) services compiled
	$(BIN)/anju demo --seconds $(DEMO_SECONDS)

# The layering contract (pyproject [tool.importlinter]) runs first: CI enforces it.
test: $(STAMP) services browser compiled
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not solo"
	$(BIN)/python -m pytest -q -m solo

# The rule engine's compiled loops (numba), compiled once into their cache before the test
# workers start: on a fresh clone that is ~50 s on one core, instead of every worker
# compiling them at once (anju.rules.jit; a first `anju run` would pay it otherwise).
# numba checks only the defining file of a cached function, not the compiled functions it
# calls from other files (kind_pass calls those of program.py, state.py, …): after any
# change in anju/rules the whole cache is dropped and rebuilt.
COMPILED := anju/rules/__pycache__/.compiled
compiled: $(COMPILED)

$(COMPILED): $(STAMP) $(wildcard anju/rules/*.py)
	rm -f anju/rules/__pycache__/*.nbi anju/rules/__pycache__/*.nbc
	$(BIN)/python -c "import anju.rules.engine"
	touch $@

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration"

lint: $(STAMP)
	$(BIN)/ruff check anju tests
	$(BIN)/mypy anju
	$(BIN)/lint-imports --no-cache

bench: $(STAMP) services
	$(BIN)/anju bench rules
	$(BIN)/anju bench ingest

clean:
	rm -rf .anju .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

distclean: clean
	rm -rf $(VENV)
