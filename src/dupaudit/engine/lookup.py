"""A stored search state queried by new items without a pass over the stored ones: the candidates of
`dupaudit scan NEW --against-index` above verify.APPROXIMATE_FROM items, where the full scan's neighbour search
is approximate (an inverted-file index, verify.nearest) and the query's is approximate the same way.

Its structures lie in the state's folder (incremental.load_state), built once (by `dupaudit index build` and
`index update`, or by the first query of an index made before them) and memory-mapped after (faiss's
IO_FLAG_MMAP_IFC): loading them reads nothing.

- An IVF index of the stored descriptors, searched with each new item's query vectors (its descriptor and its
  half shifts: verify.query_segments): the new items' neighbour lists, as the full scan's search would make them.
- An IVF index of each half shift of the stored descriptors, range-searched with the new items' descriptors:
  the stored items whose list a new item enters. Only a pair at least min_descriptor_similarity alike becomes a
  candidate, and only such an entry can push a candidate out of a list, so the range is that similarity.
- The pairs by hash radius (faiss binary range search over the stored hashes) and equal digests.

Not followed, unlike an update (incremental.update): a stored pair that a new item pushes out of a neighbour
list stays (a full scan of both might lose it if nothing else proposes it): rare, and within the approximation.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .cache import FingerprintCache
from .incremental import SearchState, _hash_pairs
from .verify import (
    _PROBES,
    _SHIFTED_PROBES,
    HALF_SHIFTS,
    CascadeSettings,
    half_shifted,
    lists_from_centroids,
    query_segments,
    trained_lists,
)

_PLAIN = "ivf.faiss"


def _file(shift: tuple[int, int] | None) -> str:
    return _PLAIN if shift is None else f"ivf-shift{shift[0]:+d}{shift[1]:+d}.faiss"


# What a query reads nearly whole, scattered over memory-mapped files (its probes reach most lists of each of the
# five indexes, and the hash radius every stored hash): read ahead when it starts (index.query)
QUERY_FILES = (*(_file(shift) for shift in (None, *HALF_SHIFTS)), "hashes.npy", "components.npy")


def prepare(state: SearchState, cache: FingerprintCache, threads: int | None = None) -> dict | None:
    """The state's IVF indexes by shift (None: the plain descriptors), memory-mapped from its folder, built and
    kept there first when missing; None when the state has no folder (it could not be written)."""
    import faiss

    folder = state.folder
    if folder is None:
        return None
    if threads:
        faiss.omp_set_num_threads(threads)
    shifts: list[tuple[int, int] | None] = [None, *HALF_SHIFTS]
    if not all((folder / _file(s)).exists() for s in shifts):
        _build(state, cache, folder, shifts)
    for column in ("byte_digests", "pixel_digests"):
        digest_order(state, column, cache)
    try:
        indexes = {s: faiss.read_index(str(folder / _file(s)), faiss.IO_FLAG_MMAP_IFC) for s in shifts}
    except RuntimeError:  # damaged or half-removed: the caller searches without them
        return None
    for index in indexes.values():
        faiss.extract_index_ivf(index).nprobe = _PROBES
    return indexes


def _build(state: SearchState, cache: FingerprintCache, folder: Path, shifts: list) -> None:
    """One k-means (verify.nearest's lists) on the descriptors routes all five indexes: the half-shifted
    descriptors are unit vectors of the same space, and one training costs as much as the five fillings.
    A full scan's state keeps its lists' centroids and every item's list per search (SearchState.routes): the
    indexes are then filled without training or routing (at a million: 6 s of k-means and 7 s of routing per
    index saved), the same indexes byte for byte."""
    import faiss

    desc = np.ascontiguousarray(state.desc, dtype=np.float32)
    count = len(desc)
    routes = state.routes
    if routes is not None and state.centroids is not None and routes.shape == (count, len(shifts)):
        trained = lists_from_centroids(np.asarray(state.centroids))
    else:
        trained, routes = trained_lists(desc), None  # verify.nearest's lists
    for column, shift in enumerate(shifts):
        index = faiss.clone_index(trained)
        for lo in range(0, count, 1 << 17):  # bounded memory: the shifted copy a block at a time
            block = desc[lo : lo + (1 << 17)]
            vectors = block if shift is None else half_shifted(block, shift)
            if routes is None:
                index.add(vectors)
            else:
                lists = np.ascontiguousarray(routes[lo : lo + len(block), column], dtype=np.int64)
                faiss.extract_index_ivf(index).add_core(
                    len(vectors), faiss.swig_ptr(vectors), None, faiss.swig_ptr(lists)
                )
        cache.add_to_state(folder, _file(shift), faiss.serialize_index(index).tobytes())


def candidates(
    state: SearchState,
    indexes: dict,
    new_desc: np.ndarray,
    all_hashes: np.ndarray,
    cascade: CascadeSettings,
    radius: int,
    threads: int | None,
) -> set[tuple[int, int]]:
    """The candidate pairs (i < j, stored items 0..n-1, new ones n..n+m-1) that touch a new item: its own
    neighbour lists (over stored and new items), the stored lists it enters, the hash radius (`all_hashes`:
    stored then new). Equal digests are matched by the grouping (regroup.matched_pairs)."""
    import faiss

    count, fresh = len(state.desc), len(new_desc)
    new_ids = np.arange(count, count + fresh, dtype=np.int64)
    floor = cascade.min_descriptor_similarity
    pairs: set[tuple[int, int]] = set()
    start = 0
    for shift, k in query_segments(cascade):
        lists = slice(start, start + k + 1)
        start += k + 1
        queries = new_desc if shift is None else half_shifted(new_desc, shift)
        # the new items' own lists: the best k + 1 of the stored items (IVF, probed as the full scan's) and the
        # new ones (exact)
        plain = faiss.extract_index_ivf(indexes[None])
        plain.nprobe = _PROBES if shift is None else _SHIFTED_PROBES
        stored_sims, stored_ids = indexes[None].search(queries, min(k + 1, count))
        new_sims = queries @ new_desc.T
        near_new = np.arange(fresh)[None, :]
        if fresh > k + 1:  # only the best k + 1 new items of each row can make its list
            near_new = np.sort(np.argpartition(-new_sims, k, axis=1)[:, : k + 1], axis=1)
            new_sims = np.take_along_axis(new_sims, near_new, axis=1)
        sims = np.concatenate([stored_sims, new_sims], axis=1)
        ids = np.concatenate([stored_ids.astype(np.int64), np.broadcast_to(new_ids[near_new], new_sims.shape)], axis=1)
        sims[ids < 0] = -np.inf
        best = np.argsort(-sims, axis=1, kind="stable")[:, : k + 1]
        chosen_ids = np.take_along_axis(ids, best, axis=1)
        chosen_sims = np.take_along_axis(sims, best, axis=1)
        owners = np.broadcast_to(new_ids[:, None], chosen_ids.shape)
        keep = (chosen_ids >= 0) & (chosen_ids != owners) & (chosen_sims >= floor)
        pairs.update(_unordered(owners[keep], chosen_ids[keep]))
        # the stored lists a new item enters: those items' query vectors at least `floor` alike (range search)
        lims, found_sims, found = indexes[shift].range_search(new_desc, floor - 1e-4)
        owners = np.repeat(new_ids, np.diff(lims).astype(np.int64))
        pairs.update(_entering(state, lists, found.astype(np.int64), owners, found_sims, floor))
    if fresh:
        pairs |= _hash_pairs(all_hashes, new_ids, radius, threads)
    return pairs


def _entering(
    state: SearchState, lists: slice, stored: np.ndarray, new: np.ndarray, sims: np.ndarray, floor: float
) -> list[tuple[int, int]]:
    """The pairs (stored, new) for which the new item is among the best entries of the stored item's list
    `lists` once the new items are merged into it (incremental._merge_new's rule, old entries first among
    equals), and at least `floor` alike."""
    keep = sims >= floor - 1e-6
    stored, new, sims = stored[keep], new[keep], sims[keep]
    # only an item at least as alike as the list's last entry enters it (every item enters a list not full)
    ids = np.asarray(state.knn_ids[stored, lists])
    last = np.where((ids < 0).any(axis=1), -np.inf, np.asarray(state.knn_sims[stored, lists]).min(axis=1))
    keep = sims >= last - 1e-6
    stored, new, sims = stored[keep], new[keep], sims[keep]
    if not len(stored):
        return []
    order = np.argsort(stored, kind="stable")
    stored, new, sims = stored[order], new[order], sims[order]
    rows, starts = np.unique(stored, return_index=True)
    old_ids = np.asarray(state.knn_ids[rows, lists])
    old_sims = np.asarray(state.knn_sims[rows, lists])
    width = old_ids.shape[1]
    result: list[tuple[int, int]] = []
    for row, lo, hi, ids, values in zip(
        rows.tolist(), starts.tolist(), [*starts[1:].tolist(), len(stored)], old_ids, old_sims
    ):
        entries = [(-float(s), 0, int(i)) for i, s in zip(ids.tolist(), values.tolist()) if i >= 0]
        entries += [(-float(s), 1, int(n)) for n, s in zip(new[lo:hi].tolist(), sims[lo:hi].tolist())]
        entries.sort()
        result.extend((row, n) for _, is_new, n in entries[:width] if is_new)
    return result


def _unordered(first: np.ndarray, second: np.ndarray) -> list[tuple[int, int]]:
    low, high = np.minimum(first, second), np.maximum(first, second)
    return list(zip(low.tolist(), high.tolist()))


def digest_order(state: SearchState, column: str, cache: FingerprintCache | None = None) -> np.ndarray:
    """The stored items sorted by the first 8 bytes of a digest column ("byte_digests", "pixel_digests"): kept
    in the state's folder once made (with `cache`), so that a lookup is a binary search."""
    name = f"order-{column}.npy"
    if state.folder is not None and (state.folder / name).exists():
        try:
            return np.load(state.folder / name, mmap_mode="r")
        except (OSError, ValueError):
            pass
    assert state.facts is not None
    head = np.ascontiguousarray(getattr(state.facts, column)[:, :8]).view(np.uint64).ravel()
    order = np.argsort(head, kind="stable")
    if cache is not None and state.folder is not None:
        buffer = io.BytesIO()
        np.save(buffer, order, allow_pickle=False)
        cache.add_to_state(state.folder, name, buffer.getvalue())
    return order


def equal_digests(stored: np.ndarray, new: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stored rows, new rows): each new (m, 16) digest's equals among the stored (n, 16) digests, `order`
    sorting those by their first 8 bytes (digest_order): binary searches, no pass over everything."""
    keys = np.ascontiguousarray(stored).view(np.dtype((np.void, 16))).ravel()
    wanted = np.ascontiguousarray(new).view(np.dtype((np.void, 16))).ravel()
    head = np.ascontiguousarray(stored[:, :8]).view(np.uint64).ravel()
    sorted_head = head[order]
    want_head = np.ascontiguousarray(new[:, :8]).view(np.uint64).ravel()
    lo = np.searchsorted(sorted_head, want_head, side="left")
    hi = np.searchsorted(sorted_head, want_head, side="right")
    first, second = [], []
    for j, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())):
        for row in order[a:b].tolist():
            if keys[row] == wanted[j]:
                first.append(row)
                second.append(j)
    return np.array(first, dtype=np.int64), np.array(second, dtype=np.int64)
