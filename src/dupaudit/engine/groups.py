"""Union-find over matched pairs; each group gets a kind, its largest distance and one member to keep."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .hashing import hamming
from .keep import Candidate, choose_keeper
from .model import DuplicateGroup, GroupMember, ImageRecord


class UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = np.arange(size, dtype=np.int64)

    def find(self, item: int) -> int:
        parent = self.parent
        root = item
        while parent[root] != root:
            root = parent[root]
        while parent[item] != root:  # path compression
            parent[item], item = root, parent[item]
        return int(root)

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            # the smaller index becomes the root: deterministic whatever the order of pairs
            if root_a < root_b:
                self.parent[root_b] = root_a
            else:
                self.parent[root_a] = root_b


def build_groups(
    records: Sequence[ImageRecord],
    index_of_root: dict[str, int],
    pairs_a: np.ndarray,
    pairs_b: np.ndarray,
    byte_digests: Sequence[bytes],
    pixel_digests: Sequence[bytes],
    hashes: np.ndarray,
    flip_hashes: np.ndarray | None,
    sizes: Sequence[tuple[int, int]],
) -> tuple[DuplicateGroup, ...]:
    """Groups of two or more records joined by pairs; sorted by their first member, ids from 0."""
    union = UnionFind(len(records))
    for a, b in zip(pairs_a.tolist(), pairs_b.tolist()):
        union.union(a, b)
    members_of: dict[int, list[int]] = {}
    for item in np.unique(np.concatenate([pairs_a, pairs_b])).tolist():
        members_of.setdefault(union.find(item), []).append(item)

    def position(item: int) -> tuple:
        return (index_of_root[records[item].root], records[item].path)

    groups = []
    for items in members_of.values():
        if len(items) < 2:
            continue
        items.sort(key=position)
        exact_copies = len(items) - len({byte_digests[i] for i in items})
        pixel_copies = len(items) - len({pixel_digests[i] for i in items})
        if exact_copies == len(items) - 1:
            kind = "exact"
        elif pixel_copies == len(items) - 1:
            kind = "pixel"
        else:
            kind = "near"
        max_distance = _max_distance(hashes[items], None if flip_hashes is None else flip_hashes[items])
        keep = items[  # the keep rule (keep.py) over the members in (root, path) order
            choose_keeper([Candidate(records[i].path, records[i].abspath, *sizes[i], records[i].size) for i in items])
        ]
        members = tuple(
            GroupMember(
                records[i].root, records[i].path, records[i].label, i == keep, sizes[i][0], sizes[i][1], records[i].size
            )
            for i in items
        )
        groups.append((position(items[0]), kind, max_distance, members, exact_copies, pixel_copies))
    groups.sort(key=lambda g: g[0])
    return tuple(
        DuplicateGroup(i, kind, dist, members, exact, pixel)
        for i, (_, kind, dist, members, exact, pixel) in enumerate(groups)
    )


def _max_distance(group_hashes: np.ndarray, group_flips: np.ndarray | None) -> int:
    """Largest pairwise Hamming distance in the group (a mirrored match counts at its mirrored distance)."""
    if len(group_hashes) > 2000:  # quadratic: bound it for giant groups, sampling the first 2000 members
        group_hashes = group_hashes[:2000]
        group_flips = None if group_flips is None else group_flips[:2000]
    distances = hamming(group_hashes[:, None, :], group_hashes[None, :, :])
    if group_flips is not None:
        distances = np.minimum(distances, hamming(group_flips[:, None, :], group_hashes[None, :, :]))
    return int(distances.max())
