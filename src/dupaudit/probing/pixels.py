"""The probe's decoded pixels, kept between probes: RGB size x size uint8 per file, keyed like the fingerprint cache.

Why not the scan's thumbnails: the fingerprint cache keeps one 32x32 *grayscale* thumbnail per file (the pHash
input, a Lanczos squash of the whole image), and the probe's network learns from colour (RGB, shorter side
resized, centre crop). So the probe keeps its own RGB pixels in a file next to the fingerprint cache; a probe
of files it has seen (every run of a sweep, of paper_repro.py, of a --budget retry) decodes nothing.
A file changed since (size or mtime_ns) is decoded again. Sizes up to MAX_STORED_SIZE only: above it a
dataset's pixels would outgrow the cache (60,000 images at 32 px are 184 MB; at 64 px, 737 MB).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..engine.cache import cacheable
from ..engine.model import ImageRecord

MAX_STORED_SIZE = 32
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS pixels (path TEXT NOT NULL, side INTEGER NOT NULL, size INTEGER NOT NULL, "
    "mtime_ns INTEGER NOT NULL, rgb BLOB NOT NULL, PRIMARY KEY (path, side))"
)
_LAYOUT = "1"  # bump when what is stored changes (the decode, the crop): the table is then emptied


def store_path(fingerprint_cache: str | os.PathLike) -> Path:
    """The pixel store beside a fingerprint cache file: fingerprints.sqlite -> fingerprints.probe-pixels.sqlite."""
    cache = Path(fingerprint_cache)
    return cache.with_name(f"{cache.stem}.probe-pixels.sqlite")


class PixelStore:
    """Open (creating if needed) a pixel store; unusable (unwritable, corrupt) means: decode, do not store."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = self._db.execute("SELECT value FROM meta WHERE key='layout'").fetchone()
        if row is None or row[0] != _LAYOUT:
            self._db.execute("DROP TABLE IF EXISTS pixels")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('layout', ?)", (_LAYOUT,))
        self._db.execute(_SCHEMA)
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PixelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, records: Sequence[ImageRecord], side: int) -> dict[int, np.ndarray]:
        """Stored pixels (3, side, side) of the records unchanged since, by their index in `records`."""
        wanted = {r.abspath: i for i, r in enumerate(records) if cacheable(r.abspath)}
        found: dict[int, np.ndarray] = {}
        paths = list(wanted)
        try:
            for start in range(0, len(paths), 500):
                chunk = paths[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT path, size, mtime_ns, rgb FROM pixels WHERE side = ? AND path IN ({marks})"
                for path, size, mtime_ns, rgb in self._db.execute(query, (side, *chunk)):
                    index = wanted[path]
                    record = records[index]
                    if record.size == size and record.mtime_ns == mtime_ns and len(rgb) == 3 * side * side:
                        found[index] = np.frombuffer(rgb, dtype=np.uint8).reshape(3, side, side)
        except sqlite3.Error:  # a damaged store: decode what it cannot give
            return {}
        return found

    def put(self, records: Sequence[ImageRecord], pixels: np.ndarray, side: int) -> None:
        """Store pixels[i] for records[i] (one transaction)."""
        rows = (
            (r.abspath, side, r.size, r.mtime_ns, p.tobytes()) for r, p in zip(records, pixels) if cacheable(r.abspath)
        )
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO pixels VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.Error:  # read-only or full: the next probe decodes again, nothing is lost
            pass
