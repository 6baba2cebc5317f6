"""On-disk layout of an index: a directory of npy/json/faiss files with a format version.

Saving is atomic: everything is written into a temporary directory next to the
target, fsynced, then swapped in with one rename (``renameat2(RENAME_EXCHANGE)``
on Linux). A crash at any point leaves either the previous index or the new one,
never a half-written directory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import json
import os
import shutil
import tempfile
import tokenize
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from embforge import __version__
from embforge.atomic import give_user_modes
from embforge.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "atomic_write_dir",
    "read_manifest",
    "write_manifest",
    "save_array",
    "load_array",
    "resolve_index_dir",
    "check_array",
    "check_offsets",
    "check_bounds",
]

FORMAT_VERSION = 1
MANIFEST = "index.json"
_OLD_TAG = ".old-"
_TMP_TAG = ".tmp-"


def save_array(directory: Path, name: str, array: np.ndarray) -> None:
    """Write ``array`` as ``directory/name.npy`` (never pickled)."""
    np.save(directory / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)


def load_array(directory: Path, name: str, mmap: bool = True) -> np.ndarray:
    """Read ``directory/name.npy``, memory-mapped read-only when ``mmap``."""
    path = Path(directory) / f"{name}.npy"
    if not path.exists():
        raise CheckpointError(
            f"index file {path} is missing; the index directory is incomplete: rebuild it "
            "with `embforge index` or Index.save()"
        )
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    # truncated, not .npy, an object (pickled) array, a header numpy's parser chokes on (its
    # ast/tokenize errors), or a header claiming more elements than memory holds
    except (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError, MemoryError) as e:
        msg = " ".join(str(e).split())[:120]
        raise CheckpointError(f"{path}: not a readable .npy array ({msg}); the index is corrupt, rebuild it") from None


def _corrupt(d: Path, name: str, msg: str) -> CheckpointError:
    return CheckpointError(f"{Path(d) / (name + '.npy')}: {msg}; the index is corrupt or hostile, rebuild it")


def check_array(d: Path, name: str, arr: np.ndarray, kinds: str, ndim: int, rows: int | None = None) -> None:
    """Refuse an array of the wrong dtype kind (numpy ``kind`` letters), rank or row count.

    Loaded index arrays reach numba/faiss kernels that do no checks of their own: a wrong
    dtype or shape there is a crash or silently wrong scores.
    """
    if arr.dtype.kind not in kinds:
        raise _corrupt(d, name, f"dtype {arr.dtype} is not one of the kinds {kinds!r}")
    if arr.ndim != ndim:
        raise _corrupt(d, name, f"has {arr.ndim} dimensions, expected {ndim}")
    if rows is not None and arr.shape[0] != rows:
        raise _corrupt(d, name, f"has {arr.shape[0]} rows, expected {rows}")
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        raise _corrupt(d, name, "holds NaN or infinite values")


def check_offsets(d: Path, name: str, ptr: np.ndarray, n_segments: int, n_items: int) -> None:
    """An offsets array (CSR ``indptr``): ``n_segments + 1`` integers from 0 to ``n_items``, non-decreasing."""
    check_array(d, name, ptr, "iu", 1, n_segments + 1)
    if int(ptr[0]) != 0 or int(ptr[-1]) != n_items:
        raise _corrupt(d, name, f"must run from 0 to {n_items}, runs from {int(ptr[0])} to {int(ptr[-1])}")
    if n_segments and bool((np.diff(ptr) < 0).any()):
        raise _corrupt(d, name, "is not non-decreasing")


def check_bounds(d: Path, name: str, arr: np.ndarray, high: int) -> None:
    """Integer entries (row or term numbers) must lie in ``[0, high)``."""
    check_array(d, name, arr, "iu", 1)
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= high):
        raise _corrupt(d, name, f"holds values outside [0, {high}) (min {int(arr.min())}, max {int(arr.max())})")


def write_manifest(directory: Path, kind: str, config: dict[str, Any], **extra: Any) -> None:
    data = {"format_version": FORMAT_VERSION, "kind": kind, "embforge_version": __version__}
    data.update(extra)
    data["config"] = config
    (Path(directory) / MANIFEST).write_text(json.dumps(data, indent=2, sort_keys=True))


def resolve_index_dir(path: str | os.PathLike) -> Path:
    """The directory to read, recovering from a crash between the two renames of the fallback swap."""
    path = Path(path)
    if path.exists():
        return path
    olds = sorted(path.parent.glob(f".{path.name}{_OLD_TAG}*"), key=lambda p: p.stat().st_mtime)
    if olds and (olds[-1] / MANIFEST).exists():
        os.rename(olds[-1], path)  # an interrupted replace: put the previous index back
        return path
    raise CheckpointError(
        f"index directory {path} does not exist; build one with `embforge index CORPUS {path}` "
        "or Index.save()"
    )


def read_manifest(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Read and validate ``index.json``: format version and (optionally) the index kind."""
    path = resolve_index_dir(path)
    mf = path / MANIFEST
    if not mf.exists():
        raise CheckpointError(
            f"{path} is not an embforge index: {MANIFEST} is missing; build one with `embforge index`"
        )
    try:
        data = json.loads(mf.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:  # bad JSON, bad UTF-8, huge integers, deep nesting
        raise CheckpointError(f"{mf} is not valid JSON ({' '.join(str(e).split())[:100]}); rebuild the index") from None
    if not isinstance(data, dict) or not isinstance(data.get("config", {}), dict):
        raise CheckpointError(f"{mf}: expected a JSON object with a 'config' mapping; rebuild the index")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{mf} has format_version {version!r} but this embforge reads format_version "
            f"{FORMAT_VERSION}; rebuild the index with this version (`embforge index`) or install "
            f"the embforge version that wrote it ({data.get('embforge_version', 'unknown')})"
        )
    if kind is not None and data.get("kind") != kind:
        raise CheckpointError(
            f"{path} holds a {data.get('kind')!r} index, not {kind!r}; load it with "
            "embforge.index.load_index(path) or the matching class"
        )
    return data


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def atomic_write_dir(target: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_dir)`` and atomically make ``tmp_dir`` become ``target``.

    If ``write`` raises (or the process dies), ``target`` is untouched: the previous
    index stays readable, and the temporary directory is removed (or, after a hard
    crash, left as a hidden ``.NAME.tmp-*`` sibling that loading ignores).
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"cannot save an index to {target}: it exists and is not a directory")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_TAG}", dir=target.parent))
    try:
        write(tmp)
        give_user_modes(tmp)  # mkdtemp's 0700 would lock other readers (a server) out of the index
        _fsync_tree(tmp)
        if not target.exists():
            os.rename(tmp, target)
        elif _exchange(tmp, target):
            shutil.rmtree(tmp)  # tmp now holds the previous index
        else:  # fallback: two renames; resolve_index_dir() recovers a crash in between
            old = target.parent / f".{target.name}{_OLD_TAG}{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remove_leftovers(target)
    return target


def _remove_leftovers(target: Path) -> None:
    """Remove ``.NAME.tmp-*`` / ``.NAME.old-*`` siblings left by a save that was killed.

    Called after a successful save, when ``target`` holds a complete index, so none of them
    is needed for recovery any more.
    """
    for tag in (_TMP_TAG, _OLD_TAG):
        for left in target.parent.glob(f".{glob.escape(target.name)}{tag}*"):
            if left.is_dir() and not left.is_symlink():
                shutil.rmtree(left, ignore_errors=True)
