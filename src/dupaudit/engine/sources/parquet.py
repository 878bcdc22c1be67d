"""Parquet, and the Hugging Face dataset layout: images as bytes inside the rows, read one row group at a time.

The image column is HF's `struct<bytes, path>` or a binary column (auto-detected; --image-column chooses); the
label column is `label`/`labels` (or --label-column), named by the ClassLabel names of the file's `huggingface`
schema metadata when present; the split is a --split-column, or the file name (`data/<split>-NNNNN-of-NNNNN.parquet`)
or its folder (`<config>/<split>/...`). Item ids are `<file relative to the source>#<row in the file>`.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from ...errors import InputError, MissingExtraError
from .base import Filtered, Item, Partition, SourceOptions, split_of
from .storage import filesystem, find_files, read_reason, relative_to, retrying, unqualified, version_of

PARQUET_EXTENSIONS = (".parquet", ".parq")
LABEL_COLUMNS = ("label", "labels")


def require_pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError("sources", "reading Parquet") from None
    return pq


@dataclass(frozen=True, slots=True)
class Columns:
    """The columns a Parquet source reads, decided once from the first file's schema."""

    image: str
    image_is_struct: bool  # HF's struct<bytes, path> (else plain binary)
    label: str | None
    split: str | None
    class_names: tuple[str, ...] | None  # ClassLabel names: integer labels are indices into them


def image_columns(schema) -> list[tuple[str, bool]]:
    """The columns that can hold image bytes: (name, is HF's struct<bytes, path>)."""
    import pyarrow as pa

    found = []
    for field in schema:
        kind = field.type
        if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
            inner = kind.field(kind.get_field_index("bytes")).type
            if pa.types.is_binary(inner) or pa.types.is_large_binary(inner):
                found.append((field.name, True))
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            found.append((field.name, False))
    return found


def columns_of(schema, options: SourceOptions, where: str) -> Columns:
    """Choose the image, label and split columns; a one-line error when the choice is impossible."""
    names = schema.names
    images = image_columns(schema)
    if options.image_column is not None:
        chosen = [c for c in images if c[0] == options.image_column]
        if not chosen:
            what = "has no column" if options.image_column not in names else "is not image bytes in column"
            raise InputError(f"{where} {what} {options.image_column!r} (columns: {', '.join(names)})")
        images = chosen
    if not images:
        raise InputError(
            f"{where}: no image column (a struct<bytes, path> or binary column; columns: {', '.join(names)}); "
            "choose one with --image-column, or use --source-type manifest for a table of paths"
        )
    image, is_struct = next((c for c in images if c[0] in ("image", "img")), images[0])
    label = options.label_column or next((c for c in LABEL_COLUMNS if c in names), None)
    for given, flag in ((options.label_column, "--label-column"), (options.split_column, "--split-column")):
        if given is not None and given not in names:
            raise InputError(f"{where} has no column {given!r} ({flag}; columns: {', '.join(names)})")
    return Columns(image, is_struct, label, options.split_column, class_names(schema, label))


def class_names(schema, label: str | None) -> tuple[str, ...] | None:
    """ClassLabel names for the label column from the `huggingface` schema metadata, when present."""
    if label is None or not schema.metadata or b"huggingface" not in schema.metadata:
        return None
    try:
        features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
        feature = features[label]
        names = feature.get("names") or feature.get("class_label", {}).get("names")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return tuple(str(n) for n in names) if names else None


@dataclass(frozen=True, slots=True)
class ParquetSource:
    kind = "parquet"
    target: str
    url: str
    name: str
    base: str
    files: tuple[tuple[str, str, tuple[int, ...]], ...]  # (path, version, rows per row group)
    columns: Columns
    storage_options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def open(cls, target: str, options: SourceOptions) -> ParquetSource:
        pq = require_pyarrow()
        fs, base, found = find_files(target, options.storage_options, PARQUET_EXTENSIONS)
        if not found:
            raise InputError(f"{target}: no .parquet files found")
        files, columns = [], None
        for path, info in found:
            try:
                meta = retrying(lambda: pq.read_metadata(path, filesystem=fs))
            except Exception as exc:  # noqa: BLE001 - pyarrow's errors for a file that is not Parquet vary
                raise InputError(f"{unqualified(fs, path)}: not a readable Parquet file ({read_reason(exc)})") from None
            if columns is None:
                columns = columns_of(meta.schema.to_arrow_schema(), options, unqualified(fs, path))
            rows = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
            files.append((path, version_of(fs, path, info), rows))
        assert columns is not None  # found is not empty
        name = posixpath.basename(base.rstrip("/")) or "root"
        return cls(target, unqualified(fs, base), name, base, tuple(files), columns, options.storage_options)

    def partitions(self) -> list[Partition]:
        return [
            Partition(path, group, version, self._split(path))
            for path, version, rows in self.files
            for group in range(len(rows))
        ]

    def _split(self, path: str) -> str | None:
        named = split_of(posixpath.basename(path))
        if named is not None:
            return named
        parent = posixpath.basename(posixpath.dirname(relative_to(self.base, path)))
        return parent if parent and split_of(parent) == parent else None

    def read(self, partition: Partition) -> Iterator[Item]:
        pq = require_pyarrow()
        fs, _ = filesystem(self.target, self.storage_options)
        rows = next(r for path, _, r in self.files if path == partition.location)
        first_row = sum(rows[: partition.index])
        file_id = relative_to(self.base, partition.location)
        wanted = [c for c in dict.fromkeys((self.columns.image, self.columns.label, self.columns.split)) if c]
        try:
            # no read-ahead: pyarrow asks for exactly the footer and the row group's column chunks (an object
            # store's default read-ahead would fetch the rest of the file for every row group)
            with retrying(lambda: fs.open(partition.location, "rb", cache_type="none")) as handle:
                table = pq.ParquetFile(handle).read_row_group(partition.index, columns=wanted)
        except Exception as exc:  # noqa: BLE001 - one unreadable row group never stops a scan
            yield Item(f"{file_id}@rowgroup{partition.index}", partition.split, None, None, read_reason(exc))
            return
        images = table.column(self.columns.image).combine_chunks()
        names = [None] * len(table)
        if self.columns.image_is_struct:
            if images.type.get_field_index("path") >= 0:  # HF's struct<bytes, path>: the image's file name
                names = images.field("path").to_pylist()
            images = images.field("bytes")
        labels = table.column(self.columns.label).to_pylist() if self.columns.label else [None] * len(table)
        splits = table.column(self.columns.split).to_pylist() if self.columns.split else None
        classes = self.columns.class_names
        for row, (data, label, name) in enumerate(zip(images.to_pylist(), labels, names)):
            split = partition.split if splits is None else (None if splits[row] is None else str(splits[row]))
            if isinstance(label, int) and classes is not None:  # HF writes -1 for "no label"
                label = classes[label] if 0 <= label < len(classes) else (None if label < 0 else label)
            label = None if label is None else str(label)
            error = None if data is not None else "image bytes are null"
            yield Item(f"{file_id}#{first_row + row}", split, label, data, error, name or "")

    def write_filtered(self, out: str, dropped: set[str]) -> Filtered:
        """Copy the Parquet files to the folder `out` (same names and layout, same schema and metadata, one row
        group for each of the input's) without the rows whose id is in `dropped`."""
        import pyarrow as pa

        from .writing import fresh_output

        pq = require_pyarrow()
        fs, _ = filesystem(self.target, self.storage_options)
        out_fs, out_path = fresh_output(out, folder=True, source_location=self.url)
        result = Filtered([], 0, [])
        for path, _version, rows in self.files:
            file_id = relative_to(self.base, path)
            target = f"{out_path}/{file_id}"
            out_fs.makedirs(posixpath.dirname(target), exist_ok=True)
            with fs.open(path, "rb") as handle, out_fs.open(target, "wb") as sink:
                source = pq.ParquetFile(handle)
                with pq.ParquetWriter(sink, source.schema_arrow) as writer:
                    first = 0
                    for group, count in enumerate(rows):
                        ids = [f"{file_id}#{first + row}" for row in range(count)]
                        keep = [i not in dropped for i in ids]
                        table = source.read_row_group(group)
                        writer.write_table(table.filter(pa.array(keep, type=pa.bool_())))
                        result.kept.extend(i for i, k in zip(ids, keep) if k)
                        result.dropped += keep.count(False)
                        first += count
            result.written.append(target)
        return result
