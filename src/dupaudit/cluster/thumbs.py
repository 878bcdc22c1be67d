"""The verification thumbnails stay in the fingerprint table in the work directory: the workers read the ones
their task needs and run the single-process cascade (engine.verify) there; the driver reads only the thumbnails of
images that are in a pair (the keeper checks of the grouping), never all of them (1 KB an image: 100 GB at 100M).

A task verifies the candidate pairs between two shards of rows (VERIFY_ROWS each), so it reads at most the
partitions of two shards. Each pair's score is the single-process score (the same function on the same
thumbnails); inside a task, a band pair whose images its verified pairs already join is not refined, as in the
single-process scan, so the verified pairs may differ in such redundant pairs but join the same images, and the
groups (built from what the pairs join) are the same.
"""

from __future__ import annotations

import hashlib
import io
import math
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..engine.hashing import THUMB_SIZE, phash
from ..engine.links import verified_check
from ..engine.verify import CascadeSettings, block_sums, transformed, verify
from .search import shard_bounds

if TYPE_CHECKING:
    from distributed import Client

    from ..engine.cache import FingerprintCache
    from ..engine.fingerprint import Fingerprint

VERIFY_ROWS = 100_000  # rows per verification shard: a task reads the thumbnails of at most two (~200 MB)


def read_thumbs(urls: Sequence[str], part: np.ndarray, pos: np.ndarray, storage_options: dict) -> np.ndarray:
    """The thumbnails of rows at (partition part[k], position pos[k]), (len(part), 32, 32) uint8: each partition
    read once, its thumbnail column only."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    result = np.empty((len(part), THUMB_SIZE, THUMB_SIZE), dtype=np.uint8)
    for index in np.unique(part).tolist():
        chosen = np.nonzero(part == index)[0]
        with fsspec.open(urls[index], "rb", **storage_options) as handle:
            column = pq.read_table(handle, columns=["thumb"]).column("thumb")
        taken = column.take(pa.array(pos[chosen])).to_pylist()
        result[chosen] = np.frombuffer(b"".join(taken), dtype=np.uint8).reshape(-1, THUMB_SIZE, THUMB_SIZE)
    return result


def _verify_task(
    urls: Sequence[str],
    part: np.ndarray,
    pos: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    codes: np.ndarray,
    settings: CascadeSettings,
    groups_only: bool,
    storage_options: dict,
) -> np.ndarray:
    """One shard pair's candidates, scored on the worker (first/second index the rows given by part/pos)."""
    thumbs = read_thumbs(urls, part, pos, storage_options)
    return verify(thumbs, first, second, codes, settings, threads=1, groups_only=groups_only)


def _variant_task(url: str, code: int, storage_options: dict) -> np.ndarray:
    """The hashes of one partition's images under a transform (--rotations), in the partition's row order."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(url, "rb", **storage_options) as handle:
        column = pq.read_table(handle, columns=["thumb"]).column("thumb").to_pylist()
    present = [i for i, thumb in enumerate(column) if thumb]  # a bad file's row has none
    result = np.zeros((len(column), 8), dtype=np.uint8)
    if present:
        thumbs = np.frombuffer(b"".join(column[i] for i in present), dtype=np.uint8)
        result[present] = phash(transformed(thumbs.reshape(-1, THUMB_SIZE, THUMB_SIZE), code)).reshape(-1, 8)
    return result


@dataclass
class ThumbTable:
    """Where each scanned image's thumbnail is: urls[part[row]], at position pos[row] (rows: the scan's aligned
    records). What pipeline.find_groups calls instead of touching the thumbnails itself (pipeline.RemoteThumbs)."""

    client: Client
    urls: list[str]
    part: np.ndarray  # int32 per row
    pos: np.ndarray  # int32 per row
    storage_options: dict

    def variant_hashes(self, code: int) -> np.ndarray:
        """phash of every image under transform `code`, computed by the workers partition by partition."""
        futures = [self.client.submit(_variant_task, url, code, self.storage_options, pure=False) for url in self.urls]
        by_partition = self.client.gather(futures)
        result = np.empty((len(self.part), 8), dtype=np.uint8)
        for index, hashes in enumerate(by_partition):
            rows = np.nonzero(self.part == index)[0]
            result[rows] = hashes[self.pos[rows]]
        return result

    def verify(
        self,
        thumbs: None,
        first: np.ndarray,
        second: np.ndarray,
        codes: np.ndarray,
        settings: CascadeSettings,
        threads: int = 1,
        groups_only: bool = False,
    ) -> np.ndarray:
        """engine.verify.verify's drop-in: the candidate pairs scored by the workers, one task per shard pair."""
        scores = np.full(len(first), -1.0, dtype=np.float32)
        if not len(first):
            return scores
        count = len(self.part)
        workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        bounds = shard_bounds(count, max(workers, math.ceil(count / VERIFY_ROWS)))
        edges = np.array([a for a, _ in bounds[1:]], dtype=np.int64)
        shard_a, shard_b = np.searchsorted(edges, first, "right"), np.searchsorted(edges, second, "right")
        key = np.minimum(shard_a, shard_b) * len(bounds) + np.maximum(shard_a, shard_b)
        order = np.argsort(key, kind="stable")
        starts = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
        futures, chosen = [], []
        for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), len(order)]):
            pairs = order[lo:hi]
            rows, local = np.unique(np.concatenate([first[pairs], second[pairs]]), return_inverse=True)
            used, part = np.unique(self.part[rows], return_inverse=True)  # only the partitions this task reads
            futures.append(
                self.client.submit(
                    _verify_task,
                    [self.urls[k] for k in used.tolist()],
                    part,
                    self.pos[rows],
                    local[: len(pairs)],
                    local[len(pairs) :],
                    np.asarray(codes)[pairs],
                    settings,
                    groups_only,
                    self.storage_options,
                    pure=False,
                )
            )
            chosen.append(pairs)
        for pairs, part_scores in zip(chosen, self.client.gather(futures)):
            scores[pairs] = part_scores
        return scores

    def keeper_check(
        self,
        rows: np.ndarray,
        hashes: np.ndarray,
        variants: dict[int, np.ndarray],
        cascade: CascadeSettings,
        threads: int = 1,
    ):
        """links.verified_check over the images in `rows` (those in a pair: the only ones a keeper check compares),
        their thumbnails read here, compactly; the same decisions and scores as over every thumbnail."""
        rows = np.unique(rows).astype(np.int64)
        thumbs = read_thumbs(self.urls, self.part[rows], self.pos[rows], self.storage_options)
        inner = verified_check(thumbs, hashes[rows], {c: v[rows] for c, v in variants.items()}, cascade, threads)

        def check(first: np.ndarray, second: np.ndarray):
            return inner(np.searchsorted(rows, first), np.searchsorted(rows, second))

        return check


def write_cached_thumbs(
    items: Sequence[tuple[str, Fingerprint]], cache: FingerprintCache, workdir: str, storage_options: dict
) -> str:
    """Rows the driver took from its fingerprint cache, which the workers cannot read: their thumbnails written to
    a partition of their own (named by the files), their block sums (descriptors) set on the fingerprints.
    Returns the partition's URL; row k of it is items[k]."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [path for path, _ in items]
    thumbs = cache.thumbs(paths)
    missing = [p for p in paths if p not in thumbs]
    if missing:  # not in the cache any more: decode those files again, as the single-process scan does
        from ..engine.fingerprint import fingerprint_paths

        method = next(iter(items[0][1].hashes))
        fresh = fingerprint_paths(missing, (method,), items[0][1].draft)
        thumbs.update((p, f.thumb) for p, f in zip(missing, fresh) if not isinstance(f, str) and f.thumb)
    stack = np.frombuffer(b"".join(thumbs[p] for p in paths), dtype=np.uint8).reshape(-1, THUMB_SIZE, THUMB_SIZE)
    for (_, fingerprint), sums in zip(items, block_sums(stack)):
        fingerprint.blocks = sums.tobytes()
    digest = hashlib.blake2b("\n".join(paths).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
    url = workdir.rstrip("/") + f"/thumbs/cached-{digest}.parquet"
    fs, path = fsspec.core.url_to_fs(url, **storage_options)
    buffer = io.BytesIO()
    pq.write_table(pa.table({"abspath": paths, "thumb": [thumbs[p] for p in paths]}), buffer)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as handle:
        handle.write(buffer.getvalue())
    return url
