"""All pairs of 64-bit hashes within a Hamming radius, with faiss's binary index (exact)."""

from __future__ import annotations

import numpy as np

_QUERY_CHUNK = 65536  # bounds the memory of one range_search result


def pairs_within(hashes: np.ndarray, radius: int, queries: np.ndarray | None = None,
                 threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j, distance) with distance <= radius.

    Without queries: every unordered pair of rows of `hashes` once, i < j. With queries (for example the
    mirrored hashes of the same rows): every (query row i, hash row j) with i != j, as given.
    """
    import faiss  # imported here so that `dupaudit --help` and the pre-commit hook start fast

    if threads:
        faiss.omp_set_num_threads(threads)
    hashes = np.ascontiguousarray(hashes, dtype=np.uint8)
    empty = np.empty(0, dtype=np.int64)
    if len(hashes) < 2 and queries is None:
        return empty, empty, empty
    index = faiss.IndexBinaryFlat(64)
    index.add(hashes)
    self_search = queries is None
    query_rows = hashes if self_search else np.ascontiguousarray(queries, dtype=np.uint8)
    firsts, seconds, distances = [], [], []
    for start in range(0, len(query_rows), _QUERY_CHUNK):
        chunk = query_rows[start:start + _QUERY_CHUNK]
        # faiss returns distances strictly below the radius it is given.
        lims, found_d, found_i = index.range_search(chunk, radius + 1)
        owners = np.repeat(np.arange(start, start + len(chunk), dtype=np.int64), np.diff(lims).astype(np.int64))
        found_i = found_i.astype(np.int64)
        keep = owners < found_i if self_search else owners != found_i
        firsts.append(owners[keep])
        seconds.append(found_i[keep])
        distances.append(found_d[keep].astype(np.int64))
    if not firsts:
        return empty, empty, empty
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(distances)


def brute_force_pairs(hashes: np.ndarray, radius: int) -> set[tuple[int, int, int]]:
    """Reference answer for tests: every pair compared with numpy."""
    from .hashing import hamming

    found = set()
    for i in range(len(hashes)):
        d = hamming(hashes[i][None, :], hashes[i + 1:])
        for offset in np.nonzero(d <= radius)[0]:
            found.add((i, i + 1 + int(offset), int(d[offset])))
    return found
