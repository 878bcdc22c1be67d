"""Groups around a keeper (engine/groups.py): stars, twins, each member's own link, counts by copy kind."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dupaudit.engine import groups as groups_module
from dupaudit.engine.groups import Checked, build_groups
from dupaudit.engine.model import ImageRecord


def _records(names: list[str], sizes: list[int]) -> list[ImageRecord]:
    return [ImageRecord("train", name, None, size, 0, f"/data/{name}") for name, size in zip(names, sizes)]


def _check(copies: set[frozenset[int]] | dict[frozenset[int], float]):
    """A LinkCheck that accepts exactly the given unordered pairs (score 0.9, or the dict's, distance 4)."""
    scores = copies if isinstance(copies, dict) else dict.fromkeys(copies, 0.9)

    def check(first: np.ndarray, second: np.ndarray) -> Checked:
        pairs = [frozenset((a, b)) for a, b in zip(first.tolist(), second.tolist())]
        linked = np.array([pair in scores for pair in pairs], dtype=bool)
        score = np.array([scores.get(pair, 0.5) for pair in pairs], dtype=np.float64)
        return Checked(linked, np.full(len(first), 4), score, [None] * len(first))

    return check


def _build(names, sizes, pairs, copies, byte=None, pixel=None):
    records = _records(names, sizes)
    count = len(records)
    byte = byte or [bytes([i]) for i in range(count)]
    pixel = pixel or [bytes([i]) for i in range(count)]
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    hashes = np.zeros((count, 8), dtype=np.uint8)
    return build_groups(records, {"train": 0}, a, b, byte, pixel, hashes, [], [(32, 32)] * count, _check(copies))


def test_a_chain_is_split_around_its_keeper():
    # a ~ b ~ c ~ d, and only these: connected components would claim all four are one image
    names, sizes = ["a", "b", "c", "d"], [400, 300, 200, 100]  # keep order: the largest file first
    copies = {frozenset(p) for p in ((0, 1), (1, 2), (2, 3))}
    groups = _build(names, sizes, [(0, 1), (1, 2), (2, 3)], copies)
    assert [[m.path for m in g.members] for g in groups] == [["a", "b"], ["c", "d"]]
    for group in groups:
        keeper = group.members.index(group.kept)
        assert all(m.link.to == keeper and m.link.kind == "near" for m in group.members if not m.keep)
        assert group.kept.link is None


def test_each_image_joins_the_first_keeper_it_copies():
    # b and c copy a; d copies only c, which is a copy, not a keeper: d starts the next group, and e joins it
    names, sizes = ["a", "b", "c", "d", "e"], [500, 400, 300, 200, 100]
    copies = {frozenset(p) for p in ((0, 1), (0, 2), (2, 3), (3, 4))}
    groups = _build(names, sizes, [(0, 1), (0, 2), (2, 3), (3, 4)], copies)
    assert [[m.path for m in g.members] for g in groups] == [["a", "b", "c"], ["d", "e"]]
    assert [m.path for g in groups for m in g.members if m.keep] == ["a", "d"]


def test_pixel_and_exact_twins_stay_together_and_link_to_their_twin():
    # k is the keeper (largest file); n a near copy of k; n2 a byte copy of n; p a pixel twin of n (other bytes)
    names, sizes = ["k", "n", "n2", "p"], [900, 500, 500, 400]
    byte = [b"k", b"n", b"n", b"p"]
    pixel = [b"K", b"N", b"N", b"N"]
    groups = _build(names, sizes, [(0, 1), (1, 2), (1, 3)], {frozenset((0, 1))}, byte, pixel)
    (group,) = groups
    links = {m.path: (m.link.kind, group.members[m.link.to].path) if m.link else None for m in group.members}
    assert links == {"k": None, "n": ("near", "k"), "n2": ("exact", "n"), "p": ("pixel", "n")}
    assert group.kind == "near"
    assert (group.copies("exact"), group.copies("pixel"), group.copies("near")) == (1, 1, 1)
    assert group.exact_copies == 1 and group.pixel_copies == 2  # schema_version 1: pixel copies include exact ones
    # member n: its own link is near, but n2 is its byte copy: the strictest link touching it is exact
    assert group.link_kinds(1) == ("exact", "pixel", "near")


def test_twins_without_a_near_copy_form_an_exact_group():
    names, sizes = ["x", "y", "z"], [100, 100, 100]
    groups = _build(names, sizes, [(0, 1), (0, 2)], set(), [b"s"] * 3, [b"s"] * 3)
    (group,) = groups
    assert group.kind == "exact" and group.kept.path == "x"
    assert [m.link.kind for m in group.members if m.link] == ["exact", "exact"]


def test_twins_of_a_non_copy_are_not_dragged_into_a_group():
    # a ~ b verified; c is connected to b by the candidates but copies no keeper: c and its byte twin c2 form
    # their own exact group instead of joining a's
    names, sizes = ["a", "b", "c", "c2"], [400, 300, 200, 200]
    byte = [b"a", b"b", b"c", b"c"]
    groups = _build(names, sizes, [(0, 1), (1, 2), (2, 3)], {frozenset((0, 1))}, byte, byte)
    assert [[m.path for m in g.members] for g in groups] == [["a", "b"], ["c", "c2"]]
    assert [g.kind for g in groups] == ["near", "exact"]


# A component as CIFAR-10 holds one (test/airplane/0119.jpg, docs/groups.md): a copies b and d; b copies c, d, e;
# d copies e. The first-keeper rule keeps a with b and d, and leaves c and e alone (3 copy relations in groups);
# the stars around b hold 4 (b-c, b-d, b-e, d-e) and leave only a alone.
AIRPLANES = (["a", "b", "c", "d", "e"], [500, 400, 300, 200, 100], [(0, 1), (0, 3), (1, 2), (1, 3), (1, 4), (3, 4)])


def test_a_small_component_is_split_into_the_stars_that_hold_the_most_copies():
    names, sizes, pairs = AIRPLANES
    groups = _build(names, sizes, pairs, {frozenset(p) for p in pairs})
    assert [[m.path for m in g.members] for g in groups] == [["b", "c", "d", "e"]]
    assert groups[0].kept.path == "b"  # the keep rule's choice among the members: the largest file
    assert all(m.link.to == 0 and m.link.kind == "near" for m in groups[0].members[1:])


def test_a_component_above_the_exhaustive_limit_keeps_the_first_keeper_rule(monkeypatch):
    names, sizes, pairs = AIRPLANES
    monkeypatch.setattr(groups_module, "EXACT_UP_TO", len(names) - 1)
    groups = _build(names, sizes, pairs, {frozenset(p) for p in pairs})
    assert [[m.path for m in g.members] for g in groups] == [["a", "b", "d"]]


def test_equal_splits_go_to_the_higher_scores():
    # c copies a (0.86) and b (0.91); a and b are not copies: {a, c} and {b, c} hold one relation each
    names, sizes = ["a", "b", "c"], [300, 200, 100]
    scores = {frozenset((0, 2)): 0.86, frozenset((1, 2)): 0.91}
    groups = _build(names, sizes, [(0, 2), (1, 2)], scores)
    assert [[m.path for m in g.members] for g in groups] == [["b", "c"]]
    assert groups[0].members[1].link.score == 0.91


def _relations(groups, copies) -> int:
    """Copy relations held inside groups (each pair of members that copy each other)."""
    total = 0
    for group in groups:
        index = [int(m.path) for m in group.members]
        total += sum(frozenset(p) in copies for p in itertools.combinations(index, 2))
    return total


@pytest.mark.parametrize("seed", range(40))
def test_random_small_components_are_stars_around_the_keep_rule_and_beat_the_first_keeper_rule(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(2, groups_module.EXACT_UP_TO + 1))
    names = [str(i) for i in range(count)]
    sizes = rng.permutation(np.arange(100, 100 + count)).tolist()
    pairs = [p for p in itertools.combinations(range(count), 2) if rng.random() < 0.5] or [(0, 1)]
    copies = {frozenset(p) for p in pairs}
    groups = _build(names, sizes, pairs, copies)
    for group in groups:
        keeper = group.kept
        assert keeper.size == max(m.size for m in group.members)  # the keep rule: the largest file
        assert all(frozenset((int(m.path), int(keeper.path))) in copies for m in group.members if not m.keep)
    shuffled = _build(names, sizes, [p[::-1] for p in reversed(pairs)], copies)
    assert [[m.path for m in g.members] for g in shuffled] == [[m.path for m in g.members] for g in groups]
    monkeypatch.setattr(groups_module, "EXACT_UP_TO", 0)
    assert _relations(groups, copies) >= _relations(_build(names, sizes, pairs, copies), copies)
