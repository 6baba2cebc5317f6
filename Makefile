# The README's commands. Each one builds .venv on first use:
# torch==2.13.0 (the CPU build) first, then embforge with its test extras.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.embforge-installed

.PHONY: demo test test-slow lint bench install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/embforge demo

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(PY) -m pytest -m "slow" -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

bench: $(STAMP)
	$(PY) bench/encode.py
	$(PY) bench/search.py
	$(PY) bench/train.py
	$(PY) bench/quality.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
