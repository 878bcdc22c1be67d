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

from collections import defaultdict
from collections.abc import Sequence

from .model import DECIMALS, ClassStats, DuplicateGroup, ImageRecord, Root, SplitStats, Summary


def analyse(
    roots: Sequence[Root],
    train_split: str,
    records: Sequence[ImageRecord],
    groups: Sequence[DuplicateGroup],
    skipped: int,
) -> tuple[Summary, tuple[ClassStats, ...], tuple[SplitStats, ...]]:
    """Class and split statistics and the summary, from fingerprinted records and their groups."""
    group_of: dict[tuple[str, str], int] = {}
    for group in groups:
        for member in group.members:
            group_of[(member.root, member.path)] = group.id
    # A lone image is its own group: give it a unique negative id.
    identity = [group_of.get(r.key, -1 - i) for i, r in enumerate(records)]
    train_groups = {identity[i] for i, r in enumerate(records) if r.root == train_split}

    classes: list[ClassStats] = []
    splits: list[SplitStats] = []
    for root in roots:
        in_split = [i for i, r in enumerate(records) if r.root == root.name]
        per_class: dict[str | None, list[int]] = defaultdict(list)
        for i in in_split:
            per_class[records[i].label].append(i)
        counts = {label: len(items) for label, items in per_class.items()}
        distinct = {label: len({identity[i] for i in items}) for label, items in per_class.items()}
        total, total_distinct = sum(counts.values()), sum(distinct.values())
        skew = 0.0
        for label in sorted(per_class, key=lambda x: (x is None, x or "")):
            n, u = counts[label], distinct[label]
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
        split_distinct = len({identity[i] for i in in_split})
        is_train = root.name == train_split
        pool = root.role == "unlabelled"  # an unlabelled pool (STL-10's unlabeled/) is not evaluation data
        leaked = 0 if is_train or pool else sum(1 for i in in_split if identity[i] in train_groups)
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
    summary = Summary(
        images=len(records),
        skipped=skipped,
        groups=len(groups),
        redundant=sum(len(g.members) - 1 for g in groups),
        label_conflicts=sum(1 for g in groups if g.is_label_conflict),
        leaked=sum(s.leaked for s in splits),
        skew=train.skew if train else 0.0,
        wasted_fraction=train.wasted_fraction if train else 0.0,
        exact_copies=sum(g.copies("exact") for g in groups),
        pixel_copies=sum(g.copies("pixel") for g in groups),
        near_copies=sum(g.copies("near") for g in groups),
    )
    return summary, tuple(classes), tuple(splits)


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
