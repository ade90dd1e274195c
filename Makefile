# speckle hub: `make hub` sets up and starts the product, `make test` sets up and runs every test.
SHELL := /bin/bash
# A python every spawned user can execute (not one under /root): see FIELD-NOTES.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: hub test setup setup-test bench clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	touch $@

$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install -e '.[test]'
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

# Until the hub lands (issue 3), `make hub` runs the XPCS quick check on the bundled demo data.
hub: setup
	$(VENV)/bin/speckle demo

test: setup-test
	$(PY) -m pytest

bench: setup-test
	$(PY) benchmarks/bench_xpcs.py

clean:
	rm -rf $(VENV) .pytest_cache
