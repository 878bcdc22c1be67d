"""regroup.equal_pairs: every item joined to the first item with its digest, as a reference by Python dicts."""

import numpy as np
import pytest

from dupaudit.engine import regroup


def _reference(digests: np.ndarray) -> tuple[list[int], list[int]]:
    first: dict[bytes, int] = {}
    owners, others = [], []
    for index, row in enumerate(digests):
        key = row.tobytes()
        if key in first:
            owners.append(first[key])
            others.append(index)
        else:
            first[key] = index
    return owners, others


@pytest.mark.parametrize("width", [16, 12, 8])
@pytest.mark.parametrize("shared_first_word", [False, True])
def test_equal_pairs_joins_each_item_to_the_first_with_its_digest(width, shared_first_word):
    rng = np.random.default_rng(width)
    digests = rng.integers(0, 256, (5000, width), dtype=np.uint8)
    digests[rng.integers(0, 5000, 400)] = digests[rng.integers(0, 5000, 400)]  # copies, some of copies
    digests[10:30] = digests[4000]  # one digest many times, its first item after others
    if shared_first_word:  # different digests whose first 8 bytes agree: the fast path must not join them
        digests[100:110, :8] = digests[200, :8]
    owners, others = regroup.equal_pairs(digests)
    assert (owners.tolist(), others.tolist()) == _reference(digests)
    assert len(others) > 300  # (the copies made above, less those overwritten)


def test_equal_pairs_of_nothing():
    owners, others = regroup.equal_pairs(np.empty((0, 16), dtype=np.uint8))
    assert len(owners) == len(others) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_pairs_updated_from_the_state_equal_a_recomputation(seed):
    """An update's equal pairs, from the state's and the new items' digests alone, are equal_pairs over every
    current item: removals (an owner among them), new copies of old digests, of each other, of nothing."""
    rng = np.random.default_rng(seed)
    old = rng.integers(0, 256, (3000, 16), dtype=np.uint8)
    old[rng.integers(0, 3000, 300)] = old[rng.integers(0, 3000, 300)]
    old[50:60] = old[7]  # a class whose first item is removed below
    kept = np.sort(rng.choice(3000, 2900, replace=False))
    kept = kept[kept != 7]
    new = rng.integers(0, 256, (40, 16), dtype=np.uint8)
    new[:10] = old[rng.choice(3000, 10)]  # copies of old items (some removed)
    new[10:15] = new[20]  # copies of each other
    new[30, :8] = old[kept[5], :8]  # the first 8 bytes of a kept item's digest only
    digests = np.concatenate([old[kept], new])
    old_of = np.concatenate([kept, np.full(len(new), -1)])
    order = rng.permutation(len(digests))  # the current items in any order
    digests, old_of = digests[order], old_of[order]
    first, second = regroup.updated_equal_pairs(regroup.equal_pairs(old), old, digests, old_of)
    expected = regroup.equal_pairs(digests)
    assert (first.tolist(), second.tolist()) == (expected[0].tolist(), expected[1].tolist())
    assert len(second) > 100
