"""Crash-safe file output: atomic writes (temp file + fsync + rename), a per-folder run lock, and
the one content hash of files (``sha256_file`` / ``sha256_tree``) that names weights and configs.

A reader never sees a half-written file: either the old content (or nothing) or the new one.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def png_bytes(array: np.ndarray) -> bytes:
    """A uint8 (H, W) or (H, W, 3) array, or a uint16 (H, W) array, as PNG."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def atomic_save_png(path: str | Path, array: np.ndarray) -> Path:
    """Save an array as PNG (see ``png_bytes``) atomically."""
    return atomic_write_bytes(path, png_bytes(array))


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete ``.*.tmp`` leftovers of a killed run below ``folder``; returns how many."""
    count = 0
    for tmp in Path(folder).rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count


class FolderLockedError(RuntimeError):
    """Another live process holds the folder's lock."""


class FolderLock:
    """Exclusive, non-blocking lock on ``folder/.lock`` (``fcntl.flock``).

    The kernel drops the lock when the holding process dies, so a killed run never leaves a stale
    lock behind; a second concurrent run fails at once with a message naming the folder.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._fd: int | None = None

    def __enter__(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise FolderLockedError(
                    f"{self.folder} is in use by another synthmill run (lock held on "
                    f"{self.folder / '.lock'}); wait for it to finish or choose another output "
                    "folder") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _update(digest, path: Path) -> None:
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    _update(digest, Path(path))
    return digest.hexdigest()


def sha256_tree(folder: str | Path, pattern: str = "*.safetensors") -> str:
    """Hex SHA-256 over the files below ``folder`` matching ``pattern``: each file's path relative to
    ``folder``, then its bytes, in sorted order (so renaming or moving a file changes the hash)."""
    folder = Path(folder)
    files = sorted(folder.rglob(pattern))
    if not files:
        raise FileNotFoundError(f"no {pattern} files under {folder}")
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        _update(digest, path)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a string (UTF-8), e.g. of a config's JSON."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
