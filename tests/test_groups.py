"""Groups around a keeper (engine/groups.py): stars, twins, each member's own link, counts by copy kind."""

from __future__ import annotations

import numpy as np

from dupaudit.engine.groups import Checked, build_groups
from dupaudit.engine.model import ImageRecord


def _records(names: list[str], sizes: list[int]) -> list[ImageRecord]:
    return [ImageRecord("train", name, None, size, 0, f"/data/{name}") for name, size in zip(names, sizes)]


def _check(copies: set[frozenset[int]]):
    """A LinkCheck that accepts exactly the given unordered pairs (score 0.9, distance 4)."""

    def check(first: np.ndarray, second: np.ndarray) -> Checked:
        linked = np.array([frozenset((a, b)) in copies for a, b in zip(first.tolist(), second.tolist())], dtype=bool)
        count = len(first)
        return Checked(linked, np.full(count, 4), np.full(count, 0.9), [None] * count)

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
