"""Writes are atomic (temp file + rename) everywhere (issue 14, "nothing half-made is left
behind"): a failure mid-write leaves the old file whole and no temporary file, for every writer of
configs, reports and runs; and no module of ``src/`` writes a file in place (a static check, so a
new writer cannot slip in)."""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from embforge.atomic import atomic_write_bytes, atomic_write_text
from embforge.config import save_config
from embforge.search.runs import write_run
from embforge.types import Hits

SRC = Path(__file__).resolve().parents[2] / "src" / "embforge"


@dataclass
class _Cfg:
    name: str = "new"
    sizes: list[int] = field(default_factory=lambda: [1, 2])


def _writers(tmp_path: Path):
    hits = Hits(ids=[["d1"]], scores=[[1.0]])
    return {
        "atomic_write_text": (tmp_path / "a.txt", lambda p: atomic_write_text(p, "new " * 100_000)),
        "atomic_write_bytes": (tmp_path / "b.bin", lambda p: atomic_write_bytes(p, b"new" * 100_000)),
        "save_config": (tmp_path / "cfg.yaml", lambda p: save_config(_Cfg(), p)),
        "write_run (trec)": (tmp_path / "run.trec", lambda p: write_run(p, ["q1"], hits)),
        "write_run (json)": (tmp_path / "run.json", lambda p: write_run(p, ["q1"], hits)),
    }


@pytest.mark.parametrize(
    "name", ["atomic_write_text", "atomic_write_bytes", "save_config", "write_run (trec)", "write_run (json)"]
)
@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_hostile_failure_mid_write_leaves_the_old_file(tmp_path, monkeypatch, name, fail_at) -> None:
    path, write = _writers(tmp_path)[name]
    path.write_bytes(b"old contents")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    # fsync fails after the bytes went to the temp file (a full disk mid-write); replace fails
    # at the last step; either way the target must still hold the old bytes
    monkeypatch.setattr(os, fail_at, boom)
    with pytest.raises(OSError, match="No space left"):
        write(path)
    monkeypatch.undo()
    assert path.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left
    write(path)  # and the next write succeeds
    assert path.read_bytes() != b"old contents"


# Each in-place write left in src/, with why it is not a half-made output.
ALLOWED_IN_PLACE = {
    "atomic.py": (1, "the temp file of atomic_write_bytes itself"),
    "data/io.py": (
        3,
        "atomic_write's temp file (x2); the --skip-bad side file, a log kept on failure on purpose",
    ),
    "cli/encode.py": (2, "a temp file renamed into place when complete"),
    "index/storage.py": (1, "index.json inside atomic_write_dir's temp folder"),
    "export/onnx.py": (
        2,
        "embforge_onnx.json and tokenizer_config.json's max_length inside the export's temp folder, "
        "renamed when complete",
    ),
    "index/base.py": (1, "ids.json inside atomic_write_dir's temp folder"),
    "train/checkpoint.py": (1, "trainer_state.json inside the temp checkpoint folder, renamed when complete"),
    "data/shard_mining.py": (1, "mining's scratch vector file, in its own temporary folder (not an output)"),
    "train/memory.py": (2, "/proc/self/clear_refs: resets the kernel's peak-RSS counter (no file output)"),
    "train/loop.py": (1, "log.jsonl appended a line per step (a log; resume drops a torn last line)"),
}


def _in_place_writes(tree: ast.AST) -> int:
    """Calls that write a file in place: ``x.write_text/write_bytes(...)``, ``open(p, "w...")``,
    ``x.open("w...")``, ``os.fdopen(fd, "w...")``."""
    n = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if name in ("write_text", "write_bytes"):
            n += 1
        elif name in ("open", "fdopen"):
            modes = [a for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            modes += [k.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)]
            if any(isinstance(m, ast.Constant) and str(m.value)[:1] in "wax" and m.value for m in modes):
                n += 1
    return n


def test_hostile_no_module_writes_a_file_in_place() -> None:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        n = _in_place_writes(ast.parse(path.read_text(encoding="utf-8")))
        if n:
            found[path.relative_to(SRC).as_posix()] = n
    expected = {k: v[0] for k, v in ALLOWED_IN_PLACE.items()}
    assert found == expected, (
        "a file is written in place (not temp + rename): use embforge.atomic.atomic_write_text/bytes "
        f"or embforge.data.io.atomic_write; found {found}"
    )


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def test_atomic_files_get_the_modes_open_would_give_not_mkstemps_0600(tmp_path, umask_027) -> None:
    """A model folder, report or index that embforge writes is readable by whoever may read the
    user's other files (the umask decides, as for ``open``), not only by its owner."""
    from embforge.atomic import user_mode
    from embforge.data.io import atomic_write

    assert user_mode() == 0o640 and user_mode(directory=True) == 0o750
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    for name, (path, write) in _writers(tmp_path).items():
        write(path)
        assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o640, name
    with atomic_write(tmp_path / "io.jsonl.gz") as fh:
        fh.write("{}\n")
    assert (tmp_path / "io.jsonl.gz").stat().st_mode & 0o777 == 0o640


def test_an_index_folder_gets_the_modes_mkdir_would_give(tmp_path, umask_027) -> None:
    from embforge.index.storage import atomic_write_dir

    def write(d: Path) -> None:
        (d / "sub").mkdir()
        (d / "sub" / "vectors.bin").write_bytes(b"\0" * 8)
        atomic_write_text(d / "meta.json", "{}")

    out = atomic_write_dir(tmp_path / "idx", write)
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in [out, *out.rglob("*")]}
    assert modes == {".": 0o750, "sub": 0o750, "sub/vectors.bin": 0o640, "meta.json": 0o640}
