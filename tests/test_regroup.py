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


def _group(number: int, root: str, paths: list[str]):
    from dupaudit.engine.model import DuplicateGroup, GroupMember

    members = tuple(GroupMember(root, path, None, i == 0) for i, path in enumerate(sorted(paths)))
    return DuplicateGroup(number, "near", 1, members)


def test_placed_groups_are_the_groups_sorted_by_first_member_and_numbered():
    """regroup.placed: kept and built groups (each in the report's order) placed by binary search, as sorting
    them all by first member would place them, renumbered; with the place of each."""
    from dataclasses import replace

    from dupaudit.engine.model import Root

    roots = [Root("train", "/d/train", True), Root("test", "/d/test", True)]
    order = {"train": 0, "test": 1}
    rng = np.random.default_rng(3)
    names = [f"{c}/{n:04d}.jpg" for c in ("a", "b", "c") for n in rng.choice(10_000, 200, replace=False)]
    everything = [_group(0, rng.choice(["train", "test"]), [name, name + "x"]) for name in names]
    everything.sort(key=lambda g: (order[g.members[0].root], g.members[0].path))
    built_at = set(rng.choice(len(everything), 25, replace=False).tolist()) | {0, len(everything) - 1}
    kept = [replace(g, id=100 + i) for i, g in enumerate(everything) if i not in built_at]
    built = [g for i, g in enumerate(everything) if i in built_at]
    groups, kept_places, built_places = regroup.placed(kept, built, roots)
    assert groups == tuple(replace(g, id=i) for i, g in enumerate(everything))
    assert [groups[p].members for p in kept_places.tolist()] == [g.members for g in kept]
    assert [groups[p].members for p in built_places.tolist()] == [g.members for g in built]


def test_a_change_of_stored_groups_gives_them_back_or_nothing():
    """model.GroupsChange.applied: the kept groups of the base renumbered around the placed ones; None when the
    change does not fit the base (gone, or another one)."""
    from dupaudit.engine.model import GroupsChange

    base = tuple(_group(i, "train", [f"{i}a", f"{i}b"]) for i in range(6))
    new = _group(1, "train", ["0c", "0d"])
    change = GroupsChange(b"key", (0, 2, 3, 5), (new,))
    applied = change.applied(base)
    assert applied is not None
    assert [g.members for g in applied] == [base[0].members, new.members, *(base[k].members for k in (2, 3, 5))]
    assert [g.id for g in applied] == list(range(5))
    assert change.applied(base[:4]) is None
    assert GroupsChange(b"key", (0, 1), (new, new)).applied(base) is None
