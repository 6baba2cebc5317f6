"""Every command's options against the vocabulary table of docs/cli.md (issue 18).

The test walks the typer/click command tree of `embforge` (every subcommand, nested groups too)
and checks: each option shared by two commands is in the table; its commands, short form and
default match the table; a short form means one long option everywhere; nothing a command
writes (or the model) is a positional argument; booleans are flags; `--version` works.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.testing import CliRunner

from embforge import __version__
from embforge.cli.app import app

DOC = Path(__file__).resolve().parents[3] / "docs" / "cli.md"
CELL = re.compile(r"`([^`]*)`")


def walk(cmd, path=()):
    """(command name, click command) for the root group and every leaf command."""
    if isinstance(cmd, TyperGroup):
        yield " ".join(path) or "(root)", cmd
        for name, sub in cmd.commands.items():
            yield from walk(sub, (*path, name))
    else:
        yield " ".join(path), cmd


COMMANDS = dict(walk(typer.main.get_command(app)))


def options() -> dict[str, dict[str, TyperOption]]:
    """{long option: {command: option}} over every command (--help left out)."""
    out: dict[str, dict[str, TyperOption]] = {}
    for name, cmd in COMMANDS.items():
        for p in cmd.params:
            if isinstance(p, TyperOption) and p.name != "help":
                out.setdefault(_long(p), {})[name] = p
    return out


def _long(p: TyperOption) -> str:
    return next(o for o in p.opts if o.startswith("--"))


def _shorts(p: TyperOption) -> list[str]:
    return sorted(o for o in p.opts if not o.startswith("--"))


def parse_table(text: str) -> dict[str, dict]:
    """The "Shared options" table: {long: {short, default, overrides {cmd: default}, commands}}."""
    section = text.split("## Shared options", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not cells[0].startswith("`--"):
            continue
        default_cell = CELL.findall(cells[2])
        overrides = dict(zip(default_cell[1::2], default_cell[2::2]))
        rows[CELL.findall(cells[0])[0]] = {
            "short": CELL.findall(cells[1]),
            "default": default_cell[0],
            "overrides": overrides,
            "commands": set(CELL.findall(cells[3])),
        }
    return rows


TABLE = parse_table(DOC.read_text(encoding="utf-8"))


def shown(p: TyperOption) -> str:
    """An option's default as the table writes it."""
    if p.required:
        return "required"
    d = p.default
    if d is None or (p.multiple and not d):
        return "none"
    if isinstance(d, bool):
        return str(d).lower()
    return str(d)


def test_table_parsed():
    assert {"--output", "--model", "--heads", "--batch-size", "--split", "--version"} <= set(TABLE)


def test_every_shared_option_is_in_the_table():
    shared = {name for name, where in options().items() if len(where) > 1}
    assert not shared - set(TABLE), (
        f"options of several commands missing in docs/cli.md: {shared - set(TABLE)}"
    )


@pytest.mark.parametrize("name", sorted(TABLE))
def test_option_matches_table(name):
    row, where = TABLE[name], options().get(name, {})
    assert set(where) == row["commands"], f"{name}: commands in docs/cli.md differ from the code"
    for cmd, p in where.items():
        assert _shorts(p) == row["short"], f"{cmd} {name}: short form {_shorts(p)} != {row['short']}"
        want = row["overrides"].get(cmd, row["default"])
        assert shown(p) == want, f"{cmd} {name}: default {shown(p)!r} != docs/cli.md {want!r}"


def test_a_short_form_means_one_option():
    seen: dict[str, set[str]] = {}
    for name, where in options().items():
        for p in where.values():
            for s in _shorts(p):
                seen.setdefault(s, set()).add(name)
    assert {s: v for s, v in seen.items() if len(v) > 1} == {}


def test_outputs_and_models_are_options_not_arguments():
    for cmd_name, cmd in COMMANDS.items():
        args = [p.name for p in cmd.params if isinstance(p, TyperArgument)]
        assert not set(args) & {"output", "out", "out_dir", "model"}, (cmd_name, args)


def test_booleans_are_flags():
    for name, where in options().items():
        for cmd, p in where.items():
            if isinstance(p.default, bool):
                assert p.is_flag, f"{cmd} {name} is a bool but takes a value"


def test_flags_show_as_flags_in_help():
    r = CliRunner().invoke(app, ["validate", "--help"], terminal_width=200)
    assert r.exit_code == 0 and "--all-errors" in r.output
    assert "<bool>" not in r.output


def test_version_option():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == __version__


def test_table_names_real_commands():
    named = set().union(*(row["commands"] for row in TABLE.values()))
    assert named <= set(COMMANDS), named - set(COMMANDS)
