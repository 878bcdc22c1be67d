"""The exact hash search sharded over a cluster: the database cut into shards, every shard searched against
itself and against every later shard (its hashes broadcast as queries), the pairs unioned.

Each pair of items lies in exactly one (shard, shard) task, and each task runs the single-process exact search
(engine.search.pairs_within), so the union is exactly the single-process answer, pair for pair. The driver
holds the hashes (8 bytes an item) and the pairs; each task holds two shards.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..engine.search import pairs_within

if TYPE_CHECKING:
    from distributed import Client

SHARD_ROWS = 500_000  # hashes per shard: one (shard, shard) search takes seconds and ~100 MB on a worker


def shard_bounds(count: int, shards: int) -> list[tuple[int, int]]:
    """[start, stop) of `shards` nearly equal contiguous shards of `count` rows."""
    shards = max(1, min(shards, count))
    edges = [count * i // shards for i in range(shards + 1)]
    return [(edges[i], edges[i + 1]) for i in range(shards)]


def default_shards(count: int, workers: int) -> int:
    """At least one shard per worker (every worker busy), more when the shards would be too large."""
    return max(1, workers, math.ceil(count / SHARD_ROWS))


def _shard(rows: np.ndarray) -> np.ndarray:
    return rows


def _task(
    db: np.ndarray, queries: np.ndarray | None, radius: int, db_start: int, query_start: int, same_rows: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One (query shard, db shard) search with global row numbers: (query row, db row, distance)."""
    if queries is None:  # a shard against itself: unordered pairs i < j
        first, second, distance = pairs_within(db, radius, threads=1)
        return first + db_start, second + db_start, distance
    first, second, distance = pairs_within(db, radius, queries=queries, threads=1, same_rows=same_rows)
    return first + query_start, second + db_start, distance


def sharded_pairs_within(
    client: Client,
    hashes: np.ndarray,
    radius: int,
    queries: np.ndarray | None = None,
    *,
    shards: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """engine.search.pairs_within on a cluster: the same pairs, sorted the same way.

    Without queries: every unordered pair i < j of rows of `hashes` within `radius`. With queries (the mirrored
    hashes of the same rows): every (query row i, hash row j), i != j."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, 8)
    count = len(hashes)
    empty = np.empty(0, dtype=np.int64)
    if count == 0 or (queries is None and count < 2):
        return empty, empty, empty
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    bounds = shard_bounds(count, shards or default_shards(count, workers))
    # each shard is a task of its own (its data in the task, held by the scheduler), not scattered data: a worker
    # that dies with a shard in memory costs a recomputation, where scattered data would be lost for good
    db = [client.submit(_shard, hashes[a:b], pure=False) for a, b in bounds]
    futures = []
    if queries is None:
        for i, (a_i, _) in enumerate(bounds):
            futures.append(client.submit(_task, db[i], None, radius, a_i, a_i, True, pure=False))
            for j in range(i + 1, len(bounds)):
                # shard i's hashes as queries against shard j: every pair (row of i, row of j), i < j
                futures.append(client.submit(_task, db[j], db[i], radius, bounds[j][0], a_i, False, pure=False))
    else:
        queries = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, 8)
        query_shards = [client.submit(_shard, queries[a:b], pure=False) for a, b in bounds]
        for i, (a_i, _) in enumerate(bounds):
            for j, (a_j, _) in enumerate(bounds):
                futures.append(client.submit(_task, db[j], query_shards[i], radius, a_j, a_i, i == j, pure=False))
    parts = client.gather(futures)
    first = np.concatenate([p[0] for p in parts])
    second = np.concatenate([p[1] for p in parts])
    distance = np.concatenate([p[2] for p in parts])
    order = np.lexsort((second, first))
    return first[order], second[order], distance[order]
