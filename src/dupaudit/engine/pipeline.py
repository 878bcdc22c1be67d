"""The scan pipeline: discover -> fingerprint (cached, parallel) -> search -> groups -> analysis -> ScanReport."""

from __future__ import annotations

import importlib
import logging
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from .._version import __version__
from ..errors import InputError
from . import embed, incremental, regroup
from .analysis import analyse
from .cache import CachedRow, FingerprintCache, cacheable, default_cache_path, open_cache
from .discover import RecordTable, record_table
from .fingerprint import (
    Columns,
    Fingerprint,
    columns_of,
    content_digests,
    decode_paths,
    default_jobs,
    fingerprint_columns,
    fingerprint_paths,
    fingerprints_of,
    row_bytes,
)
from .groups import build_groups
from .hashing import THUMB_SIZE, phash
from .incremental import state_key
from .layout import detect_layout
from .links import cosine_check, radius_check, verified_check
from .listing import Confirmation, Listing, ListingMoved, Seen, list_files, load_snapshot, snapshot
from .model import (
    ClassStats,
    GroupsChange,
    ImageRecord,
    Layout,
    Root,
    ScanReport,
    Settings,
    Skipped,
    StoredAnswer,
)
from .progress import NullProgress, ProgressSink
from .search import pairs_within
from .sources import SourceOptions, holds_container, is_plain_folder, open_source
from .verify import CascadeSettings, candidate_pairs, transform_codes, transformed, verify

log = logging.getLogger(__name__)

BATCH = 256  # files per worker task: large enough to batch the hash maths, small enough to stream
IN_FLIGHT = 4  # batches per worker process queued ahead of the scan's process (_run_batches)
STORE_ROWS = 16_384  # cache rows written per transaction by a cold scan (FingerprintCache.store_rows)
VERIFY_IMAGES = 200_000  # images the cascade compares at once (_verify_in_parts): ~0.4 GB of its arrays
# The incremental state is written back (lazy_state) once this many files, or this share of them, changed since
# the stored state: below that, updating from the stored state again costs less than writing it (tens of MB).
STATE_SLACK = 256
STATE_SLACK_SHARE = 0.01
PARENT_HASHING_BYTES = 16_000  # mean file size from which the scan's own process hashes (fingerprint_records)


@dataclass(slots=True)
class Fingerprinted:
    """The records that decoded, aligned with their fingerprints, and those that did not."""

    records: list[ImageRecord]
    fingerprints: list[Fingerprint]
    skipped: list[Skipped]
    decoded: int
    cache_hits: int
    remote: RemoteThumbs | None = None  # where the thumbnails are when the fingerprints come without them


PairSearch = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]  # pairs_within's signature


class RemoteThumbs(Protocol):
    """The thumbnails kept where a runner wrote them (cluster.thumbs.ThumbTable: the workers use them there)."""

    def variant_hashes(self, code: int) -> np.ndarray: ...

    def verify(
        self,
        thumbs: None,
        first: np.ndarray,
        second: np.ndarray,
        codes: np.ndarray,
        settings,
        threads=...,
        groups_only=...,
    ) -> np.ndarray: ...

    def keeper_check(self, rows: np.ndarray, hashes: np.ndarray, variants: dict, cascade, threads: int = ...): ...


class Runner(Protocol):
    """Where the heavy stages run; cluster.DaskRunner spreads them over a Dask cluster."""

    def fingerprint_records(
        self,
        records: Sequence[ImageRecord],
        methods: tuple[str, ...],
        *,
        jobs: int | None = ...,
        cache: FingerprintCache | None = ...,
        progress: ProgressSink | None = ...,
        draft: bool = ...,
        keep_thumbs: bool = ...,
    ) -> Fingerprinted: ...

    def pairs_within(
        self, hashes: np.ndarray, radius: int, queries: np.ndarray | None = ..., threads: int | None = ...
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def map_tasks(self, function: Callable, *iterables: Sequence) -> Iterator: ...

    def fingerprint_partitions(
        self,
        function: Callable,
        sources: Sequence,
        partitions: Sequence,
        methods: Sequence[tuple[str, ...]],
        drafts: Sequence[bool],
        cache_paths: Sequence[str | None],
    ) -> Iterator: ...  # map_tasks for sources.scanning.fingerprint_sources, keeping the tables (ItemResult.where)

    def thumb_table(self, places: Sequence[tuple[str, int]]) -> RemoteThumbs: ...


def fingerprint_records(
    records: Sequence[ImageRecord],
    methods: tuple[str, ...],
    *,
    jobs: int | None = None,
    cache: FingerprintCache | None = None,
    progress: ProgressSink | None = None,
    draft: bool = False,
    verify_content: bool = False,
    known: dict[str, Fingerprint] | None = None,
    columns: bool = False,
) -> Fingerprinted:
    """Fingerprint every record, from the cache when unchanged, else by decoding in `jobs` processes.

    A file unknown by (path, size, mtime_ns) is read and looked up by its byte digest before it is decoded
    (moved, renamed, copied, freshly checked out: reading is 10-50x cheaper than decoding). `verify_content`:
    files known by their stat key are read too, and decoded again when their bytes changed (an edit that kept
    size and mtime). `draft`: decode JPEGs at reduced scale (no less than THUMB_SIZE a side): faster on photos,
    not bit-identical. `known`: fingerprints of unchanged files by absolute path, from the incremental index
    (not looked up). `columns`: when the cache holds none of the records (a cold scan), the fingerprints come
    as a FingerprintTable (arrays, no object per image)."""
    progress = progress or NullProgress()
    known = known or {}
    cached = (
        cache.lookup(
            ((r.abspath, r.size, r.mtime_ns) for r in records if r.abspath not in known and cacheable(r.abspath)),
            methods,
            draft,
        )
        if cache
        else {}
    )
    cached.update((path, CachedRow(None, fingerprint)) for path, fingerprint in known.items())
    if cache is not None and verify_content and cached:
        known = [path for path, row in cached.items() if row.error is None]
        stored = cache.digests(known)
        for path, digest in zip(known, content_digests(known)):
            if digest is None or stored.get(path) != digest:
                del cached[path]
        for path in [path for path, row in cached.items() if row.error is not None]:
            del cached[path]  # a bad file's reason is not tied to a digest: decode it again
    todo = [r for r in records if r.abspath not in cached]
    if cache is not None and todo and cache.has_rows():
        movable = [r for r in todo if cacheable(r.abspath)]
        digests = content_digests([r.abspath for r in movable])
        items = [(r.abspath, r.size, r.mtime_ns, d) for r, d in zip(movable, digests)]
        cached.update(cache.by_content(items, methods, draft))
        todo = [r for r in todo if r.abspath not in cached]
    if columns and not cached and len(methods) == 1:
        return _fingerprint_columns(todo, methods[0], jobs=jobs, cache=cache, progress=progress, draft=draft)
    fresh: dict[str, Fingerprint | str] = {}
    progress.start("fingerprint", len(todo))
    batches = [todo[i : i + BATCH] for i in range(0, len(todo), BATCH)]
    outputs = _run_batches(batches, methods, draft, jobs, fingerprint_paths, fingerprints_of)
    _collect(batches, outputs, fresh, cache, progress)
    progress.finish()
    return aligned(records, cached, fresh, decoded=len(todo))


def _run_batches(
    batches: list[list[ImageRecord]], methods: tuple[str, ...], draft: bool, jobs: int | None, whole, finish
) -> Iterator:
    """`whole(paths, methods, draft)` of each batch, in order: in this process for one job, else in `jobs` worker
    processes, at most IN_FLIGHT batches per process ahead of the caller (pool.map would queue every result
    in memory when this process, which stores the rows, is the slower side: gigabytes at a million images)."""
    jobs = max(1, jobs or default_jobs())
    if jobs == 1 or len(batches) <= 1:
        yield from (whole([r.abspath for r in batch], methods, draft) for batch in batches)
        return
    # Where files are large (photos), decoding dominates and this process, idle otherwise, hashes what
    # the workers decoded (`finish`): SciPy's DCT is then imported once here instead of in every worker (an
    # import costs CPU). Small images (CIFAR) hash in the workers: this process, which also stores every row,
    # would be the bottleneck. The fingerprints are the same either way (tests/test_parallel.py).
    count = sum(len(batch) for batch in batches)
    hash_here = sum(r.size for batch in batches for r in batch) >= PARENT_HASHING_BYTES * count
    work = decode_paths if hash_here else whole
    from concurrent.futures import ProcessPoolExecutor  # here: a check that decodes nothing needs no pool

    with ProcessPoolExecutor(max_workers=min(jobs, len(batches))) as pool:
        pending: deque = deque()
        for batch in batches:
            if len(pending) >= IN_FLIGHT * jobs:
                output = pending.popleft().result()
                yield finish(output, draft) if hash_here else output
            pending.append(pool.submit(work, [r.abspath for r in batch], methods, draft))
        while pending:
            output = pending.popleft().result()
            yield finish(output, draft) if hash_here else output


class FingerprintTable(Sequence):
    """The fingerprints of a scan's records as columns (fingerprint.Columns, thumbnails included), as a cold
    scan keeps them: the stages read the arrays (find_groups, indexed_groups), and a Fingerprint object is made
    only for an item asked for one (a million of them cost ~2 GB)."""

    def __init__(self, columns: Columns) -> None:
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns)

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - Sequence's signature
        if isinstance(index, slice):
            return [self.columns.fingerprint(i) for i in range(*index.indices(len(self)))]
        return self.columns.fingerprint(range(len(self))[index])

    def release_thumbs(self) -> None:
        """Let the thumbnails and block sums go once nothing will read them (a Fingerprint made afterwards has
        none)."""
        self.columns = replace(
            self.columns,
            thumbs=np.empty((0, THUMB_SIZE, THUMB_SIZE), dtype=np.uint8),
            blocks=np.empty((0, 64), dtype=np.uint16),
        )

    @property
    def facts(self) -> incremental.Facts:
        table = self.columns
        return incremental.Facts(table.hashes, table.byte_digests, table.pixel_digests, table.sizes)


def _fingerprint_columns(
    records: Sequence[ImageRecord],
    method: str,
    *,
    jobs: int | None,
    cache: FingerprintCache | None,
    progress: ProgressSink,
    draft: bool,
) -> Fingerprinted:
    """fingerprint_records for records none of which the cache holds (a cold scan), as a FingerprintTable: the
    workers send columns back, this process copies them into one table and stores them in the cache as rows,
    STORE_ROWS at a time (one transaction each)."""
    progress.start("fingerprint", len(records))
    batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]

    def finish(decoded, drafted: bool) -> tuple[list[str | None], Columns]:  # noqa: ANN001 - a DecodedBatch
        return columns_of(decoded, method, drafted)

    outputs = _run_batches(batches, (method,), draft, jobs, fingerprint_columns, finish)
    table = Columns.allocate(len(records), method, draft)
    result = Fingerprinted([], FingerprintTable(table), [], decoded=len(records), cache_hits=0)
    filled = 0
    rows: list[tuple] = []
    for batch, (reasons, part) in zip(batches, outputs):
        table.put(filled, part)
        filled += len(part)
        for record, reason in zip(batch, reasons):
            if reason is None:
                result.records.append(record)
            else:
                result.skipped.append(Skipped(record.root, record.path, reason))
        if cache is not None:
            keys = [(r.abspath, r.size, r.mtime_ns) for r in batch]
            rows.extend(row for row in cache.rows_of(keys, reasons, part) if cacheable(row[0]))
            if len(rows) >= STORE_ROWS:
                cache.store_rows(rows)
                rows = []
        progress.advance(len(batch))
    if cache is not None and rows:
        cache.store_rows(rows)
    progress.finish()
    result.fingerprints = FingerprintTable(table.head(filled))  # type: ignore[assignment]
    return result


def aligned(
    records: Sequence[ImageRecord], cached: dict, fresh: dict[str, Fingerprint | str], decoded: int
) -> Fingerprinted:
    """The records that fingerprinted, aligned with their fingerprints (from the cache rows or fresh), and the
    skipped ones with their reasons, in the records' order (shared by every fingerprinting path)."""
    result = Fingerprinted([], [], [], decoded=decoded, cache_hits=len(cached))
    for record in records:
        if record.abspath in cached:
            row = cached[record.abspath]
            value: Fingerprint | str = row.error if row.error is not None else row.fingerprint
        else:
            value = fresh[record.abspath]
        if isinstance(value, str):
            result.skipped.append(Skipped(record.root, record.path, value))
        else:
            result.records.append(record)
            result.fingerprints.append(value)
    return result


def _collect(batches, outputs, fresh, cache, progress) -> None:
    for batch, output in zip(batches, outputs):
        for record, value in zip(batch, output):
            fresh[record.abspath] = value
        if cache is not None:
            cache.store((r.abspath, r.size, r.mtime_ns, v) for r, v in zip(batch, output) if cacheable(r.abspath))
        progress.advance(len(batch))


def scan(
    root: str | os.PathLike,
    against: Sequence[str | os.PathLike] = (),
    *,
    method: str | None = None,
    threshold: int | None = None,
    flips: bool | None = None,
    rotations: bool | None = None,
    jobs: int | None = None,
    cache_path: str | os.PathLike | None = None,
    use_cache: bool = True,
    verify: bool | None = None,
    neighbours: int | None = None,
    min_similarity: float | None = None,
    progress: ProgressSink | None = None,
    fast_decode: bool | None = None,
    model: str | os.PathLike | None = None,
    runner: Runner | None = None,
    splits: Mapping[str, str] | Sequence[str] | None = None,
    label_depth: int | None = None,
    label_from: str | None = None,
    source_options: SourceOptions | None = None,
    verify_content: bool = False,
    incremental: bool = False,
    lazy_state: bool = False,
    passed: Sequence[str] | None = None,
) -> ScanReport:
    """Scan a dataset (and evaluation datasets) for duplicates; see README for the definitions.

    Each of root and against is a folder, or another source (tar shards, Parquet, a manifest; local or a URL:
    engine/sources, docs/sources.md) read as `source_options` say.

    The settings (method ... fast_decode; None: the default) are resolved by Settings.resolve, where their
    defaults live.
    splits ({NAME: FOLDER}), label_depth and label_from override layout detection (layout.py, README "Layouts").
    method "cnn": near duplicates are pairs of CNN embeddings with cosine similarity >= min_similarity, weights
    from `model` or embed.find_weights' fallbacks; see embed.py.

    `runner`: where fingerprinting and the hash search run (cluster.DaskRunner: on a Dask cluster); the
    answer is the same.

    verify_content: read every file and compare its bytes with the cache's (an edit that kept the size and
    mtime is otherwise not seen); no stored answer is reused then.

    incremental: keep the search state in the cache (the incremental index, incremental.py) and, when a few
    files changed since the last such scan with the same settings, update the groups instead of searching all.
    lazy_state: with incremental, write the updated state back only when it differs from the stored one by more
    than a few files (the pre-commit check: an update from the stored state is exact whatever its age, and
    cheaper than writing the state; an index file, whose state is what a query reads, is always written).
    passed: with incremental, the absolute paths of the files a pre-commit check was given: the other files of
    a folder whose mtime is unchanged since the last incremental listing are taken from it, those of a folder
    whose mtime moved on trust, confirmed off the scan's path (listing.py: a file edited in place, not passed, is
    not seen; docs/check.md)."""
    settings = Settings.resolve(
        method=method,
        threshold=threshold,
        flips=flips,
        verify=verify,
        neighbours=neighbours,
        min_similarity=min_similarity,
        fast_decode=fast_decode,
        model=model,
        rotations=rotations,
    )
    weights = None
    if settings.method == "cnn":  # checked before any work, so that a missing model or torch is said at once
        weights = embed.find_weights(model)
        embed.require_torch(load=False)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    options = source_options or SourceOptions()
    targets = [str(t) for t in (root, *against)]
    if not all(is_plain_folder(t, options) for t in targets):  # folders keep the fast path below
        return _scan_sources(targets, options, settings, jobs, cache_path, use_cache, progress, runner, weights)
    detected = detect_layout(root, list(against), splits=splits, label_depth=label_depth, label_from=label_from)
    hash_method = _hash_method(settings)
    snapshot_key = FingerprintCache.index_key(("listing", detected.roots))
    trusted = incremental and use_cache and passed is not None and not verify_content
    index_key = state_key(settings, detected.roots)  # the key _scan_listing keeps its state under
    previous, asked = _previous_listing(cache_path, snapshot_key, passed or (), index_key) if trusted else (None, {})

    def listed_and_scanned(trust_moved: bool) -> ScanReport:
        listing = list_files(detected.roots, previous, asked, trust_moved=trust_moved)
        found_layout = (detected.layout, detected.warnings + tuple(listing.link_warnings()))
        timings["discover"] = time.perf_counter() - started
        confirmation = listing.confirmation()
        try:
            return _scan_listing(
                listing,
                confirmation,
                found_layout,
                snapshot_key,
                targets,
                options,
                settings,
                weights,
                hash_method,
                timings,
                started,
                jobs=jobs,
                cache_path=cache_path,
                use_cache=use_cache,
                progress=progress,
                runner=runner,
                verify_content=verify_content,
                incremental=incremental,
                lazy_state=lazy_state,
            )
        finally:
            confirmation.close()

    # A pre-commit check takes the files of a folder whose mtime moved from the last listing, confirmed by a stat
    # off the scan's path (listing.py); when one differs, the folders are listed again without that trust.
    try:
        return listed_and_scanned(trust_moved=True)
    except ListingMoved as moved:
        log.info("%s: listing again", moved)
        return listed_and_scanned(trust_moved=False)


def _scan_listing(
    listing: Listing,
    confirmation: Confirmation,
    found_layout: tuple,
    snapshot_key: bytes,
    targets: list[str],
    options: SourceOptions,
    settings: Settings,
    weights,  # embed.Weights | None
    hash_method: str,
    timings: dict[str, float],
    started: float,
    *,
    jobs: int | None,
    cache_path: str | os.PathLike | None,
    use_cache: bool,
    progress: ProgressSink | None,
    runner: Runner | None,
    verify_content: bool,
    incremental: bool,
    lazy_state: bool,
) -> ScanReport:
    """scan() of a listing: nothing is written, nor answered, before `confirmation` holds."""
    roots = tuple(files.root for files in listing.files)
    root = targets[0]

    cache_file = cache_path  # None: the default cache (open_cache); a cache that cannot be used is warned about
    # A rescan of unchanged folders with the same settings and code reuses the last answer: no file is
    # decoded, searched or even turned into a record (FingerprintCache.answer_key lists what it depends on).
    reuse_key = None
    reused = None
    index_key = state_key(settings, roots)  # the incremental index's, when kept
    first = open_cache(cache_file) if use_cache else None
    use_cache = first is not None
    if first is not None:
        with first as cache:
            reuse_key = cache.answer_key(
                listing, (settings, roots) + ((weights.digest,) if weights is not None else ())
            )
            if incremental and not listing.to_confirm:  # what the next pre-commit check lists from (listing.py)
                cache.store_snapshot(snapshot_key, snapshot(listing))
            # an incremental scan also needs its search state: without one, search (and keep it) once
            indexed = not incremental or cache.has_index(index_key)
            reused = None if verify_content or not indexed else _load_answer(cache, reuse_key)
            cache_file = cache.path
        if isinstance(reused, StoredAnswer):
            confirmation.confirm()
            if incremental and listing.to_confirm and (again := open_cache(cache_file)) is not None:
                with again as cache:
                    cache.store_snapshot(snapshot_key, snapshot(listing))
            timings["fingerprint"] = timings["search"] = 0.0
            timings["total"] = time.perf_counter() - started
            hits = reused.summary.images + len(reused.skipped) - len(listing.problems)  # every decodable record
            return _report(roots, settings, reused, timings, cache_hits=hits, decoded=0, found_layout=found_layout)

    table = record_table(listing)  # columns: records are made only where a stage needs them one by one
    imaged = {table.root_names[k] for k in np.unique(table.roots).tolist()}
    if options.source_type is None and any(holds_container(r.path) for r in roots if r.name not in imaged):
        # a folder without images that holds tar shards or Parquet files (detected only now: no cost to image folders)
        return _scan_sources(targets, options, settings, jobs, cache_path, use_cache, progress, runner, weights)
    if not len(table) and not listing.problems:
        raise InputError(f"{root}: no images found")
    cache = open_cache(cache_file) if use_cache else None
    state = None  # the incremental index: unchanged files' fingerprints come from it, not from their rows
    if incremental and cache is not None and weights is None and runner is None:
        if settings.verify and not settings.flips and not verify_content:
            state = _stored_state(cache, index_key)
    if settings.verify:  # the cascade needs faiss (slow to import): load it while the workers decode
        threading.Thread(target=_preload, args=("faiss", "threadpoolctl"), daemon=True).start()
    try:
        if state is not None and state.facts is not None:  # unchanged files: from the index's arrays
            found = _fingerprint_with_state(
                state, table, hash_method, jobs=jobs, cache=cache, progress=progress, draft=settings.fast_decode
            )
        else:
            records = list(table)
            fingerprinter = runner.fingerprint_records if runner is not None else fingerprint_records
            in_process = (
                {"keep_thumbs": incremental and use_cache}  # else the workers verify: the thumbnails stay with them
                if runner is not None
                else {"verify_content": verify_content, "columns": weights is None}  # the cluster reads by stat key
            )
            found = fingerprinter(
                records,
                (hash_method,),
                jobs=jobs,
                cache=cache,
                progress=progress,
                draft=settings.fast_decode,
                **in_process,
            )
        if (
            (settings.verify or settings.rotations) and cache is not None and not incremental and found.remote is None
        ):  # the incremental search loads what it needs; remote thumbnails stay where they are
            _load_thumbs(found, cache)
    finally:
        if cache is not None:
            cache.close()
    timings["fingerprint"] = time.perf_counter() - started - timings["discover"]

    mark = time.perf_counter()
    if weights is not None:  # --method cnn: near pairs from the embeddings instead of the hash cascade
        groups = find_semantic_groups(
            found, roots, settings, weights, cache_file if use_cache else None, jobs=jobs, progress=progress
        )
    else:
        search = runner.pairs_within if runner is not None else pairs_within
        if incremental and use_cache:
            groups = indexed_groups(
                found,
                roots,
                settings,
                cache_file,
                index_key,
                jobs=jobs,
                progress=progress,
                state=state,
                lazy_state=lazy_state,
                before_write=confirmation.confirm,
                update_threads=1 if confirmation.pending else jobs,  # the child stats on the other core
            )
        else:
            groups = _hash_groups(found, roots, settings, jobs, progress, search)
    timings["search"] = time.perf_counter() - mark
    answer = _answer(roots, found.records, groups, [Skipped(*p) for p in listing.problems] + found.skipped)
    confirmation.confirm()  # before the answer is kept or given
    if reuse_key is not None and (last := open_cache(cache_file)) is not None:
        with last as cache:
            if incremental and listing.to_confirm:
                cache.store_snapshot(snapshot_key, snapshot(listing))
            cache.store_result(reuse_key, _stored_answer(answer, groups))
    timings["total"] = time.perf_counter() - started
    return _report(
        roots, settings, answer, timings, cache_hits=found.cache_hits, decoded=found.decoded, found_layout=found_layout
    )


def _mark_leaks(groups, roots: Sequence[Root]):
    """A group is a leak when it joins an evaluation split to another split (roles from layout detection)."""
    evaluation = {r.name for r in roots if r.role == "eval"}
    return tuple(replace(g, leak=len(g.splits) > 1 and any(split in evaluation for split in g.splits)) for g in groups)


def _loose_warnings(roots: Sequence[Root], classes: Sequence[ClassStats]) -> list[str]:
    """Images of a labelled root that no class folder holds: scanned, as the unlabelled pseudo-class."""
    labelled = {r.name: r for r in roots if r.labelled}
    lines = []
    for stats in classes:
        root = labelled.get(stats.split)
        if root is not None and stats.label is None:
            where = "outside the label pattern" if root.label_pattern else "beside the class folders"
            lines.append(
                f"{stats.split}: {stats.images:,} image{'' if stats.images == 1 else 's'} {where} scanned as "
                "unlabelled (its own class, '(unlabelled)'): move them into a class folder to label them"
            )
    return lines


def _answer(roots: Sequence[Root], records: Sequence[ImageRecord], groups, skipped: list[Skipped]) -> StoredAnswer:
    """The analysis of the groups, and what the scan skipped, in the report's order."""
    order = {r.name: i for i, r in enumerate(roots)}
    skipped_sorted = tuple(sorted(skipped, key=lambda s: (order[s.root], s.path)))
    train_split = next(
        (r.name for r in roots if r.role == "train"), next((r.name for r in roots if r.name == "train"), roots[0].name)
    )
    ids = groups.ids if isinstance(groups, regroup.Regrouped) else None  # each record's group, when known
    if any(r.role == "unlabelled" for r in roots):  # copies between train and an unlabelled pool are no leak
        groups = _mark_leaks(groups, roots)
    summary, classes, splits = analyse(tuple(roots), train_split, records, groups, len(skipped_sorted), ids)
    return StoredAnswer(summary, classes, splits, tuple(groups), skipped_sorted, train_split)


def _stored_answer(answer: StoredAnswer, groups: Sequence) -> StoredAnswer:
    """What the cache keeps of an answer: the answer, or, when its groups are an update's as they came
    (regroup.Regrouped, no leak marked since), with them as their change of the stored groups (model.GroupsChange):
    writing every group of a million-image index at each check costs more than the update."""
    change = groups.change if isinstance(groups, regroup.Regrouped) else None
    if change is None or len(answer.groups) != len(groups) or not all(map(operator.is_, answer.groups, groups)):
        return answer
    return replace(answer, groups=change)  # type: ignore[arg-type]  # read back by _load_answer


def _load_answer(cache: FingerprintCache, key: bytes) -> object | None:
    """The answer stored under `key` (_stored_answer), its groups read back whole; None when there is none, or
    its groups were kept as a change of stored groups that are gone."""
    value = cache.load_result(key)
    if isinstance(value, StoredAnswer) and isinstance(value.groups, GroupsChange):
        base = cache.load_result(value.groups.base)
        groups = value.groups.applied(base) if isinstance(base, tuple) else None
        return None if groups is None else replace(value, groups=groups)
    return value


def _scan_sources(
    targets: list[str],
    options: SourceOptions,
    settings: Settings,
    jobs: int | None,
    cache_path: str | os.PathLike | None,
    use_cache: bool,
    progress: ProgressSink | None,
    runner: Runner | None,
    weights: embed.Weights | None = None,
) -> ScanReport:
    """scan() for targets that are not all local folders: each target is a source (engine/sources), read
    partition by partition; a folder among them is read by the folder walk as in scan(). `weights`: --method
    cnn, its embeddings made from the items' bytes, read again from where they live."""
    from .sources.folder import FolderSource
    from .sources.reading import record_inputs
    from .sources.scanning import fingerprint_sources, reuse_key

    started = time.perf_counter()
    timings: dict[str, float] = {}
    sources = [open_source(target, options) for target in targets]
    cache_file = cache_path or default_cache_path()
    fast_decode = settings.fast_decode
    stored_with = settings if weights is None else (settings, weights.digest)  # the answer depends on the weights
    key = reuse_key(sources, stored_with) if use_cache else None
    if key is not None:
        with FingerprintCache(cache_file) as cache:
            reused = cache.load_result(key)
        if isinstance(reused, tuple) and len(reused) == 2 and isinstance(reused[1], StoredAnswer):
            timings["discover"] = timings["fingerprint"] = timings["search"] = 0.0
            timings["total"] = time.perf_counter() - started
            answer = reused[1]
            return _report(reused[0], settings, answer, timings, answer.summary.images + len(answer.skipped), 0)
    timings["discover"] = time.perf_counter() - started
    if settings.verify:
        threading.Thread(target=_preload, args=("faiss", "threadpoolctl"), daemon=True).start()
    roots: list[Root] = []
    found = Fingerprinted([], [], [], decoded=0, cache_hits=0)
    problems: list[Skipped] = []
    cache = FingerprintCache(cache_file) if use_cache else None
    # on a cluster the thumbnails of tar shards, Parquet and manifests stay in the work directory (not with a folder)
    remote_thumbs = runner is not None and not any(isinstance(s, FolderSource) for s in sources)
    places: list = []
    source_of: dict = {}  # root name -> the source its items were read from (not folders): cnn reads them again
    try:
        for source in sources:
            if isinstance(source, FolderSource):  # a folder among other sources: the folder walk, as scan()
                folder_roots, records, listed = source.records()
                renamed = {r.name: _free_name(r.name, source.name, roots) for r in folder_roots}
                roots.extend(replace(r, name=renamed[r.name]) for r in folder_roots)
                records = [ImageRecord(renamed[r.root], *tuple(_fields(r))[1:]) for r in records]
                fingerprinter = runner.fingerprint_records if runner is not None else fingerprint_records
                part = fingerprinter(records, (_hash_method(settings),), jobs=jobs, cache=cache, draft=fast_decode)
                problems.extend(Skipped(renamed[p[0]], p[1], p[2]) for p in listed)
            else:
                read = fingerprint_sources(
                    [source],
                    (_hash_method(settings),),
                    jobs=jobs or default_jobs(),
                    cache=cache,
                    progress=progress,
                    draft=fast_decode,
                    taken=[r.name for r in roots],
                    map_tasks=runner.fingerprint_partitions if runner is not None else None,
                    keep_thumbs=not remote_thumbs,
                )
                roots.extend(read.roots)
                source_of.update((root.name, source) for root in read.roots)
                places.extend(read.places)
                part = Fingerprinted(read.records, read.fingerprints, read.skipped, read.decoded, read.cache_hits)
            if len(sources) == 1:  # as it is: a cold scan's fingerprints are a FingerprintTable, kept as arrays
                found = part
                continue
            found.records.extend(part.records)
            found.fingerprints.extend(part.fingerprints)
            found.skipped.extend(part.skipped)
            found.decoded += part.decoded
            found.cache_hits += part.cache_hits
        if not found.records and not found.skipped and not problems:
            raise InputError(f"{targets[0]}: no images found")
        if remote_thumbs and runner is not None:
            found.remote = runner.thumb_table(places)
        elif settings.verify and cache is not None:
            _load_thumbs(found, cache)
    finally:
        if cache is not None:
            cache.close()
    timings["fingerprint"] = time.perf_counter() - started - timings["discover"]
    mark = time.perf_counter()
    search = runner.pairs_within if runner is not None else pairs_within
    if weights is not None:  # --method cnn: the items' bytes are read again from their shards, rows, files
        records = found.records
        groups = find_semantic_groups(
            found,
            roots,
            settings,
            weights,
            cache_file if use_cache else None,
            jobs=jobs,
            progress=progress,
            inputs=lambda todo: record_inputs(source_of, records, todo),
        )
    else:
        groups = _hash_groups(found, roots, settings, jobs, progress, search)
    timings["search"] = time.perf_counter() - mark
    answer = _answer(roots, found.records, groups, problems + found.skipped)
    if key is not None:
        with FingerprintCache(cache_file) as cache:
            cache.store_result(key, (tuple(roots), answer))
    timings["total"] = time.perf_counter() - started
    return _report(tuple(roots), settings, answer, timings, cache_hits=found.cache_hits, decoded=found.decoded)


def _hash_method(settings: Settings) -> str:
    """The hash the fingerprints are made with: cnn's exact and pixel pairs come from phash's fingerprints."""
    return "phash" if settings.method == "cnn" else settings.method


def _free_name(name: str, prefix: str, roots: Sequence[Root]) -> str:
    from .sources.scanning import free_name

    return free_name(name, prefix, [r.name for r in roots])


def _fields(record: ImageRecord) -> tuple:
    return (record.root, record.path, record.label, record.size, record.mtime_ns, record.abspath)


def _report(
    roots: tuple[Root, ...],
    settings: Settings,
    answer: StoredAnswer,
    timings: dict[str, float],
    cache_hits: int,
    decoded: int,
    found_layout: tuple[Layout | None, tuple[str, ...]] = (None, ()),
) -> ScanReport:
    layout, warnings = found_layout
    return ScanReport(
        tool_version=__version__,
        roots=roots,
        settings=settings,
        summary=answer.summary,
        classes=answer.classes,
        splits=answer.splits,
        groups=answer.groups,
        skipped=answer.skipped,
        train_split=answer.train_split,
        timings=timings,
        cache_hits=cache_hits,
        decoded=decoded,
        layout=layout,
        warnings=warnings + tuple(_loose_warnings(roots, answer.classes)),
    )


def _preload(*modules: str) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:  # the stage that needs it reports the problem
            pass


def _load_thumbs(found: Fingerprinted, cache: FingerprintCache) -> None:
    """Verification needs every thumbnail; fingerprints read from the cache come without them."""
    _fill_thumbs(found, cache)


def _hash_groups(found: Fingerprinted, roots: Sequence[Root], settings: Settings, jobs, progress, search):
    """A full search of the fingerprinted items (folder and source scans alike; tests count find_groups calls)."""
    return find_groups(
        found.records,
        found.fingerprints,
        roots,
        settings,
        jobs=jobs,
        progress=progress,
        search=search,
        remote=found.remote,
    )


def find_groups(
    records: Sequence[ImageRecord],
    fingerprints: Sequence[Fingerprint],
    roots: Sequence[Root],
    settings: Settings,
    jobs: int | None = None,
    progress: ProgressSink | None = None,
    search: PairSearch = pairs_within,
    collect: dict | None = None,
    remote: RemoteThumbs | None = None,
):
    """Exact, pixel and near pairs, joined into groups. `search`: pairs_within or a drop-in (the cluster's).
    `remote`: the thumbnails are not in the fingerprints but there (the cluster's work directory): transformed
    hashes, verification and keeper checks run through it, with the same answers.

    `collect`: when given, receives what the incremental index keeps (the descriptors, the raw neighbour search
    and the scored candidates: incremental.SearchState.from_scan)."""
    progress = progress or NullProgress()
    progress.start("searching", 3 if settings.verify else 1)
    count = len(records)
    table = fingerprints.columns if isinstance(fingerprints, FingerprintTable) else None

    def digests_and_sizes() -> tuple[list[bytes], list[bytes], list[tuple[int, int]]]:
        """Per item its byte and pixel digests and its size, as build_groups reads them (made twice for a table:
        dropped during verification, a few hundred MB at a million images)."""
        if table is not None:
            sizes = list(zip(*table.sizes.T.tolist())) if count else []
            return row_bytes(table.byte_digests), row_bytes(table.pixel_digests), sizes
        return (
            [f.byte_digest for f in fingerprints],
            [f.pixel_digest for f in fingerprints],
            [(f.width, f.height) for f in fingerprints],
        )

    if table is not None:  # a cold scan's arrays, read as they are (no object per image)
        hashes = table.hashes
    else:
        hashes = np.frombuffer(b"".join(f.hashes[settings.method] for f in fingerprints), dtype=np.uint8)
        hashes = hashes.reshape(count, 8)
    byte_digests, pixel_digests, sizes = digests_and_sizes()
    thumbs = None
    if (settings.verify or settings.rotations) and remote is None:
        thumbs = (
            table.thumbs
            if table is not None
            else np.frombuffer(b"".join(f.thumb for f in fingerprints), dtype=np.uint8).reshape(
                count, THUMB_SIZE, THUMB_SIZE
            )
        )
    variants = variant_hashes(fingerprints, thumbs, settings, remote)
    pair_a, pair_b = [], []
    for digests in (byte_digests, pixel_digests):
        a, b = _equal_pairs(digests)
        pair_a.append(a)
        pair_b.append(b)
    if table is not None:
        del byte_digests, pixel_digests, sizes
    near_a, near_b, _ = search(hashes, settings.threshold, threads=jobs)
    hash_pairs = [(near_a, near_b, 0)]
    for code, variant in variants.items():
        query, found, _ = search(hashes, settings.threshold, queries=variant, threads=jobs)
        hash_pairs.append((found, query, code))  # found matches the transformed image of query
    if settings.verify:
        cascade = CascadeSettings(neighbours=settings.neighbours, min_similarity=settings.min_similarity)
        sums = None
        if table is not None:
            sums = table.blocks
        elif all(f.blocks for f in fingerprints):  # fresh fingerprints carry their block sums (cached ones do not)
            sums = np.frombuffer(b"".join(f.blocks for f in fingerprints), dtype=np.uint16).reshape(count, 64)
        candidates = candidate_pairs(
            hash_pairs,
            thumbs,
            settings.flips,
            cascade,
            threads=jobs or default_jobs(),
            progress=progress,
            groups_only=True,  # only the groups are reported
            sums=sums,
            collect=collect,
            rotations=settings.rotations,
            score=remote.verify if remote is not None else _verify_in_parts,
        )
        if collect is not None:
            collect["candidates"] = candidates
        verified = candidates.scores >= settings.min_similarity
        pair_a.append(candidates.first[verified])
        pair_b.append(candidates.second[verified])
        if remote is not None:  # a keeper check compares images of one component: only those in a pair
            paired = np.concatenate([*pair_a, *pair_b])
            check = remote.keeper_check(paired, hashes, variants, cascade, threads=jobs or default_jobs())
        else:
            check = verified_check(thumbs, hashes, variants, cascade, threads=jobs or default_jobs())
    else:
        for first, second, _ in hash_pairs:
            pair_a.append(first)
            pair_b.append(second)
        check = radius_check(hashes, variants, settings.threshold)
    progress.advance()
    progress.finish()
    if table is not None:
        byte_digests, pixel_digests, sizes = digests_and_sizes()
    order = {r.name: i for i, r in enumerate(roots)}
    return build_groups(
        records,
        order,
        np.concatenate(pair_a),
        np.concatenate(pair_b),
        byte_digests,
        pixel_digests,
        hashes,
        list(variants.values()),
        sizes,
        check,
    )


def _verify_in_parts(
    thumbs: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    codes: np.ndarray,
    settings: CascadeSettings,
    threads: int = 1,
    groups_only: bool = False,
) -> np.ndarray:
    """verify() of candidate pairs that touch more than VERIFY_IMAGES images, in parts of consecutive pairs
    (candidate_pairs sorts them by their first image) that touch at most that many each: the cascade holds ~2 KB
    per image it compares at once (2 GB at a million images), and an image in several parts is prepared in each
    (CPU for memory). With `groups_only`, a part skips the refinement of a pair only when that part's own
    verified pairs already join it, so some redundant pairs can score differently than in one call, as between
    the cluster's verification shards (docs/scale.md); the verified pairs join the same images, and the groups
    depend on nothing else (tests/test_parallel.py)."""
    involved = np.zeros(len(thumbs), dtype=bool)
    involved[first] = involved[second] = True
    if int(involved.sum()) <= VERIFY_IMAGES:
        return verify(thumbs, first, second, codes, settings, threads=threads, groups_only=groups_only)
    scores = np.empty(len(first), dtype=np.float32)
    seen = np.zeros(len(thumbs), dtype=bool)
    start, distinct, step = 0, 0, max(1, min(4096, VERIFY_IMAGES // 16))  # pairs looked at a time
    for lo in range(0, len(first), step):
        images = np.unique(np.concatenate([first[lo : lo + step], second[lo : lo + step]]))
        fresh = images[~seen[images]]
        if distinct + len(fresh) > VERIFY_IMAGES and lo > start:
            scores[start:lo] = verify(
                thumbs, first[start:lo], second[start:lo], codes[start:lo], settings, threads, groups_only
            )
            seen[:] = False
            start, distinct, fresh = lo, 0, images
        seen[fresh] = True
        distinct += len(fresh)
    scores[start:] = verify(thumbs, first[start:], second[start:], codes[start:], settings, threads, groups_only)
    return scores


def variant_hashes(
    fingerprints: Sequence[Fingerprint],
    thumbs: np.ndarray | None,
    settings: Settings,
    remote: RemoteThumbs | None = None,
):
    """The hashes of each image mirrored (--flips) and rotated (--rotations), by transform code (verify.transformed).
    `remote`: the thumbnails are there (the cluster's work directory), which computes the rotated hashes."""
    count = len(fingerprints)
    variants: dict[int, np.ndarray] = {}
    for code in transform_codes(settings.flips, settings.rotations):
        if code == 1 and isinstance(fingerprints, FingerprintTable):
            variants[code] = fingerprints.columns.flips
        elif code == 1:
            variants[code] = np.frombuffer(
                b"".join(f.flip_hashes[settings.method] for f in fingerprints), dtype=np.uint8
            ).reshape(count, 8)
        elif remote is not None:
            variants[code] = remote.variant_hashes(code)
        else:  # the thumbnail is the pHash input, so a rotated thumbnail gives the rotated image's pHash
            assert thumbs is not None
            variants[code] = np.concatenate(
                [phash(transformed(thumbs[lo : lo + 4096], code)) for lo in range(0, count, 4096)]
            ).reshape(count, 8)
    return variants


def indexed_groups(
    found: Fingerprinted,
    roots: Sequence[Root],
    settings: Settings,
    cache_file: str | os.PathLike | None,
    key: bytes,
    *,
    jobs: int | None = None,
    progress: ProgressSink | None = None,
    limit: float | None = incremental.MAX_CHANGED,
    state: incremental.SearchState | None = None,
    lazy_state: bool = False,
    before_write: Callable[[], None] | None = None,
    update_threads: int | None = None,
):
    """find_groups through the incremental index stored under `key` (or `state`, when already loaded): updated
    from it when few files changed (the same groups: tests/test_incremental.py), else a full search whose state
    is then kept. `lazy_state`: keep an updated state only once it differs from the stored one by more than a
    few files (STATE_SLACK): writing it costs more than updating from the stored one again. `before_write`: called
    before anything is written (it raises to stop the writes: listing.ListingMoved). `update_threads`: the
    update's threads (default `jobs`; incremental.update)."""
    records, fingerprints = found.records, found.fingerprints
    cache = open_cache(cache_file)
    if cache is None:
        if settings.verify:
            _fill_thumbs(found, None)
        return find_groups(records, fingerprints, roots, settings, jobs=jobs, progress=progress)
    with cache:
        if state is None:
            state = _stored_state(cache, key)
        facts = (
            fingerprints.facts
            if isinstance(fingerprints, (IndexedFingerprints, FingerprintTable))
            else incremental.Facts.of(fingerprints, settings.method)
        )
        hashes = facts.hashes

        def thumbs_of(rows: np.ndarray) -> np.ndarray:
            _fill_thumbs(found, cache, rows)
            return np.frombuffer(b"".join(fingerprints[i].thumb for i in rows.tolist()), dtype=np.uint8).reshape(
                -1, 32, 32
            )

        update = None
        if state is not None:
            if isinstance(fingerprints, IndexedFingerprints):
                old_of = fingerprints.old_of
            else:  # fingerprinted from the cache (--verify-content): an item whose bytes changed is a new one
                old_of = incremental.rows_in(state, records)
                if state.facts is not None:
                    held = np.nonzero(old_of >= 0)[0]
                    edited = (state.facts.byte_digests[old_of[held]] != facts.byte_digests[held]).any(axis=1)
                    old_of[held[edited]] = -1
            update = incremental.update(
                state,
                records,
                hashes,
                thumbs_of,
                settings,
                threads=jobs if update_threads is None else update_threads,
                limit=limit,
                facts=facts,
                old_of=old_of,
            )
        new_state = None
        equal = None  # the equal-digest pairs of the current items, kept beside a state written below
        if update is not None:
            digests_kept = isinstance(fingerprints, IndexedFingerprints)  # an unchanged item's digests: the state's
            groups, equal = regroup_update(
                state, update, cache, key, records, roots, facts, thumbs_of, settings, jobs, digests_kept
            )
        else:
            if isinstance(records, RecordTable):  # a full search reads every record, many times: make them once
                records = found.records = list(records)
            if settings.verify:
                _fill_thumbs(found, cache)
            collect: dict = {}
            groups = find_groups(records, fingerprints, roots, settings, jobs=jobs, progress=progress, collect=collect)
            cascade = CascadeSettings(neighbours=settings.neighbours, min_similarity=settings.min_similarity)
            new_state = incremental.SearchState.from_scan(records, collect, cascade, facts)
            if new_state is not None:  # the components and group ids an update starts from (regroup.py)
                equal = regroup.digest_pairs(facts)
                first, second = regroup.matched_pairs(new_state.verified[:, 0], new_state.verified[:, 1], facts, equal)
                new_state.components = regroup.components(len(records), first, second)
                index = {r.key: i for i, r in enumerate(records)}
                new_state.group_ids = regroup.group_ids(groups, lambda root, path: index[(root, path)], len(records))
                groups = regroup.Regrouped(groups, new_state.group_ids, None)
        # the unchanged items of an update were cacheable already: only the new ones are checked
        checked = (
            (new_state.paths if new_state is not None else [])
            if update is None
            else [records[i].abspath for i in np.nonzero(update.old_of < 0)[0].tolist()]
        )
        small = (
            update is not None
            and lazy_state
            and update.changed <= max(STATE_SLACK, STATE_SLACK_SHARE * len(records))
            # an older state gains the arrays it lacks (shift norms, list floors) once, then is kept
            and (state is None or (state.shift_norms is not None and state.floors is not None))
        )
        if isinstance(fingerprints, FingerprintTable):
            fingerprints.release_thumbs()  # the groups are built: 1 GB at a million, freed before the state is written
        if update is not None and not small:
            new_state = update.state  # made in the records' order only now that it is written
        if new_state is not None and not small and all(cacheable(p) for p in checked):
            if before_write is not None:
                before_write()
            if new_state.components is not None:
                new_state.groups_token = os.urandom(8)
                cache.store_result(_groups_key(key, new_state.groups_token), tuple(groups))
            incremental.store_state(cache, key, new_state)
            if equal is not None:
                regroup.keep_equal_pairs(new_state, cache, equal)
        return groups


def _groups_key(key: bytes, token: bytes) -> bytes:
    """Where the groups of an index state are kept (the token ties them to that one state)."""
    return b"groups\0" + key + token


def regroup_update(
    state: incremental.SearchState,
    update: incremental.Update,
    cache: FingerprintCache,
    key: bytes,
    records: Sequence[ImageRecord],
    roots: Sequence[Root],
    facts,  # incremental.Facts
    thumbs_of,
    settings: Settings,
    jobs: int | None,
    digests_kept: bool = False,
) -> tuple[tuple, dict[str, regroup.Pairs]]:
    """The groups after an incremental update: the old groups of the components that did not change, the others
    built again (regroup.py), and the equal-digest pairs of the current items; the new state gets its components
    and group ids. `digests_kept`: an unchanged item's digests are the state's (then the equal pairs are the
    state's, updated: regroup.updated_equal_pairs)."""
    count = len(records)
    equal = _equal_pairs_after(state, update, cache, facts) if digests_kept else None
    if equal is None:
        equal = regroup.digest_pairs(facts)
    first, second = regroup.matched_pairs(update.first, update.second, facts, equal)
    labels = regroup.components(count, first, second)
    old_groups = None
    if state.components is not None and state.group_ids is not None and state.groups_token:
        stored = cache.load_result(_groups_key(key, state.groups_token))
        old_groups = stored if isinstance(stored, tuple) else None
    if old_groups is None:  # no usable last groups: build every component
        rebuild, reused = labels >= 0, np.empty(0, dtype=np.int64)
    else:
        rebuild, reused = regroup.unchanged_components(labels, update.old_of, state.components)
    rows = np.nonzero(rebuild)[0]
    built = regroup.build_in(rows, records, roots, first, second, facts, thumbs_of, settings, jobs)
    kept_old = np.empty(0, dtype=np.int64)
    if old_groups is not None and len(reused):
        kept_old = np.unique(state.group_ids[_member_of(state.components, reused)])
        kept_old = kept_old[kept_old >= 0]
    kept = [old_groups[k] for k in kept_old.tolist()] if old_groups is not None else []
    groups, kept_places, built_places = regroup.placed(kept, built, roots)

    # Group ids of the current items: kept groups through the old indices, rebuilt ones by their rows.
    ids = np.full(count, -1, dtype=np.int64)
    if len(kept_old):
        remap = np.full(len(old_groups or ()) + 1, -1, dtype=np.int64)  # the last slot: an old item in no group
        remap[kept_old] = kept_places
        cur_of = np.full(len(state.paths), -1, dtype=np.int64)
        present = np.nonzero(update.old_of >= 0)[0]
        cur_of[update.old_of[present]] = present
        mapped = remap[state.group_ids]
        old_items = np.nonzero(mapped >= 0)[0]
        ids[cur_of[old_items]] = mapped[old_items]
    by_key = {records[i].key: i for i in rows.tolist()}
    for group, number in zip(built, built_places.tolist()):
        for member in group.members:
            ids[by_key[(member.root, member.path)]] = number
    change = None
    if old_groups is not None:  # the answer is stored as this change of the stored groups (_stored_answer)
        placed = tuple(groups[place] for place in built_places.tolist())
        change = GroupsChange(_groups_key(key, state.groups_token), tuple(kept_old.tolist()), placed)
    groups = regroup.Regrouped(groups, ids, change)
    update.components = labels
    update.group_ids = ids
    return groups, equal


def _member_of(labels: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """np.isin(labels, chosen) for labels -1 (none), 0, 1, ...: by a table of the labels (no sort of a million)."""
    table = np.zeros(max(int(labels.max(initial=-1)), int(chosen.max(initial=-1))) + 2, dtype=bool)
    table[chosen] = True
    return table[labels]


def _equal_pairs_after(
    state: incremental.SearchState, update: incremental.Update, cache: FingerprintCache, facts: incremental.Facts
) -> dict[str, regroup.Pairs] | None:
    """The equal-digest pairs of the current items from those of the state (None: it holds no digests)."""
    kept = regroup.state_equal_pairs(state, cache)
    if kept is None or state.facts is None:
        return None
    return {
        column: regroup.updated_equal_pairs(
            kept[column], getattr(state.facts, column), getattr(facts, column), update.old_of
        )
        for column in regroup.DIGEST_COLUMNS
    }


def _previous_listing(
    cache_path: str | os.PathLike | None, key: bytes, passed: Sequence[str], state_key: bytes | None = None
) -> tuple[dict[str, Seen] | None, dict[tuple[int, int], frozenset[str]]]:
    """list_files' `previous` and `passed` for a pre-commit check: the stored snapshot of the roots' folders,
    and the names of the passed files by their folder's identity (stat-ed even when the folder's mtime did not
    move: an edit in place). The incremental index's state under `state_key` is read ahead meanwhile."""
    cache = open_cache(cache_path)
    if cache is None:
        return None, {}
    with cache:
        if state_key is not None:
            cache.prefetch_arrays(state_key, incremental.READ_WHOLE)
        arrays = cache.load_snapshot(key)
        previous = load_snapshot(arrays) if arrays is not None else None
    names: dict[str, set[str]] = {}
    for path in passed:
        names.setdefault(os.path.dirname(path), set()).add(os.path.basename(path))
    asked = {}
    for folder, held in names.items():
        try:
            info = os.stat(folder)
        except OSError:
            continue
        asked[(info.st_dev, info.st_ino)] = frozenset(held)
    return previous, asked


def _stored_state(cache: FingerprintCache, key: bytes) -> incremental.SearchState | None:
    return incremental.load_state(cache, key)


class IndexedFingerprints(Sequence):
    """The fingerprints of a scan's records, backed by the index's arrays (incremental.Facts) for unchanged files:
    a Fingerprint object is made only for an item that is asked for (a commit's few files and their candidates),
    not for all of them (60,000 objects cost a hook more than a second)."""

    def __init__(
        self, facts: incremental.Facts, fresh: dict[int, Fingerprint], method: str, draft: bool, old_of: np.ndarray
    ) -> None:
        self.facts = facts
        self.old_of = old_of  # per item, its row in the index's state (-1: new or changed)
        self._made: dict[int, Fingerprint] = dict(fresh)
        self._method, self._draft = method, draft

    def __len__(self) -> int:
        return len(self.facts.hashes)

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - Sequence's signature
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        made = self._made.get(index)
        if made is None:
            facts = self.facts
            width, height = facts.sizes[index].tolist()
            made = Fingerprint(
                width,
                height,
                facts.byte_digests[index].tobytes(),
                facts.pixel_digests[index].tobytes(),
                {self._method: facts.hashes[index].tobytes()},
                {},
                b"",
                draft=self._draft,
            )
            self._made[index] = made
        return made


def _fingerprint_with_state(
    state: incremental.SearchState,
    records: Sequence[ImageRecord],
    method: str,
    *,
    jobs: int | None,
    cache: FingerprintCache | None,
    progress: ProgressSink | None,
    draft: bool,
) -> Fingerprinted:
    """Fingerprint the records the index does not hold unchanged (path, size and mtime_ns) as usual; the others
    come from its arrays, in the records' order (no cache row and no object per unchanged file)."""
    assert state.facts is not None
    old = incremental.rows_in(state, records)
    held = old >= 0
    todo = [records[i] for i in np.nonzero(~held)[0].tolist()]
    fresh = fingerprint_records(todo, (method,), jobs=jobs, cache=cache, progress=progress, draft=draft)
    fresh_row = {r.abspath: k for k, r in enumerate(fresh.records)}
    source = np.where(held, old, -1)  # rows of [state.facts; fresh facts]
    for i in np.nonzero(~held)[0].tolist():
        k = fresh_row.get(records[i].abspath)
        source[i] = -2 if k is None else len(state.paths) + k  # -2: skipped
    kept = np.nonzero(source != -2)[0]
    facts = incremental.Facts.patched(state.facts, incremental.Facts.of(fresh.fingerprints, method), source[kept])
    made = np.nonzero(source[kept] >= len(state.paths))[0]  # the rows of fresh fingerprints
    new_fingerprints = {
        k: fresh.fingerprints[r - len(state.paths)] for k, r in zip(made.tolist(), source[kept][made].tolist())
    }
    return Fingerprinted(
        _kept_records(records, kept),
        IndexedFingerprints(  # type: ignore[arg-type]
            facts, new_fingerprints, method, draft, np.where(source[kept] < len(state.paths), source[kept], -1)
        ),
        fresh.skipped,
        decoded=fresh.decoded,
        cache_hits=int(held.sum()) + fresh.cache_hits,
    )


def _kept_records(records: Sequence[ImageRecord], kept: np.ndarray) -> list[ImageRecord]:
    """The records at `kept` (those that fingerprinted): the table itself when none was skipped."""
    if isinstance(records, RecordTable):
        return records if len(kept) == len(records) else records.take(kept)  # type: ignore[return-value]
    return [records[i] for i in kept.tolist()]


def _fill_thumbs(found: Fingerprinted, cache: FingerprintCache | None, rows: np.ndarray | None = None) -> None:
    """Thumbnails of the given records (all when None) that came from the cache without them."""
    if isinstance(found.fingerprints, FingerprintTable):
        return  # fresh: every thumbnail is in the table
    chosen = range(len(found.records)) if rows is None else rows.tolist()
    missing = [i for i in chosen if not found.fingerprints[i].thumb]
    if not missing:
        return
    paths = [found.records[i].abspath for i in missing]
    thumbs = cache.thumbs(paths) if cache is not None else {}
    unread = [p for p in paths if p not in thumbs]
    if unread:  # not in the cache (or it failed mid-scan): decode those files again
        first = found.fingerprints[missing[0]]
        method = next(iter(first.hashes))
        fresh = fingerprint_paths(unread, (method,), first.draft)
        thumbs.update((p, f.thumb) for p, f in zip(unread, fresh) if not isinstance(f, str) and f.thumb)
    for i, path in zip(missing, paths):
        found.fingerprints[i].thumb = thumbs[path]


def find_semantic_groups(
    found: Fingerprinted,
    roots: Sequence[Root],
    settings: Settings,
    weights: embed.Weights,
    cache_path: str | os.PathLike | None,
    jobs: int | None = None,
    progress: ProgressSink | None = None,
    inputs: embed.Inputs | None = None,
):
    """--method cnn: exact and pixel pairs from the digests, near pairs from CNN embeddings (embed.py), joined
    into groups. Thumbnail verification does not apply to semantic pairs; max_distance stays the pHash distance.
    `inputs`: the images of records that are not files (embed.Inputs)."""
    records, fingerprints = found.records, found.fingerprints
    cache = open_cache(cache_path) if cache_path is not None else None
    try:
        embedded = embed.embed_records(records, weights, jobs=jobs, cache=cache, progress=progress, inputs=inputs)
    finally:
        if cache is not None:
            cache.close()
    near_a, near_b, _ = embed.similar_pairs(
        embedded.vectors, settings.min_similarity, valid=embedded.valid, threads=jobs
    )
    pair_a, pair_b = [near_a], [near_b]
    for digests in ([f.byte_digest for f in fingerprints], [f.pixel_digest for f in fingerprints]):
        a, b = _equal_pairs(digests)
        pair_a.append(a)
        pair_b.append(b)
    hashes = np.frombuffer(b"".join(f.hashes["phash"] for f in fingerprints), dtype=np.uint8).reshape(-1, 8)
    order = {r.name: i for i, r in enumerate(roots)}
    return build_groups(
        records,
        order,
        np.concatenate(pair_a),
        np.concatenate(pair_b),
        [f.byte_digest for f in fingerprints],
        [f.pixel_digest for f in fingerprints],
        hashes,
        [],
        [(f.width, f.height) for f in fingerprints],
        cosine_check(embedded.vectors, embedded.valid, hashes, settings.min_similarity),
    )


def _equal_pairs(digests: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (first, other) for every set of equal digests: O(n) by hash table."""
    first_seen: dict[bytes, int] = {}
    a, b = [], []
    for index, digest in enumerate(digests):
        owner = first_seen.setdefault(digest, index)
        if owner != index:
            a.append(owner)
            b.append(index)
    return np.array(a, dtype=np.int64), np.array(b, dtype=np.int64)
