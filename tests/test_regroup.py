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
