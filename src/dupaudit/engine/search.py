"""All pairs of 64-bit hashes within a Hamming radius: exact multi-index hashing, faiss for small sets.

Multi-index hashing (Norouzi, Punjani and Fleet, CVPR 2012) with the generalised pigeonhole principle: cut the
64 bits into m blocks and give block i a budget t_i with sum(t_i) >= radius - m + 1. Two hashes within the
radius then differ in at most t_i bits of some block i (else they would differ in at least radius + 1 bits),
so probing, for every block, every key within t_i bits of a hash's key finds every pair; every candidate is
then verified on all 64 bits. The answer is exact: the same pairs as comparing every pair, in far fewer steps
(a million random hashes at radius 10: ~3 * 10^8 candidates instead of 5 * 10^11 comparisons).

Each block is a dense table (counts and starts over the 2^b keys, b <= 22 bits), so a probe is an array
gather, done for all hashes at once per flip mask with numpy. Self-search probes each unordered pair of
distinct keys from one side only (the key whose highest differing bit is 0), so every pair is produced once
per block; a pair that several blocks find is kept only by the first.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations

import numpy as np

_QUERY_CHUNK = 65536  # bounds the memory of one faiss range_search result
_MAX_BLOCK_BITS = 22  # a dense table of 2^22 int32 counts and starts is 32 MB
# Relative costs (measured once, docs/performance.md): one probe of one hash for one flip mask, one candidate
# verified, one pair compared by faiss's brute force. Used only to choose the plan, never for correctness.
_PROBE_COST = 4.0
_CANDIDATE_COST = 12.0
_FLAT_COST = 1.6


@dataclass(frozen=True, slots=True)
class Plan:
    """How the 64 bits are cut: (bit offset, bits, flip budget) per block, and the estimated cost."""

    blocks: tuple[tuple[int, int, int], ...]
    cost: float


def plan_blocks(count: int, radius: int, queries: int | None = None) -> Plan:
    """The cheapest exact block layout for `count` indexed hashes probed by `queries` hashes."""
    queries = count if queries is None else queries
    best: Plan | None = None
    for parts in range(max(3, math.ceil(64 / _MAX_BLOCK_BITS)), 17):
        widths = [64 // parts + (1 if i < 64 % parts else 0) for i in range(parts)]
        budget = max(0, radius - parts + 1)  # sum of t_i needed (pigeonhole)
        flips = [budget // parts + (1 if i < budget % parts else 0) for i in range(parts)]
        blocks, cost, offset = [], 0.0, 0
        for width, flip in zip(widths, flips):
            masks = sum(math.comb(width, k) for k in range(flip + 1))
            # self-search probes half the hashes per mask and meets each candidate pair once
            share = 0.5 if queries == count else 1.0
            cost += masks * queries * share * (_PROBE_COST + _CANDIDATE_COST * count / 2**width)
            blocks.append((offset, width, flip))
            offset += width
        if best is None or cost < best.cost:
            best = Plan(tuple(blocks), cost)
    assert best is not None
    return best


def pairs_within(
    hashes: np.ndarray,
    radius: int,
    queries: np.ndarray | None = None,
    threads: int | None = None,
    *,
    same_rows: bool = True,
    owners: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j, distance) with distance <= radius, sorted by (i, j).

    Without queries: every unordered pair of rows of `hashes` once, i < j. With queries (for example the
    mirrored hashes of the same rows): every (query row i, hash row j) with i != j, as given; with
    `same_rows=False` the queries are other items (another shard) and i == j pairs are kept too.
    Exact: the result is what comparing every pair gives, whichever index answers.
    `owners` (lo, hi), without queries: only the part of the answer that the probes from rows lo .. hi-1 find;
    the parts of disjoint ranges covering every row are disjoint and their union is the whole answer (how the
    cluster spreads one self-search over tasks without probing any pair twice).
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, 8)
    self_search = queries is None
    query_rows = hashes if self_search else np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, 8)
    empty = np.empty(0, dtype=np.int64)
    if len(hashes) == 0 or len(query_rows) == 0 or (self_search and len(hashes) < 2):
        return empty, empty, empty
    if radius >= 64:
        radius = 64
    plan = plan_blocks(len(hashes), radius, None if self_search else len(query_rows))
    flat_cost = _FLAT_COST * len(hashes) * len(query_rows) * (0.5 if self_search else 1.0)
    if flat_cost <= plan.cost:
        first, second, distance = _faiss_pairs(
            hashes, radius, None if self_search else query_rows, threads, same_rows=same_rows, owned=owners
        )
    else:
        first, second, distance = multi_index_pairs(
            hashes,
            radius,
            None if self_search else query_rows,
            threads=threads,
            plan=plan,
            same_rows=same_rows,
            owners=owners,
        )
    order = np.lexsort((second, first))
    return first[order], second[order], distance[order]


def _as_words(rows: np.ndarray) -> np.ndarray:
    return rows.view(">u8").ravel().astype(np.uint64)


def multi_index_pairs(
    hashes: np.ndarray,
    radius: int,
    queries: np.ndarray | None = None,
    *,
    threads: int | None = None,
    plan: Plan | None = None,
    same_rows: bool = True,
    owners: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact pairs within `radius` by multi-index hashing (unsorted); see the module docstring. `owners`: see
    pairs_within."""
    words = _as_words(np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, 8))
    self_search = queries is None
    query_words = words if self_search else _as_words(np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, 8))
    plan = plan or plan_blocks(len(words), radius, None if self_search else len(query_words))
    blocks = plan.blocks

    def run_block(position: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _search_block(words, query_words, self_search, radius, blocks, position, same_rows, owners)

    if not threads:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            threads = os.cpu_count() or 1
    if threads > 1 and len(blocks) > 1:
        # numpy releases the GIL inside its array loops, so blocks run side by side in threads
        with ThreadPoolExecutor(max_workers=min(threads, len(blocks))) as pool:
            parts = list(pool.map(run_block, range(len(blocks))))
    else:
        parts = [run_block(position) for position in range(len(blocks))]
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def _block_keys(words: np.ndarray, offset: int, width: int) -> np.ndarray:
    return ((words >> np.uint64(offset)) & np.uint64((1 << width) - 1)).astype(np.int64)


def _flip_masks(width: int, flips: int) -> list[int]:
    masks = []
    for k in range(flips + 1):
        for bits in combinations(range(width), k):
            masks.append(sum(1 << b for b in bits))
    return masks


def _expand(owners: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner repeated, position) for every position in [start, start + count) of every owner."""
    total = int(counts.sum())
    owner_rep = np.repeat(owners, counts)
    ends = np.cumsum(counts)
    positions = np.arange(total, dtype=np.int64) - np.repeat(ends - counts - starts, counts)
    return owner_rep, positions


def _search_block(
    words: np.ndarray,
    query_words: np.ndarray,
    self_search: bool,
    radius: int,
    blocks: tuple[tuple[int, int, int], ...],
    position: int,
    same_rows: bool = True,
    owners: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair whose keys in block `position` differ in at most its flip budget, verified on 64 bits (of a
    self-search with `owners`, those found by probing from rows owners[0] .. owners[1]-1)."""
    offset, width, flips = blocks[position]
    keys = _block_keys(words, offset, width)
    order = np.argsort(keys, kind="stable")
    # Work in key order: probing sorted keys xor a mask, and reading sorted words, walks memory almost
    # sequentially instead of at random (several times faster on a million hashes).
    sorted_keys = keys[order]
    sorted_words = words[order]
    counts = np.bincount(keys, minlength=1 << width).astype(np.int64)
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    if self_search:
        query_order, query_keys, query_sorted_words = order, sorted_keys, sorted_words
    else:
        unsorted = _block_keys(query_words, offset, width)
        query_order = np.argsort(unsorted, kind="stable")
        query_keys = unsorted[query_order]
        query_sorted_words = query_words[query_order]
    found_a, found_b, found_d = [], [], []

    def verify(owner: np.ndarray, partner: np.ndarray) -> None:
        """owner: positions in query key order; partner: positions in key order."""
        xor = np.take(query_sorted_words, owner) ^ np.take(sorted_words, partner)
        distance = np.bitwise_count(xor)
        keep = np.flatnonzero(distance <= radius)
        if len(keep) == 0:
            return
        first, second = query_order[owner[keep]], order[partner[keep]]
        distance, xor = distance[keep].astype(np.int64), xor[keep]
        if not self_search and same_rows:
            fresh = first != second
            first, second, distance, xor = first[fresh], second[fresh], distance[fresh], xor[fresh]
        # a pair that an earlier block also finds is that block's to report
        for e_offset, e_width, e_flips in blocks[:position]:
            block_distance = np.bitwise_count((xor >> np.uint64(e_offset)) & np.uint64((1 << e_width) - 1))
            fresh = block_distance > e_flips
            first, second, distance, xor = first[fresh], second[fresh], distance[fresh], xor[fresh]
        if self_search:
            first, second = np.minimum(first, second), np.maximum(first, second)
        found_a.append(first)
        found_b.append(second)
        found_d.append(distance)

    positions = np.arange(len(query_keys), dtype=np.int64)
    # a self-search finds each pair from one side only: restricted to owners' rows, it finds their share of pairs
    mine = None if not self_search or owners is None else (order >= owners[0]) & (order < owners[1])
    # mask 0: pairs that share this block's key
    if self_search:
        later = starts[sorted_keys] + counts[sorted_keys] - positions - 1  # later members of my bucket
        rows = np.flatnonzero(later if mine is None else (later > 0) & mine)
        verify(*_expand(rows, rows + 1, later[rows]))
    else:
        found = np.take(counts, query_keys)
        rows = np.flatnonzero(found)
        verify(*_expand(rows, np.take(starts, query_keys[rows]), found[rows]))
    occupied = counts > 0
    # Each key's first hash word (0 where the key holds none): most candidates are checked against it
    # directly, with no expansion; keys holding several hashes have their other hashes checked apart.
    first_word = np.zeros(len(counts), dtype=np.uint64)
    first_word[occupied] = sorted_words[starts[occupied]]
    several = counts > 1
    current_bit = -1
    probe_keys, probe_positions, probe_words = query_keys, positions, query_sorted_words
    target_buffer = np.empty(len(probe_keys), dtype=np.int64)  # reused: no page faults per mask
    hit_buffer = np.empty(len(probe_keys), dtype=bool)
    targets, hits = target_buffer, hit_buffer
    masks = _flip_masks(width, flips)[1:]
    if self_search:  # grouped by highest bit: the probing rows (those with that bit 0) are gathered once per bit
        masks.sort(key=int.bit_length)
    for mask in masks:
        if self_search:
            top = mask.bit_length() - 1
            if top != current_bit:
                # probe only from keys whose highest flipped bit is 0: each pair of keys is met once
                current_bit = top
                low = ((query_keys >> top) & 1) == 0
                probe_positions = np.flatnonzero(low if mine is None else low & mine)
                probe_keys = query_keys[probe_positions]
                probe_words = query_sorted_words[probe_positions]
                targets, hits = target_buffer[: len(probe_keys)], hit_buffer[: len(probe_keys)]
        np.bitwise_xor(probe_keys, mask, out=targets)
        np.take(occupied, targets, out=hits)
        rows = np.flatnonzero(hits)
        if len(rows) == 0:
            continue
        found_keys = np.take(targets, rows)
        distance = np.bitwise_count(np.take(probe_words, rows) ^ np.take(first_word, found_keys))
        close = np.flatnonzero(distance <= radius)
        if len(close):
            verify(np.take(probe_positions, np.take(rows, close)), np.take(starts, np.take(found_keys, close)))
        more = np.flatnonzero(np.take(several, found_keys))
        if len(more):
            more_keys = np.take(found_keys, more)
            verify(
                *_expand(
                    np.take(probe_positions, np.take(rows, more)),
                    np.take(starts, more_keys) + 1,
                    np.take(counts, more_keys) - 1,
                )
            )
    if not found_a:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_d)


def _faiss_pairs(
    hashes: np.ndarray,
    radius: int,
    queries: np.ndarray | None,
    threads: int | None,
    same_rows: bool = True,
    owned: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact pairs by faiss's IndexBinaryFlat range search (brute force in C++; best for small sets)."""
    import faiss  # imported here so that `dupaudit --help` and the pre-commit hook start fast

    if threads:
        faiss.omp_set_num_threads(threads)
    index = faiss.IndexBinaryFlat(64)
    index.add(hashes)
    self_search = queries is None
    query_rows = hashes if queries is None else queries
    lo, hi = owned if self_search and owned is not None else (0, len(query_rows))  # a pair's owner: its first row
    firsts, seconds, distances = [], [], []
    for start in range(lo, hi, _QUERY_CHUNK):
        chunk = query_rows[start : min(hi, start + _QUERY_CHUNK)]
        # faiss returns distances strictly below the radius it is given.
        lims, found_d, found_i = index.range_search(chunk, radius + 1)
        owners = np.repeat(np.arange(start, start + len(chunk), dtype=np.int64), np.diff(lims).astype(np.int64))
        found_i = found_i.astype(np.int64)
        keep = owners < found_i if self_search else (owners != found_i if same_rows else owners >= 0)
        firsts.append(owners[keep])
        seconds.append(found_i[keep])
        distances.append(found_d[keep].astype(np.int64))
    if not firsts:  # an empty range of owners
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(distances)
