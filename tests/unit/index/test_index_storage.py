from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import embforge.index.storage as storage
from embforge.errors import CheckpointError
from embforge.index import ExactDenseIndex, load_index
from helpers.index_testdata import clustered


def build(n: int, seed: int) -> ExactDenseIndex:
    idx = ExactDenseIndex()
    idx.add([f"d{i}" for i in range(n)], clustered(n, 16, seed=seed))
    return idx


def test_crash_during_save_keeps_previous_index(tmp_path, monkeypatch):
    old = build(50, 0)
    old.save(tmp_path / "ix")
    q = clustered(3, 16, seed=9)
    before = load_index(tmp_path / "ix").search(q, k=5)

    calls = {"n": 0}
    real_save = np.save

    def failing_save(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the first array is written, the second write "crashes"
            raise OSError("disk full (simulated)")
        return real_save(*a, **kw)

    monkeypatch.setattr(storage.np, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        build(80, 1).save(tmp_path / "ix")
    monkeypatch.undo()
    after = load_index(tmp_path / "ix")
    assert len(after) == 50 and after.search(q, k=5) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]  # no temp dir left behind


def test_hard_kill_during_save_keeps_previous_index(tmp_path):
    """A process killed mid-save (no cleanup runs) leaves the old index readable."""
    build(40, 0).save(tmp_path / "ix")
    code = f"""
import os, numpy as np
import embforge.index.storage as storage
from embforge.index import ExactDenseIndex
real = np.save
def dying(path, *a, **kw):
    real(path, *a, **kw)
    os._exit(9)  # killed right after writing the first file
storage.np.save = dying
idx = ExactDenseIndex(); idx.add(["x", "y"], np.eye(2, 16, dtype=np.float32))
idx.save({str(tmp_path / "ix")!r})
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    rc = subprocess.run([sys.executable, "-c", code], env=env).returncode
    assert rc == 9
    loaded = load_index(tmp_path / "ix")
    assert len(loaded) == 40
    assert any(p.name.startswith(".ix.tmp-") for p in tmp_path.iterdir())  # the leftover is ignored


def test_replace_existing_index(tmp_path):
    build(10, 0).save(tmp_path / "ix")
    build(20, 1).save(tmp_path / "ix")
    assert len(load_index(tmp_path / "ix")) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]


def test_fallback_swap_recovers_interrupted_replace(tmp_path, monkeypatch):
    """Where renameat2 is unavailable: a crash between the two renames is repaired on load."""
    build(10, 0).save(tmp_path / "ix")
    monkeypatch.setattr(storage, "_exchange", lambda a, b: False)
    real_rename = os.rename

    def crash_second(src, dst):
        if Path(src).name.startswith(".ix.tmp-"):
            raise OSError("crash between renames (simulated)")
        return real_rename(src, dst)

    monkeypatch.setattr(storage.os, "rename", crash_second)
    with pytest.raises(OSError, match="simulated"):
        build(20, 1).save(tmp_path / "ix")
    monkeypatch.undo()
    assert not (tmp_path / "ix").exists()
    assert len(load_index(tmp_path / "ix")) == 10  # the previous index is put back


def test_version_and_corruption_errors(tmp_path):
    build(5, 0).save(tmp_path / "ix")
    mf = tmp_path / "ix" / "index.json"
    data = json.loads(mf.read_text())
    data["format_version"] = 99
    mf.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="format_version 99 but this embforge reads format_version 1"):
        load_index(tmp_path / "ix")
    data["format_version"] = 1
    data["kind"] = "quantum"
    mf.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="unknown index backend 'quantum'; choose from: .*dense-exact"):
        load_index(tmp_path / "ix")
    data["kind"] = "dense-exact"
    mf.write_text(json.dumps(data))
    (tmp_path / "ix" / "vectors.npy").unlink()
    with pytest.raises(CheckpointError, match="vectors.npy is missing"):
        load_index(tmp_path / "ix")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not an embforge index: index.json is missing"):
        load_index(tmp_path / "empty")


def test_load_memory_maps(tmp_path):
    build(30, 0).save(tmp_path / "ix")
    assert isinstance(load_index(tmp_path / "ix")._vectors, np.memmap)
    assert not isinstance(load_index(tmp_path / "ix", mmap=False)._vectors, np.memmap)


def test_index_base_hooks_are_abstract() -> None:
    """Every registered backend implements the base class's hooks; one that misses any cannot be
    instantiated (abc), instead of failing later with NotImplementedError."""
    import inspect

    from embforge.index import INDEXES, BaseIndex

    for name in INDEXES.names():
        assert not inspect.isabstract(INDEXES.get(name)), name
    assert {"add", "search", "config", "_write", "_read"} <= BaseIndex.__abstractmethods__

    class NoSearch(BaseIndex):
        def add(self, ids, vectors):
            pass

        def config(self):
            return {}

        def _write(self, d):
            pass

        @classmethod
        def _read(cls, d, manifest, mmap):
            return cls()

    with pytest.raises(TypeError, match="search"):
        NoSearch()
