"""Fingerprinting as Dask tasks, one per slice of records (or per partition of a tar shard, Parquet or manifest
source), each writing one Parquet partition of the fingerprint table to the work directory (a local path or an
fsspec URL).

A partition's name is a digest of what decides its content (the files' paths, sizes and mtimes, the hash
methods, the decode mode and the fingerprint version), so a rerun after a crash, or after files were added,
finds the partitions already written and computes only the missing ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engine.fingerprint import FINGERPRINT_VERSION, Fingerprint, fingerprint_paths
from ..engine.model import ImageRecord

if TYPE_CHECKING:
    from ..engine.sources.base import Partition as SourcePartition
    from ..engine.sources.base import Source
    from ..engine.sources.scanning import ItemResult

SLICE_RECORDS = 1_000  # records per task: a few seconds of decoding, small enough to retry cheaply
_COLUMNS = ("abspath", "error", "width", "height", "byte_digest", "pixel_digest", "thumb", "blocks", "draft")


@dataclass(frozen=True, slots=True)
class Partition:
    """One task's slice: the records' (abspath, size, mtime_ns) and where its table goes."""

    files: tuple[tuple[str, int, int], ...]
    url: str  # the Parquet file of this slice


def partition_name(files: Sequence[tuple[str, object, object]], methods: tuple[str, ...], draft: bool) -> str:
    """The digest of what decides a partition's content: (identity, size or index, version) per input."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((FINGERPRINT_VERSION, methods, draft)).encode())
    for path, size, mtime in files:
        digest.update(f"{path}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return f"part-{digest.hexdigest()}.parquet"


def _fingerprints_dir(workdir: str) -> str:
    return workdir.rstrip("/") + "/fingerprints/"


def plan_partitions(
    records: Sequence[ImageRecord], methods: tuple[str, ...], draft: bool, workdir: str, slice_records: int
) -> list[Partition]:
    base = _fingerprints_dir(workdir)
    parts = []
    for start in range(0, len(records), slice_records):
        files = tuple((r.abspath, r.size, r.mtime_ns) for r in records[start : start + slice_records])
        parts.append(Partition(files, base + partition_name(files, methods, draft)))
    return parts


def _fingerprint_columns(values: Sequence[Fingerprint | str], methods: tuple[str, ...]) -> dict[str, list]:
    """The fingerprint table's columns for `values` (a reason string: a row with only its error)."""
    columns: dict[str, list] = {name: [] for name in _COLUMNS if name != "abspath"}
    for method in methods:
        columns[f"hash_{method}"] = []
        columns[f"flip_{method}"] = []
    for value in values:
        bad = isinstance(value, str)
        columns["error"].append(value if bad else None)
        for name in ("width", "height", "byte_digest", "pixel_digest", "thumb", "blocks", "draft"):
            columns[name].append(None if bad else getattr(value, name))
        for method in methods:
            columns[f"hash_{method}"].append(None if bad else value.hashes.get(method))  # type: ignore[union-attr]
            columns[f"flip_{method}"].append(None if bad else value.flip_hashes.get(method))  # type: ignore[union-attr]
    return columns


def _write_table(url: str, columns: dict[str, list], storage_options: dict) -> None:
    """One Parquet file, written whole to a temporary name, then renamed: a killed task never leaves half a file."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = fsspec.core.url_to_fs(url, **storage_options)
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    temporary = f"{path}.{hashlib.blake2b(str(id(buffer)).encode(), digest_size=6).hexdigest()}.partial"
    with fs.open(temporary, "wb") as handle:
        handle.write(buffer.getvalue())
    fs.mv(temporary, path)


def table_exists(url: str, storage_options: dict) -> bool:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **storage_options)
    return fs.exists(path)


def compute_partition(partition: Partition, methods: tuple[str, ...], draft: bool, storage_options: dict) -> str:
    """The task: fingerprint the slice and write its table."""
    if table_exists(partition.url, storage_options):  # another attempt of this task already wrote it
        return "reused"
    values = fingerprint_paths([f[0] for f in partition.files], methods, draft)
    columns = {"abspath": [f[0] for f in partition.files], **_fingerprint_columns(values, methods)}
    _write_table(partition.url, columns, storage_options)
    return "computed"


def _fingerprint_row(rows: dict[str, list], i: int, methods: tuple[str, ...]) -> Fingerprint:
    return Fingerprint(
        width=rows["width"][i],
        height=rows["height"][i],
        byte_digest=rows["byte_digest"][i],
        pixel_digest=rows["pixel_digest"][i],
        hashes={m: rows[f"hash_{m}"][i] for m in methods if rows[f"hash_{m}"][i] is not None},
        flip_hashes={m: rows[f"flip_{m}"][i] for m in methods if rows[f"flip_{m}"][i] is not None},
        thumb=rows["thumb"][i],
        blocks=rows["blocks"][i],
        draft=rows["draft"][i],
    )


def read_partition(url: str, methods: tuple[str, ...], storage_options: dict) -> dict[str, Fingerprint | str]:
    """abspath -> Fingerprint, or the one-line reason it could not be fingerprinted."""
    rows = _read_rows(url, storage_options)
    return {
        abspath: rows["error"][i] if rows["error"][i] is not None else _fingerprint_row(rows, i, methods)
        for i, abspath in enumerate(rows["abspath"])
    }


def _read_rows(url: str, storage_options: dict) -> dict[str, list]:
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(url, "rb", **storage_options) as handle:
        return pq.read_table(handle).to_pydict()


# Source partitions (a tar shard, a Parquet row group, a slice of manifest rows: engine/sources) get the same table,
# keyed by item id, with the item's split, label, size and content version.
_LISTING_FIELDS = ("shards", "files", "version", "rows")  # a source's list of containers: adding one renames nothing


def _source_identity(source: Source) -> str:
    """What decides a source's items besides its partitions: its kind, URL and options (columns, classes.txt)."""
    fields = {f.name: getattr(source, f.name) for f in dataclasses.fields(source)}  # type: ignore[arg-type]
    return repr((source.kind, sorted((k, v) for k, v in fields.items() if k not in _LISTING_FIELDS)))


def source_partition_url(
    source: Source, partition: SourcePartition, methods: tuple[str, ...], draft: bool, workdir: str
) -> str | None:
    """Where a source partition's table goes: named by the partition (container, row group or slice, and the
    container's version: size+mtime or ETag). None for a manifest slice, whose items live elsewhere and may change
    while the manifest does not (scanning.reuse_key's rule): the task names it by the items it reads."""
    if source.kind == "manifest":
        return None
    return _fingerprints_dir(workdir) + partition_name([(_source_identity(source), 0, repr(partition))], methods, draft)


def compute_source_partition(
    function: Callable[..., list[ItemResult]],
    source: Source,
    partition: SourcePartition,
    methods: tuple[str, ...],
    draft: bool,
    url: str | None,
    workdir: str,
    storage_options: dict,
) -> tuple[str, str]:
    """The task: `function` (scanning.fingerprint_partition) over one source partition, its table written to `url`
    (or, for a manifest slice, to a name from its items' ids, labels and content versions). Returns ("computed" or
    "reused", the table's URL)."""
    items = None
    if url is None:
        items = list(source.read(partition))
        keys = [(f"{item.id}\0{item.split}\0{item.label}", item.size, item.version) for item in items]
        url = _fingerprints_dir(workdir) + partition_name([(_source_identity(source), 0, 0), *keys], methods, draft)
    if table_exists(url, storage_options):
        return "reused", url
    results = function(source, partition, methods, draft, None, items=items)
    columns = {
        "id": [r.id for r in results],
        "split": [r.split for r in results],
        "label": [r.label for r in results],
        "size": [r.size for r in results],
        "version": [r.version for r in results],
        "fresh": [r.fresh for r in results],
        "name": [r.name for r in results],
        **_fingerprint_columns([r.value for r in results], methods),
    }
    _write_table(url, columns, storage_options)
    return "computed", url


def read_source_partition(url: str, methods: tuple[str, ...], storage_options: dict) -> list[ItemResult]:
    """The items of a source partition's table, in the task's order, each with where its thumbnail is (url, row)."""
    from ..engine.sources.scanning import ItemResult

    rows = _read_rows(url, storage_options)
    return [
        ItemResult(
            item_id,
            rows["split"][i],
            rows["label"][i],
            rows["size"][i],
            rows["version"][i],
            rows["error"][i] if rows["error"][i] is not None else _fingerprint_row(rows, i, methods),
            rows["fresh"][i],
            where=(url, i),
            name=rows["name"][i] if "name" in rows else None,  # tables written before names were kept have none
        )
        for i, item_id in enumerate(rows["id"])
    ]
