"""What the groups mean for training: class statistics, prior shift (skew), label conflicts, leakage.

Definitions (README "Metrics" repeats them):
- per class c of a split: n_c images; u_c distinct images = distinct groups (a lone image is its own
  group) touching c; r_c = n_c - u_c redundant copies; duplication rate r_c / n_c.
- prior p_c = n_c / N (what the model sees), prior without duplicates q_c = u_c / U with U = sum of u_c;
  inflation p_c / q_c; skew = total variation distance 1/2 sum |p_c - q_c| (0 when duplication is uniform).
- wasted fraction of a split: (N - distinct images) / N, the share of an epoch spent on redundant copies.
- leakage: an evaluation-split image whose group has a member in the train split.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from itertools import groupby
from operator import attrgetter, itemgetter

import numpy as np

from .discover import RecordTable
from .model import DECIMALS, ClassStats, DuplicateGroup, ImageRecord, Root, SplitStats, Summary

_CLASS = attrgetter("root", "label")
_KEY = attrgetter("root", "path")
_MEMBERS = attrgetter("members")


def _rows_of(records: Sequence[ImageRecord], members: list[tuple[str, str]]) -> np.ndarray:
    """The index in `records` of each (root, path), -1 when absent: by binary search within its root's run when
    the records are sorted by path within each root, as discovery gives them (a few thousand members, not a dict
    of every record); else by a dict."""
    keys = list(map(_KEY, records))
    spans: dict[str, tuple[int, int]] = {}
    start = 0
    for root, run in groupby(keys, key=itemgetter(0)):
        end = start + len(list(run))
        if root in spans:  # a root in two runs: not discovery's order
            spans.clear()
            break
        spans[root] = (start, end)
        start = end
    rows = np.empty(len(members), dtype=np.int64)
    for i, member in enumerate(members):
        lo, hi = spans.get(member[0], (0, 0))
        row = bisect_left(keys, member, lo, hi)
        if row == hi or keys[row] != member:  # not sorted by path within its root (a source's items), or absent
            position = {key: k for k, key in enumerate(keys)}
            return np.array([position.get(m, -1) for m in members], dtype=np.int64)
        rows[i] = row
    return rows


def _group_of_each(records: Sequence[ImageRecord], groups: Sequence[DuplicateGroup]) -> np.ndarray:
    """Each record's group id (-1: in none), from the groups' members."""
    members = [(m.root, m.path) for g in groups for m in g.members]
    rows = records.rows_of(members) if isinstance(records, RecordTable) else _rows_of(records, members)
    group_ids = np.full(len(records), -1, dtype=np.int64)
    member_groups = np.array([g.id for g in groups for _ in g.members], dtype=np.int64)
    group_ids[rows[rows >= 0]] = member_groups[rows >= 0]  # a member without a record counts nowhere
    return group_ids


def analyse(
    roots: Sequence[Root],
    train_split: str,
    records: Sequence[ImageRecord],
    groups: Sequence[DuplicateGroup],
    skipped: int,
    group_ids: np.ndarray | None = None,
) -> tuple[Summary, tuple[ClassStats, ...], tuple[SplitStats, ...]]:
    """Class and split statistics and the summary, from fingerprinted records and their groups (`group_ids`: each
    record's group id, -1 for none, when known already: the incremental index's)."""
    # Per item its class (split, label) and its group (-1: a lone image, its own group), with C-level passes
    # over the records (a hook's check has 60,000 of them, a million-image index a million), then numpy counts.
    if isinstance(records, RecordTable):  # its columns: no record made
        codes, class_keys = records.classes()
    else:
        keys = list(map(_CLASS, records))
        class_of = dict.fromkeys(keys, 0)
        for code, key in enumerate(class_of):
            class_of[key] = code
        codes = np.fromiter(map(class_of.__getitem__, keys), dtype=np.int64, count=len(keys))
        class_keys = list(class_of)
    if group_ids is None:
        group_ids = _group_of_each(records, groups)
    split_of_class = np.array([[r.name for r in roots].index(root) for root, _ in class_keys], dtype=np.int64)
    splits_of = split_of_class[codes] if len(codes) else codes
    grouped = group_ids >= 0
    counts = np.bincount(codes, minlength=len(class_keys))
    # distinct images of a class: its lone images, plus the groups touching it (each once: unique class and group
    # pairs, as one integer each)
    distinct = np.bincount(codes[~grouped], minlength=len(class_keys))
    width = int(group_ids.max(initial=0)) + 1
    touching = np.unique(codes[grouped] * width + group_ids[grouped])
    distinct += np.bincount(touching // width, minlength=len(class_keys))
    train_index = next((k for k, r in enumerate(roots) if r.name == train_split), -1)
    in_train = np.zeros(len(groups) and max(g.id for g in groups) + 1, dtype=bool)
    in_train[group_ids[grouped & (splits_of == train_index)]] = True

    classes: list[ClassStats] = []
    splits: list[SplitStats] = []
    for index, root in enumerate(roots):
        labels = {label: code for code, (name, label) in enumerate(class_keys) if name == root.name}
        total = int(sum(counts[code] for code in labels.values()))
        total_distinct = int(sum(distinct[code] for code in labels.values()))
        skew = 0.0
        for label in sorted(labels, key=lambda x: (x is None, x or "")):
            n, u = int(counts[labels[label]]), int(distinct[labels[label]])
            prior = n / total if total else 0.0
            prior_unique = u / total_distinct if total_distinct else 0.0
            skew += abs(prior - prior_unique) / 2
            classes.append(
                ClassStats(
                    root.name,
                    label,
                    n,
                    u,
                    n - u,
                    _rounded((n - u) / n if n else 0.0),
                    _rounded(prior),
                    _rounded(prior_unique),
                    _rounded(prior / prior_unique if prior_unique else 0.0),
                )
            )
        here = splits_of == index
        split_distinct = int(np.count_nonzero(here & ~grouped)) + len(np.unique(group_ids[here & grouped]))
        is_train = root.name == train_split
        pool = root.role == "unlabelled"  # an unlabelled pool (STL-10's unlabeled/) is not evaluation data
        leaked = 0 if is_train or pool else int(np.count_nonzero(in_train[group_ids[here & grouped]]))
        splits.append(
            SplitStats(
                split=root.name,
                role="train" if is_train else "unlabelled" if pool else "eval",
                images=total,
                distinct=split_distinct,
                redundant=total - split_distinct,
                skew=_rounded(_clean(skew)),
                wasted_fraction=_rounded((total - split_distinct) / total if total else 0.0),
                leaked=leaked,
                leaked_fraction=_rounded(leaked / total if total else 0.0),
            )
        )

    train = next((s for s in splits if s.role == "train"), None)
    # the copies of each kind in one pass over the members (DuplicateGroup.copies per kind is three)
    kinds = Counter(m.link.kind for g in groups for m in g.members if m.link is not None)
    summary = Summary(
        images=len(records),
        skipped=skipped,
        groups=len(groups),
        redundant=sum(map(len, map(_MEMBERS, groups))) - len(groups),
        label_conflicts=sum(1 for g in groups if not _one_label(g) and g.is_label_conflict),
        leaked=sum(s.leaked for s in splits),
        skew=train.skew if train else 0.0,
        wasted_fraction=train.wasted_fraction if train else 0.0,
        exact_copies=kinds["exact"],
        pixel_copies=kinds["pixel"],
        near_copies=kinds["near"],
    )
    return summary, tuple(classes), tuple(splits)


def _one_label(group: DuplicateGroup) -> bool:
    """Every member has the first one's label (most groups: no label conflict, known without collecting them)."""
    label = group.members[0].label
    return all(m.label == label for m in group.members)


def _rounded(value: float) -> float:
    """To the report's precision (model.DECIMALS), so the objects hold what the JSON report says."""
    return round(value, DECIMALS)


def _clean(value: float) -> float:
    """Round away float noise so that uniform duplication reads exactly 0."""
    return 0.0 if abs(value) < 1e-12 else value


def top_duplicated_classes(classes: Sequence[ClassStats], count: int = 10) -> list[ClassStats]:
    return sorted((c for c in classes if c.redundant), key=lambda c: (-c.duplication_rate, c.split, c.label or ""))[
        :count
    ]
