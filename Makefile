# Quick start: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)

.PHONY: setup demo test test-all lint clean

setup: $(STAMP)

# --no-deps: requirements.lock lists every package; letting pip resolve finn-plus's own pins
# would replace the CPU torch with a multi-GB CUDA build.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/pip install -qq --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(BIN)/bnnpose demo

test: setup
	$(BIN)/pytest

# Everything the CI runs: the quick suite plus the slow end-to-end tests.
test-all: setup
	$(BIN)/pytest -m "not (vivado or board)"

clean:
	rm -rf out build .pytest_cache
