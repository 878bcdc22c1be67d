"""The SQLite fingerprint cache: one row per file, keyed by absolute path, size and mtime_ns.

A rescan looks every file up by path and reuses the row when size and mtime_ns are unchanged; bad files
are cached too (with their reason), so a warm scan decodes nothing. Each batch is written in its own
transaction, so an interrupted scan keeps what it finished.

The cache is only ever a shortcut, so its faults never stop a scan (each is logged once as a warning):
a corrupt file is moved aside (`<name>.corrupt-<time>`) and rebuilt; a file or folder that cannot be
written (read-only file, unwritable or missing home) means the scan runs without the cache; several
processes share one file (WAL: readers never wait, one writer at a time, a busy timeout and retries).
"""

from __future__ import annotations

import gc
import hashlib
import io
import logging
import os
import pickle
import shutil
import sqlite3
import stat
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xxhash

from .fingerprint import FINGERPRINT_VERSION, Columns, Fingerprint, row_bytes
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
# Content-keyed reuse: a file whose (path, size, mtime_ns) is unknown is found by its byte digest.
_DIGEST_INDEX = "CREATE INDEX IF NOT EXISTS fingerprints_by_content ON fingerprints (byte_digest)"
# Whole-scan answers (model.StoredAnswer: the report without its run facts), keyed by answer_key.
_RESULTS_SCHEMA = "CREATE TABLE IF NOT EXISTS results (key BLOB PRIMARY KEY, used REAL NOT NULL, value BLOB NOT NULL)"
# CNN embeddings (embed.py, --method cnn): float16 vectors keyed by file identity and the weights file's digest.
_EMBEDDINGS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS embeddings (path TEXT NOT NULL, model BLOB NOT NULL, "
    "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, vector BLOB NOT NULL, "
    "PRIMARY KEY (path, model))"
)
log = logging.getLogger(__name__)
_BUSY_TIMEOUT_S = 30  # SQLite's own wait for another process's write lock
_RETRY_FOR_S = 60  # then our retries, with backoff, before a write is given up (the scan goes on without it)
_KEEP_RESULTS = 16
_STORE_CACHE_KB = 256 * 1024  # SQLite's page cache while storing fingerprints (store_rows): 256 MB at most
# The incremental index (incremental.SearchState, as bytes), one per dataset and settings: see incremental.py.
_INDEXES_SCHEMA = "CREATE TABLE IF NOT EXISTS indexes (key BLOB PRIMARY KEY, used REAL NOT NULL, value BLOB NOT NULL)"
_FOLDER_MARK = b"folder:"  # an indexes row whose state lies in a folder of .npy files (store_arrays)
_KEEP_INDEXES = 8  # the most recently used kept (a state per dataset and settings, a listing snapshot per dataset)
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


@contextmanager
def _collection_paused() -> Iterator[None]:
    """No garbage collection meanwhile: a stored answer is a tree of objects without cycles, and the collections
    that making a million-image index's groups (over 100,000 objects) sets off find nothing (a third of its load).
    After it, the objects made are moved to the oldest generation (freeze, then unfreeze: a move, no
    traversal), or the first young collection would traverse them all at once (0.1 s at a million images)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if was:
            gc.enable()


def cacheable(path: str) -> bool:
    """SQLite text must be UTF-8: a non-UTF-8 file name (bytes as lone surrogates) is never a cache key."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def default_cache_path() -> Path | None:
    """$DUPAUDIT_CACHE, else $XDG_CACHE_HOME/dupaudit, else ~/.cache/dupaudit (file fingerprints.sqlite).

    None when there is no home folder to put it in (open_cache then warns and the scan runs without it)."""
    explicit = os.environ.get("DUPAUDIT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:  # no $HOME and no password entry
        return None
    return base / "dupaudit" / "fingerprints.sqlite"


class CacheUnavailable(Exception):
    """The cache file cannot be used (it cannot be created or written); the message says why."""


_warned: set[tuple[str, str]] = set()


def _warn_once(path: object, kind: str, message: str) -> None:
    """Log a cache warning once per file and kind (a scan opens its cache several times)."""
    if (str(path), kind) not in _warned:
        _warned.add((str(path), kind))
        log.warning("%s", message)


def open_cache(path: str | os.PathLike | None) -> FingerprintCache | None:
    """The cache at `path` (the default one when None), or None with a warning when it cannot be used."""
    path = default_cache_path() if path is None else path
    if path is None:
        _warn_once(
            "", "home", "no home folder for the fingerprint cache (set HOME or DUPAUDIT_CACHE): scanning without it"
        )
        return None
    try:
        return FingerprintCache(path)
    except CacheUnavailable as exc:
        _warn_once(path, "unavailable", f"{path}: {exc}: scanning without the fingerprint cache")
        return None


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and any(word in str(exc) for word in ("locked", "busy"))


def _is_corrupt(exc: BaseException) -> bool:
    """SQLite's words for a file that is not (or no longer) a valid database."""
    text = str(exc)
    return isinstance(exc, sqlite3.DatabaseError) and any(
        word in text for word in ("not a database", "malformed", "corrupt")
    )


def _create_tables(db: sqlite3.Connection) -> None:
    """The tables of this version, in one write transaction; a file of another version is emptied first."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        version = f"{FINGERPRINT_VERSION}.{_CACHE_LAYOUT}"
        if row is None or row[0] != version:
            db.execute("DROP TABLE IF EXISTS fingerprints")
            db.execute("DROP TABLE IF EXISTS results")
            db.execute("DROP TABLE IF EXISTS embeddings")
            db.execute("DROP TABLE IF EXISTS indexes")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (version,))
        db.execute(_SCHEMA)
        db.execute(_DIGEST_INDEX)
        db.execute(_RESULTS_SCHEMA)
        db.execute(_EMBEDDINGS_SCHEMA)
        db.execute(_INDEXES_SCHEMA)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _retry(action):  # noqa: ANN001, ANN202 - any callable
    """Run `action`, again with backoff while another process holds the write lock (beyond SQLite's own wait)."""
    deadline = time.monotonic() + _RETRY_FOR_S
    pause = 0.05
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


def _reason(exc: BaseException) -> str:
    """SQLite's message in a user's words where one is known."""
    text = str(exc)
    if "readonly" in text:
        return "the file cannot be written (read-only)"
    if "unable to open" in text:
        return "the file cannot be opened or created"
    if "full" in text:
        return "the disk is full"
    if _is_busy(exc):
        return "another process held it locked for too long"
    return text


def _error_row(path: str, size: int, mtime_ns: int, reason: str) -> tuple:
    """A bad file's row: its reason and no fingerprint."""
    return (path, size, mtime_ns, reason) + (None,) * (len(_COLUMNS) - 5) + (0,)


class CachedRow:
    """A cache row as the scan uses it: either an error or a Fingerprint (thumb loaded lazily)."""

    __slots__ = ("error", "fingerprint")

    def __init__(self, error: str | None, fingerprint: Fingerprint | None) -> None:
        self.error = error
        self.fingerprint = fingerprint


class FingerprintCache:
    """Open (creating if needed) a cache file; a cache written by another version is emptied.

    Raises CacheUnavailable when the file cannot be created or written; a corrupt file is moved aside
    (with a warning) and a new one is made in its place."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.writable = True  # False after a write failed for good: the scan goes on, the cache stays as it was
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheUnavailable(f"cannot create the folder {self.path.parent} ({exc.strerror or exc})") from None
        if self.path.exists() and not self.path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            # Said by its mode, also to root (whom the file system would let write): the owner made it read-only.
            raise CacheUnavailable("the file is read-only")
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                self._move_aside(exc)
                self._db = self._open()
            else:
                raise CacheUnavailable(_reason(exc)) from None

    def _open(self) -> sqlite3.Connection:
        """Connect and make sure the tables of this version exist (one writer at a time, retried when busy)."""
        # isolation_level=None: transactions are explicit; writes take the write lock first (BEGIN IMMEDIATE), so
        # two processes never deadlock upgrading a read to a write, and a busy writer is waited for.
        db = sqlite3.connect(str(self.path), timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            # Takes effect when the file is new: rows hold a 1 KB thumbnail, and 16 KB pages write them faster than
            # the default 4 KB (docs/performance.md).
            db.execute("PRAGMA page_size=16384")
            _retry(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone())
            db.execute("PRAGMA synchronous=NORMAL")
            _retry(lambda: _create_tables(db))
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, exc: BaseException) -> None:
        """Rename a corrupt file (and its WAL) to <name>.corrupt-<time>, so that a new one can be made."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, target)
            for suffix in ("-wal", "-shm"):
                side = Path(f"{self.path}{suffix}")
                if side.exists():
                    os.replace(side, f"{target}{suffix}")
        except OSError as move_error:
            raise CacheUnavailable(f"it is corrupt ({exc}) and cannot be moved aside ({move_error})") from None
        _warn_once(self.path, "corrupt", f"{self.path}: corrupt cache ({exc}): moved to {target.name}, rebuilding it")

    def _recover(self, exc: BaseException) -> None:
        """A fault found mid-scan: corrupt pages are moved aside and the cache starts afresh; anything else
        (disk full, read-only, locked for too long) stops the writes and the scan goes on without them."""
        if _is_corrupt(exc):
            self._db.close()
            try:
                self._move_aside(exc)
                self._db = self._open()
                return
            except (CacheUnavailable, sqlite3.Error) as again:
                exc = again
                self._db = sqlite3.connect(":memory:", isolation_level=None)  # a harmless stand-in
                _create_tables(self._db)
        self.writable = False
        _warn_once(self.path, "write", f"{self.path}: {_reason(exc)}: the rest of this scan runs without the cache")

    def _write(self, statements) -> None:  # noqa: ANN001 - a callable taking the connection
        """Run `statements(db)` in one write transaction; a failure costs only the shortcut, never the scan."""
        if not self.writable:
            return

        def attempt() -> None:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                statements(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

        try:
            _retry(attempt)
        except sqlite3.DatabaseError as exc:
            self._recover(exc)

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
        A cache that fails to answer (corrupt pages) answers nothing: every file is decoded again.
        """
        try:
            return _retry(lambda: self._lookup(keys, methods, draft))
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return {}

    def _lookup(self, keys, methods, draft) -> dict[str, CachedRow]:  # noqa: ANN001 - see lookup
        if self._db.execute("SELECT 1 FROM fingerprints LIMIT 1").fetchone() is None:
            return {}  # a new cache: nothing to match, so no query over every key
        self._db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS wanted (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER)"
        )
        self._db.execute("BEGIN")  # the temporary table only: the file itself is read, never locked
        try:
            self._db.execute("DELETE FROM wanted")
            self._db.executemany("INSERT OR REPLACE INTO wanted VALUES (?, ?, ?)", keys)
            # Only the columns asked for: the other methods' hashes and the thumbnails stay on disk.
            methods = tuple(m for m in dict.fromkeys(methods) if m in _METHODS)
            columns = [
                "error", "width", "height", "byte_digest", "pixel_digest", *methods, *(f"{m}_flip" for m in methods)
            ]  # fmt: skip
            query = (
                # CROSS JOIN: SQLite keeps the wanted keys as the outer loop and finds each row by its path; with
                # a plain JOIN its planner scanned every stored row (0.5 s for 10 keys in a million-row cache)
                f"SELECT f.path, {', '.join('f.' + c for c in columns)} FROM wanted w CROSS JOIN fingerprints f "
                "ON f.path = w.path AND f.size = w.size AND f.mtime_ns = w.mtime_ns "
                "WHERE f.draft = ? OR f.error IS NOT NULL"
            )
            found = self._rows(self._db.execute(query, (int(draft),)), methods, draft)
            self._db.execute("DELETE FROM wanted")
        finally:
            self._db.execute("COMMIT")
        return found

    @staticmethod
    def _rows(rows, methods: tuple[str, ...], draft: bool) -> dict[str, CachedRow]:  # noqa: ANN001 - a cursor
        """CachedRows from (path, error, width, height, byte_digest, pixel_digest, hashes..., flip hashes...)."""
        found: dict[str, CachedRow] = {}
        count = len(methods)
        for row in rows:
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
        return found

    def has_rows(self) -> bool:
        """Whether any file was ever stored (a new cache has nothing to find by content either)."""
        try:
            return self._db.execute("SELECT 1 FROM fingerprints LIMIT 1").fetchone() is not None
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return False

    def by_content(
        self, items: Iterable[tuple[str, int, int, bytes]], methods: tuple[str, ...], draft: bool = False
    ) -> dict[str, CachedRow]:
        """Rows for files unknown by (abspath, size, mtime_ns) whose byte digest (the 4th field) is stored under
        another key: a moved, renamed, copied or freshly checked-out file. The row is stored again under the new
        key (thumbnail included), so the next scan finds it by its stat key. A fingerprint depends only on the
        bytes, so the reused row is exactly what decoding the file would give."""
        items = [item for item in items if item[3] is not None]
        if not items:
            return {}
        methods = tuple(m for m in dict.fromkeys(methods) if m in _METHODS)
        columns = ["error", "width", "height", "byte_digest", "pixel_digest", *methods, *(f"{m}_flip" for m in methods)]
        need = " AND ".join(f"{c} IS NOT NULL" for c in columns[5:]) or "1"
        query = (
            f"SELECT path, {', '.join(columns)} FROM fingerprints WHERE byte_digest = ? AND draft = ? "
            f"AND error IS NULL AND thumb IS NOT NULL AND {need} LIMIT 1"
        )
        copy = (
            f"INSERT OR REPLACE INTO fingerprints ({', '.join(_COLUMNS)}) SELECT ?, ?, ?, "
            f"{', '.join(_COLUMNS[3:])} FROM fingerprints WHERE path = ?"
        )
        found: dict[str, CachedRow] = {}
        sources: list[tuple[str, int, int, str]] = []
        try:
            for path, size, mtime_ns, digest in items:
                row = self._db.execute(query, (digest, int(draft))).fetchone()
                if row is None:
                    continue
                found.update((path, value) for value in self._rows([row], methods, draft).values())
                if row[0] != path:
                    sources.append((path, size, mtime_ns, row[0]))
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return {}
        self._write(lambda db: db.executemany(copy, sources))
        return found

    def digests(self, paths: Iterable[str]) -> dict[str, bytes]:
        """The stored byte digests of the given absolute paths (--verify-content compares them with the files)."""
        result: dict[str, bytes] = {}
        paths = list(paths)
        try:
            for start in range(0, len(paths), 500):
                chunk = paths[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = (
                    f"SELECT path, byte_digest FROM fingerprints WHERE path IN ({marks}) AND byte_digest IS NOT NULL"
                )
                result.update(self._db.execute(query, chunk).fetchall())
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
        return result

    def thumbs(self, paths: Iterable[str]) -> dict[str, bytes]:
        """Verification thumbnails for the given absolute paths (only candidates need them); those that cannot
        be read back (a fault mid-scan) are missing from the answer."""
        result: dict[str, bytes] = {}
        paths = list(paths)
        try:
            for start in range(0, len(paths), 500):
                chunk = paths[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT path, thumb FROM fingerprints WHERE path IN ({marks})"
                for path, thumb in _retry(lambda: self._db.execute(query, chunk).fetchall()):
                    if thumb is not None:
                        result[path] = thumb
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
        return result

    def store(self, entries: Iterable[tuple[str, int, int, Fingerprint | str]]) -> None:
        """Write (abspath, size, mtime_ns, Fingerprint or error reason) rows in one transaction."""
        rows = []
        for path, size, mtime_ns, value in entries:
            if isinstance(value, str):
                rows.append(_error_row(path, size, mtime_ns, value))
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
        self.store_rows(rows)

    @staticmethod
    def rows_of(keys: Iterable[tuple[str, int, int]], reasons: Iterable[str | None], columns: Columns) -> list[tuple]:
        """Rows for store_rows from a batch as columns (fingerprint.Columns): (abspath, size, mtime_ns) keys and
        their reasons (None: decoded, the next row of `columns`), column by column (no Fingerprint objects)."""
        where = _METHODS.index(columns.method)
        before, between, after = (None,) * where, (None,) * (len(_METHODS) - 1), (None,) * (len(_METHODS) - 1 - where)
        good = zip(
            columns.sizes[:, 0].tolist(),
            columns.sizes[:, 1].tolist(),
            row_bytes(columns.byte_digests),
            row_bytes(columns.pixel_digests),
            row_bytes(columns.hashes),
            row_bytes(columns.flips),
            row_bytes(columns.thumbs),
        )
        draft = int(columns.draft)
        rows = []
        for (path, size, mtime_ns), reason in zip(keys, reasons):
            if reason is not None:
                rows.append(_error_row(path, size, mtime_ns, reason))
                continue
            width, height, byte_digest, pixel_digest, hash_value, flip, thumb = next(good)
            rows.append(
                (path, size, mtime_ns, None, width, height, byte_digest, pixel_digest)
                + before + (hash_value,) + between + (flip,) + after + (thumb, draft)
            )  # fmt: skip
        return rows

    def store_rows(self, rows: list[tuple]) -> None:
        """Write rows (store, rows_of) in one transaction: a scan passes thousands at once, since each commit
        costs a WAL checkpoint's share (measured: docs/scale.md)."""
        insert = f"INSERT OR REPLACE INTO fingerprints VALUES ({','.join('?' * len(_COLUMNS))})"

        def statements(db: sqlite3.Connection) -> None:
            # The two indexes (path, byte digest) take rows in no order: with SQLite's default 2 MB page cache,
            # a million rows thrash it (the cost grew faster than the rows); this keeps their pages in memory.
            db.execute(f"PRAGMA cache_size={-_STORE_CACHE_KB}")
            db.executemany(insert, rows)

        self._write(statements)

    def embeddings(self, keys: Iterable[tuple[str, int, int]], model: bytes) -> dict[str, bytes]:
        """Stored embeddings (float16 bytes) of unchanged (abspath, size, mtime_ns) keys, for the weights `model`."""
        keys = list(keys)

        def read() -> dict[str, bytes]:
            self._db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS wanted_embeddings "
                "(path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER)"
            )
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM wanted_embeddings")
                self._db.executemany("INSERT OR REPLACE INTO wanted_embeddings VALUES (?, ?, ?)", keys)
                query = (
                    "SELECT e.path, e.vector FROM wanted_embeddings w CROSS JOIN embeddings e ON e.path = w.path "
                    "AND e.size = w.size AND e.mtime_ns = w.mtime_ns WHERE e.model = ?"
                )
                found = dict(self._db.execute(query, (model,)).fetchall())
                self._db.execute("DELETE FROM wanted_embeddings")
            finally:
                self._db.execute("COMMIT")
            return found

        try:
            return _retry(read)
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return {}

    def store_embeddings(self, entries: Iterable[tuple[str, int, int, bytes]], model: bytes) -> None:
        """Write (abspath, size, mtime_ns, float16 vector bytes) rows for the weights `model` in one transaction."""
        rows = [(path, model, size, mtime_ns, vector) for path, size, mtime_ns, vector in entries]
        self._write(lambda db: db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)", rows))

    @staticmethod
    def answer_key(listing: Listing, settings: object) -> bytes:
        """A digest of everything a scan's answer depends on: every visible file under the roots (relative
        path, size, mtime_ns; images or not, so no file is opened to decide), what could not be listed, the
        settings (their repr, roots included) and the code of the modules that compute the answer. The files go
        through XXH3-128 (a million files' names, sizes and mtimes are ~30 MB: BLAKE2b took 0.05 s of a check)."""
        digest = hashlib.blake2b(_code_fingerprint(), digest_size=20)
        digest.update(repr(settings).encode("utf-8", "surrogateescape"))
        digest.update(str(FINGERPRINT_VERSION).encode())
        files_digest = xxhash.xxh3_128()
        for files in listing.files:  # whole columns at once: C-speed, this runs on every rescan
            files_digest.update(repr(files.root).encode("utf-8", "surrogateescape") + b"\1")
            for folder in files.folders:  # unambiguous: no name holds "/" or NUL, and no prefix holds "//"
                text = folder.prefix + "//" + "\0".join(folder.names) + "\0/"
                files_digest.update(text.encode("utf-8", "surrogateescape"))
            files_digest.update(files.sizes.tobytes())
            files_digest.update(files.mtimes.tobytes())
        digest.update(files_digest.digest())
        digest.update(repr(listing.problems).encode("utf-8", "surrogateescape"))
        return digest.digest()

    def load_result(self, key: bytes) -> object | None:
        """The answer stored under `key`, or None (also when it cannot be read back)."""
        try:
            row = _retry(lambda: self._db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone())
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return None
        if row is None:
            return None
        try:
            with _collection_paused():
                value = _ResultUnpickler(io.BytesIO(row[0])).load()
        except Exception:  # an unreadable answer is only a missed shortcut: compute it again
            return None
        self._write(lambda db: db.execute("UPDATE results SET used = ? WHERE key = ?", (time.time(), key)))
        return value

    def store_result(self, key: bytes, value: object) -> None:
        """Keep `value` under `key`, dropping the least recently used answers beyond the last few."""
        self._keep("results", key, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), _KEEP_RESULTS)

    @staticmethod
    def index_key(settings: object) -> bytes:
        """The key of an incremental index: the settings (roots included) and the engine's code."""
        digest = hashlib.blake2b(_code_fingerprint(), digest_size=20)
        digest.update(b"index\0" + repr(settings).encode("utf-8", "surrogateescape"))
        return digest.digest()

    def has_index(self, key: bytes) -> bool:
        try:
            return self._db.execute("SELECT 1 FROM indexes WHERE key = ?", (key,)).fetchone() is not None
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return False

    def index_keys(self) -> list[bytes]:
        """The keys of the indexes table (states and listing snapshots), the most recently used first."""
        try:
            return [bytes(k) for (k,) in self._db.execute("SELECT key FROM indexes ORDER BY used DESC").fetchall()]
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return []

    def load_index(self, key: bytes) -> bytes | None:
        """The stored search state under `key` (incremental.SearchState.from_bytes reads it), or None."""
        try:
            row = _retry(lambda: self._db.execute("SELECT value FROM indexes WHERE key = ?", (key,)).fetchone())
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return None
        return None if row is None else bytes(row[0])

    def store_index(self, key: bytes, value: bytes) -> None:
        """Keep a value under `key` in the indexes table (a listing snapshot; a search state written before the
        state folders), dropping the least recently used beyond the last few."""
        self._keep("indexes", key, value, _KEEP_INDEXES)

    @property
    def states_folder(self) -> Path:
        """Where the search states' arrays lie, beside the cache file (one folder per stored state)."""
        return self.path.with_name(self.path.name + ".states")

    def store_arrays(self, key: bytes, arrays: dict[str, np.ndarray]) -> Path | None:
        """Keep `arrays` under `key` as .npy files in a new folder (load_arrays maps them, nothing is read), and
        point the key's row at it in one transaction: a reader sees the old folder or the new one, never a mix,
        and one that mapped the old files keeps them after they are removed. The folder, or None when it cannot
        be written. Files made for the state later (add_to_state) join the folder."""
        folder = self.states_folder / f"{key.hex()}-{os.urandom(6).hex()}"
        try:
            folder.mkdir(parents=True)
            for name, array in arrays.items():
                np.save(folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            return None
        self._keep("indexes", key, _FOLDER_MARK + folder.name.encode(), _KEEP_INDEXES)
        self._remove_unused_states()
        return folder

    def load_arrays(self, key: bytes) -> tuple[dict[str, np.ndarray], Path] | None:
        """The arrays stored under `key` by store_arrays, memory-mapped, and their folder; None when the key holds
        none (or another kind of value: load_index reads it)."""
        for _ in range(2):  # the folder named may have just been replaced by another process: read the row again
            folder = self._state_folder(key)
            if folder is None:
                return None
            try:
                return {
                    path.stem: np.load(path, mmap_mode="r", allow_pickle=False) for path in folder.glob("*.npy")
                }, folder
            except (OSError, ValueError):
                continue
        return None

    def _state_folder(self, key: bytes) -> Path | None:
        """The folder store_arrays named under `key`, None when the key names none."""
        value = self.load_index(key)
        if value is None or not value.startswith(_FOLDER_MARK):
            return None
        return self.states_folder / value[len(_FOLDER_MARK) :].decode()

    def prefetch_arrays(self, key: bytes, names: Iterable[str]) -> None:
        """Ask the kernel to read the named arrays of the state under `key` into the page cache now, in the
        background (readahead): a pre-commit check reads them whole a moment later, while it lists the folders,
        and a shared machine's proactive reclaim drops them between commits (at a million images, 0.3-0.7 s of
        page-ins on the check's path). Nothing when the key holds no state folder, or without posix_fadvise."""
        folder = self._state_folder(key)
        if folder is not None:
            read_ahead(folder, [f"{name}.npy" for name in names])

    def add_to_state(self, folder: Path, name: str, blob: bytes) -> None:
        """Add a file to a stored state's folder (a search structure built once for it), whole or not at all."""
        part = folder / f".{name}.{os.urandom(6).hex()}"
        try:
            part.write_bytes(blob)
            os.replace(part, folder / name)
        except OSError:
            part.unlink(missing_ok=True)

    def _remove_unused_states(self) -> None:
        """Remove the state folders no row names (replaced, or dropped as least recently used), except those made
        in the last minute: another process may be about to name its new one."""
        try:
            rows = self._db.execute("SELECT value FROM indexes").fetchall()
            named = {bytes(v)[len(_FOLDER_MARK) :].decode() for (v,) in rows if bytes(v).startswith(_FOLDER_MARK)}
            for folder in self.states_folder.iterdir():
                if folder.name not in named and time.time() - folder.stat().st_mtime > 60:
                    shutil.rmtree(folder, ignore_errors=True)  # a reader that mapped its files keeps them
        except (OSError, sqlite3.Error):
            pass  # only disk space: tried again at the next store

    def _keep(self, table: str, key: bytes, value: bytes, limit: int) -> None:
        """Write `value` under `key` in a (key, used, value) table, dropping the least recently used beyond
        `limit` rows, in one transaction."""

        def statements(db: sqlite3.Connection) -> None:
            db.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?)", (key, time.time(), value))
            db.execute(
                f"DELETE FROM {table} WHERE key NOT IN (SELECT key FROM {table} ORDER BY used DESC LIMIT ?)", (limit,)
            )

        self._write(statements)

    def store_snapshot(self, key: bytes, arrays: dict[str, np.ndarray]) -> None:
        """Keep a listing snapshot (listing.snapshot's arrays) under `key`, as files (store_arrays: a million
        files' snapshot is ~30 MB, written and mapped faster than a blob goes through SQLite), unless the one kept
        there is the same."""
        kept = self.load_snapshot(key)
        if kept is not None and kept.keys() == arrays.keys():
            if all(np.array_equal(kept[name], arrays[name]) for name in arrays):
                return  # a warm check of an unchanged tree writes nothing
        self.store_arrays(key, arrays)

    def load_snapshot(self, key: bytes) -> dict[str, np.ndarray] | None:
        """The arrays store_snapshot kept under `key` (memory-mapped), None when there are none."""
        loaded = self.load_arrays(key)
        return None if loaded is None else loaded[0]

    def load_meta(self, name: str) -> str | None:
        """A text value kept beside the tables (the description of an index file: `dupaudit index`)."""
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return None
        return None if row is None else row[0]

    def store_meta(self, name: str, value: str) -> None:
        self._write(lambda db: db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value)))


def read_ahead(folder: Path, names: Iterable[str]) -> None:
    """Ask the kernel to read these files of a state's folder into the page cache now, in the background
    (posix_fadvise WILLNEED): one sequential read instead of page faults scattered over memory-mapped files when
    a shared machine's reclaim has dropped them. Nothing for a missing file, or without posix_fadvise."""
    if not hasattr(os, "posix_fadvise"):
        return
    for name in names:
        try:
            handle = os.open(folder / name, os.O_RDONLY)
        except OSError:
            continue
        try:
            for start in range(0, os.fstat(handle).st_size, _READ_AHEAD_CHUNK):
                os.posix_fadvise(handle, start, _READ_AHEAD_CHUNK, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(handle)


# Linux reads at most one readahead window (8 MB here) per WILLNEED call: asked for a whole 256 MB file at once,
# it read its first 8 MB and no more (fincore), so the files are asked for a window at a time
_READ_AHEAD_CHUNK = 8 << 20
