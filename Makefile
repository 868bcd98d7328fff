# Every target builds the project venv on first use, so a machine with only Python can run them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint proto proto-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/qbsync demo

test: $(STAMP) proto-check
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check core adapters qbsync tests
	$(BIN)/mypy core adapters qbsync

# Regenerates the Python stubs (committed) from proto/.
proto: $(STAMP)
	$(BIN)/python -m qbsync.protogen

# Fails when the committed stubs differ from what proto/ generates.
proto-check: $(STAMP)
	$(BIN)/python -m qbsync.protogen --check

clean:
	rm -rf $(VENV)
