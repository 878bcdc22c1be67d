"""The bytes of chosen items of a source (for the HTML report's thumbnails and the probe's pixels), reading only
what holds them: the tar shards and Parquet row groups that contain them, a manifest's listed files."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace

from ...errors import DupauditError
from ..model import ImageRecord, Root
from .base import Partition, Source, SourceOptions
from .storage import relative_to


def item_bytes(
    kind: str, url: str, ids: Collection[str], options: SourceOptions = SourceOptions()
) -> dict[str, bytes | str]:
    """{id: its bytes, or why there are none} for the chosen items of the source at `url` (a report's root:
    its `source` and `path`). A source that cannot be opened any more gives its reason for every item."""
    from .detect import open_source

    wanted = set(ids)
    if not wanted:
        return {}
    try:
        source = open_source(url, replace(options, source_type=kind))
    except DupauditError as exc:
        return dict.fromkeys(wanted, str(exc))
    return read_items(source, wanted)


def read_items(source: Source, ids: Collection[str]) -> dict[str, bytes | str]:
    """{id: bytes, or why not} for the chosen items of an open source; an id it does not hold: "not found"."""
    wanted = set(ids)
    found = dict(iter_items(source, wanted))
    return {i: found.get(i, "not found") for i in wanted}


def iter_items(source: Source, ids: Collection[str]) -> Iterator[tuple[str, bytes | str]]:
    """(id, bytes or why not) for the chosen items the source holds, in storage order, reading only the tar
    shards and row groups that hold them (a manifest: its listed files, a slice at a time); one partition's
    bytes are held at a time, so any number of items can be streamed."""
    wanted = set(ids)
    if source.kind == "manifest":
        from .manifest import SLICE_ROWS, _fetch
        from .naming import manifest_ids
        from .storage import read_reason

        where = [(i, w) for i, w in manifest_ids(source).items() if i in wanted]
        for start in range(0, len(where), SLICE_ROWS):  # fetched together, as a scan fetches a slice
            chosen = where[start : start + SLICE_ROWS]
            fetched = _fetch([w for _, w in chosen], source.storage_options)  # type: ignore[attr-defined]
            for item_id, location in chosen:
                value = fetched[location]
                yield item_id, read_reason(value) if isinstance(value, BaseException) else value
        return
    found: set[str] = set()
    for partition in source.partitions():
        if not _may_hold(source, partition, wanted - found):
            continue
        for item in source.read(partition):
            if item.id in wanted and item.id not in found:
                found.add(item.id)
                yield item.id, item.data if item.data is not None else (item.error or "unreadable")
        if len(found) == len(wanted):
            return


def _may_hold(source: Source, partition: Partition, ids: set[str]) -> bool:
    """True when the partition (a shard, a row group) may hold one of the ids: one sequential read, else none."""
    if not ids:
        return False
    container = relative_to(source.base, partition.location)  # type: ignore[attr-defined]
    if source.kind == "webdataset":
        return any(i.startswith(container + "/") for i in ids)
    if source.kind == "parquet":
        rows = next(r for path, _, r in source.files if path == partition.location)  # type: ignore[attr-defined]
        first = sum(rows[: partition.index])
        numbers = {i[len(container) + 1 :] for i in ids if i.startswith(container + "#")}
        return any(n.isdigit() and first <= int(n) < first + rows[partition.index] for n in numbers)
    return True


def record_bytes(roots: Sequence[Root], records: Sequence[ImageRecord], options: SourceOptions = SourceOptions()):
    """The bytes (or why not) of records, in order: each source that is not a folder is opened once and read only
    where the records live; a folder's records are their files (the probe's pixels; roots: the scan report's)."""
    place = {r.name: (r.source, r.path) for r in roots}
    wanted: dict[tuple[str, str], set[str]] = {}
    for record in records:
        if place[record.root][0] != "folder":
            wanted.setdefault(place[record.root], set()).add(record.path)
    found = {key: item_bytes(key[0], key[1], ids, options) for key, ids in wanted.items()}
    return [_file_bytes(r.abspath) if place[r.root][0] == "folder" else found[place[r.root]][r.path] for r in records]


def _file_bytes(path: str) -> bytes | str:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"


def record_inputs(
    sources: Mapping[str, Source], records: Sequence[ImageRecord], indices: Sequence[int]
) -> Iterator[tuple[int, str | bytes | None]]:
    """(index, what to decode) for the chosen records: a folder record's file path (its root is not in
    `sources`), a container item's bytes, or None when they cannot be had; source by source, each read once in
    storage order (iter_items), for the CNN embeddings of a scan (`sources`: root name -> the source read)."""
    by_source: dict[int, tuple[Source, dict[str, list[int]]]] = {}
    for index in indices:
        record = records[index]
        source = sources.get(record.root)
        if source is None:
            yield index, record.abspath
            continue
        by_source.setdefault(id(source), (source, {}))[1].setdefault(record.path, []).append(index)
    for source, wanted in by_source.values():
        for item_id, value in iter_items(source, wanted):
            for index in wanted.pop(item_id):
                yield index, value if isinstance(value, bytes) else None
        for left in wanted.values():  # not in the source any more
            yield from ((index, None) for index in left)
