"""scripts/check_architecture.py on small fixture trees: each rule fires, and passes when obeyed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "check_architecture.py"


@pytest.fixture(scope="module")
def arch():
    spec = importlib.util.spec_from_file_location("check_architecture", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_architecture"] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("check_architecture", None)


def make_tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (paths relative to src/embforge) under ``root`` and return ``root``."""
    base = root / "src" / "embforge"
    base.mkdir(parents=True)
    (base / "__init__.py").write_text("")
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name != "__init__.py":
            init = path.parent / "__init__.py"
            if not init.exists():
                init.write_text("")
        path.write_text(textwrap.dedent(text))
    return root


SCORING_CORE = {
    "scoring/__init__.py": '__all__ = ["DEFAULT_WEIGHTS", "dense_scores", "maxsim_scores"]\n',
    "scoring/functions.py": """
        DEFAULT_WEIGHTS = {"dense": 1.0, "sparse": 0.3, "multivector": 1.0}
        def maxsim_scores(q, d):
            return q @ d.T
    """,
}


def rules(found) -> list[str]:
    return [v.rule for v in found]


def test_clean_tree_passes(arch, tmp_path):
    root = make_tree(
        tmp_path,
        {
            **SCORING_CORE,
            "index/dense.py": "from embforge.scoring import maxsim_scores\n",
            "search/hybrid.py": "from embforge.index import dense\nfrom embforge.scoring import DEFAULT_WEIGHTS\n",
            "cli/app.py": "def cmd():\n    from embforge.search import hybrid\n    return hybrid\n",
        },
    )
    assert arch.check(root) == []
    assert arch.main([str(root)]) == 0


def test_cycle_fires_through_a_function_level_import(arch, tmp_path):
    root = make_tree(
        tmp_path,
        {
            "index/base.py": "from embforge.search import fusion\n",
            "search/fusion.py": "def f():\n    from ..index import base  # lazy-import: test\n    return base\n",
        },
    )
    found = [v for v in arch.check(root) if v.rule == "cycle"]
    assert len(found) == 2
    assert "layer" in rules(arch.check(root))  # index must not import search either
    assert {(v.path, v.line) for v in found} == {
        ("src/embforge/index/base.py", 1),
        ("src/embforge/search/fusion.py", 2),
    }
    assert "index -> search -> index" in found[0].message


def test_cycle_with_a_top_level_module_and_from_embforge_import(arch, tmp_path):
    root = make_tree(
        tmp_path,
        {
            "demo.py": "from embforge.model import builders\n",
            "model/builders.py": "from embforge import demo\n",
        },
    )
    assert rules(arch.check(root)) == ["cycle", "cycle", "layer"]  # model must not import demo


def test_type_checking_imports_are_exempt_from_cycles_and_layers(arch, tmp_path):
    root = make_tree(
        tmp_path,
        {
            "search/fusion.py": "from embforge.index import base\n",
            "index/base.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from embforge.search.fusion import X\n"
            ),
        },
    )
    assert arch.check(root) == []


def test_layer_rule_fires_on_a_forbidden_arrow_once_per_arrow(arch, tmp_path):
    root = make_tree(
        tmp_path,
        {
            "model/builders.py": "from embforge.train import loop\n",
            "model/encoder.py": "def f():\n    from embforge.train import loop  # lazy-import: test\n",
            "train/loop.py": "from embforge.model import encoder\n",
        },
    )
    found = [v for v in arch.check(root) if v.rule == "layer"]
    assert [(v.path, v.line) for v in found] == [("src/embforge/model/builders.py", 1)]
    assert "model must not import train (2 imports" in found[0].message


def test_layer_rule_wants_every_package_placed(arch, tmp_path):
    root = make_tree(tmp_path, {"newpkg/thing.py": "X = 1\n"})
    assert [(v.rule, v.path) for v in arch.check(root)] == [
        ("layer", "src/embforge/newpkg/__init__.py"),
        ("layer", "src/embforge/newpkg/thing.py"),
    ]


def test_cli_may_import_every_package(arch, tmp_path):
    files = {f"{pkg}/mod.py": "X = 1\n" for pkg in arch.ALLOWED if pkg not in ("embforge", "cli")}
    body = "".join(
        f"    from embforge.{pkg} import mod as m{i}\n"
        for i, pkg in enumerate(sorted(arch.ALLOWED))
        if pkg not in ("embforge", "cli")
    )
    files["cli/app.py"] = "def main():\n" + body
    assert arch.check(make_tree(tmp_path, files)) == []


def test_scoring_rule_fires_on_names_and_weights(arch, tmp_path):
    root = make_tree(
        tmp_path,
        {
            **SCORING_CORE,
            "eval/runner.py": """
                W = {"dense": 1.0, "sparse": 0.3, "multivector": 1.0}
                def maxsim(q, d):
                    return q
                def _dense_scores(q, d):
                    return q
                def rrf(runs):
                    return runs
                def distill(x, weights=(1, 0.3, 1)):
                    return x
                def fuse(x, w_dense=1.0, w_sparse=0.3, w_mv=1.0):
                    return x
                class Index:
                    def _maxsim_rows(self, q):
                        return q
                def truncate_dense(v, dim):
                    return v
            """,
        },
    )
    found = arch.check(root)
    assert [(v.rule, v.line) for v in found] == [
        ("scoring", 2),  # dict literal
        ("scoring", 3),  # maxsim
        ("scoring", 5),  # _dense_scores (a core name)
        ("scoring", 7),  # rrf
        ("scoring", 9),  # tuple default
        ("scoring", 11),  # three consecutive defaults
        ("scoring", 14),  # method _maxsim_rows
        ("scoring", 16),  # truncate_dense
    ]


def test_scoring_rule_lines(arch, tmp_path):
    root = make_tree(
        tmp_path,
        {
            **SCORING_CORE,
            "eval/runner.py": """
                W = [1.0, 0.3, 1.0]
                def maxsim_blocks(q, d):
                    return q
            """,
        },
    )
    assert [(v.rule, v.line) for v in arch.check(root)] == [("scoring", 2), ("scoring", 3)]


def test_scoring_rule_passes_on_lookalikes_and_allowed_dispatcher(arch, tmp_path):
    root = make_tree(
        tmp_path,
        {
            **SCORING_CORE,
            "model/heads/__init__.py": "def head_scores(q, d, head):\n    return q\n",
            "eval/report.py": """
                ALPHA = (0.3, 1.0)
                GRID = [1.0, 0.3, 1.0, 2.0]
                HELP = "weights 1,0.3,1"
                def run_from_scores(s):
                    return s
                def _truncate(ids):
                    return ids
            """,
        },
    )
    assert arch.check(root) == []


def _function(name: str, body_lines: int, signature: str = "") -> str:
    body = "".join(f"    x{i} = {i}\n" for i in range(body_lines - 1))
    return f"def {name}({signature}):\n{body}    return 0\n"


def test_length_rule_fires_over_80_lines(arch, tmp_path):
    root = make_tree(tmp_path, {"data/io.py": _function("ok", 79) + _function("long", 80)})
    found = arch.check(root)
    assert [(v.rule, v.line) for v in found] == [("length", 81)]
    assert "long: function of 81 lines" in found[0].message


def test_length_rule_counts_a_typer_command_body_only(arch, tmp_path):
    signature = "\n" + "".join(f"    a{i}: int = typer.Option(1),\n" for i in range(20))
    root = make_tree(tmp_path, {"cli/cmd.py": "import typer\n" + _function("command", 80, signature)})
    assert arch.check(root) == []
    root2 = make_tree(tmp_path / "b", {"cli/cmd.py": "import typer\n" + _function("command", 81, signature)})
    assert rules(arch.check(root2)) == ["length"]


def test_lazy_import_rule(arch, tmp_path):
    root = make_tree(
        tmp_path,
        {
            "data/io.py": """
                def read():
                    from embforge.errors import DataError
                    import json
                    return DataError, json
                def kernel():
                    from embforge.index import _kernel  # lazy-import: needs numba
                    return _kernel
            """,
            "errors.py": "class DataError(Exception):\n    pass\n",
            "index/_kernel.py": "",
            "cli/app.py": "def cmd():\n    from embforge.data import io\n    return io\n",
        },
    )
    found = arch.check(root)
    assert [(v.path, v.line, v.rule) for v in found] == [("src/embforge/data/io.py", 3, "lazy-import")]


def test_command_line_exit_codes(tmp_path):
    bad = make_tree(tmp_path / "bad", {"data/io.py": _function("long", 90)})
    good = make_tree(tmp_path / "good", {"data/io.py": _function("short", 10)})
    run = [sys.executable, str(SCRIPT)]
    res = subprocess.run([*run, str(bad)], capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stdout.startswith("src/embforge/data/io.py:1: [length]")
    assert subprocess.run([*run, str(good)], capture_output=True, text=True).returncode == 0
