# rlm-host: `make demo` and `make test` work on a fresh Debian 12 machine (as root).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help host venv image test demo bench reap clean

help:
	@echo "make demo   - set up the host, build the kernel image, run a cell on a bundled document"
	@echo "make test   - set up the host, build the image if needed, run the whole test suite"
	@echo "make bench  - sandbox benchmarks (results in bench/results/)"
	@echo "make image  - build the kernel image (skipped when current)"
	@echo "make reap   - remove sandbox containers left by crashed runs"

host:
	sh scripts/host-setup.sh

$(BIN)/rlm-host: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	@touch $@

venv: $(BIN)/rlm-host

image: host venv
	$(BIN)/rlm-host image build

test: image
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: image
	$(BIN)/rlm-host doctor
	$(BIN)/rlm-host exec --context examples/clauses.txt examples/demo_cell.py | $(BIN)/python -m json.tool

bench: image
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/rpc.py

reap: venv
	$(BIN)/rlm-host doctor --reap

clean:
	rm -rf $(VENV) build *.egg-info
