# rlm-host: `make demo` and `make test` work on a fresh Debian 12 machine (as root).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# llama-cpp-python has no binary wheel: it is built once (5-8 minutes), portable (no -march=native),
# into a wheelhouse outside the checkout that later installs and CI runs reuse.
WHEELHOUSE ?= $(HOME)/.cache/rlm-host/wheels
LLAMA := llama-cpp-python==0.3.36
# The evidence of a test run (attack outcomes, outside checks, faults, load) that SECURITY.md is rendered from.
EVIDENCE := build/security-results.json

.PHONY: help host venv image test security lint demo bench reap clean

help:
	@echo "make demo   - set up the host, build the kernel image, run a cell on a bundled document"
	@echo "make test   - set up the host, build the image if needed, run the whole test suite"
	@echo "              (security suite included) and regenerate SECURITY.md's tables"
	@echo "make security - only the security suite (tests/security), then regenerate SECURITY.md"
	@echo "make lint   - ruff and mypy (no Docker needed)"
	@echo "make bench  - sandbox benchmarks (results in bench/results/)"
	@echo "make image  - build the kernel image (skipped when current)"
	@echo "make reap   - remove sandbox containers left by crashed runs"

host:
	sh scripts/host-setup.sh

$(BIN)/rlm-host: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@mkdir -p $(WHEELHOUSE)
	@if ! ls $(WHEELHOUSE)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then \
		echo "building $(LLAMA) from source for the embedded model (5-8 minutes, once)"; \
		CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip wheel -q --no-deps -w $(WHEELHOUSE) '$(LLAMA)'; \
	fi
	$(BIN)/pip install -q --find-links $(WHEELHOUSE) -e '.[test,bench,local]'
	$(BIN)/pip install -q --no-deps cepheus-engine==1.1.1  # outside check; see pyproject.toml's test extra
	@touch $@

venv: $(BIN)/rlm-host

image: host venv
	$(BIN)/rlm-host image build

test: image
	sh scripts/host-setup.sh test
	@rm -f $(EVIDENCE)
	$(BIN)/python -m pytest --security-results=$(EVIDENCE) $(PYTEST_ARGS); status=$$?; \
		$(BIN)/python scripts/security_report.py $(EVIDENCE) SECURITY.md; exit $$status

security: image
	sh scripts/host-setup.sh test
	@rm -f $(EVIDENCE)
	$(BIN)/python -m pytest tests/security --security-results=$(EVIDENCE) $(PYTEST_ARGS); status=$$?; \
		$(BIN)/python scripts/security_report.py $(EVIDENCE) SECURITY.md; exit $$status

lint: venv
	$(BIN)/ruff check rlm_host tests bench scripts kernel_image policies
	$(BIN)/mypy

demo: image
	$(BIN)/rlm-host doctor
	$(BIN)/rlm-host local-lm fetch
	env -u OPENAI_API_KEY -u OPENAI_BASE_URL -u RLM_HOST_MODEL $(BIN)/rlm-host run --context examples/agreements \
		--query "What exclusivity bonus does Northwind Traders receive each year?"

bench: image
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/rpc.py
	$(BIN)/python bench/context.py
	$(BIN)/python bench/reference.py
	$(BIN)/python bench/accuracy.py

reap: venv
	$(BIN)/rlm-host doctor --reap

clean:
	rm -rf $(VENV) build *.egg-info
