"""Fingerprint the items of sources that are not folders: one partition (a shard, a row group, a slice of a
manifest) per task, in worker processes, each task reading its own bytes.

The fingerprint cache is used as it is (engine/cache.py, its (path, size, mtime_ns) key): an item's key is
path = "<kind>:<source URL>::<item id>", size = the item's byte size, mtime_ns = a 64-bit digest of its bytes
(Item.version). Items in containers have no trustworthy mtime, so they are keyed by content: an unchanged item is
never decoded again, even inside a rewritten shard, and a changed one always is. Reading the bytes is still needed
to key them; a whole scan of unchanged tar shards or Parquet files is reused without reading anything
(reuse_key: every partition's container version, from the listing).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..cache import FingerprintCache
from ..fingerprint import Columns, Fingerprint, columns_of, decode_blobs, fingerprint_blobs
from ..listing import Listing
from ..model import ImageRecord, Root, Skipped
from ..progress import NullProgress, ProgressSink
from .base import Item, Partition, Source, SourceOptions, split_order


@dataclass(slots=True)
class ItemResult:
    """What a cluster task sends back for one item: where it lives and its fingerprint (or why it has none)."""

    id: str
    split: str | None
    label: str | None
    size: int
    version: int
    value: Fingerprint | str
    fresh: bool  # decoded in this run: to be stored in the cache (read failures are not: they may pass)
    where: tuple[str, int] | None = None  # its thumbnail in a table a runner wrote (URL, row), if any
    name: str | None = None  # Item.name


@dataclass(slots=True)
class PartitionResult:
    """What a task sends back for one partition: its items as parallel lists (partition order) and the
    fingerprints decoded in this run as columns. No object per item and no bytes: 1,000 ItemResults with their
    Fingerprints cost a worker and the scan's process more to pickle and load than reading their tar shard."""

    ids: list[str]
    splits: list[str | None]
    labels: list[str | None]
    sizes: list[int]
    versions: list[int]
    values: list[Fingerprint | str | None]  # a fingerprint, why there is none, or None: the next row of `table`
    fresh: list[bool]  # decoded in this run: to be stored in the cache (read failures are not: they may pass)
    names: list[str | None]  # Item.name
    table: Columns | None = None  # the rows of the values that are None, in item order
    where: list[tuple[str, int] | None] | None = None  # ItemResult.where per item (a runner's tables)

    @classmethod
    def of_items(cls, results: Sequence[ItemResult]) -> PartitionResult:
        return cls(
            [r.id for r in results],
            [r.split for r in results],
            [r.label for r in results],
            [r.size for r in results],
            [r.version for r in results],
            [r.value for r in results],
            [r.fresh for r in results],
            [r.name for r in results],
            where=[r.where for r in results],
        )

    def fingerprints(self) -> Iterator[Fingerprint | str]:
        """Each item's fingerprint (a table row made a Fingerprint) or why it has none."""
        rows = iter(range(len(self.table))) if self.table is not None else iter(())
        for value in self.values:
            yield value if value is not None else self.table.fingerprint(next(rows))  # type: ignore[union-attr]


def cache_key(source: Source, item_id: str) -> str:
    return f"{source.kind}:{source.url}::{item_id}"


def _lookup(cache_path: str, keys: list[tuple[str, int, int]], methods: tuple[str, ...], draft: bool) -> dict:
    """Rows for the keys, from a connection of this task's own: FingerprintCache.lookup leaves its read
    transaction open, so a connection kept across tasks would not see rows stored after its first lookup."""
    with FingerprintCache(cache_path) as cache:
        return cache.lookup(keys, methods, draft)


def read_partition(
    source: Source,
    partition: Partition,
    methods: tuple[str, ...],
    draft: bool,
    cache_path: str | None,
    items: list[Item] | None = None,
) -> PartitionResult:
    """Read one partition (unless its `items` were read already) and fingerprint its items, decoding only those
    the cache does not hold (with one method, into columns)."""
    items = list(source.read(partition)) if items is None else items
    good = [item for item in items if item.error is None]
    keys = [(cache_key(source, item.id), item.size, item.version) for item in good]
    cached = _lookup(cache_path, keys, methods, draft) if cache_path is not None and good else {}
    blobs = [item.data for item, key in zip(good, keys) if key[0] not in cached]  # every good item has its bytes
    table = None
    decoded: Iterator[Fingerprint | str | None]
    if len(methods) == 1 and blobs:
        reasons, table = columns_of(decode_blobs(blobs, methods, draft), methods[0], draft)  # type: ignore[arg-type]
        decoded = iter(reasons)
    else:
        decoded = iter(fingerprint_blobs(blobs, methods, draft) if blobs else ())  # type: ignore[arg-type]
    result = PartitionResult([], [], [], [], [], [], [], [], table)
    key_of = iter(keys)
    for item in items:
        result.ids.append(item.id)
        result.splits.append(item.split)
        result.labels.append(item.label)
        result.names.append(item.name)
        if item.error is not None:
            result.sizes.append(0)
            result.versions.append(0)
            result.values.append(item.error)
            result.fresh.append(False)
            continue
        path, size, version = next(key_of)
        result.sizes.append(size)
        result.versions.append(version)
        row = cached.get(path)
        if row is not None:
            result.values.append(row.error if row.error is not None else row.fingerprint)
            result.fresh.append(False)
        else:
            result.values.append(next(decoded))
            result.fresh.append(True)
    return result


def fingerprint_partition(
    source: Source,
    partition: Partition,
    methods: tuple[str, ...],
    draft: bool,
    cache_path: str | None,
    items: list[Item] | None = None,
) -> list[ItemResult]:
    """read_partition as one ItemResult per item (what a cluster task writes to its table)."""
    read = read_partition(source, partition, methods, draft, cache_path, items)
    values = read.fingerprints()
    fields = zip(read.ids, read.splits, read.labels, read.sizes, read.versions, read.fresh, read.names)
    return [
        ItemResult(item_id, split, label, size, version, next(values), fresh, name=name)
        for item_id, split, label, size, version, fresh, name in fields
    ]


@dataclass(slots=True)
class SourceItems:
    """What reading the sources gave: roots (one per split of each source), records aligned with fingerprints
    (a FingerprintTable when every one was decoded in this run), and the items that could not be fingerprinted."""

    roots: list[Root]
    records: list[ImageRecord]
    fingerprints: list[Fingerprint]
    skipped: list[Skipped]
    decoded: int
    cache_hits: int
    places: list[tuple[str, int] | None] = field(default_factory=list)  # each record's ItemResult.where


def fingerprint_sources(
    sources: Sequence[Source],
    methods: tuple[str, ...],
    *,
    jobs: int,
    cache: FingerprintCache | None,
    progress: ProgressSink | None = None,
    draft: bool = False,
    taken: Sequence[str] = (),
    map_tasks: Callable[..., Iterator[list[ItemResult]]] | None = None,
    keep_thumbs: bool = True,
) -> SourceItems:
    """Read and fingerprint every partition of the sources (in `jobs` processes), storing fresh rows in `cache`.

    Root names are the splits (train, test, ...), or a source's name when its items carry none; a name already
    `taken` (by another source) gets the source's name as a prefix. `map_tasks(fn, *iterables)`: runs the
    partition tasks elsewhere (a Dask cluster: cluster.DaskRunner.map_tasks), results in task order; its workers
    decode every item they are given (the cache file is this machine's) and the fresh rows are stored here.
    `keep_thumbs=False`: the fingerprints of items whose thumbnail is in a runner's table (ItemResult.where) keep
    no thumbnail here once the cache has it (the workers verify there: cluster/thumbs.py)."""
    progress = progress or NullProgress()
    tasks = [(index, source, partition) for index, source in enumerate(sources) for partition in source.partitions()]
    cache_path = str(cache.path) if cache is not None else None
    progress.start("reading", len(tasks))
    per_source: dict[int, list[tuple[Partition, PartitionResult]]] = {}
    jobs = max(1, min(jobs, len(tasks)))
    outputs: Iterator[PartitionResult]
    if map_tasks is not None:
        found = map_tasks(
            fingerprint_partition,
            [s for _, s, _ in tasks],
            [p for _, _, p in tasks],
            [methods] * len(tasks),
            [draft] * len(tasks),
            [None] * len(tasks),
        )
        outputs = (PartitionResult.of_items(results) for results in found)
        _collect(tasks, outputs, per_source, cache, progress, keep_thumbs)
    elif jobs == 1:
        outputs = (read_partition(s, p, methods, draft, cache_path) for _, s, p in tasks)
        _collect(tasks, outputs, per_source, cache, progress)
    else:
        from concurrent.futures import ProcessPoolExecutor  # here: a check that decodes nothing needs no pool

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            outputs = pool.map(
                read_partition,
                [s for _, s, _ in tasks],
                [p for _, _, p in tasks],
                [methods] * len(tasks),
                [draft] * len(tasks),
                [cache_path] * len(tasks),
            )
            _collect(tasks, outputs, per_source, cache, progress)
    progress.finish()

    return _assemble(sources, per_source, taken, methods[0], draft)


def _assemble(sources, per_source, taken: Sequence[str], method: str, draft: bool) -> SourceItems:
    """The roots, records (in item_order within each root) and fingerprints of the partitions' results."""
    result = SourceItems([], [], [], [], 0, 0)
    names = list(taken)
    values: list[Fingerprint | int] = []  # per record: its fingerprint, or its row in the tables one after the other
    tables: list[Columns] = []
    order: list[tuple] = []  # per record: (its root's place, *item_order)
    rows = 0  # in the tables before this partition's
    for index, source in enumerate(sources):
        parts = per_source.get(index, [])
        splits = {s for _, part in parts for s in part.splits} | {p.split for p, part in parts if not part.ids}
        labelled = any(label is not None for _, part in parts for label in part.labels)
        root_of: dict[str | None, tuple[str, int]] = {}
        for split in sorted(splits, key=lambda s: split_order(s or source.name)):
            name = free_name(split or source.name, source.name, names)
            names.append(name)
            root_of[split] = (name, len(result.roots))
            result.roots.append(Root(name, source.url, labelled, source=source.kind))
        prefix = cache_key(source, "")
        seen: set[str] = set()
        for _, part in parts:
            fields = zip(part.ids, part.splits, part.labels, part.sizes, part.versions, part.values, part.fresh)
            for k, (item_id, split, label, size, version, value, fresh) in enumerate(fields):
                row = rows
                rows += value is None
                root, place = root_of[split]
                if item_id in seen:
                    result.skipped.append(Skipped(root, item_id, "listed more than once (the first is scanned)"))
                    continue
                seen.add(item_id)
                if isinstance(value, str):
                    result.skipped.append(Skipped(root, item_id, value))
                    continue
                result.records.append(ImageRecord(root, item_id, label, size, version, prefix + item_id, part.names[k]))
                values.append(row if value is None else value)
                order.append((place, *item_order(item_id)))
                result.places.append(part.where[k] if part.where is not None else None)
                result.decoded += fresh
            if part.table is not None:
                tables.append(part.table)
    result.cache_hits = len(result.records) - result.decoded
    ranked = sorted(range(len(order)), key=order.__getitem__)  # linear when already in order (the usual case)
    result.records = [result.records[i] for i in ranked]
    result.places = [result.places[i] for i in ranked]
    # a FingerprintTable where the cache held none of them (typed as the list it stands for, as pipeline's)
    result.fingerprints = _fingerprints([values[i] for i in ranked], tables, method, draft)
    return result


def _fingerprints(values: list[Fingerprint | int], tables: list[Columns], method: str, draft: bool) -> list:
    """The records' fingerprints from their values (a Fingerprint, or a row of the tasks' tables one after the
    other): a FingerprintTable (as the folder's cold scan keeps them: arrays, no object per image) when all are
    rows, else a list of Fingerprints."""
    from ..pipeline import FingerprintTable  # imported here: the pipeline imports this module

    whole = Columns.allocate(sum(len(table) for table in tables), method, draft)
    start = 0
    for table in tables:
        whole.put(start, table)
        start += len(table)
    if values and all(isinstance(value, int) for value in values):
        return FingerprintTable(whole.take(np.array(values, dtype=np.int64)))  # type: ignore[return-value]
    return [value if isinstance(value, Fingerprint) else whole.fingerprint(value) for value in values]


def item_order(item_id: str) -> tuple[str, int]:
    """Where an item sorts among its root's: by id, except a Parquet row, by its file and then its row number
    (`f.parquet#2` before `f.parquet#10`), as the rows are stored. The search's order breaks its ties (its
    nearest-neighbour candidates at equal distance), so this order is what makes a dataset stored in folder
    order give the folder's groups; sorting `#10` before `#2` changed 35 of CIFAR-10's 1,324 groups."""
    container, hash_sign, row = item_id.rpartition("#")
    return (container, int(row)) if hash_sign and row.isdigit() else (item_id, -1)


def _collect(tasks, outputs, per_source, cache, progress, keep_thumbs: bool = True) -> None:
    for (index, source, partition), part in zip(tasks, outputs):
        per_source.setdefault(index, []).append((partition, part))
        if cache is not None:
            fresh = [i for i, is_fresh in enumerate(part.fresh) if is_fresh]
            keys = [(cache_key(source, part.ids[i]), part.sizes[i], part.versions[i]) for i in fresh]
            if part.table is not None:  # decoded values are None (a row of the table) or a reason
                cache.store_rows(cache.rows_of(keys, [part.values[i] for i in fresh], part.table))
            else:
                cache.store((*key, part.values[i]) for key, i in zip(keys, fresh))
        if not keep_thumbs and part.where is not None:
            for value, place in zip(part.values, part.where):
                if place is not None and isinstance(value, Fingerprint):
                    value.thumb = b""
        progress.advance()


def reuse_key(sources: Sequence[Source], settings: object) -> bytes | None:
    """The stored-answer key of a scan of tar shards or Parquet files: every partition's container version,
    the sources and the settings (cache.answer_key adds the code). None for manifests: their items live
    elsewhere and may change while the manifest does not."""
    if any(source.kind not in ("webdataset", "parquet") for source in sources):
        return None
    listed = tuple((source, tuple(source.partitions())) for source in sources)
    return FingerprintCache.answer_key(Listing([], []), (settings, listed, os.environ.get("AWS_ENDPOINT_URL")))


def free_name(name: str, prefix: str, taken: Sequence[str]) -> str:
    """A root's name in a scan of several datasets: its own, else prefixed by its dataset's name when an earlier
    dataset's root took it (`test`, then `holdout-test`)."""
    return name if name not in taken else f"{prefix}-{name}"


def every_item(
    targets: Sequence[str],
    options: SourceOptions,
    method: str,
    *,
    draft: bool,
    cache: FingerprintCache | None,
    jobs: int = 1,
) -> tuple[list[ImageRecord], list[Fingerprint], list[Source]]:
    """Every decodable item of the sources with its fingerprint and thumbnail, under the roots a scan gives them
    (for `scan --explain` and the probe over containers: after the scan, the cache holds them all, so nothing is
    decoded). A folder among them is walked as the scan walks it; its records are files."""
    from ..pipeline import fingerprint_records  # imported here: the pipeline imports this module
    from .detect import open_source
    from .folder import FolderSource

    sources = [open_source(target, options) for target in targets]
    records: list[ImageRecord] = []
    fingerprints: list[Fingerprint] = []
    taken: list[str] = []
    for source in sources:  # one at a time, as the scan reads them, so the roots get the scan's names
        if isinstance(source, FolderSource):
            roots, listed, _ = source.records()
            renamed: dict[str, str] = {}
            for root in roots:
                renamed[root.name] = free_name(root.name, source.name, taken)
                taken.append(renamed[root.name])
            found = fingerprint_records(
                [replace(r, root=renamed[r.root]) for r in listed], (method,), jobs=jobs, cache=cache, draft=draft
            )
            records.extend(found.records)
            fingerprints.extend(found.fingerprints)
            continue
        read = fingerprint_sources([source], (method,), jobs=jobs, cache=cache, draft=draft, taken=taken)
        taken.extend(root.name for root in read.roots)
        records.extend(read.records)
        fingerprints.extend(read.fingerprints)
    missing = [i for i, f in enumerate(fingerprints) if not f.thumb]
    if missing and cache is not None:
        thumbs = cache.thumbs([records[i].abspath for i in missing])
        for i in missing:
            fingerprints[i].thumb = thumbs.get(records[i].abspath, b"")
    return records, fingerprints, sources
