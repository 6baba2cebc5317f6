"""`embforge serve --help` and the settings' validation."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from embforge.errors import ConfigError
from embforge.serve import ServeConfig


def test_serve_help_lists_the_options():
    from embforge.cli.app import app

    r = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    for opt in (
        "--index",
        "--host",
        "--port",
        "--api-key",
        "--max-batch-tokens",
        "--max-wait-ms",
        "--max-queue",
        "--max-inputs",
    ):
        assert opt in r.output


def test_config_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as e:
        ServeConfig(
            max_batch_tokens=0,
            default_role="passage",
            dtype="fp16",
            max_inputs=10,
            max_queue_inputs=5,
            api_key=" ",
        )
    msg = str(e.value)
    for part in (
        "max_batch_tokens=0 must be a positive number",
        "default_role='passage'",
        "dtype='fp16'",
        "max_inputs=10 exceeds max_queue_inputs=5",
        "api_key is empty",
    ):
        assert part in msg
