"""Shared test helpers, importable from any test as ``helpers.<module>``.

``tests/`` is on ``sys.path`` through pytest's ``pythonpath`` option (pyproject.toml), so no test
file edits ``sys.path``. Fixtures that wrap these helpers live in the conftest.py files.
"""
