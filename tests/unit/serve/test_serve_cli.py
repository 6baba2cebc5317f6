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


def test_http_parser_choice(monkeypatch, capsys):
    from embforge.cli.app import main
    from embforge.serve.protocol import http_protocol

    monkeypatch.setattr("sys.argv", ["embforge", "serve", "--http-parser", "nope"])
    with pytest.raises(SystemExit) as e:
        main()
    assert (
        e.value.code == 2 and "--http-parser 'nope': choose auto, httptools or h11" in capsys.readouterr().err
    )
    cfg = ServeConfig(header_timeout_s=3.0)
    assert http_protocol(cfg).__mro__[1].__name__ == "HttpToolsHeadDeadlineProtocol"  # httptools is installed
    assert http_protocol(cfg, "h11").__mro__[1].__name__ == "HeadDeadlineProtocol"
    assert http_protocol(cfg, "h11").header_timeout_s == 3.0
    with pytest.raises(ValueError, match="choose auto, httptools or h11"):
        http_protocol(cfg, "nope")
