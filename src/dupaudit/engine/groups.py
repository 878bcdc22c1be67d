"""Groups around a keeper: every member is a copy of the group's kept member, not merely connected to it.

The rule (README "Groups"):
1. Components: the connected components of every matched pair (exact, pixel and verified near pairs).
2. Twins: inside a component, members with the same decoded pixels are one image (same bytes implies same
   pixels, and both relations are transitive), so exact and pixel copies always stay together.
3. Stars: each group is a keeper and images that a `LinkCheck` accepts as copies of it, the keeper being the
   one the keep rule (keep.choose_keeper) ranks first among them. A component of at most EXACT_UP_TO images is
   split into the stars that hold the most of its copy relations (pairs of one group where the later image, in
   keep order, copies the earlier), ties to the highest summed score, found by an exhaustive search. The split
   then rests on all the component's copy relations, not on which image comes first: under the first-keeper
   rule, an image that a new verified pair brings into a component (a larger file, so the first keeper) takes
   copies away from the partners they copy best (docs/groups.md). A larger component (CIFAR's clusters of
   frames: its splits are too many to search) keeps the first-keeper rule: the keep rule picks a keeper, every
   other image that copies it joins it, the keep rule picks the next keeper among the images left, and so on:
   each image joins the first keeper it copies, else starts a group of its own.
So a chain A ~ B ~ C where C does not copy A gives {A, B} and C apart (alone: no group), where connected
components would have claimed all three are one image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .hashing import hamming
from .keep import Candidate, choose_keeper, keep_name, keep_order
from .model import DECIMALS, DuplicateGroup, GroupMember, ImageRecord, Link

# Components up to this many images get the best split into stars, by exhaustive search: at most Bell(8) = 4,140
# partitions, fewer once pruned. On CIFAR-10, 6 to 12 give the same ciFAIR recall (docs/groups.md).
EXACT_UP_TO = 8


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

    def named(item: int) -> str:
        return keep_name(records[item].path, records[item].name)

    def keep_position(item: int) -> tuple:  # the keep rule's last tie: (root, name, path)
        return (index_of_root[records[item].root], named(item), records[item].path)

    def keep_key(item: int) -> tuple:
        return (keep_order(records[item], *sizes[item]), keep_position(item))

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

    def choose(images: list[int]) -> int:  # the keep rule (keep.py) over images in (root, name, path) order
        ordered = sorted(range(len(images)), key=lambda j: keep_position(images[j]))
        candidates = [Candidate(named(i), records[i].abspath, *sizes[i], records[i].size) for i in images]
        return ordered[choose_keeper([candidates[j] for j in ordered])]

    star, near_link = _stars([c for c in pending if len(c) > EXACT_UP_TO], check, choose)
    best_star, best_link = _best_stars([c for c in pending if len(c) <= EXACT_UP_TO], check, choose)
    star.update(best_star)
    near_link.update(best_link)
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
    """Keepers and their copies in large components. Per component, `choose` (the keep rule) picks a keeper and
    every other image that copies it joins it; `choose` picks the next keeper among the images left, and so on:
    each image joins the first keeper that it copies. (Joining the keeper it copies best instead scatters
    CIFAR-10's clusters: ciFAIR recall 105/124 against 113, docs/groups.md.)
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


def _best_stars(components: list[list[int]], check: LinkCheck, choose) -> tuple[dict[int, list[int]], dict[int, tuple]]:
    """Keepers and their copies in small components: per component, the split into stars (each member a copy of
    its group's first image in keep order) holding the most copy relations, then the highest summed score.
    Every pair is checked once, the earlier image (in keep order) as the keeper, all components in one batch."""
    sequences = [_keep_sequence(images, choose) for images in components]
    firsts = [a for images in sequences for i, a in enumerate(images) for _ in images[i + 1 :]]
    seconds = [b for images in sequences for i in range(len(images)) for b in images[i + 1 :]]
    star: dict[int, list[int]] = {}
    if not firsts:  # no component of two images or more (twins are one image): every image keeps alone
        return {images[0]: [] for images in sequences}, {}
    checked = check(np.array(firsts, dtype=np.int64), np.array(seconds, dtype=np.int64))
    answer = {pair: i for i, pair in enumerate(zip(firsts, seconds))}
    near_link: dict[int, tuple] = {}
    for images in sequences:
        keeper_of = _best_split(images, checked, answer)
        for image, keeper in zip(images, keeper_of):
            if image == keeper:
                star[image] = []
        for image, keeper in zip(images, keeper_of):
            if image != keeper:
                i = answer[(keeper, image)]
                star[keeper].append(image)
                near_link[image] = (keeper, int(checked.distance[i]), float(checked.score[i]), checked.transform[i])
    return star, near_link


def _keep_sequence(images: list[int], choose) -> list[int]:
    """The images in the keep rule's order: its choice among them, then its choice among the rest, and so on."""
    rest, sequence = list(images), []
    while rest:
        sequence.append(rest.pop(choose(rest)))
    return sequence


def _best_split(images: list[int], checked: Checked, answer: dict[tuple[int, int], int]) -> list[int]:
    """Each image's keeper (itself for a keeper) in the split that holds the most copy relations, then the highest
    summed score (a branch-and-bound search over the images in keep order: each joins a keeper it copies, or
    becomes one; the first best split found wins, and joining comes before starting a group)."""
    count = len(images)
    copies = [[False] * count for _ in range(count)]  # copies[k][x]: x (later in keep order) copies k
    strength = [[0.0] * count for _ in range(count)]
    for k in range(count):
        for x in range(k + 1, count):
            i = answer[(images[k], images[x])]
            if checked.linked[i]:
                copies[k][x] = True
                score = float(checked.score[i])  # NaN under --no-verify: the closer hash decides instead
                strength[k][x] = score if score == score else 1 - int(checked.distance[i]) / 64
    # what the images from x on can add at most: each relation to an earlier image
    left = [(0, 0.0)] * (count + 1)
    for x in range(count - 1, -1, -1):
        relations = sum(copies[k][x] for k in range(x))
        left[x] = (left[x + 1][0] + relations, left[x + 1][1] + sum(strength[k][x] for k in range(x)))
    best: list = [(-1, 0.0), []]
    keeper_of = [0] * count
    members: dict[int, list[int]] = {}

    def search(x: int, relations: int, total: float) -> None:
        if (relations + left[x][0], total + left[x][1]) <= best[0]:
            return  # cannot beat the best split found so far
        if x == count:
            best[0], best[1] = (relations, total), list(keeper_of)
            return
        for keeper in [k for k in members if copies[k][x]]:
            group = members[keeper]
            gained = sum(copies[m][x] for m in group), sum(strength[m][x] for m in group)
            group.append(x)
            keeper_of[x] = keeper
            search(x + 1, relations + gained[0], total + gained[1])
            group.pop()
        members[x] = [x]
        keeper_of[x] = x
        search(x + 1, relations, total)
        del members[x]

    search(0, 0, 0.0)
    return [images[k] for k in best[1]]


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
            records[i].name,
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
