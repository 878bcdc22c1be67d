"""Durable file I/O for dedup: content digests, atomic writes, fsync of folders, containment."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PARTIAL_SUFFIX = ".dupaudit-partial"  # a half-written file; never mistaken for a finished one
_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: str | os.PathLike) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows cannot open a folder to fsync it; NTFS journals its metadata
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + PARTIAL_SUFFIX)
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)


def inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False
