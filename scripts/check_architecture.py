"""Check the architecture rules of ``src/embforge`` (stdlib + ``ast`` only; run by ``make lint``).

Usage: ``python scripts/check_architecture.py [ROOT]`` where ROOT is the repository (default: the
parent of this script's folder). Prints one line per violation, ``path:line: [rule] message``, and
exits 1 if there is any, else prints a one-line summary and exits 0.

The rules (docs/architecture.md explains why):

cycle
    No import cycle between the packages of ``embforge``. A node is a first-level name under
    ``embforge``: a subpackage (``embforge.model``) or a top-level module (``embforge.demo``,
    ``embforge.config``); ``embforge/__init__.py`` is the node ``embforge``. An edge A -> B is any
    ``import``/``from ... import`` in a module of A that names B, wherever the statement is (module
    top, inside a function, inside ``try``), because an import inside a function still runs. Imports
    under ``if TYPE_CHECKING:`` are exempt: they never run, and annotations need them. ``from
    embforge import x`` is an edge to ``x`` when ``x`` is a subpackage/module, else to ``embforge``.
    Each cycle is reported once, one line per edge, at the edge's first import.

layer
    Each package imports only the packages below it, as listed in ``ALLOWED`` (the arrows of
    docs/architecture.md): errors/types/registry at the bottom, then text and scoring, index,
    data, model, losses, config, train, search, eval, serve, and the entry points (demo,
    quickstart, cli) on top. Runtime imports only (``TYPE_CHECKING`` blocks are exempt, as for
    cycles); ``from embforge import __version__`` (the node ``embforge``) is allowed everywhere.
    A package missing from ``ALLOWED`` is a violation too: a new package says where it sits.
    Reported once per forbidden arrow, at its first import, with the number of imports.

scoring
    No second definition of the retrieval maths outside ``src/embforge/scoring/``:
    * a ``def`` (function, method or nested) whose name, without leading underscores, is a public
      function name of the scoring core (the lower-case entries of ``__all__`` in
      ``scoring/__init__.py``), or contains ``maxsim``, or is ``rrf``/``rrf_*``/``*_rrf``, or starts
      with ``truncate_dense``, or is ``<kind>_scores`` for kind in dense, sparse, lexical,
      multivector, hybrid, bm25, head. Allowed: ``head_scores`` under ``model/heads`` (the head
      registry's dispatcher, which calls the scoring core);
    * the hybrid weights of BGE-M3 (Chen et al., 2024), (1, 0.3, 1), written as a literal: a list
      or tuple of exactly three numbers equal to (1, 0.3, 1), a dict literal whose three values are
      those numbers in that order, or three consecutive parameter defaults with those values. Use
      ``embforge.scoring.DEFAULT_WEIGHTS``. Strings and docstrings are not checked.

length
    No function over 80 lines in ``src/``, counted from the ``def`` line (decorators excluded) to its
    last line, docstring and comments included. A typer command (a function with a parameter
    declared by ``typer.Option``/``typer.Argument``, as default or in ``Annotated``) counts its body
    only, from its first statement (the docstring) on: it keeps one parameter per CLI option, but
    its logic goes into helpers like any other function.

lazy-import
    Imports of ``embforge`` modules sit at module top. Inside a function they hide the dependency
    graph. Exempt: ``src/embforge/cli/`` (commands import their heavy modules when they run, so
    ``embforge --help`` stays fast), ``if TYPE_CHECKING:`` blocks, and a line that carries the
    comment ``# lazy-import: <reason>`` (for a module that needs an optional heavy dependency).
    Third-party imports inside functions are not checked (optional heavy dependencies live there).
"""

from __future__ import annotations

import ast
import fnmatch
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_LINES = 80
HYBRID_WEIGHTS = (1.0, 0.3, 1.0)
SCORE_KINDS = ("dense", "sparse", "lexical", "multivector", "hybrid", "bm25", "head")
SCORING_PATTERNS = ("*maxsim*", "rrf", "rrf_*", "*_rrf", "truncate_dense*")
ALLOWED_DEFS = {("head_scores", "model/heads")}
LAZY_EXEMPT_DIRS = ("cli/",)
LAZY_MARK = "# lazy-import:"

_BASE = {"errors", "types", "registry", "atomic"}
_CORE = _BASE | {"text", "scoring", "index", "data", "model", "losses"}
# package -> the packages it may import (the arrows of docs/architecture.md).
ALLOWED: dict[str, set[str]] = {
    "embforge": set(),  # the root __init__ resolves its public names lazily (PEP 562)
    "errors": set(),
    "types": {"errors"},
    "registry": {"errors"},
    "resources": {"errors"},  # paths of the files shipped with the package (demo_path)
    "atomic": set(),  # atomic file writes (temp file + rename), used by every writer
    "text": _BASE,
    "scoring": _BASE,
    "index": _BASE | {"scoring"},
    "data": _BASE | {"text", "scoring", "index"},
    "model": _BASE | {"text", "scoring", "data"},
    "nv_embed": _BASE | {"text", "scoring", "data", "model"},
    "losses": _BASE | {"scoring", "model"},
    "config": _CORE,
    "pretrain": _CORE | {"config"},  # building blocks (masking, collators, decoders)
    "train": _CORE | {"config", "nv_embed", "pretrain"},  # recipes assemble them
    "search": _BASE | {"scoring", "index", "model", "text"},
    "eval": _CORE | {"search"},
    "serve": _CORE | {"search", "config"},
    "demo": _CORE,
    "quickstart": _CORE | {"config", "train", "pretrain", "search", "eval", "demo"},
}
ALLOWED["cli"] = set(ALLOWED) - {"cli"}


@dataclass(frozen=True)
class Violation:
    """One broken rule at ``path:line``."""

    path: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}"


@dataclass(frozen=True)
class ImportSite:
    """An import of ``target`` (a dotted ``embforge`` name) at ``path:line``."""

    path: str
    line: int
    target: str
    in_function: bool
    type_checking: bool


@dataclass
class Module:
    """A parsed source file of the package."""

    path: Path  # absolute
    rel: str  # relative to the repository root, posix
    name: str  # dotted module name, e.g. embforge.model.heads
    pkg_rel: str  # relative to src/embforge, posix, e.g. model/heads.py
    tree: ast.Module
    lines: list[str]


def load_modules(root: Path) -> list[Module]:
    """Parse every ``*.py`` under ``root/src/embforge``."""
    pkg = root / "src" / "embforge"
    out = []
    for path in sorted(pkg.rglob("*.py")):
        rel_pkg = path.relative_to(pkg)
        parts = ["embforge", *rel_pkg.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        text = path.read_text(encoding="utf-8")
        out.append(
            Module(
                path=path,
                rel=path.relative_to(root).as_posix(),
                name=".".join(parts),
                pkg_rel=rel_pkg.as_posix(),
                tree=ast.parse(text, filename=str(path)),
                lines=text.splitlines(),
            )
        )
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(mod: Module, node: ast.ImportFrom) -> str:
    """The absolute module named by a ``from`` import (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = mod.name.split(".")
    is_pkg = mod.path.name == "__init__.py"
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _sites(mod: Module, node: ast.Import | ast.ImportFrom) -> list[tuple[int, str]]:
    """(line, dotted target) of the ``embforge`` names one import statement brings in."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = _resolve(mod, node)
        names = [f"{base}.{a.name}" for a in node.names]
    return [(node.lineno, n) for n in names if n == "embforge" or n.startswith("embforge.")]


def iter_imports(mod: Module) -> Iterator[ImportSite]:
    """Every import of an ``embforge`` name in ``mod``, with where it sits."""

    def visit(node: ast.AST, in_fn: bool, in_tc: bool) -> Iterator[ImportSite]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for line, target in _sites(mod, node):
                yield ImportSite(mod.rel, line, target, in_fn, in_tc)
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, in_fn, True)
            for child in node.orelse:
                yield from visit(child, in_fn, in_tc)
            return
        fn = in_fn or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            yield from visit(child, fn, in_tc)

    yield from visit(mod.tree, False, False)


def node_of(dotted: str, names: set[str]) -> str:
    """The package-graph node of a dotted ``embforge`` name (``names``: first-level names)."""
    parts = dotted.split(".")
    if len(parts) >= 2 and parts[1] in names:
        return parts[1]
    return "embforge"


def package_graph(modules: list[Module]) -> dict[str, dict[str, ImportSite]]:
    """node -> {imported node: its first import site}, runtime imports only."""
    names = {m.name.split(".")[1] for m in modules if m.name.count(".") >= 1}
    graph: dict[str, dict[str, ImportSite]] = {}
    for mod in modules:
        src = node_of(mod.name, names)
        edges = graph.setdefault(src, {})
        for site in iter_imports(mod):
            dst = node_of(site.target, names)
            if site.type_checking or dst == src:
                continue
            prev = edges.get(dst)
            if prev is None or (prev.path, prev.line) > (site.path, site.line):
                edges[dst] = site
    return graph


class _Tarjan:
    """Tarjan's (1972) strongly connected components of a package graph."""

    def __init__(self, graph: dict[str, dict[str, ImportSite]]) -> None:
        self.graph = graph
        self.index: dict[str, int] = {}
        self.low: dict[str, int] = {}
        self.stack: list[str] = []
        self.out: list[list[str]] = []

    def connect(self, v: str) -> None:
        self.index[v] = self.low[v] = len(self.index)
        self.stack.append(v)
        for w in sorted(self.graph.get(v, {})):
            if w not in self.index:
                self.connect(w)
                self.low[v] = min(self.low[v], self.low[w])
            elif w in self.stack:
                self.low[v] = min(self.low[v], self.index[w])
        if self.low[v] == self.index[v]:
            comp: list[str] = []
            while not comp or comp[-1] != v:
                comp.append(self.stack.pop())
            if len(comp) > 1:
                self.out.append(sorted(comp))


def strongly_connected(graph: dict[str, dict[str, ImportSite]]) -> list[list[str]]:
    """The strongly connected components with more than one node, each sorted."""
    t = _Tarjan(graph)
    for v in sorted(graph):
        if v not in t.index:
            t.connect(v)
    return sorted(t.out)


def shortest_cycle(graph: dict[str, dict[str, ImportSite]], comp: list[str]) -> list[str]:
    """A shortest cycle through the first node of ``comp``, as [a, b, ..., a]."""
    start, members = comp[0], set(comp)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, {})):
            if w == start:
                return [*paths[v], start]
            if w in members and w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    return [start, start]  # unreachable for a strongly connected component


def check_cycles(modules: list[Module]) -> list[Violation]:
    """Rule ``cycle``: per strongly connected component, a shortest cycle through each node, one
    line per edge not reported yet (so every package of the component appears)."""
    graph = package_graph(modules)
    out, done = [], set()
    for comp in strongly_connected(graph):
        for node in comp:
            order = [node, *(c for c in comp if c != node)]
            cycle = shortest_cycle(graph, order)
            text = " -> ".join(cycle)
            for a, b in zip(cycle, cycle[1:]):
                if (a, b) in done:
                    continue
                done.add((a, b))
                site = graph[a][b]
                out.append(Violation(site.path, site.line, "cycle", f"{a} -> {b} closes {text}"))
    return out


def check_layers(modules: list[Module]) -> list[Violation]:
    """Rule ``layer``: every runtime import follows an arrow of ``ALLOWED``."""
    names = {m.name.split(".")[1] for m in modules if m.name.count(".") >= 1}
    first: dict[tuple[str, str], ImportSite] = {}
    count: dict[tuple[str, str], int] = {}
    out = []
    for mod in modules:
        src = node_of(mod.name, names)
        if src not in ALLOWED:
            msg = f"package {src} has no entry in ALLOWED (scripts/check_architecture.py): say what it may import"
            out.append(Violation(mod.rel, 1, "layer", msg))
            continue
        for site in iter_imports(mod):
            dst = node_of(site.target, names)
            if site.type_checking or dst in (src, "embforge") or dst in ALLOWED[src]:
                continue
            key = (src, dst)
            count[key] = count.get(key, 0) + 1
            if key not in first or (first[key].path, first[key].line) > (site.path, site.line):
                first[key] = site
    for (src, dst), site in first.items():
        n = count[(src, dst)]
        msg = f"{src} must not import {dst} ({n} import{'s' if n > 1 else ''}; see docs/architecture.md)"
        out.append(Violation(site.path, site.line, "layer", msg))
    return out


def scoring_names(modules: list[Module]) -> set[str]:
    """The lower-case names in ``embforge.scoring.__all__`` (the core's public functions)."""
    for mod in modules:
        if mod.name != "embforge.scoring":
            continue
        for node in mod.tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                value = ast.literal_eval(node.value)  # type: ignore[union-attr]
                return {n for n in value if n.islower()}
    return set()


def is_scoring_name(name: str, core: set[str]) -> bool:
    """Whether a function name looks like a scoring-core function (see the module docstring)."""
    bare = name.lstrip("_")
    if bare in core or bare in {f"{k}_scores" for k in SCORE_KINDS}:
        return True
    return any(fnmatch.fnmatchcase(bare, p) for p in SCORING_PATTERNS)


def _number(node: ast.expr) -> float | None:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    return None


def _is_weights(values: list[ast.expr]) -> bool:
    nums = [_number(v) for v in values]
    return len(nums) == 3 and tuple(nums) == HYBRID_WEIGHTS


def _weights_in_defaults(args: ast.arguments) -> bool:
    defaults = [d for d in [*args.defaults, *args.kw_defaults] if d is not None]
    return any(_is_weights(defaults[i : i + 3]) for i in range(len(defaults) - 2))


def check_scoring(modules: list[Module]) -> list[Violation]:
    """Rule ``scoring``: score functions and the hybrid weights live in ``scoring/`` only."""
    core = scoring_names(modules)
    out = []
    for mod in modules:
        if mod.pkg_rel.startswith("scoring/"):
            continue
        for node in ast.walk(mod.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                allowed = any(node.name == n and mod.pkg_rel.startswith(d) for n, d in ALLOWED_DEFS)
                if is_scoring_name(node.name, core) and not allowed:
                    msg = f"def {node.name}: score functions live in embforge.scoring (call them)"
                    out.append(Violation(mod.rel, node.lineno, "scoring", msg))
                if _weights_in_defaults(node.args):
                    msg = "defaults (1, 0.3, 1): use embforge.scoring.DEFAULT_WEIGHTS"
                    out.append(Violation(mod.rel, node.lineno, "scoring", msg))
            elif isinstance(node, (ast.List, ast.Tuple)) and _is_weights(node.elts):
                msg = "literal (1, 0.3, 1): use embforge.scoring.DEFAULT_WEIGHTS"
                out.append(Violation(mod.rel, node.lineno, "scoring", msg))
            elif isinstance(node, ast.Dict) and _is_weights(node.values):
                msg = "dict literal with weights (1, 0.3, 1): use embforge.scoring.DEFAULT_WEIGHTS"
                out.append(Violation(mod.rel, node.lineno, "scoring", msg))
    return out


def is_typer_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether a parameter is declared by ``typer.Option``/``typer.Argument`` (default or Annotated)."""
    args = node.args
    for expr in [*args.defaults, *args.kw_defaults, *(a.annotation for a in args.args + args.kwonlyargs)]:
        for sub in ast.walk(expr) if expr is not None else ():
            if isinstance(sub, ast.Call):
                fn = sub.func
                name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
                if name in ("Option", "Argument"):
                    return True
    return False


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function from ``def`` to its end; a typer command counts its body only."""
    first = node.body[0].lineno if is_typer_command(node) else node.lineno
    return node.end_lineno - first + 1  # type: ignore[operator]


def check_length(modules: list[Module]) -> list[Violation]:
    """Rule ``length``: no function over ``MAX_LINES`` lines."""
    out = []
    for mod in modules:
        for node in ast.walk(mod.tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            n = function_lines(node)
            if n > MAX_LINES:
                what = "body (typer command)" if is_typer_command(node) else "function"
                msg = f"{node.name}: {what} of {n} lines > {MAX_LINES}; split it into helpers"
                out.append(Violation(mod.rel, node.lineno, "length", msg))
    return out


def check_lazy_imports(modules: list[Module]) -> list[Violation]:
    """Rule ``lazy-import``: ``embforge`` imports inside functions (outside the exemptions)."""
    out: dict[tuple[str, int], Violation] = {}  # one line per statement, even with several names
    for mod in modules:
        if mod.pkg_rel.startswith(LAZY_EXEMPT_DIRS):
            continue
        for site in iter_imports(mod):
            key = (site.path, site.line)
            if not site.in_function or site.type_checking or key in out:
                continue
            if LAZY_MARK in mod.lines[site.line - 1]:
                continue
            msg = f"{site.target} imported inside a function: move it to the module top"
            out[key] = Violation(site.path, site.line, "lazy-import", msg)
    return list(out.values())


def check(root: Path) -> list[Violation]:
    """All rules on the repository at ``root``, sorted by path and line."""
    modules = load_modules(root)
    found = [
        *check_cycles(modules),
        *check_layers(modules),
        *check_scoring(modules),
        *check_length(modules),
        *check_lazy_imports(modules),
    ]
    return sorted(found, key=lambda v: (v.path, v.line, v.rule, v.message))


def main(argv: list[str] | None = None) -> int:
    """Print the violations; 1 if any, else 0."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parents[1]
    found = check(root)
    for v in found:
        print(v)
    if found:
        print(f"check_architecture: {len(found)} violation(s)", file=sys.stderr)
        return 1
    print("check_architecture: ok (cycle, layer, scoring, length, lazy-import)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
