"""The Hamming search returns exactly the pairs a brute-force comparison returns, on random and skewed data."""

from __future__ import annotations

import numpy as np
import pytest

from dupaudit.engine import search
from dupaudit.engine.hashing import hamming
from dupaudit.engine.search import Plan, multi_index_pairs, pairs_within, plan_blocks


def brute_force_pairs(hashes: np.ndarray, radius: int) -> set[tuple[int, int, int]]:
    """The reference answer: every pair compared with numpy."""
    found = set()
    for i in range(len(hashes)):
        d = hamming(hashes[i][None, :], hashes[i + 1 :])
        for offset in np.nonzero(d <= radius)[0]:
            found.add((i, i + 1 + int(offset), int(d[offset])))
    return found


def _random_hashes(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 8), dtype=np.uint8)


def _clustered_hashes(count: int, seed: int) -> np.ndarray:
    """Near copies of a few sources (0-12 bits flipped), exact repeats and random rows: pairs at all distances."""
    rng = np.random.default_rng(seed)
    sources = rng.integers(0, 256, size=(20, 8), dtype=np.uint8)
    rows = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.15:
            rows.append(sources[0])  # one big bucket of identical hashes
        elif kind < 0.7:
            row = sources[rng.integers(len(sources))].copy()
            for bit in rng.choice(64, size=rng.integers(0, 13), replace=False):
                row[bit // 8] ^= np.uint8(1 << (bit % 8))
            rows.append(row)
        else:
            rows.append(rng.integers(0, 256, size=8, dtype=np.uint8))
    return np.array(rows, dtype=np.uint8)


def _as_set(result) -> set[tuple[int, int, int]]:
    return set(zip(*[x.tolist() for x in result]))


def _brute_force_queries(hashes: np.ndarray, queries: np.ndarray, radius: int) -> set[tuple[int, int, int]]:
    distances = hamming(queries[:, None, :], hashes[None, :, :])
    rows, cols = np.nonzero(distances <= radius)
    return {(int(i), int(j), int(distances[i, j])) for i, j in zip(rows, cols) if i != j}


@pytest.mark.parametrize("radius", [0, 1, 3, 6, 10, 14])
@pytest.mark.parametrize("make", [_random_hashes, _clustered_hashes])
def test_multi_index_equals_brute_force(make, radius):
    hashes = make(700, seed=radius)
    truth = brute_force_pairs(hashes, radius)
    found = multi_index_pairs(hashes, radius)
    assert len(found[0]) == len(truth)  # each pair once
    assert _as_set(found) == truth
    assert all(a < b for a, b in zip(found[0].tolist(), found[1].tolist()))


@pytest.mark.parametrize("radius", [2, 10])
def test_multi_index_with_queries_equals_brute_force(radius):
    hashes = _clustered_hashes(400, seed=7)
    mirrored = np.ascontiguousarray(hashes[:, ::-1])  # like the flip search: query row i is a variant of row i
    truth = _brute_force_queries(hashes, mirrored, radius)
    found = multi_index_pairs(hashes, radius, mirrored)
    assert len(found[0]) == len(truth)
    assert _as_set(found) == truth


@pytest.mark.parametrize("parts", [3, 4, 5, 8, 11])
def test_every_exact_block_layout_is_exact(parts):
    """Whatever layout the planner picks, the pigeonhole budget makes it exact; force several."""
    hashes = _clustered_hashes(500, seed=parts)
    radius = 9
    widths = [64 // parts + (1 if i < 64 % parts else 0) for i in range(parts)]
    budget = max(0, radius - parts + 1)
    flips = [budget // parts + (1 if i < budget % parts else 0) for i in range(parts)]
    offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).tolist()
    plan = Plan(tuple(zip(offsets, widths, flips)), cost=0.0)
    assert _as_set(multi_index_pairs(hashes, radius, plan=plan)) == brute_force_pairs(hashes, radius)


def test_pairs_within_matches_faiss_and_brute_force_and_is_sorted(monkeypatch):
    hashes = _clustered_hashes(600, seed=3)
    truth = brute_force_pairs(hashes, 8)
    found = pairs_within(hashes, 8)
    assert _as_set(found) == truth
    keys = list(zip(found[0].tolist(), found[1].tolist()))
    assert keys == sorted(keys)
    # force the faiss path too: the same answer
    monkeypatch.setattr(search, "_FLAT_COST", 0.0)
    assert _as_set(pairs_within(hashes, 8)) == truth
    monkeypatch.setattr(search, "_FLAT_COST", 1e9)
    assert _as_set(pairs_within(hashes, 8, threads=2)) == truth


def test_planner_prefers_big_tables_for_big_sets():
    small, large = plan_blocks(10_000, 10), plan_blocks(1_000_000, 10)
    assert max(b[1] for b in large.blocks) > max(b[1] for b in small.blocks)
    for plan in (small, large):
        assert sum(b[1] for b in plan.blocks) == 64
        assert sum(b[2] for b in plan.blocks) >= 10 - len(plan.blocks) + 1  # the pigeonhole budget


def test_empty_and_single_inputs():
    one = _random_hashes(1, seed=0)
    for result in (pairs_within(one, 10), pairs_within(one[:0], 10), multi_index_pairs(one, 10)):
        assert all(len(x) == 0 for x in result)
