# The two commands every newcomer needs: `make demo` and `make test`.
# Everything lives in .venv at the repository root; nothing is installed globally.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.deps-stamp
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: all demo test test-rust test-python test-abi3 lint fmt unasync bench soak wheel build clean

all: build

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pip >= 25.1 reads [dependency-groups] from pyproject.toml.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --group dev --group bench
	touch $@

# The module is built for this CPython (lists, tuples and floats read directly). A module of
# another build left in python/dar would shadow or be shadowed by it: remove it first.
build: $(STAMP)
	rm -f python/dar/_core.*.so
	$(BIN)/maturin develop --release --quiet

demo: build
	$(BIN)/dar demo

# Debian packages the tests use: chromium-headless-shell for the browser tests (never a
# downloaded browser), iproute2 for the many-host tests' network namespaces, and pgbouncer.
DEBIAN_PACKAGES := chromium-headless-shell iproute2 pgbouncer
DEBIAN := /usr/bin/chromium-headless-shell /usr/sbin/ip /usr/sbin/pgbouncer
$(DEBIAN) &:
	apt-get install -y -q $(DEBIAN_PACKAGES) || \
		(apt-get update -q && apt-get install -y -q $(DEBIAN_PACKAGES))

test: build $(DEBIAN) test-rust test-python

test-rust:
	cargo test --no-default-features --quiet
	cargo test --release --no-default-features --features reference --quiet --test numbers

# Two workers (or one per core): each starts the servers it needs.
PYTEST_ARGS ?= -n auto --dist worksteal
test-python: build $(DEBIAN)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fallback wheel on the stable ABI (any CPython >= 3.10), installed into a venv of its own
# and run through the hashing suites. CI runs it after `make test`.
ABI3 := build/abi3
test-abi3: $(STAMP)
	rm -rf $(ABI3)
	$(BIN)/maturin build --release --quiet --features abi3 --out $(ABI3)/dist
	$(PYTHON) -m venv $(ABI3)/venv
	$(ABI3)/venv/bin/python -m pip install --quiet $(ABI3)/dist/*-abi3-*.whl \
		pytest pytest-timeout hypothesis rfc8785
	cd $(ABI3) && DAR_EXPECT_BUILD=abi3 venv/bin/python -m pytest -p no:cacheprovider \
		-c $(CURDIR)/pyproject.toml --rootdir $(CURDIR) -q \
		$(CURDIR)/tests/hashing/test_canonical.py $(CURDIR)/tests/hashing/test_hostile_input.py \
		$(CURDIR)/tests/hashing/test_key_shapes.py $(CURDIR)/tests/hashing/test_hash_pipeline.py

lint: build
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	cargo clippy --all-targets --features abi3 --quiet -- -D warnings
	$(BIN)/ruff check python tests benches tools
	$(BIN)/ruff format --check python tests benches tools
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest dar._core
	$(BIN)/lint-imports
	$(BIN)/python tools/unasync.py --check

# The sync runtime is generated from the async one: edit runtime/aio.py, then run this.
unasync: $(STAMP)
	$(BIN)/python tools/unasync.py

fmt: unasync
	cargo fmt
	$(BIN)/ruff format python tests benches tools
	$(BIN)/ruff check --fix python tests benches tools

# Before a release: the long Hypothesis profile (more examples, longer runs, bigger bursts).
soak: build
	HYPOTHESIS_PROFILE=soak $(BIN)/python -m pytest -o timeout=0 tests/runtime/test_exactly_once.py \
		tests/store/test_faults.py tests/store/test_postgres.py tests/hashing/test_canonical.py \
		tests/hashing/test_hostile_input.py

bench: build
	$(BIN)/python benches/bench_hash.py
	$(BIN)/python benches/bench_chain.py
	$(BIN)/python benches/bench_seam.py
	$(BIN)/python benches/bench_integrations.py
	PYTHONPATH=. $(BIN)/python benches/bench_runs.py

wheel: $(STAMP)
	$(BIN)/maturin build --release --out dist

clean:
	rm -rf $(VENV) target dist build .pytest_cache .mypy_cache .ruff_cache .hypothesis
