"""Class statistics, skew, label conflicts and leakage on hand-computed examples."""

from __future__ import annotations

import pytest

from dupaudit.engine.analysis import analyse
from dupaudit.engine.model import DuplicateGroup, GroupMember, ImageRecord, Root


def _records(spec):
    return [
        ImageRecord(root, f"{label}/{name}", label, 1, 1, f"/x/{root}/{label}/{name}") for root, label, name in spec
    ]


def _group(gid, *members):
    return DuplicateGroup(
        gid, "near", 2, tuple(GroupMember(r, p, p.split("/")[0], i == 0) for i, (r, p) in enumerate(members))
    )


def test_class_stats_and_skew_by_hand():
    # train: cat has 4 images of which 3 are copies of one photo (u=2); dog has 2 distinct images.
    records = _records(
        [
            ("train", "cat", "a"),
            ("train", "cat", "b"),
            ("train", "cat", "c"),
            ("train", "cat", "d"),
            ("train", "dog", "e"),
            ("train", "dog", "f"),
        ]
    )
    groups = [_group(0, ("train", "cat/a"), ("train", "cat/b"), ("train", "cat/c"))]
    roots = (Root("train", "/x/train", True),)
    summary, classes, splits = analyse(roots, "train", records, groups, skipped=0)
    cat, dog = classes  # the report's figures are rounded to 6 decimals (engine/model.DECIMALS)
    assert (cat.images, cat.distinct, cat.redundant) == (4, 2, 2)
    assert cat.duplication_rate == pytest.approx(0.5, abs=1e-6)
    # N = 6, U = 4: p_cat = 4/6, q_cat = 2/4; p_dog = 2/6, q_dog = 2/4
    assert cat.prior == pytest.approx(4 / 6, abs=1e-6) and cat.prior_without_duplicates == pytest.approx(0.5, abs=1e-6)
    assert cat.inflation == pytest.approx((4 / 6) / 0.5, abs=1e-6)
    assert dog.inflation == pytest.approx((2 / 6) / 0.5, abs=1e-6)
    assert summary.skew == pytest.approx(0.5 * (abs(4 / 6 - 0.5) + abs(2 / 6 - 0.5)), abs=1e-6)
    assert summary.wasted_fraction == pytest.approx(2 / 6, abs=1e-6)
    assert summary.redundant == 2 and summary.groups == 1 and summary.label_conflicts == 0


def test_uniform_duplication_has_zero_skew():
    records = _records([("train", "cat", "a"), ("train", "cat", "b"), ("train", "dog", "c"), ("train", "dog", "d")])
    groups = [_group(0, ("train", "cat/a"), ("train", "cat/b")), _group(1, ("train", "dog/c"), ("train", "dog/d"))]
    summary, classes, _ = analyse((Root("train", "/x", True),), "train", records, groups, 0)
    assert summary.skew == 0.0
    assert all(c.inflation == pytest.approx(1.0) for c in classes)


def test_label_conflict_and_leakage():
    records = _records(
        [
            ("train", "cat", "a"),
            ("train", "dog", "b"),
            ("train", "dog", "c"),
            ("test", "dog", "x"),
            ("test", "cat", "y"),
        ]
    )
    groups = [_group(0, ("train", "cat/a"), ("train", "dog/b")), _group(1, ("train", "dog/c"), ("test", "dog/x"))]
    roots = (Root("train", "/x/train", True), Root("test", "/x/test", True))
    summary, _, splits = analyse(roots, "train", records, groups, 0)
    assert summary.label_conflicts == 1
    assert groups[0].is_label_conflict and not groups[1].is_label_conflict
    assert groups[1].is_leak and not groups[0].is_leak
    test = next(s for s in splits if s.split == "test")
    assert (test.leaked, test.leaked_fraction) == (1, 0.5)
    assert summary.leaked == 1
