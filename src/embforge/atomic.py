"""Atomic file writes: the bytes go to a temporary file in the target's folder, are flushed to
disk, and the file is renamed over the target (``os.replace``), so a reader sees the old file or
the new one, never half of one; a failure mid-write leaves the old file and no temporary file.
(Index folders are swapped whole: ``embforge.index.storage.atomic_write_dir``.)

``tempfile`` makes its files 0600 and its folders 0700. A renamed temporary would keep those modes,
so every writer here gives it the modes a plain ``open`` / ``mkdir`` would (``user_mode``: 0666 or
0777 less the umask): a model folder, index or report written by embforge is readable by whoever
could read the user's other files (a server under another account, a shared cache).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "user_mode", "give_user_modes"]


def _umask() -> int:
    """The process umask, read without changing it where Linux exposes it (thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def user_mode(directory: bool = False) -> int:
    """The mode ``open`` (0666) or ``mkdir`` (0777) gives a new file or folder under the umask.

    Example:
        >>> oct(user_mode() | user_mode(directory=True))[:2]
        '0o'
    """
    return (0o777 if directory else 0o666) & ~_umask()


def give_user_modes(root: str | os.PathLike) -> None:
    """``user_mode`` for a folder made by ``tempfile.mkdtemp`` (0700) and everything in it."""
    root = Path(root)
    files, dirs = user_mode(), user_mode(directory=True)
    root.chmod(dirs)
    for p in root.rglob("*"):
        if not p.is_symlink():
            p.chmod(dirs if p.is_dir() else files)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (same-folder temp file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, user_mode())  # mkstemp's 0600 would survive the rename
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))
