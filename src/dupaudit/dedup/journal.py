"""The write-ahead journal and the durable file moves it records (see dedup/__init__ for the safety rule)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat as stat_module
from pathlib import Path

from ..errors import InputError
from .files import PARTIAL_SUFFIX, file_sha256, fsync_dir
from .lock import lock_exclusive, unlock

JOURNAL_FORMAT = "dupaudit-journal"
JOURNAL_VERSION = 1
JOURNAL_NAME = "dupaudit-journal.jsonl"

# Testing only: "apply:K:POINT" or "undo:K:POINT" makes the process SIGKILL itself at POINT of its K-th file
# (1-based), so tests can prove that a kill at any moment loses nothing. POINT: intent (journal record on disk,
# file untouched), copied (cross-filesystem copy verified, source not yet removed), moved (file moved, `done`
# record not yet written).
FAULT_ENV = "DUPAUDIT_FAULT"


# ------------------------------------------------------------------------------------------ durable I/O


def _fault(action: str, count: int, point: str) -> None:
    spec = os.environ.get(FAULT_ENV)
    if spec and spec == f"{action}:{count}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


class Journal:
    """An append-only JSON-lines file; every record is fsync'd before the call returns. Holds an exclusive lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        existed = path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "ab")
        try:
            lock_exclusive(self._handle.fileno())
        except OSError:
            self._handle.close()
            raise InputError(f"{path}: another dupaudit apply or undo is using this journal") from None
        if not existed:
            fsync_dir(path.parent)

    def write(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n"
        self._handle.write(line.encode("ascii"))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if not self._handle.closed:
            unlock(self._handle.fileno())
            self._handle.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_journal(path: str | os.PathLike) -> tuple[dict, dict[int, dict], list[dict]]:
    """The header, the intended moves by index (last record wins), and every record. A torn last line is ignored."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read journal: {exc.strerror or exc}") from None
    records = []
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if number == len(lines):  # the last line, torn by a crash mid-write: it was never acted on
                break
            raise InputError(f"{path}: line {number} is not a journal record") from None
    if not records or records[0].get("format") != JOURNAL_FORMAT:
        raise InputError(f"{path}: not a dupaudit journal")
    if records[0].get("version") != JOURNAL_VERSION:
        raise InputError(f"{path}: journal version {records[0].get('version')!r} is not supported")
    moves = {r["i"]: r for r in records if r.get("op") == "move"}
    return records[0], moves, records


# ------------------------------------------------------------------------------------------- file states


def _matches(path: str, entry: dict) -> bool:
    """True when `path` holds the journalled file (same link target, or same size and SHA-256)."""
    if entry.get("link") is not None:
        try:
            return os.readlink(path) == entry["link"]
        except OSError:
            return False
    try:
        info = os.stat(path)
        if not stat_module.S_ISREG(info.st_mode) or info.st_size != entry["size"]:
            return False
        return file_sha256(path) == entry["sha256"]
    except OSError:
        return False


def _state(entry: dict) -> str:
    """Where a journalled file is: pending, moved, copied (both ends), or a problem (missing, changed)."""
    src, dst = entry["src"], entry["dst"]
    src_here, dst_here = os.path.lexists(src), os.path.lexists(dst)
    if dst_here and not _matches(dst, entry):
        return "dst-changed"
    if src_here and not _matches(src, entry):
        return "src-changed"
    if src_here and dst_here:
        return "copied"
    if src_here:
        return "pending"
    if dst_here:
        return "moved"
    return "missing"


def _remove_partial(entry: dict) -> None:
    partial = entry["dst"] + PARTIAL_SUFFIX
    if os.path.lexists(partial):  # our own unfinished copy; the source is intact (checked by the caller)
        os.unlink(partial)


def _copy_verified(src: str, dst: str, entry: dict, action: str, count: int) -> None:
    """Copy src to dst durably and check the copy's bytes, without ever leaving a half-written dst."""
    partial = dst + PARTIAL_SUFFIX
    if os.path.lexists(partial):
        os.unlink(partial)
    try:
        if entry.get("link") is not None:
            os.symlink(entry["link"], partial)
        else:
            shutil.copyfile(src, partial)
            shutil.copystat(src, partial)
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
    except OSError:
        if os.path.lexists(partial):  # e.g. the disk filled up: leave no half copy behind
            os.unlink(partial)
        raise
    if not _matches(partial, entry):
        os.unlink(partial)
        raise InputError(f"{dst}: the copy does not match the original (disk full or failing?); original kept")
    os.rename(partial, dst)
    fsync_dir(os.path.dirname(dst))
    _fault(action, count, "copied")


def _transfer(src: str, dst: str, entry: dict, action: str, count: int, force_copy: bool) -> None:
    """Move src to dst: an atomic rename, or across filesystems copy, verify, then remove the source."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.lexists(dst):
        raise InputError(f"{dst}: already exists; refusing to overwrite it")
    if not force_copy:
        try:
            os.rename(src, dst)
            fsync_dir(os.path.dirname(dst))
            fsync_dir(os.path.dirname(src))
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
    _copy_verified(src, dst, entry, action, count)
    os.unlink(src)  # the one removal dupaudit does: after a verified, durable copy
    fsync_dir(os.path.dirname(src))
