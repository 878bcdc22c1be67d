"""The SQLite fingerprint cache: one row per file, keyed by absolute path, size and mtime_ns.

A rescan looks every file up by path and reuses the row when size and mtime_ns are unchanged; bad files
are cached too (with their reason), so a warm scan decodes nothing. Each batch is written in its own
transaction, so an interrupted scan keeps what it finished.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from .fingerprint import FINGERPRINT_VERSION, Fingerprint
from .hashing import HASH_SIZES
from .listing import Listing

_METHODS = tuple(HASH_SIZES)
_HASH_COLUMNS = [m for m in _METHODS] + [f"{m}_flip" for m in _METHODS]
_COLUMNS = [
    "path",
    "size",
    "mtime_ns",
    "error",
    "width",
    "height",
    "byte_digest",
    "pixel_digest",
    *_HASH_COLUMNS,
    "thumb",
    "draft",
]
_CACHE_LAYOUT = 3  # bump with the table layout; the stored version is "<FINGERPRINT_VERSION>.<_CACHE_LAYOUT>"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS fingerprints (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, error TEXT,
    width INTEGER, height INTEGER, byte_digest BLOB, pixel_digest BLOB,
    {", ".join(f"{c} BLOB" for c in _HASH_COLUMNS)}, thumb BLOB, draft INTEGER NOT NULL DEFAULT 0
)"""
# Whole-scan answers (model.StoredAnswer: the report without its run facts), keyed by answer_key.
_RESULTS_SCHEMA = "CREATE TABLE IF NOT EXISTS results (key BLOB PRIMARY KEY, used REAL NOT NULL, value BLOB NOT NULL)"
# CNN embeddings (embed.py, --method cnn): float16 vectors keyed by file identity and the weights file's digest.
_EMBEDDINGS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS embeddings (path TEXT NOT NULL, model BLOB NOT NULL, "
    "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, vector BLOB NOT NULL, "
    "PRIMARY KEY (path, model))"
)
_KEEP_RESULTS = 16  # the most recently used answers kept (one per dataset and settings, typically)
_code_digest: bytes | None = None


def _code_fingerprint() -> bytes:
    """A digest of every source file of the engine package: any edit to the engine makes stored answers unusable."""
    global _code_digest
    if _code_digest is None:
        digest = hashlib.blake2b(digest_size=16)
        package = Path(__file__).resolve().parent
        for path in sorted(package.rglob("*.py")):
            digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        _code_digest = digest.digest()
    return _code_digest


class _ResultUnpickler(pickle.Unpickler):
    """Loads only dupaudit's own result types and plain containers (a cache file is data, not code)."""

    _ALLOWED = {("builtins", name) for name in ("tuple", "list", "dict", "set", "frozenset", "str", "int", "bytes")}

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if module == "dupaudit.engine.model" or (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a cached scan result")


def cacheable(path: str) -> bool:
    """SQLite text must be UTF-8: a non-UTF-8 file name (bytes as lone surrogates) is never a cache key."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


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
        # Takes effect when the file is new: rows hold a 1 KB thumbnail, and 16 KB pages write them faster than
        # the default 4 KB (docs/performance.md).
        self._db.execute("PRAGMA page_size=16384")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = self._db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        version = f"{FINGERPRINT_VERSION}.{_CACHE_LAYOUT}"
        if row is None or row[0] != version:
            self._db.execute("DROP TABLE IF EXISTS fingerprints")
            self._db.execute("DROP TABLE IF EXISTS results")
            self._db.execute("DROP TABLE IF EXISTS embeddings")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (version,))
        self._db.execute(_SCHEMA)
        self._db.execute(_RESULTS_SCHEMA)
        self._db.execute(_EMBEDDINGS_SCHEMA)
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FingerprintCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lookup(
        self, keys: Iterable[tuple[str, int, int]], methods: tuple[str, ...], draft: bool = False
    ) -> dict[str, CachedRow]:
        """Rows for (abspath, size, mtime_ns) keys that are unchanged and hold every method asked for.

        Their Fingerprints carry the hashes of the methods asked for only, and no thumbnail (see thumbs()).
        Only rows decoded the same way (full, or `draft`) count: the two give slightly different hashes.
        """
        if self._db.execute("SELECT 1 FROM fingerprints LIMIT 1").fetchone() is None:
            return {}  # a new cache: nothing to match, so no query over every key
        self._db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS wanted (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER)"
        )
        self._db.execute("DELETE FROM wanted")
        self._db.executemany("INSERT OR REPLACE INTO wanted VALUES (?, ?, ?)", keys)
        # Only the columns asked for: the other methods' hashes and the thumbnails stay on disk.
        methods = tuple(m for m in dict.fromkeys(methods) if m in _METHODS)
        columns = ["error", "width", "height", "byte_digest", "pixel_digest", *methods, *(f"{m}_flip" for m in methods)]
        query = (
            f"SELECT f.path, {', '.join('f.' + c for c in columns)} FROM fingerprints f JOIN wanted w "
            "ON f.path = w.path AND f.size = w.size AND f.mtime_ns = w.mtime_ns "
            "WHERE f.draft = ? OR f.error IS NOT NULL"
        )
        found: dict[str, CachedRow] = {}
        count = len(methods)
        for row in self._db.execute(query, (int(draft),)):
            path, error, width, height, byte_digest, pixel_digest = row[:6]
            if error is not None:
                found[path] = CachedRow(error, None)
                continue
            hash_values = row[6 : 6 + count]
            flip_values = row[6 + count : 6 + 2 * count]
            if None in hash_values or None in flip_values:
                continue  # fingerprinted earlier without this method: decode again
            fingerprint = Fingerprint(
                width=width,
                height=height,
                byte_digest=byte_digest,
                pixel_digest=pixel_digest,
                hashes=dict(zip(methods, hash_values)),
                flip_hashes=dict(zip(methods, flip_values)),
                thumb=b"",
                draft=draft,
            )
            found[path] = CachedRow(None, fingerprint)
        self._db.execute("DELETE FROM wanted")
        return found

    def thumbs(self, paths: Iterable[str]) -> dict[str, bytes]:
        """Verification thumbnails for the given absolute paths (only candidates need them)."""
        result: dict[str, bytes] = {}
        paths = list(paths)
        for start in range(0, len(paths), 500):
            chunk = paths[start : start + 500]
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
                rows.append((path, size, mtime_ns, value) + (None,) * (len(_COLUMNS) - 5) + (0,))
                continue
            hashes = [value.hashes.get(m) for m in _METHODS] + [value.flip_hashes.get(m) for m in _METHODS]
            rows.append(
                (
                    path,
                    size,
                    mtime_ns,
                    None,
                    value.width,
                    value.height,
                    value.byte_digest,
                    value.pixel_digest,
                    *hashes,
                    value.thumb,
                    int(value.draft),
                )
            )
        with self._db:
            self._db.executemany(f"INSERT OR REPLACE INTO fingerprints VALUES ({','.join('?' * len(_COLUMNS))})", rows)

    def embeddings(self, keys: Iterable[tuple[str, int, int]], model: bytes) -> dict[str, bytes]:
        """Stored embeddings (float16 bytes) of unchanged (abspath, size, mtime_ns) keys, for the weights `model`."""
        self._db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS wanted_embeddings (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER)"
        )
        self._db.execute("DELETE FROM wanted_embeddings")
        self._db.executemany("INSERT OR REPLACE INTO wanted_embeddings VALUES (?, ?, ?)", keys)
        query = (
            "SELECT e.path, e.vector FROM embeddings e JOIN wanted_embeddings w ON e.path = w.path "
            "AND e.size = w.size AND e.mtime_ns = w.mtime_ns WHERE e.model = ?"
        )
        found = dict(self._db.execute(query, (model,)).fetchall())
        self._db.execute("DELETE FROM wanted_embeddings")
        return found

    def store_embeddings(self, entries: Iterable[tuple[str, int, int, bytes]], model: bytes) -> None:
        """Write (abspath, size, mtime_ns, float16 vector bytes) rows for the weights `model` in one transaction."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)",
                ((path, model, size, mtime_ns, vector) for path, size, mtime_ns, vector in entries),
            )

    @staticmethod
    def answer_key(listing: Listing, settings: object) -> bytes:
        """A digest of everything a scan's answer depends on: every visible file under the roots (relative
        path, size, mtime_ns; images or not, so no file is opened to decide), what could not be listed, the
        settings (their repr, roots included) and the code of the modules that compute the answer."""
        digest = hashlib.blake2b(_code_fingerprint(), digest_size=20)
        digest.update(repr(settings).encode("utf-8", "surrogateescape"))
        digest.update(str(FINGERPRINT_VERSION).encode())
        for files in listing.files:  # whole columns at once: C-speed, this runs on every rescan
            digest.update(repr(files.root).encode("utf-8", "surrogateescape") + b"\1")
            for folder in files.folders:  # unambiguous: no name holds "/" or NUL, and no prefix holds "//"
                text = folder.prefix + "//" + "\0".join(folder.names) + "\0/"
                digest.update(text.encode("utf-8", "surrogateescape"))
            digest.update(files.sizes.tobytes())
            digest.update(files.mtimes.tobytes())
        digest.update(repr(listing.problems).encode("utf-8", "surrogateescape"))
        return digest.digest()

    def load_result(self, key: bytes) -> object | None:
        """The answer stored under `key`, or None (also when it cannot be read back)."""
        row = self._db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            value = _ResultUnpickler(io.BytesIO(row[0])).load()
        except Exception:  # an unreadable answer is only a missed shortcut: compute it again
            return None
        with self._db:
            self._db.execute("UPDATE results SET used = ? WHERE key = ?", (time.time(), key))
        return value

    def store_result(self, key: bytes, value: object) -> None:
        """Keep `value` under `key`, dropping the least recently used answers beyond the last few."""
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (key, time.time(), blob))
            self._db.execute(
                "DELETE FROM results WHERE key NOT IN (SELECT key FROM results ORDER BY used DESC LIMIT ?)",
                (_KEEP_RESULTS,),
            )
