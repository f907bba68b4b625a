# The two commands every newcomer needs: `make demo` and `make test`.
# Everything lives in .venv at the repository root; nothing is installed globally.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.deps-stamp
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: all demo test test-rust test-python lint fmt bench soak wheel build clean

all: build

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pip >= 25.1 reads [dependency-groups] from pyproject.toml.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --group dev --group bench
	touch $@

build: $(STAMP)
	$(BIN)/maturin develop --release --quiet

demo: build
	$(BIN)/dar demo

# The browser tests drive Debian's chromium-headless-shell (never a downloaded browser).
BROWSER := /usr/bin/chromium-headless-shell
$(BROWSER):
	apt-get install -y -q chromium-headless-shell || \
		(apt-get update -q && apt-get install -y -q chromium-headless-shell)

test: build $(BROWSER) test-rust test-python

test-rust:
	cargo test --no-default-features --quiet
	cargo test --release --no-default-features --features reference --quiet --test numbers

test-python: build $(BROWSER)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: build
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest dar._core

fmt: $(STAMP)
	cargo fmt
	$(BIN)/ruff format python tests benches
	$(BIN)/ruff check --fix python tests benches

# Before a release: the long Hypothesis profile (more examples, longer runs, bigger bursts).
soak: build
	HYPOTHESIS_PROFILE=soak $(BIN)/python -m pytest -o timeout=0 tests/test_exactly_once.py \
		tests/test_faults.py tests/test_postgres.py tests/test_canonical.py tests/test_hostile_input.py

bench: build
	$(BIN)/python benches/bench_hash.py
	$(BIN)/python benches/bench_chain.py
	$(BIN)/python benches/bench_seam.py
	$(BIN)/python benches/bench_integrations.py

wheel: $(STAMP)
	$(BIN)/maturin build --release --out dist

clean:
	rm -rf $(VENV) target dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
