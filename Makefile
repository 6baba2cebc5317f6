# The README's commands. Each one builds .venv on first use:
# torch==2.13.0 (the CPU build) first, then embforge with its test extras.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.embforge-installed

.PHONY: demo test test-slow lint bench install clean reference test-reference

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/embforge demo

# tests/ plus the >>> examples in src/ (offline: src/conftest.py, tests/conftest.py).
# Live FlagEmbedding tests (marker reference_env) run in `make test-reference`; `make test` checks the
# same numbers against recorded outputs (tests/parity/test_m3_reference.py), which never skips.
test: $(STAMP)
	$(PY) -m pytest -m "not slow and not reference_env" -q
	$(PY) -m pytest -q --doctest-modules src/embforge

test-slow: $(STAMP)
	$(PY) -m pytest -m "slow" -q

# ruff (style, complexity, argument counts), mypy basic mode on src/, and the architecture rules
# (package cycles, one scoring core, function length, imports at module top): see
# docs/architecture.md. Every tool runs; the target fails if any failed.
lint: $(STAMP)
	@status=0; \
	$(VENV)/bin/ruff check src tests bench scripts || status=1; \
	$(VENV)/bin/mypy || status=1; \
	$(PY) scripts/check_architecture.py || status=1; \
	exit $$status

bench: $(STAMP)
	$(PY) bench/encode.py
	$(PY) bench/search.py
	$(PY) bench/train.py
	$(PY) bench/quality.py

# FlagEmbedding 1.4.2 needs transformers 4.x: record its outputs in a pinned environment
# (tests/parity/test_m3_reference.py compares embforge against them on every `make test`).
REF_VENV := .venv-ref
reference:
	test -x $(REF_VENV)/bin/python || $(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install -q torch==2.13.0
	$(REF_VENV)/bin/python -m pip install -q "transformers==4.57.*" "FlagEmbedding==1.4.2" numpy safetensors
	$(REF_VENV)/bin/python scripts/record_reference.py

# The live FlagEmbedding parity tests, in the pinned reference environment; a missing
# FlagEmbedding there is a failure, not a skip (EMBFORGE_REFERENCE_ENV=1).
test-reference:
	test -x $(REF_VENV)/bin/python || $(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install -q torch==2.13.0
	$(REF_VENV)/bin/python -m pip install -q -e . pytest hypothesis "transformers==4.57.*" "FlagEmbedding==1.4.2"
	EMBFORGE_REFERENCE_ENV=1 $(REF_VENV)/bin/python -m pytest -q -m reference_env tests/parity

clean:
	rm -rf $(VENV) $(REF_VENV) build dist src/*.egg-info
