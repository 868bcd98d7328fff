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
	$(BIN)/mypy core adapters qbsync

# Regenerates the Python stubs (committed) from proto/.
proto: $(STAMP)
	$(BIN)/python -m qbsync.protogen

# Fails when the committed stubs differ from what proto/ generates.
proto-check: $(STAMP)
	$(BIN)/python -m qbsync.protogen --check

# The benches that print issue 12's targets with their ratios and PASS/FAIL (figures, not tests). PostgreSQL
# runs need QBSYNC_TEST_DATABASE_URL; API_BENCH_ARGS e.g. "--seconds 2 --clients 32", WORKER_BENCH_ARGS
# likewise; BACKLOG_BENCH_ARGS e.g. "--jobs 20000 --enqueue 2000"; CEILING_BENCH_ARGS e.g. "--seconds 120
# --workers 4". A bench whose file is missing is skipped.
# likewise; BACKLOG_BENCH_ARGS e.g. "--jobs 20000 --enqueue 2000"; CLAIMS_BENCH_ARGS e.g. "--jobs 20000".
# A bench whose file is missing is skipped.
bench: $(STAMP)
	$(BIN)/python bench/api.py $(API_BENCH_ARGS)
	@if [ -f bench/worker_cpu.py ]; then $(BIN)/python bench/worker_cpu.py $(WORKER_BENCH_ARGS); \
	else echo "bench/worker_cpu.py not there: skipped"; fi
	$(BIN)/python bench/backlog.py $(BACKLOG_BENCH_ARGS)
	$(BIN)/python bench/qbo_calls.py $(QBO_CALLS_BENCH_ARGS)
	$(BIN)/python bench/qbo_calls.py --path engine $(QBO_CALLS_ENGINE_BENCH_ARGS)
	$(BIN)/python bench/company_ceiling.py $(CEILING_BENCH_ARGS)
	$(BIN)/python bench/claims.py $(CLAIMS_BENCH_ARGS)
	$(BIN)/python bench/settings_lookups.py

# Sync throughput (1, 2, 4 worker processes on PostgreSQL vs 1 on SQLite; 0 and 100 ms QBO latency).
# PostgreSQL runs need QBSYNC_TEST_DATABASE_URL; BENCH_ARGS e.g. "--syncs 60 --tenants 8".
bench-throughput: $(STAMP)
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV)
