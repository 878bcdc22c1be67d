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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace

from ..cache import FingerprintCache
from ..fingerprint import Fingerprint, fingerprint_blobs
from ..listing import Listing
from ..model import ImageRecord, Root, Skipped
from ..progress import NullProgress, ProgressSink
from .base import Item, Partition, Source, SourceOptions, split_order


@dataclass(slots=True)
class ItemResult:
    """What a task sends back for one item: where it lives and its fingerprint (or why it has none); no bytes."""

    id: str
    split: str | None
    label: str | None
    size: int
    version: int
    value: Fingerprint | str
    fresh: bool  # decoded in this run: to be stored in the cache (read failures are not: they may pass)
    where: tuple[str, int] | None = None  # its thumbnail in a table a runner wrote (URL, row), if any


def cache_key(source: Source, item_id: str) -> str:
    return f"{source.kind}:{source.url}::{item_id}"


def _lookup(cache_path: str, keys: list[tuple[str, int, int]], methods: tuple[str, ...], draft: bool) -> dict:
    """Rows for the keys, from a connection of this task's own: FingerprintCache.lookup leaves its read
    transaction open, so a connection kept across tasks would not see rows stored after its first lookup."""
    with FingerprintCache(cache_path) as cache:
        return cache.lookup(keys, methods, draft)


def fingerprint_partition(
    source: Source,
    partition: Partition,
    methods: tuple[str, ...],
    draft: bool,
    cache_path: str | None,
    items: list[Item] | None = None,
) -> list[ItemResult]:
    """Read one partition (unless its `items` were read already) and fingerprint its items, decoding only those
    the cache does not hold."""
    items = list(source.read(partition)) if items is None else items
    good = [item for item in items if item.error is None]
    keys = [(cache_key(source, item.id), item.size, item.version) for item in good]
    cached = _lookup(cache_path, keys, methods, draft) if cache_path is not None and good else {}
    todo = [item for item, key in zip(good, keys) if key[0] not in cached]
    blobs = [item.data for item in todo if item.data is not None]  # every good item has its bytes
    decoded = iter(fingerprint_blobs(blobs, methods, draft) if blobs else ())
    key_of = iter(keys)
    results = []
    for item in items:
        if item.error is not None:
            results.append(ItemResult(item.id, item.split, item.label, 0, 0, item.error, False))
            continue
        path, size, version = next(key_of)
        row = cached.get(path)
        if row is not None:
            value: Fingerprint | str = row.error if row.error is not None else row.fingerprint
            results.append(ItemResult(item.id, item.split, item.label, size, version, value, False))
        else:
            results.append(ItemResult(item.id, item.split, item.label, size, version, next(decoded), True))
    return results


@dataclass(slots=True)
class SourceItems:
    """What reading the sources gave: roots (one per split of each source), records aligned with fingerprints,
    and the items that could not be fingerprinted."""

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
    per_source: dict[int, list[tuple[Partition, list[ItemResult]]]] = {}
    jobs = max(1, min(jobs, len(tasks)))
    outputs: Iterator[list[ItemResult]]
    if map_tasks is not None:
        outputs = map_tasks(
            fingerprint_partition,
            [s for _, s, _ in tasks],
            [p for _, _, p in tasks],
            [methods] * len(tasks),
            [draft] * len(tasks),
            [None] * len(tasks),
        )
        _collect(tasks, outputs, per_source, cache, progress, keep_thumbs)
    elif jobs == 1:
        outputs = (fingerprint_partition(s, p, methods, draft, cache_path) for _, s, p in tasks)
        _collect(tasks, outputs, per_source, cache, progress)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            outputs = pool.map(
                fingerprint_partition,
                [s for _, s, _ in tasks],
                [p for _, _, p in tasks],
                [methods] * len(tasks),
                [draft] * len(tasks),
                [cache_path] * len(tasks),
            )
            _collect(tasks, outputs, per_source, cache, progress)
    progress.finish()

    result = SourceItems([], [], [], [], 0, 0)
    names = list(taken)
    for index, source in enumerate(sources):
        parts = per_source.get(index, [])
        splits = {r.split for _, results in parts for r in results} | {p.split for p, results in parts if not results}
        labelled = any(r.label is not None for _, results in parts for r in results)
        root_of: dict[str | None, str] = {}
        for split in sorted(splits, key=lambda s: split_order(s or source.name)):
            name = free_name(split or source.name, source.name, names)
            names.append(name)
            root_of[split] = name
            result.roots.append(Root(name, source.url, labelled, source=source.kind))
        seen: set[str] = set()
        for _, results in parts:
            for item in results:
                root = root_of[item.split]
                if item.id in seen:
                    result.skipped.append(Skipped(root, item.id, "listed more than once (the first is scanned)"))
                    continue
                seen.add(item.id)
                if isinstance(item.value, str):
                    result.skipped.append(Skipped(root, item.id, item.value))
                    continue
                key = cache_key(source, item.id)
                result.records.append(ImageRecord(root, item.id, item.label, item.size, item.version, key))
                result.fingerprints.append(item.value)
                result.places.append(item.where)
                if item.fresh:
                    result.decoded += 1
                else:
                    result.cache_hits += 1
    order = {root.name: i for i, root in enumerate(result.roots)}
    rows = sorted(
        zip(result.records, result.fingerprints, result.places),
        key=lambda p: (order[p[0].root], *item_order(p[0].path)),
    )
    result.records = [r for r, _, _ in rows]
    result.fingerprints = [f for _, f, _ in rows]
    result.places = [w for _, _, w in rows]
    return result


def item_order(item_id: str) -> tuple[str, int]:
    """Where an item sorts among its root's: by id, except a Parquet row, by its file and then its row number
    (`f.parquet#2` before `f.parquet#10`), as the rows are stored. The search's order breaks its ties (its
    nearest-neighbour candidates at equal distance), so this order is what makes a dataset stored in folder
    order give the folder's groups; sorting `#10` before `#2` changed 35 of CIFAR-10's 1,324 groups."""
    container, hash_sign, row = item_id.rpartition("#")
    return (container, int(row)) if hash_sign and row.isdigit() else (item_id, -1)


def _collect(tasks, outputs, per_source, cache, progress, keep_thumbs: bool = True) -> None:
    for (index, source, partition), results in zip(tasks, outputs):
        per_source.setdefault(index, []).append((partition, results))
        if cache is not None:
            cache.store((cache_key(source, r.id), r.size, r.version, r.value) for r in results if r.fresh)
        if not keep_thumbs:
            for r in results:
                if r.where is not None and not isinstance(r.value, str):
                    r.value.thumb = b""
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
