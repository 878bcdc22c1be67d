"""The SQLite fingerprint cache: one row per file, keyed by absolute path, size and mtime_ns.

A rescan looks every file up by path and reuses the row when size and mtime_ns are unchanged; bad files
are cached too (with their reason), so a warm scan decodes nothing. Each batch is written in its own
transaction, so an interrupted scan keeps what it finished.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from .fingerprint import FINGERPRINT_VERSION, Fingerprint
from .hashing import HASH_SIZES

_METHODS = tuple(HASH_SIZES)
_HASH_COLUMNS = [m for m in _METHODS] + [f"{m}_flip" for m in _METHODS]
_COLUMNS = ["path", "size", "mtime_ns", "error", "width", "height", "byte_digest", "pixel_digest",
            *_HASH_COLUMNS, "thumb", "color"]
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS fingerprints (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, error TEXT,
    width INTEGER, height INTEGER, byte_digest BLOB, pixel_digest BLOB,
    {", ".join(f"{c} BLOB" for c in _HASH_COLUMNS)}, thumb BLOB, color BLOB
)"""


def default_cache_path() -> Path:
    """$DUPAUDIT_CACHE, else $XDG_CACHE_HOME/dupaudit, else ~/.cache/dupaudit (file fingerprints.sqlite)."""
    explicit = os.environ.get("DUPAUDIT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dupaudit" / "fingerprints.sqlite"


class CachedRow:
    """A cache row as the scan uses it: either an error or a Fingerprint (thumb loaded lazily)."""

    __slots__ = ("error", "fingerprint")

    def __init__(self, error: str | None, fingerprint: Fingerprint | None) -> None:
        self.error = error
        self.fingerprint = fingerprint


class FingerprintCache:
    """Open (creating if needed) a cache file; a cache written by another version is emptied."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = self._db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        if row is None or row[0] != str(FINGERPRINT_VERSION):
            self._db.execute("DROP TABLE IF EXISTS fingerprints")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(FINGERPRINT_VERSION),))
        self._db.execute(_SCHEMA)
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FingerprintCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lookup(self, keys: Iterable[tuple[str, int, int]], methods: tuple[str, ...]) -> dict[str, CachedRow]:
        """Rows for (abspath, size, mtime_ns) keys that are unchanged and hold every method asked for."""
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER)")
        self._db.execute("DELETE FROM wanted")
        self._db.executemany("INSERT OR REPLACE INTO wanted VALUES (?, ?, ?)", keys)
        columns = ["error", "width", "height", "byte_digest", "pixel_digest", *_HASH_COLUMNS, "color"]
        query = (f"SELECT f.path, {', '.join('f.' + c for c in columns)} FROM fingerprints f JOIN wanted w "
                 "ON f.path = w.path AND f.size = w.size AND f.mtime_ns = w.mtime_ns")
        found: dict[str, CachedRow] = {}
        for row in self._db.execute(query):
            path, error, width, height, byte_digest, pixel_digest = row[:6]
            if error is not None:
                found[path] = CachedRow(error, None)
                continue
            hash_values = dict(zip(_HASH_COLUMNS, row[6:6 + len(_HASH_COLUMNS)]))
            if any(hash_values[m] is None or hash_values[f"{m}_flip"] is None for m in methods):
                continue  # fingerprinted earlier without this method: decode again
            fingerprint = Fingerprint(
                width=width, height=height, byte_digest=byte_digest, pixel_digest=pixel_digest,
                hashes={m: hash_values[m] for m in _METHODS if hash_values[m] is not None},
                flip_hashes={m: hash_values[f"{m}_flip"] for m in _METHODS if hash_values[f"{m}_flip"] is not None},
                thumb=b"", color=row[-1],
            )
            found[path] = CachedRow(None, fingerprint)
        self._db.execute("DELETE FROM wanted")
        return found

    def thumbs(self, paths: Iterable[str]) -> dict[str, bytes]:
        """Verification thumbnails for the given absolute paths (only candidates need them)."""
        result: dict[str, bytes] = {}
        paths = list(paths)
        for start in range(0, len(paths), 500):
            chunk = paths[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for path, thumb in self._db.execute(f"SELECT path, thumb FROM fingerprints WHERE path IN ({marks})", chunk):
                if thumb is not None:
                    result[path] = thumb
        return result

    def store(self, entries: Iterable[tuple[str, int, int, Fingerprint | str]]) -> None:
        """Write (abspath, size, mtime_ns, Fingerprint or error reason) rows in one transaction."""
        rows = []
        for path, size, mtime_ns, value in entries:
            if isinstance(value, str):
                rows.append((path, size, mtime_ns, value) + (None,) * (len(_COLUMNS) - 4))
                continue
            hashes = [value.hashes.get(m) for m in _METHODS] + [value.flip_hashes.get(m) for m in _METHODS]
            rows.append((path, size, mtime_ns, None, value.width, value.height, value.byte_digest,
                         value.pixel_digest, *hashes, value.thumb, value.color))
        with self._db:
            self._db.executemany(f"INSERT OR REPLACE INTO fingerprints VALUES ({','.join('?' * len(_COLUMNS))})", rows)
