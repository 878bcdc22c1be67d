"""Fingerprinting as Dask tasks, one per slice of records, each writing one Parquet partition of the
fingerprint table to the work directory (a local path or an fsspec URL).

A partition's name is a digest of what decides its content (the files' paths, sizes and mtimes, the hash
methods, the decode mode and the fingerprint version), so a rerun after a crash, or after files were added,
finds the partitions already written and computes only the missing ones.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from ..engine.fingerprint import FINGERPRINT_VERSION, Fingerprint, fingerprint_paths
from ..engine.model import ImageRecord

SLICE_RECORDS = 1_000  # records per task: a few seconds of decoding, small enough to retry cheaply
_COLUMNS = ("abspath", "error", "width", "height", "byte_digest", "pixel_digest", "thumb", "blocks", "draft")


@dataclass(frozen=True, slots=True)
class Partition:
    """One task's slice: the records' (abspath, size, mtime_ns) and where its table goes."""

    files: tuple[tuple[str, int, int], ...]
    url: str  # the Parquet file of this slice


def partition_name(files: Sequence[tuple[str, int, int]], methods: tuple[str, ...], draft: bool) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((FINGERPRINT_VERSION, methods, draft)).encode())
    for path, size, mtime in files:
        digest.update(f"{path}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return f"part-{digest.hexdigest()}.parquet"


def plan_partitions(
    records: Sequence[ImageRecord], methods: tuple[str, ...], draft: bool, workdir: str, slice_records: int
) -> list[Partition]:
    base = workdir.rstrip("/") + "/fingerprints/"
    parts = []
    for start in range(0, len(records), slice_records):
        files = tuple((r.abspath, r.size, r.mtime_ns) for r in records[start : start + slice_records])
        parts.append(Partition(files, base + partition_name(files, methods, draft)))
    return parts


def compute_partition(partition: Partition, methods: tuple[str, ...], draft: bool, storage_options: dict) -> str:
    """The task: fingerprint the slice and write its table (written whole, then renamed: never half a file)."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = fsspec.core.url_to_fs(partition.url, **storage_options)
    if fs.exists(path):  # another attempt of this task already wrote it
        return "reused"
    values = fingerprint_paths([f[0] for f in partition.files], methods, draft)
    columns: dict[str, list] = {name: [] for name in _COLUMNS}
    for method in methods:
        columns[f"hash_{method}"] = []
        columns[f"flip_{method}"] = []
    for (abspath, _, _), value in zip(partition.files, values):
        columns["abspath"].append(abspath)
        bad = isinstance(value, str)
        columns["error"].append(value if bad else None)
        for name in ("width", "height"):
            columns[name].append(None if bad else getattr(value, name))
        for name in ("byte_digest", "pixel_digest", "thumb", "blocks"):
            columns[name].append(None if bad else getattr(value, name))
        columns["draft"].append(None if bad else value.draft)
        for method in methods:
            columns[f"hash_{method}"].append(None if bad else value.hashes.get(method))
            columns[f"flip_{method}"].append(None if bad else value.flip_hashes.get(method))
    table = pa.table(columns)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    temporary = f"{path}.{hashlib.blake2b(str(id(buffer)).encode(), digest_size=6).hexdigest()}.partial"
    with fs.open(temporary, "wb") as handle:
        handle.write(buffer.getvalue())
    fs.mv(temporary, path)
    return "computed"


def read_partition(url: str, methods: tuple[str, ...], storage_options: dict) -> dict[str, Fingerprint | str]:
    """abspath -> Fingerprint, or the one-line reason it could not be fingerprinted."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(url, "rb", **storage_options) as handle:
        table = pq.read_table(handle)
    rows = table.to_pydict()
    found: dict[str, Fingerprint | str] = {}
    for i, abspath in enumerate(rows["abspath"]):
        if rows["error"][i] is not None:
            found[abspath] = rows["error"][i]
            continue
        found[abspath] = Fingerprint(
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
    return found
