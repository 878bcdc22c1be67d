"""Groups rebuilt only where the matched pairs changed: the incremental index's grouping step.

build_groups forms the groups of each connected component of the matched pairs on its own, from the component's
items alone (their records, digests, hashes, sizes and thumbnails). So after an update, a component whose items
are all unchanged and which is exactly one component of the last scan has the last scan's groups, and only the
other components (those holding a new item, or made of a part of an old component, or of several) are built
again. The answer is the full build's (tests/test_incremental.py); the cost follows the change, not the dataset.
So do the exact and pixel pairs (equal digests): the state's are kept beside it, and only the new items' digests
are looked up (updated_equal_pairs).
"""

from __future__ import annotations

import io
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .fingerprint import default_jobs
from .groups import build_groups
from .hashing import THUMB_SIZE
from .links import verified_check
from .model import DuplicateGroup, GroupsChange, ImageRecord, Root, Settings, renumbered
from .verify import CascadeSettings

if TYPE_CHECKING:  # incremental imports this module
    from .cache import FingerprintCache
    from .incremental import SearchState

DIGEST_COLUMNS = ("byte_digests", "pixel_digests")  # incremental.Facts' digest columns, exact then pixel copies
Pairs = tuple[np.ndarray, np.ndarray]  # (first, second) item numbers


def equal_pairs(digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (first, other) joining every item of an (n, 16) digest array to the first item with its digest."""
    if not len(digests):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    count, width = digests.shape
    if width % 8:
        keys = np.ascontiguousarray(digests).view(np.dtype((np.void, width))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        owner = first[inverse.ravel()].astype(np.int64)
    else:  # as 64-bit words: a lexsort of integers, several times faster than sorting opaque byte strings
        words = np.ascontiguousarray(digests).view(np.uint64).reshape(count, width // 8)
        # stable: equal digests keep their item order, the first is the smallest; by the first word alone unless
        # two different digests share it (digests are hashes: practically never), then by every word
        order = np.argsort(words[:, 0], kind="stable")
        ordered = words[order]
        tied = ordered[1:, 0] == ordered[:-1, 0]
        if width > 8 and (ordered[1:][tied] != ordered[:-1][tied]).any():
            order = np.lexsort(words.T[::-1])
            ordered = words[order]
        starts = np.ones(count, dtype=bool)
        starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
        owner = np.empty(count, dtype=np.int64)
        owner[order] = order[starts][np.cumsum(starts) - 1]
    others = np.nonzero(owner != np.arange(count))[0]
    return owner[others], others.astype(np.int64)


def digest_pairs(facts) -> dict[str, Pairs]:  # noqa: ANN001
    """The equal_pairs of each digest column of `facts` (incremental.Facts), by column name."""
    return {column: equal_pairs(getattr(facts, column)) for column in DIGEST_COLUMNS}


def matched_pairs(
    near_a: np.ndarray,
    near_b: np.ndarray,
    facts,  # noqa: ANN001 - incremental.Facts
    equal: Mapping[str, Pairs] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Every matched pair: the verified near pairs, and the exact and pixel pairs of the digests (`facts`:
    incremental.Facts; `equal`: those pairs when known already, digest_pairs' answer)."""
    if equal is None:
        equal = digest_pairs(facts)
    (byte_a, byte_b), (pixel_a, pixel_b) = (equal[column] for column in DIGEST_COLUMNS)
    first = np.concatenate([near_a, byte_a, pixel_a]).astype(np.int64)
    second = np.concatenate([near_b, byte_b, pixel_b]).astype(np.int64)
    return first, second


def updated_equal_pairs(old_pairs: Pairs, old_digests: np.ndarray, digests: np.ndarray, old_of: np.ndarray) -> Pairs:
    """equal_pairs(digests) after an update, from the state's own pairs (`old_pairs`: equal_pairs of
    `old_digests`, in the state's rows), without a pass over every digest. `old_of`: each current item's row in
    the state (-1: new), whose digest there is its digest now.

    An item can share its digest now only if it shared it before (then every item of its digest was in a pair),
    or it is new, or a new item has its digest: equal_pairs over those items alone, in their order, pairs each
    with the first item of its digest, as over all of them."""
    cur_of = np.full(len(old_digests), -1, dtype=np.int64)
    held = np.nonzero(old_of >= 0)[0]
    cur_of[old_of[held]] = held
    new = np.nonzero(old_of < 0)[0]
    paired = cur_of[np.concatenate(old_pairs)]
    joined = cur_of[_rows_sharing_a_head(old_digests, digests[new])]
    subset = np.unique(np.concatenate([paired[paired >= 0], joined[joined >= 0], new]))
    first, other = equal_pairs(digests[subset])
    return subset[first], subset[other]


def state_equal_pairs(state: SearchState, cache: FingerprintCache) -> dict[str, Pairs] | None:
    """The equal_pairs of the state's digest columns (its rows), read from its folder, else made from its digests
    and kept there for the next update (a state written before them, or whose files could not be written); None
    when the state holds no digests."""
    if state.facts is None:
        return None
    pairs = {}
    for column in DIGEST_COLUMNS:
        kept = _read_pairs(state.folder, column, len(state.paths))
        if kept is None:
            kept = equal_pairs(getattr(state.facts, column))
            _keep_pairs(cache, state.folder, column, kept)
        pairs[column] = kept
    return pairs


def keep_equal_pairs(state: SearchState, cache: FingerprintCache, pairs: Mapping[str, Pairs]) -> None:
    """Keep digest_pairs' answer for the items of a state just written (its folder) beside it."""
    for column in DIGEST_COLUMNS:
        _keep_pairs(cache, state.folder, column, pairs[column])


def _keep_pairs(cache: FingerprintCache, folder: Path | None, column: str, pairs: Pairs) -> None:
    """One column's pairs as a file in a state's folder (none: the state has no folder)."""
    if folder is not None:
        cache.add_to_state(folder, _pairs_file(column), _npy(np.stack(pairs)))


def _pairs_file(column: str) -> str:
    """An .npy file not named .npy: the state's loader maps every .npy file of the folder as one of its arrays."""
    return f"equal-{column}.pairs"


def _read_pairs(folder: Path | None, column: str, count: int) -> Pairs | None:
    """The pairs kept in a state's folder, or None when absent or not pairs of its `count` rows."""
    if folder is None:
        return None
    try:
        pairs = np.load(folder / _pairs_file(column), allow_pickle=False)
    except (OSError, ValueError):
        return None
    if (
        pairs.dtype != np.int64
        or pairs.ndim != 2
        or len(pairs) != 2
        or (pairs.size and not 0 <= pairs.min() <= pairs.max() < count)
    ):
        return None
    return pairs[0], pairs[1]


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _rows_sharing_a_head(digests: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The rows of (n, 16) `digests` whose first 8 bytes are those of a `wanted` digest: a superset of the rows
    equal to one, enough for updated_equal_pairs (an extra row has a digest of its own, or was in a pair already)."""
    if not len(wanted) or not len(digests):
        return np.empty(0, dtype=np.int64)
    heads = np.ascontiguousarray(digests).view(np.uint64)[:, 0]  # a strided column: no copy of the digests
    wanted_heads = np.ascontiguousarray(wanted).view(np.uint64)[:, 0]
    return np.nonzero(np.isin(heads, wanted_heads))[0]


def components(count: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The component label of each item (0, 1, ... in order of their smallest item), -1 for an item in no pair.

    Hooking and pointer jumping in numpy (no scipy.sparse: its import alone costs a hook a second)."""
    labels = np.full(count, -1, dtype=np.int64)
    if not len(first):
        return labels
    parent = np.arange(count, dtype=np.int64)
    while True:
        low = np.minimum(parent[first], parent[second])
        np.minimum.at(parent, parent[first], low)  # hook each pair's roots onto the smaller one
        np.minimum.at(parent, parent[second], low)
        while True:  # jump to the roots
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        if np.array_equal(parent[first], parent[second]):
            break
    paired = np.unique(np.concatenate([first, second]))
    _, labels[paired] = np.unique(parent[paired], return_inverse=True)
    return labels


def unchanged_components(
    labels: np.ndarray, old_of: np.ndarray, old_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(rebuild, reused): a mask of the items whose component must be built again, and the old labels of the
    components kept as they were (every item unchanged, and exactly one old component)."""
    count = int(labels.max()) + 1 if len(labels) else 0
    if not count:
        return np.zeros(len(labels), dtype=bool), np.empty(0, dtype=np.int64)
    items = np.nonzero(labels >= 0)[0]
    label = labels[items]
    old = np.where(old_of[items] >= 0, old_labels[np.maximum(old_of[items], 0)], -1)
    low = np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
    high = np.full(count, -1, dtype=np.int64)
    np.minimum.at(low, label, old)
    np.maximum.at(high, label, old)
    size = np.bincount(label, minlength=count)
    old_size = np.bincount(old_labels[old_labels >= 0], minlength=1)
    same = (low == high) & (low >= 0)
    same[same] &= size[same] == old_size[np.minimum(low[same], len(old_size) - 1)]
    rebuild = np.zeros(len(labels), dtype=bool)
    rebuild[items] = ~same[label]
    return rebuild, low[same]


def build_in(
    rows: np.ndarray,
    records: Sequence[ImageRecord],
    roots: Sequence[Root],
    first: np.ndarray,
    second: np.ndarray,
    facts,  # incremental.Facts
    thumbs_of: Callable[[np.ndarray], np.ndarray],
    settings: Settings,
    jobs: int | None = None,
) -> tuple[DuplicateGroup, ...]:
    """The groups of the components made of `rows` (whole components: every pair touching a row joins two rows),
    around keepers checked by the default cascade, sorted and numbered from 0 as build_groups does."""
    if not len(rows):
        return ()
    position = np.full(len(records), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    inside = position[first] >= 0
    sub_first, sub_second = position[first[inside]], position[second[inside]]
    part = facts.take(rows)
    thumbs = np.zeros((len(rows), THUMB_SIZE, THUMB_SIZE), dtype=np.uint8)
    thumbs[:] = thumbs_of(rows)
    cascade = CascadeSettings(neighbours=settings.neighbours, min_similarity=settings.min_similarity)
    check = verified_check(thumbs, part.hashes, {}, cascade, threads=jobs or default_jobs())
    keys = part.byte_digests.tobytes(), part.pixel_digests.tobytes()
    return build_groups(
        [records[i] for i in rows.tolist()],
        {r.name: i for i, r in enumerate(roots)},
        sub_first,
        sub_second,
        [keys[0][16 * i : 16 * i + 16] for i in range(len(rows))],
        [keys[1][16 * i : 16 * i + 16] for i in range(len(rows))],
        part.hashes,
        [],
        [tuple(wh) for wh in part.sizes.tolist()],
        check,
    )


def placed(
    kept: Sequence[DuplicateGroup], built: Sequence[DuplicateGroup], roots: Sequence[Root]
) -> tuple[tuple[DuplicateGroup, ...], np.ndarray, np.ndarray]:
    """merged's answer, and the place in it of each kept and of each built group. Both are in the report's order
    already (the kept ones as they were, build_groups sorts its own), and their first members differ (a member is
    in one group): each built group is placed by a binary search among the kept ones, not by sorting them all."""
    order = {r.name: i for i, r in enumerate(roots)}

    def first_member(group: DuplicateGroup) -> tuple[int, str]:
        return (order[group.members[0].root], group.members[0].path)

    before = np.array([bisect_left(kept, first_member(g), key=first_member) for g in built], dtype=np.int64)
    built_places = before + np.arange(len(built), dtype=np.int64)
    kept_places = np.arange(len(kept), dtype=np.int64) + np.searchsorted(before, np.arange(len(kept)), side="right")
    at = dict(zip(built_places.tolist(), built)) | dict(zip(kept_places.tolist(), kept))
    every = tuple(g if g.id == place else renumbered(g, place) for place, g in sorted(at.items()))
    return every, kept_places, built_places


class Regrouped(tuple[DuplicateGroup, ...]):
    """The groups of an incremental index (a tuple of them), with what the stages after it reuse instead of
    working it out again: each current item's group id (-1: none), and the groups as a change of the stored groups
    they came from (None: none were kept). Pickled as a plain tuple."""

    ids: np.ndarray
    change: GroupsChange | None

    def __new__(cls, groups: Sequence[DuplicateGroup], ids: np.ndarray, change: GroupsChange | None) -> Regrouped:
        made = super().__new__(cls, groups)
        made.ids, made.change = ids, change
        return made

    def __reduce__(self):  # noqa: ANN204 - pickle's signature
        return (tuple, (tuple(self),))


def group_ids(groups: Sequence[DuplicateGroup], index_of: Callable[[str, str], int], count: int) -> np.ndarray:
    """Each item's group id (-1: in none), `index_of(root, path)` giving an item's index."""
    ids = np.full(count, -1, dtype=np.int64)
    for group in groups:
        for member in group.members:
            ids[index_of(member.root, member.path)] = group.id
    return ids
