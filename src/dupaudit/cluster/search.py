"""The exact hash search spread over a cluster: the database cut into a few large shards, every shard searched
against itself and against every later shard, each of those searches cut into pieces by the rows it probes from;
the pairs unioned.

Each pair of items is found by exactly one task, and each task runs the single-process exact search
(engine.search.pairs_within): a shard against itself with `owners` (only the pairs its probes from those rows
find: disjoint pieces of the one self-search), another shard's rows as queries. So the union is exactly the
single-process answer, pair for pair. Why few large shards: multi-index hashing pays per probe, not per hash
indexed, so every extra database shard makes each hash probe one more table; pieces of one self-search probe
the single-process number of times in all (each task rebuilds the shard's tables, a sort: seconds).
The driver holds the hashes (8 bytes an item) and the pairs; each task holds one or two shards.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..engine.search import pairs_within

if TYPE_CHECKING:
    from distributed import Client

SHARD_ROWS = 4_000_000  # hashes per database shard: its block tables take ~300 MB on a worker
TASKS_PER_WORKER = 2  # pieces enough for every worker to have two tasks: one slow task does not idle the rest


def shard_bounds(count: int, shards: int) -> list[tuple[int, int]]:
    """[start, stop) of `shards` nearly equal contiguous shards of `count` rows."""
    shards = max(1, min(shards, count))
    edges = [count * i // shards for i in range(shards + 1)]
    return [(edges[i], edges[i + 1]) for i in range(shards)]


def default_shards(count: int) -> int:
    """As few database shards as the memory of one task allows."""
    return max(1, math.ceil(count / SHARD_ROWS))


def default_pieces(shards: int, workers: int, queries: bool = False) -> int:
    """Pieces per search so that there are about TASKS_PER_WORKER tasks per worker."""
    searches = shards * shards if queries else shards * (shards + 1) // 2
    return max(1, math.ceil(TASKS_PER_WORKER * workers / searches))


def _shard(rows: np.ndarray) -> np.ndarray:
    return rows


def _task(
    db: np.ndarray,
    queries: np.ndarray | None,
    radius: int,
    db_start: int,
    query_start: int,
    piece: tuple[int, int],
    distinct: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One search with global row numbers: (query row, db row, distance). Without queries: the shard against
    itself, the pairs found from its rows piece[0] .. piece[1]-1. With queries: rows piece of them against the
    shard (`distinct`: they are the same rows' other hashes, so a row is not paired with itself)."""
    lo, hi = piece
    if queries is None:
        first, second, distance = pairs_within(db, radius, threads=1, owners=(lo, hi))
        return first + db_start, second + db_start, distance
    first, second, distance = pairs_within(db, radius, queries=queries[lo:hi], threads=1, same_rows=False)
    first, second = first + query_start + lo, second + db_start
    if distinct:
        keep = first != second
        first, second, distance = first[keep], second[keep], distance[keep]
    return first, second, distance


def sharded_pairs_within(
    client: Client,
    hashes: np.ndarray,
    radius: int,
    queries: np.ndarray | None = None,
    *,
    shards: int | None = None,
    pieces: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """engine.search.pairs_within on a cluster: the same pairs, sorted the same way.

    Without queries: every unordered pair i < j of rows of `hashes` within `radius`. With queries (the mirrored
    hashes of the same rows): every (query row i, hash row j), i != j. `shards`, `pieces`: override the database
    shards and the pieces each search is cut into (default_shards, default_pieces)."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, 8)
    count = len(hashes)
    empty = np.empty(0, dtype=np.int64)
    if count == 0 or (queries is None and count < 2):
        return empty, empty, empty
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    bounds = shard_bounds(count, shards or default_shards(count))
    cuts = pieces or default_pieces(len(bounds), workers, queries is not None)
    # each shard is a task of its own (its data in the task, held by the scheduler), not scattered data: a worker
    # that dies with a shard in memory costs a recomputation, where scattered data would be lost for good
    db = [client.submit(_shard, hashes[a:b], pure=False) for a, b in bounds]
    futures = []
    if queries is None:
        for i, (a_i, b_i) in enumerate(bounds):
            for piece in shard_bounds(b_i - a_i, cuts):
                futures.append(client.submit(_task, db[i], None, radius, a_i, a_i, piece, False, pure=False))
            for j in range(i + 1, len(bounds)):
                # shard i's hashes as queries against shard j: every pair (row of i, row of j), i < j
                for piece in shard_bounds(b_i - a_i, cuts):
                    futures.append(
                        client.submit(_task, db[j], db[i], radius, bounds[j][0], a_i, piece, False, pure=False)
                    )
    else:
        queries = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, 8)
        query_shards = [client.submit(_shard, queries[a:b], pure=False) for a, b in bounds]
        for i, (a_i, b_i) in enumerate(bounds):
            for j, (a_j, _) in enumerate(bounds):
                for piece in shard_bounds(b_i - a_i, cuts):
                    futures.append(
                        client.submit(_task, db[j], query_shards[i], radius, a_j, a_i, piece, i == j, pure=False)
                    )
    parts = client.gather(futures)
    first = np.concatenate([p[0] for p in parts])
    second = np.concatenate([p[1] for p in parts])
    distance = np.concatenate([p[2] for p in parts])
    order = np.lexsort((second, first))
    return first[order], second[order], distance[order]
