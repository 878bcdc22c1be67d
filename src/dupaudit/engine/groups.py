"""Groups around a keeper: every member is a copy of the group's kept member, not merely connected to it.

The rule (README "Groups"):
1. Components: the connected components of every matched pair (exact, pixel and verified near pairs).
2. Twins: inside a component, members with the same decoded pixels are one image (same bytes implies same
   pixels, and both relations are transitive), so exact and pixel copies always stay together.
3. Stars: the keep rule (keep.choose_keeper) picks a keeper among a component's images; every other image that a
   `LinkCheck` accepts as a copy of it joins its group. The keep rule picks the next keeper among the images
   left, which is checked against them, and so on: each image joins the first keeper it copies, else it starts
   a group of its own.
So a chain A ~ B ~ C where C does not copy A gives {A, B} and C apart (alone: no group), where connected
components would have claimed all three are one image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .hashing import hamming
from .keep import Candidate, choose_keeper, keep_order
from .model import DECIMALS, DuplicateGroup, GroupMember, ImageRecord, Link


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


@dataclass(frozen=True, slots=True)
class Checked:
    """A LinkCheck's answer for pairs (keeper, candidate), aligned with them."""

    linked: np.ndarray  # bool: the candidate is a near copy of the keeper
    distance: np.ndarray  # int: Hamming distance (the best over the transforms tried)
    score: np.ndarray  # float: verification score or cosine; NaN where no score decides
    transform: list[str | None]  # the transform under which the copy matched (None: as is)


# keepers, candidates (record indices) -> the judgement of each pair
LinkCheck = Callable[[np.ndarray, np.ndarray], Checked]


def build_groups(
    records: Sequence[ImageRecord],
    index_of_root: dict[str, int],
    pairs_a: np.ndarray,
    pairs_b: np.ndarray,
    byte_digests: Sequence[bytes],
    pixel_digests: Sequence[bytes],
    hashes: np.ndarray,
    variant_hashes: Sequence[np.ndarray],
    sizes: Sequence[tuple[int, int]],
    check: LinkCheck,
) -> tuple[DuplicateGroup, ...]:
    """Groups of two or more records around a keeper (see the module doc); sorted by first member, ids from 0."""
    union = UnionFind(len(records))
    for a, b in zip(pairs_a.tolist(), pairs_b.tolist()):
        union.union(a, b)
    components: dict[int, list[int]] = {}
    for item in np.unique(np.concatenate([pairs_a, pairs_b])).tolist():
        components.setdefault(union.find(item), []).append(item)

    def position(item: int) -> tuple:
        return (index_of_root[records[item].root], records[item].path)

    def keep_key(item: int) -> tuple:
        return (keep_order(records[item], *sizes[item]), position(item))

    # Twins: per component, the items of each pixel digest, in keep order; the first stands for them all.
    twins: dict[int, list[int]] = {}
    pending: list[list[int]] = []  # per component: its images (twin representatives) in keep order
    for items in components.values():
        by_pixels: dict[bytes, list[int]] = {}
        for item in sorted(items, key=keep_key):
            by_pixels.setdefault(pixel_digests[item], []).append(item)
        for members in by_pixels.values():
            twins[members[0]] = members
        pending.append([members[0] for members in by_pixels.values()])  # keep order of the representatives

    def choose(images: list[int]) -> int:  # the keep rule (keep.py) over images in (root, path) order
        ordered = sorted(range(len(images)), key=lambda j: position(images[j]))
        candidates = [Candidate(records[i].path, records[i].abspath, *sizes[i], records[i].size) for i in images]
        return ordered[choose_keeper([candidates[j] for j in ordered])]

    star, near_link = _stars(pending, check, choose)
    groups = []
    for keeper, linked in star.items():
        items = [item for image in (keeper, *linked) for item in twins[image]]
        if len(items) < 2:
            continue
        items.sort(key=position)
        images = (keeper, *linked)
        groups.append(_group(items, images, twins, near_link, records, byte_digests, hashes, variant_hashes, sizes))
    groups.sort(key=lambda g: (index_of_root[g.members[0].root], g.members[0].path))
    return tuple(DuplicateGroup(i, g.kind, g.max_distance, g.members) for i, g in enumerate(groups))


def _stars(components: list[list[int]], check: LinkCheck, choose) -> tuple[dict[int, list[int]], dict[int, tuple]]:
    """Keepers and their copies. Per component, `choose` (the keep rule) picks a keeper and every other image that
    copies it joins it; `choose` picks the next keeper among the images left, and so on: each image joins the
    first keeper that it copies. (Joining the keeper it
    copies best instead splits CIFAR-10's clusters more: recall of the ciFAIR pairs 0.815 against 0.871.)
    One round per keeper rank, all components at once, so the checks run in batches."""
    star: dict[int, list[int]] = {}  # keeper -> images linked to it
    near_link: dict[int, tuple] = {}  # image -> (keeper, distance, score, transform)
    while components:
        keepers, candidates = [], []
        for images in components:
            keeper = images[choose(images)]  # the keep rule among the images left (`choose`: an index)
            star[keeper] = []
            others = [i for i in images if i != keeper]
            keepers.extend([keeper] * len(others))
            candidates.extend(others)
        checked = check(np.array(keepers, dtype=np.int64), np.array(candidates, dtype=np.int64))
        for i in np.nonzero(checked.linked)[0].tolist():
            keeper, image = keepers[i], candidates[i]
            star[keeper].append(image)
            near_link[image] = (keeper, int(checked.distance[i]), float(checked.score[i]), checked.transform[i])
        components = [
            rest for images in components if (rest := [i for i in images if i not in near_link and i not in star])
        ]
    return star, near_link


def _group(items, images, twins, near_link, records, byte_digests, hashes, variants, sizes) -> DuplicateGroup:
    """One group: its members (sorted items) with their links, its kind and largest distance."""
    keeper = images[0]
    slot = {item: i for i, item in enumerate(items)}
    links: dict[int, Link] = {}
    for image in images:
        first_of_bytes: dict[bytes, int] = {}
        for item in twins[image]:  # in keep order: each twin links to the first with its bytes, else its pixels
            owner = first_of_bytes.setdefault(byte_digests[item], item)
            if owner != item:
                links[item] = Link("exact", slot[owner], _distance(hashes, owner, item))
            elif item != image:
                links[item] = Link("pixel", slot[image], _distance(hashes, image, item))
        if image != keeper:
            _, distance, score, transform = near_link[image]
            score = None if score != score else round(score, DECIMALS)  # as the report stores it
            links[image] = Link("near", slot[keeper], distance, score, transform)
    members = tuple(
        GroupMember(
            records[i].root,
            records[i].path,
            records[i].label,
            i == keeper,
            sizes[i][0],
            sizes[i][1],
            records[i].size,
            links.get(i),
        )
        for i in items
    )
    kinds = {link.kind for link in links.values()}
    kind = "near" if "near" in kinds else "pixel" if "pixel" in kinds else "exact"
    max_distance = _max_distance(hashes[items], [variant[items] for variant in variants])
    return DuplicateGroup(0, kind, max_distance, members)


def _distance(hashes: np.ndarray, a: int, b: int) -> int:
    return int(hamming(hashes[a], hashes[b]))


def _max_distance(group_hashes: np.ndarray, group_variants: list[np.ndarray]) -> int:
    """Largest pairwise Hamming distance in the group (a mirrored or rotated match counts at its distance so)."""
    if len(group_hashes) > 2000:  # quadratic: bound it for giant groups, sampling the first 2000 members
        group_hashes = group_hashes[:2000]
        group_variants = [variant[:2000] for variant in group_variants]
    distances = hamming(group_hashes[:, None, :], group_hashes[None, :, :])
    for variant in group_variants:
        distances = np.minimum(distances, hamming(variant[:, None, :], group_hashes[None, :, :]))
    return int(distances.max())
