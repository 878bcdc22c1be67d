"""DaskRunner: the stages the scan spreads over a cluster (fingerprinting, the exact hash search, the thumbnail
verification: thumbs.py); the driver proposes neighbours, groups and analyses as in the single-process scan, on
the same values."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..engine.cache import FingerprintCache, cacheable
from ..engine.fingerprint import Fingerprint
from ..engine.model import ImageRecord
from ..engine.pipeline import Fingerprinted, aligned
from ..engine.progress import NullProgress, ProgressSink, status
from .partitions import (
    SLICE_RECORDS,
    Partition,
    compute_partition,
    compute_source_partition,
    plan_partitions,
    read_partition,
    read_source_partition,
    source_partition_url,
    table_exists,
)
from .search import sharded_pairs_within
from .thumbs import ThumbTable, write_cached_thumbs

if TYPE_CHECKING:
    from distributed import Client

WORKDIR_ENV = "DUPAUDIT_WORKDIR"  # where the fingerprint table goes when --workdir is not given


def default_workdir() -> str:
    return os.environ.get(WORKDIR_ENV) or os.path.join(tempfile.gettempdir(), "dupaudit-work")


class DaskRunner:
    """Runs a scan's fingerprinting and hash search on `client`'s cluster.

    `workdir`: where the Parquet partitions of the fingerprint table are written (every worker must reach it:
    a shared filesystem or an fsspec URL such as s3://bucket/prefix). `stats` counts the partitions computed
    and reused in the last fingerprinting (a resumed run computes only the missing ones)."""

    def __init__(
        self,
        client: Client,
        workdir: str | None = None,
        *,
        storage_options: dict | None = None,
        slice_records: int = SLICE_RECORDS,
        shards: int | None = None,
    ) -> None:
        self.client = client
        self.workdir = str(workdir or default_workdir())
        self.storage_options = dict(storage_options or {})
        self.slice_records = slice_records
        self.shards = shards
        self.stats: dict[str, int] = {}

    @property
    def dashboard(self) -> str | None:
        return getattr(self.client, "dashboard_link", None)

    def fingerprint_records(
        self,
        records: Sequence[ImageRecord],
        methods: tuple[str, ...],
        *,
        jobs: int | None = None,
        cache: FingerprintCache | None = None,
        progress: ProgressSink | None = None,
        draft: bool = False,
        keep_thumbs: bool = True,
    ) -> Fingerprinted:
        """pipeline.fingerprint_records with the decoding done by the cluster's workers.

        `keep_thumbs=False`: the fingerprints come without their thumbnails, which stay in the work directory
        (found.remote, a ThumbTable: the workers verify there); rows from the driver's cache get a partition."""
        from distributed import as_completed

        progress = progress or NullProgress()
        cached = (
            cache.lookup(((r.abspath, r.size, r.mtime_ns) for r in records if cacheable(r.abspath)), methods, draft)
            if cache
            else {}
        )
        todo = [r for r in records if r.abspath not in cached]
        partitions = plan_partitions(todo, methods, draft, self.workdir, self.slice_records)
        where = f" ({self.dashboard})" if self.dashboard else ""
        progress.start(f"fingerprinting on the cluster{where}", len(todo))
        import fsspec

        fs = fsspec.core.url_to_fs(self.workdir, **self.storage_options)[0]
        # partitions already in the work directory (an earlier, interrupted or smaller run) are read, not redone
        done = [p for p in partitions if fs.exists(fsspec.core.strip_protocol(p.url))]
        missing = [p for p in partitions if p not in set(done)]
        futures = {
            self.client.submit(compute_partition, p, methods, draft, self.storage_options, pure=False): p
            for p in missing
        }
        fresh: dict[str, Fingerprint | str] = {}
        self.stats = {"computed": 0, "reused": len(done), "partitions": len(partitions)}
        urls = [p.url for p in partitions]
        index = {p.url: k for k, p in enumerate(partitions)}
        where: dict[str, tuple[int, int]] = {}  # abspath -> (partition, row in it): where its thumbnail is

        def take(partition: Partition) -> None:
            values = read_partition(partition.url, methods, self.storage_options)
            fresh.update(values)
            if cache is not None:
                cache.store(
                    (path, size, mtime, values[path]) for path, size, mtime in partition.files if cacheable(path)
                )
            if not keep_thumbs:
                for row, (path, _, _) in enumerate(partition.files):
                    where[path] = (index[partition.url], row)
                    if not isinstance(values[path], str):
                        values[path].thumb = b""  # type: ignore[union-attr]
            progress.advance(len(partition.files))

        status(progress, f"{len(done):,}/{len(partitions):,} tasks")
        for partition in done:
            take(partition)
        for number, future in enumerate(as_completed(futures, loop=self.client.loop) if futures else (), 1):
            self.stats[future.result()] += 1  # "computed", or "reused" when a retried task found its file
            take(futures[future])
            status(progress, f"{len(done) + number:,}/{len(partitions):,} tasks")
        progress.finish()
        if not keep_thumbs and cache is not None and cached:
            good = [(path, row.fingerprint) for path, row in cached.items() if row.error is None]
            for start in range(0, len(good), self.slice_records):
                chunk = good[start : start + self.slice_records]
                urls.append(write_cached_thumbs(chunk, cache, self.workdir, self.storage_options))
                where.update((path, (len(urls) - 1, row)) for row, (path, _) in enumerate(chunk))
        found = aligned(records, cached, fresh, decoded=len(todo))
        if not keep_thumbs:
            located = np.array([where[r.abspath] for r in found.records], dtype=np.int32).reshape(-1, 2)
            found.remote = ThumbTable(
                self.client, urls, located[:, 0].copy(), located[:, 1].copy(), self.storage_options
            )
        return found

    def map_tasks(self, function: Callable, *iterables: Sequence) -> Iterator:
        """function over the iterables' items as cluster tasks (one source partition each), results in order."""
        futures = self.client.map(function, *iterables, pure=False)
        return (future.result() for future in futures)

    def fingerprint_partitions(
        self,
        function: Callable,
        sources: Sequence,
        partitions: Sequence,
        methods: Sequence[tuple[str, ...]],
        drafts: Sequence[bool],
        cache_paths: Sequence[str | None],
    ) -> Iterator:
        """map_tasks for engine.sources.scanning.fingerprint_sources (the same arguments; `function` is
        fingerprint_partition): one task per source partition, writing its fingerprint table to the work directory;
        a partition already there is read, not recomputed. Results in task order, each item with where its
        thumbnail is (ItemResult.where: the workers verify there, thumbs.py). `stats` as fingerprint_records'."""
        urls = [
            source_partition_url(s, p, m, d, self.workdir) for s, p, m, d in zip(sources, partitions, methods, drafts)
        ]
        done = [url is not None and table_exists(url, self.storage_options) for url in urls]
        self.stats = {"computed": 0, "reused": sum(done), "partitions": len(urls)}
        futures = [
            None
            if known
            else self.client.submit(
                compute_source_partition, function, s, p, m, d, url, self.workdir, self.storage_options, pure=False
            )
            for known, url, s, p, m, d in zip(done, urls, sources, partitions, methods, drafts)
        ]
        for url, future, m in zip(urls, futures, methods):
            if future is not None:
                state, url = future.result()  # "reused" when a retried task found its table
                self.stats[state] += 1
            yield read_source_partition(url, m, self.storage_options)

    def thumb_table(self, places: Sequence[tuple[str, int]]) -> ThumbTable:
        """The thumbnails at (table URL, row) per scanned image, as a ThumbTable (the workers verify there)."""
        urls = list(dict.fromkeys(url for url, _ in places))
        index = {url: k for k, url in enumerate(urls)}
        part = np.array([index[url] for url, _ in places], dtype=np.int32)
        pos = np.array([row for _, row in places], dtype=np.int32)
        return ThumbTable(self.client, urls, part, pos, self.storage_options)

    def pairs_within(
        self, hashes: np.ndarray, radius: int, queries: np.ndarray | None = None, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """engine.search.pairs_within, sharded over the workers (the same pairs)."""
        return sharded_pairs_within(self.client, hashes, radius, queries, shards=self.shards)
