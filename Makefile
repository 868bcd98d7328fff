# Every target builds the project venv on first use, so a machine with only Python can run them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint proto proto-check bench bench-throughput clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/qbsync demo

test: $(STAMP) proto-check browser
	$(BIN)/pytest -q

# The console's browser test (tests/e2e/test_console_browser.py) drives Debian's chromium through Playwright.
# Installed with apt-get when missing and this user is root; otherwise that test skips, naming what is missing.
# (Never `playwright install`: it downloads browsers from outside the package registries.)
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium for the console's browser test"; \
		apt-get install -y -qq chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
			|| echo "could not install chromium: the console's browser test will skip"; \
	else echo "no $(CHROMIUM) and not root: the console's browser test will skip (apt-get install chromium)"; fi

lint: $(STAMP)
	$(BIN)/ruff check core adapters qbsync tests bench
	$(BIN)/ruff format --check core adapters qbsync tests bench
	$(BIN)/mypy core adapters qbsync

# Regenerates the Python stubs (committed) from proto/.
proto: $(STAMP)
	$(BIN)/python -m qbsync.protogen

# Fails when the committed stubs differ from what proto/ generates.
proto-check: $(STAMP)
	$(BIN)/python -m qbsync.protogen --check

# The benches that print issue 12's targets with their ratios and PASS/FAIL (figures, not tests), one after
# another (bench/report.py), ending with a summary of every target; a bench whose file is missing is listed
# as "not run". PostgreSQL runs need QBSYNC_TEST_DATABASE_URL. Each NAME_BENCH_ARGS replaces that bench's
# defaults in bench/report.py, e.g. BACKLOG_BENCH_ARGS="--jobs 20000 --enqueue 2000", API_BENCH_ARGS="--seconds 2";
# BENCHES=api,backlog runs only those.
BENCHES ?= api,worker_cpu,qbo_calls,qbo_calls_engine,company_ceiling,claims,settings_lookups,backlog
bench: $(STAMP)
	$(BIN)/python bench/report.py --only '$(BENCHES)' --args api='$(API_BENCH_ARGS)' \
		--args worker_cpu='$(WORKER_BENCH_ARGS)' --args qbo_calls='$(QBO_CALLS_BENCH_ARGS)' \
		--args qbo_calls_engine='$(QBO_CALLS_ENGINE_BENCH_ARGS)' \
		--args company_ceiling='$(CEILING_BENCH_ARGS)' --args claims='$(CLAIMS_BENCH_ARGS)' \
		--args settings_lookups='$(SETTINGS_BENCH_ARGS)' \
		--args backlog='$(BACKLOG_BENCH_ARGS)'

# Sync throughput (1, 2, 4 worker processes on PostgreSQL vs 1 on SQLite; 0 and 100 ms QBO latency).
# PostgreSQL runs need QBSYNC_TEST_DATABASE_URL; BENCH_ARGS e.g. "--syncs 60 --tenants 8".
bench-throughput: $(STAMP)
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV)
