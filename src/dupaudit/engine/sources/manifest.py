"""Manifests: a CSV, TSV, JSON Lines or Parquet table of image paths or URLs, with optional label and split.

The path column is `path`/`file`/`filepath`/`url`/`image` (or --path-column); a relative path is relative to the
manifest's folder (or URL). Each item's id is its path as the manifest writes it. Remote items are fetched
concurrently (fsspec's batched cat) and transient failures retried with backoff.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from ...errors import InputError
from .base import Filtered, Item, Partition, SourceOptions
from .storage import filesystem, is_url, read_reason, retrying, unqualified, version_of

MANIFEST_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".parq")
PATH_COLUMNS = ("path", "file", "filepath", "file_path", "filename", "url", "image", "image_path")
LABEL_COLUMNS = ("label", "labels", "class")
SPLIT_COLUMNS = ("split",)
SLICE_ROWS = 256  # rows per partition: one worker task, one batch of concurrent fetches


@dataclass(frozen=True, slots=True)
class ManifestSource:
    kind = "manifest"
    target: str
    url: str
    name: str
    location: str  # the manifest, in its filesystem's terms
    version: str
    rows: int
    path_column: str
    label_column: str | None
    split_column: str | None
    storage_options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def open(cls, target: str, options: SourceOptions) -> ManifestSource:
        fs, path = filesystem(target, options.storage_options)
        try:
            info = retrying(lambda: fs.info(path))
        except FileNotFoundError:
            if not target.lower().startswith(("http://", "https://")):
                raise InputError(f"{target}: not found") from None
            info = {}  # fsspec's HTTP info says "not found" for any failure: reading the manifest gives the reason
        except PermissionError:
            refused = "access denied (check the credentials)" if is_url(target) else "permission denied"
            raise InputError(f"{target}: {refused}") from None
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{target}: cannot read the manifest: {read_reason(exc)}") from None
        version = version_of(fs, path, info)
        table = _table(target, path, version, options.storage_options)
        columns = table[0]
        chosen = options.path_column or next((c for c in PATH_COLUMNS if c in columns), None)
        if chosen is None or chosen not in columns:
            raise InputError(
                f"{target}: no path column (looked for {options.path_column or '/'.join(PATH_COLUMNS)}; "
                f"columns: {', '.join(columns) or 'none'}); name it with --path-column"
            )
        label = options.label_column or next((c for c in LABEL_COLUMNS if c in columns), None)
        split = options.split_column or next((c for c in SPLIT_COLUMNS if c in columns), None)
        for given, flag in ((options.label_column, "--label-column"), (options.split_column, "--split-column")):
            if given is not None and given not in columns:
                raise InputError(f"{target} has no column {given!r} ({flag}; columns: {', '.join(columns)})")
        stem = posixpath.basename(path).split(".", 1)[0] or "manifest"
        return cls(
            target,
            unqualified(fs, path),
            stem,
            path,
            version,
            len(table[1]),
            chosen,
            label,
            split,
            options.storage_options,
        )

    def partitions(self) -> list[Partition]:
        return [
            Partition(self.location, index, self.version) for index in range((self.rows + SLICE_ROWS - 1) // SLICE_ROWS)
        ]

    def read(self, partition: Partition) -> Iterator[Item]:
        _, rows = _table(self.target, self.location, self.version, self.storage_options)
        chosen = rows[partition.index * SLICE_ROWS : (partition.index + 1) * SLICE_ROWS]
        folder = self.url.rsplit("/", 1)[0] if "/" in self.url else "."
        entries = []  # (id, split, label, where the bytes are)
        for row in chosen:
            written = row.get(self.path_column)
            written = "" if written is None else str(written).strip()
            split = _text(row.get(self.split_column)) if self.split_column else None
            label = _text(row.get(self.label_column)) if self.label_column else None
            where = written if is_url(written) or written.startswith("/") else f"{folder}/{written}"
            entries.append((written, split, label, where))
        fetched = _fetch([where for written, _, _, where in entries if written], self.storage_options)
        for written, split, label, where in entries:
            if not written:
                yield Item("", split, label, None, "empty path")
                continue
            value = fetched[where]
            if isinstance(value, BaseException):
                yield Item(written, split, label, None, read_reason(value))
            else:
                yield Item(written, split, label, value)

    def write_filtered(self, out: str, dropped: set[str]) -> Filtered:
        """Write the manifest without the rows whose path is in `dropped`, to the new file `out` in the same format
        and columns. A relative path is rewritten relative to the new manifest's folder (when both are local)."""
        from .writing import fresh_output

        columns, rows = _table(self.target, self.location, self.version, self.storage_options)
        out_fs, out_path = fresh_output(out, folder=False, source_location=self.location)
        folder = posixpath.dirname(self.location)
        local = not is_url(self.url) and not is_url(out)
        result = Filtered([], 0, [out_path])
        kept_rows = []
        for row in rows:
            written = _text(row.get(self.path_column)) or ""
            if written in dropped:
                result.dropped += 1
                continue
            result.kept.append(written)
            if local and written and not is_url(written) and not written.startswith("/"):
                moved = os.path.relpath(os.path.join(folder, written), os.path.dirname(out_path))
                row = {**row, self.path_column: moved.replace(os.sep, "/")}
            kept_rows.append(row)
        out_fs.makedirs(posixpath.dirname(out_path), exist_ok=True)
        lowered = self.location.lower()
        if lowered.endswith((".parquet", ".parq")):
            from .parquet import require_pyarrow

            pq = require_pyarrow()
            with fs_open(self) as handle:
                schema = pq.read_schema(handle)
            import pyarrow as pa

            with out_fs.open(out_path, "wb") as sink:
                pq.write_table(pa.Table.from_pylist(kept_rows, schema=schema), sink)
        elif lowered.endswith((".jsonl", ".ndjson")):
            text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in kept_rows)
            out_fs.pipe_file(out_path, text.encode("utf-8"))
        else:
            buffer = io.StringIO()
            delimiter = "\t" if lowered.endswith(".tsv") else ","
            writer = csv.DictWriter(buffer, columns, delimiter=delimiter, lineterminator="\n")
            writer.writeheader()
            writer.writerows(kept_rows)
            out_fs.pipe_file(out_path, buffer.getvalue().encode("utf-8"))
        return result


def fs_open(source: ManifestSource):
    fs, _ = filesystem(source.target, source.storage_options)
    return fs.open(source.location, "rb")


def _text(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _fetch(locations: list[str], storage_options) -> dict[str, bytes | BaseException]:
    """The bytes of each location (local path or URL), or the exception that stopped the read.

    Locations on one filesystem are fetched together: fsspec's async stores (http, s3, gcs) run them
    concurrently; failures that look transient are retried one by one with backoff."""
    by_store: dict[str, list[str]] = {}
    for where in dict.fromkeys(locations):
        store = where.split("://", 1)[0] if is_url(where) else "file"
        by_store.setdefault(store, []).append(where)
    result: dict[str, bytes | BaseException] = {}
    for store, group in by_store.items():
        fs, _ = filesystem(group[0], storage_options)
        paths = {where: filesystem(where, storage_options)[1] if store != "file" else where for where in group}
        try:
            answers = fs.cat(list(paths.values()), on_error="return")
        except Exception as exc:  # noqa: BLE001 - the whole batch failed: try each on its own below
            answers = {path: exc for path in paths.values()}
        if not isinstance(answers, dict):
            answers = {next(iter(paths.values())): answers}
        for where, path in paths.items():
            value = answers.get(path, answers.get(fs._strip_protocol(path)))
            if isinstance(value, BaseException):  # the batch was the first attempt: retry only what may pass
                try:
                    value = retrying(lambda: fs.cat_file(path), failed=value)
                except Exception as exc:  # noqa: BLE001 - reported per item
                    value = exc
            result[where] = value if value is not None else FileNotFoundError(where)
    return result


@lru_cache(maxsize=4)
def _table(target: str, location: str, version: str, storage_options) -> tuple[list[str], list[dict]]:
    """The manifest's columns and rows (read once per process and version; manifests are small next to images)."""
    fs, _ = filesystem(target, storage_options)
    lowered = location.lower()
    try:
        if lowered.endswith((".parquet", ".parq")):
            from .parquet import require_pyarrow

            pq = require_pyarrow()
            with fs.open(location, "rb") as handle:
                table = pq.read_table(handle)
            return list(table.column_names), table.to_pylist()
        text = retrying(lambda: fs.cat_file(location)).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{target}: the manifest is not UTF-8 text") from None
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{target}: cannot read the manifest: {read_reason(exc)}") from None
    if lowered.endswith((".jsonl", ".ndjson")):
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise InputError(f"{target}: line {number} is not JSON") from None
            if not isinstance(row, dict):
                raise InputError(f"{target}: line {number} is not a JSON object")
            rows.append(row)
        columns = list(dict.fromkeys(key for row in rows for key in row))
        return columns, rows
    delimiter = "\t" if lowered.endswith(".tsv") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    rows = list(reader)
    return list(reader.fieldnames or []), rows
