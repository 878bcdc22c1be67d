"""The incremental index: a scan's search state, kept so that a few changed files update the groups.

A full scan of n images searches and verifies every candidate pair. When only a few files were added, changed
or removed since the last scan of the same folders with the same settings, the pairs that can change are the
ones that touch those files, plus the neighbour lists they enter or leave. The state kept per (roots, settings):

- every item's identity (absolute path, size, mtime_ns) and its 8x8 descriptor (verify.descriptors);
- its raw nearest-neighbour lists (k + 1 entries with their similarities, then those of its half-shifted
  descriptors: verify.query_segments), as the scan's search found them;
- the verified near pairs, and the "band" pairs (scored between band_from and min_similarity), which a removal
  may make worth refining again (a full scan skips the refinement of pairs already joined).

An update then: maps old items to current records; recomputes, by exact search, the neighbour lists of new items,
of items that lost a neighbour and of items a new item enters; verifies only the new candidate pairs (hash radius
and digests against everything, neighbour-list entries); drops verified pairs that are no longer candidates by
any source; refines the band pairs whose groups a removal split; and forms groups with the same function as the
full scan (groups.build_groups). Exact when the full scan's neighbour search is exact (up to 20,000 images); above
that the full scan uses an approximate (IVF) search and a full rescan can differ in rare neighbour candidates.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from pathlib import Path

import numpy as np

from .cache import FingerprintCache
from .discover import RecordTable
from .model import ImageRecord, Settings
from .regroup import components
from .verify import (
    HALF_SHIFTS,
    CascadeSettings,
    descriptors,
    exact_nearest,
    half_shift_matrix,
    half_shift_norms,
    half_shifted,
    query_segments,
    verify,
)

STATE_VERSION = 3  # bump when the stored arrays change meaning (3: the half-shifted lists beside the plain one)
MAX_CHANGED = 0.2  # above this share of changed items, a full search is as cheap: the caller does one
_EMPTY_PAIRS = np.empty((0, 2), dtype=np.int64)
_ABSPATH, _SIZE, _MTIME = attrgetter("abspath"), attrgetter("size"), attrgetter("mtime_ns")


@dataclass(slots=True)
class Facts:
    """Per item: the hash, the byte and pixel digests and the decoded size (what grouping needs)."""

    hashes: np.ndarray  # (n, 8) uint8
    byte_digests: np.ndarray  # (n, 16) uint8
    pixel_digests: np.ndarray  # (n, 16) uint8
    sizes: np.ndarray  # (n, 2) int64: width, height

    @classmethod
    def of(cls, fingerprints: Sequence, method: str) -> Facts:  # Sequence[Fingerprint]
        count = len(fingerprints)
        return cls(
            np.frombuffer(b"".join(f.hashes[method] for f in fingerprints), dtype=np.uint8).reshape(count, 8),
            np.frombuffer(b"".join(f.byte_digest for f in fingerprints), dtype=np.uint8).reshape(count, 16),
            np.frombuffer(b"".join(f.pixel_digest for f in fingerprints), dtype=np.uint8).reshape(count, 16),
            np.array([f.width for f in fingerprints] + [f.height for f in fingerprints], dtype=np.int64)
            .reshape(2, count)
            .T.copy(),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "hashes": self.hashes,
            "byte_digests": self.byte_digests,
            "pixel_digests": self.pixel_digests,
            "wh": self.sizes,
        }

    @classmethod
    def from_arrays(cls, data: Mapping[str, np.ndarray]) -> Facts:
        return cls(data["hashes"], data["byte_digests"], data["pixel_digests"], data["wh"])

    def take(self, rows: np.ndarray) -> Facts:
        return Facts(self.hashes[rows], self.byte_digests[rows], self.pixel_digests[rows], self.sizes[rows])

    @staticmethod
    def concat(parts: Sequence[Facts]) -> Facts:
        return Facts(*(np.concatenate([getattr(p, name) for p in parts]) for name in Facts.__slots__))


class Names(Sequence[str]):
    """The items' absolute paths as one UTF-8 blob and the end of each: a million names load (memory-mapped)
    without a million str objects; one is decoded when asked for, all of them only when iterated."""

    def __init__(self, blob: np.ndarray, ends: np.ndarray) -> None:
        # uint8, each name followed by a NUL; int64, the NUL after each name (plain views of a mapped file:
        # numpy's memmap subclass costs ~15 us an index)
        self.blob, self.ends = blob.view(np.ndarray), ends.view(np.ndarray)
        self._all: list[str] | None = None

    @classmethod
    def of(cls, paths: Sequence[str]) -> Names:
        if isinstance(paths, Names):
            return paths
        blob = np.frombuffer("".join(p + "\0" for p in paths).encode("utf-8", "surrogateescape"), dtype=np.uint8)
        return cls(blob, np.flatnonzero(blob == 0).astype(np.int64))

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - Sequence's overloads: an int or a slice
        if isinstance(index, slice):
            return self.tolist()[index]
        if self._all is not None:
            return self._all[index]
        index = range(len(self.ends))[index]  # negative indices, IndexError
        start = int(self.ends[index - 1]) + 1 if index else 0
        return self.blob[start : int(self.ends[index])].tobytes().decode("utf-8", "surrogateescape")

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def tolist(self) -> list[str]:
        if self._all is None:
            text = self.blob.tobytes().decode("utf-8", "surrogateescape")
            self._all = text.split("\0")[:-1] if text else []
        return self._all


@dataclass(slots=True)
class SearchState:
    paths: Sequence[str]  # absolute paths (cache keys), one per item (a list, or Names as stored)
    sizes: np.ndarray  # int64
    mtimes: np.ndarray  # int64
    desc: np.ndarray  # (n, 64) float32 descriptors
    knn_sims: np.ndarray  # (n, width) float32, the raw neighbour searches side by side (verify.query_segments)
    knn_ids: np.ndarray  # (n, width) int64, -1 for none
    verified: np.ndarray  # (m, 2) int64, i < j: near pairs that passed verification
    band: np.ndarray  # (b, 2) int64, i < j: pairs scored in [band_from, min_similarity)
    facts: Facts | None = None  # the items' hashes, digests and sizes: a query needs no fingerprint lookup
    # the last groups, so that an update builds only the components that changed (regroup.py): each item's
    # component label and group id (-1: none), and the token of the stored groups (FingerprintCache.groups_key)
    components: np.ndarray | None = None
    group_ids: np.ndarray | None = None
    groups_token: bytes = b""
    # (n, len(HALF_SHIFTS)) float32, verify.half_shift_norms: the update's "which lists does a new item enter"
    # test is then one small product per shift (None in a state written before them: computed when needed)
    shift_norms: np.ndarray | None = None
    folder: Path | None = None  # the folder it was loaded from (load_state): search structures kept beside it

    def arrays(self) -> dict[str, np.ndarray]:
        """The state as named arrays (what store_state writes, one .npy file each)."""
        names = Names.of(self.paths)
        return {
            "version": np.array([STATE_VERSION]),
            "names": names.blob,
            "name_ends": names.ends,
            "sizes": self.sizes,
            "mtimes": self.mtimes,
            "desc": self.desc,
            "knn_sims": self.knn_sims,
            "knn_ids": self.knn_ids,
            "verified": self.verified,
            "band": self.band,
            **({} if self.facts is None else self.facts.arrays()),
            **({} if self.shift_norms is None else {"shift_norms": self.shift_norms}),
            **self._grouping(),
        }

    def to_bytes(self) -> bytes:
        """The state as one .npz blob (the format kept in the cache's table before the state folders)."""
        buffer = io.BytesIO()
        arrays = self.arrays()
        del arrays["name_ends"]
        arrays["names"] = arrays["names"][:-1]  # that format: the names joined by NULs, none after the last
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    def _grouping(self) -> dict[str, np.ndarray]:
        if self.components is None or self.group_ids is None or not self.groups_token:
            return {}
        token = np.frombuffer(self.groups_token, dtype=np.uint8)
        return {"components": self.components, "group_ids": self.group_ids, "groups_token": token}

    @classmethod
    def from_arrays(cls, data: Mapping[str, np.ndarray], folder: Path | None = None) -> SearchState | None:
        """The state from its named arrays, or None when they cannot be read back (another version, damage):
        then a full search runs."""
        try:
            if int(data["version"][0]) != STATE_VERSION:
                return None
            blob = data["names"]
            ends = data["name_ends"] if "name_ends" in data else np.flatnonzero(blob == 0).astype(np.int64)
            if "name_ends" not in data and len(blob):  # the blob format: names joined by NULs, none after the last
                blob = np.concatenate([blob, np.zeros(1, dtype=np.uint8)])
                ends = np.append(ends, len(blob) - 1)
            grouped = "groups_token" in data
            return cls(
                Names(blob, ends),
                data["sizes"],
                data["mtimes"],
                data["desc"],
                data["knn_sims"],
                data["knn_ids"],
                data["verified"],
                data["band"],
                Facts.from_arrays(data) if "hashes" in data else None,
                components=data["components"] if grouped else None,
                group_ids=data["group_ids"] if grouped else None,
                groups_token=data["groups_token"].tobytes() if grouped else b"",
                shift_norms=data["shift_norms"] if "shift_norms" in data else None,
                folder=folder,
            )
        except Exception:  # a damaged state is only a missed shortcut
            return None

    @classmethod
    def from_bytes(cls, blob: bytes) -> SearchState | None:
        """The state from the .npz blob of to_bytes, read into memory, or None when it cannot be read back."""
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as data:
                return cls.from_arrays({name: data[name] for name in data.files})
        except Exception:  # a damaged state is only a missed shortcut
            return None

    @classmethod
    def from_scan(
        cls, records: Sequence[ImageRecord], collect: dict, cascade: CascadeSettings, facts: Facts | None = None
    ) -> SearchState | None:
        """The state of a full scan, from what find_groups collected (None when it searched nothing)."""
        if "candidates" not in collect or "desc" not in collect:
            return None
        count = len(records)
        width = list_width(cascade)
        sims = collect.get("similarity", np.full((count, width), -np.inf, dtype=np.float32))
        ids = collect.get("found", np.full((count, width), -1, dtype=np.int64))
        candidates = collect["candidates"]
        plain = ~candidates.mirrored
        first, second, scores = candidates.first[plain], candidates.second[plain], candidates.scores[plain]
        verified = scores >= cascade.min_similarity
        band = (scores >= cascade.band_from) & ~verified
        desc = np.ascontiguousarray(collect["desc"], dtype=np.float32)
        return cls(
            [r.abspath for r in records],
            np.array([r.size for r in records], dtype=np.int64),
            np.array([r.mtime_ns for r in records], dtype=np.int64),
            desc,
            np.asarray(sims, dtype=np.float32),
            np.asarray(ids, dtype=np.int64),
            np.stack([first[verified], second[verified]], axis=1).astype(np.int64),
            np.stack([first[band], second[band]], axis=1).astype(np.int64),
            facts,
            shift_norms=half_shift_norms(desc) if cascade.shifted_neighbours else None,
        )


def load_state(cache: FingerprintCache, key: bytes) -> SearchState | None:
    """The state stored under `key`, its arrays memory-mapped from its folder (loading reads nothing); a state
    kept as one blob in the cache's table (before the folders) is read once and stored as a folder."""
    loaded = cache.load_arrays(key)
    if loaded is not None:
        return SearchState.from_arrays(*loaded)
    blob = cache.load_index(key)
    state = SearchState.from_bytes(blob) if blob else None
    if state is not None:
        store_state(cache, key, state)
    return state


def store_state(cache: FingerprintCache, key: bytes, state: SearchState) -> None:
    """Keep `state` under `key` (a new folder; the old one is removed once no row names it)."""
    state.folder = cache.store_arrays(key, state.arrays())


@dataclass(slots=True)
class Update:
    """The near pairs of the current records after an incremental update, and the state to keep."""

    first: np.ndarray
    second: np.ndarray
    state: SearchState
    changed: int  # items added or removed
    old_of: np.ndarray  # per current item, its index in the old state (-1: new or changed)


def update(
    state: SearchState,
    records: Sequence[ImageRecord],
    hashes: np.ndarray,
    thumbs_of: Callable[[np.ndarray], np.ndarray],
    settings: Settings,
    threads: int | None = None,
    limit: float | None = MAX_CHANGED,
    facts: Facts | None = None,
    old_of: np.ndarray | None = None,
) -> Update | None:
    """The verified near pairs of `records` (aligned with `hashes`), updated from `state`; None when too much
    changed (or the settings are not supported: mirrored copies), so that the caller searches everything.

    `thumbs_of(indices)`: the (len, 32, 32) uint8 thumbnails of those records (only new and candidate items).
    `old_of`: each record's row in `state` (-1: new or changed), when the caller has it already."""
    if settings.flips or not settings.verify:
        return None
    cascade = CascadeSettings(neighbours=settings.neighbours, min_similarity=settings.min_similarity)
    count = len(records)
    old_count = len(state.paths)
    if state.knn_ids.shape[1] != list_width(cascade) and old_count:
        return None
    if old_of is None:
        old_of = rows_in(state, records)
    new = np.nonzero(old_of < 0)[0]
    cur_of = np.full(old_count + 1, -1, dtype=np.int64)  # the extra last slot maps -1 (no neighbour) to -1
    kept = np.nonzero(old_of >= 0)[0]
    cur_of[old_of[kept]] = kept
    removed = int(np.count_nonzero(cur_of[:old_count] < 0))
    if limit and len(new) + removed > max(64, limit * count):
        return None

    # Descriptors of the current items: kept ones from the state, new ones from their thumbnails.
    desc = np.empty((count, 64), dtype=np.float32)
    _copy_rows(desc, kept, state.desc, old_of[kept])
    if len(new):
        desc[new] = descriptors(thumbs_of(new))
    norms = None  # each item's half-shift norms (verify.half_shift_norms), when the lists hold half shifts
    if cascade.shifted_neighbours:
        norms = np.empty((count, len(HALF_SHIFTS)), dtype=np.float32)
        stored = state.shift_norms
        if stored is not None and stored.shape == (old_count, len(HALF_SHIFTS)):
            _copy_rows(norms, kept, stored, old_of[kept])
        else:  # a state written before they were kept
            norms[kept] = half_shift_norms(desc[kept])
        norms[new] = half_shift_norms(desc[new])

    # Old neighbour lists in current indices; an entry whose item is gone becomes -1.
    width = list_width(cascade)
    old_ids = np.empty((count, width), dtype=np.int64)  # kept rows copied below, new rows empty lists
    old_sims = np.empty((count, width), dtype=np.float32)
    old_ids[new], old_sims[new] = -1, -np.inf
    gone = None  # per kept item, the entries whose item is gone (only when some were removed)
    if len(kept):
        _copy_rows(old_ids, kept, state.knn_ids, old_of[kept])
        _copy_rows(old_sims, kept, state.knn_sims, old_of[kept])
        listed = old_ids >= 0 if removed else None
        old_ids = cur_of[old_ids]  # old rows to current ones: -1 stays -1 (cur_of's last slot), a gone item's too
        if listed is not None:
            gone = (listed & (old_ids < 0))[kept]
    ids, sims = old_ids.copy(), old_sims.copy()
    best_new = _best_new(desc, new, norms, len(query_segments(cascade))) if len(new) and len(kept) else None
    again = new
    start = 0
    for segment, (shift, k) in enumerate(query_segments(cascade)):  # the plain lists, then each half shift
        lists = slice(start, start + k + 1)
        start += k + 1

        def queries(rows: np.ndarray, shift=shift) -> np.ndarray:
            return desc[rows] if shift is None else half_shifted(desc[rows], shift)

        # Lists to search again: new items, items that lost a neighbour, items a new item enters.
        lost = np.zeros(count, dtype=bool)
        if gone is not None:
            lost[kept] = gone[:, lists].any(axis=1)
        entered = np.zeros(count, dtype=bool)
        if len(new) and len(kept):
            # each list's floor: its least similar entry (-inf when not full: it takes anyone)
            empty = old_ids[:, lists] < 0
            floor = np.where(empty, np.inf, old_sims[:, lists]).min(axis=1)
            floor[empty.any(axis=1)] = -np.inf
            assert best_new is not None
            # rounding differs from the list's own similarities by ~1e-7 (_best_new), hence the margin: a row
            # let in by it is merged exactly below, where a new item that does not beat the list changes nothing
            entered[kept] = best_new[kept, segment] >= floor[kept] - 1e-4
        touched = np.union1d(np.nonzero(lost | entered)[0], new)
        again = np.union1d(again, touched)
        # New items and lists that lost an entry are searched again over everything; a list that only gains
        # entries is its old list merged with the new items (nothing else can enter it): no search over the dataset.
        research = np.union1d(np.nonzero(lost)[0], new)
        if len(research) and count >= 2:
            found_sims, found_ids = exact_nearest(desc, k, queries(research), threads)
            ids[research, lists] = -1
            sims[research, lists] = -np.inf
            ids[research, lists.start : lists.start + found_ids.shape[1]] = found_ids
            sims[research, lists.start : lists.start + found_sims.shape[1]] = found_sims
        _merge_new(np.setdiff1d(touched, research), new, desc, ids[:, lists], sims[:, lists], queries)

    def list_pairs(rows: np.ndarray, table_ids: np.ndarray, table_sims: np.ndarray) -> np.ndarray:
        """The unordered pairs the lists of `rows` propose, as sorted unique numbers low * count + high."""
        found, owners = table_ids[rows], np.broadcast_to(rows[:, None], (len(rows), table_ids.shape[1]))
        keep = (found >= 0) & (found != owners) & (table_sims[rows] >= cascade.min_descriptor_similarity)
        low, high = np.minimum(owners[keep], found[keep]), np.maximum(owners[keep], found[keep])
        return np.unique(low * count + high)

    def as_pairs(numbers: np.ndarray) -> set[tuple[int, int]]:
        return set(zip((numbers // count).tolist(), (numbers % count).tolist()))

    before = list_pairs(again, old_ids, old_sims)
    after = list_pairs(again, ids, sims)
    candidates = as_pairs(np.setdiff1d(after, before, assume_unique=True))
    # Pairs of the new items by hash radius and by equal hashes (exact copies).
    if len(new):
        candidates |= _hash_pairs(hashes, new, settings.threshold, threads)

    # Old pairs mapped to current indices (pairs of removed items are gone).
    verified = _mapped(state.verified, cur_of)
    band = _mapped(state.band, cur_of)
    # A verified or band pair that left a neighbour list is kept only while another source still proposes it.
    shrunk = removed > 0
    dropped_numbers = np.setdiff1d(before, after, assume_unique=True)
    dropped = as_pairs(dropped_numbers)
    if dropped:
        ends = np.unique(np.concatenate([dropped_numbers // count, dropped_numbers % count]))
        still = as_pairs(list_pairs(ends, ids, sims))
        left = set()
        for a, b in dropped:
            if (a, b) in still or _distance(hashes[a], hashes[b]) <= settings.threshold:
                continue
            left.add((a, b))
        if left:
            verified = _without(verified, left)
            band = _without(band, left)
            shrunk = True
    if candidates and len(verified):  # already verified: not scored again
        pending = np.array(sorted(candidates), dtype=np.int64)
        known = np.isin(pending[:, 0] * count + pending[:, 1], verified[:, 0] * count + verified[:, 1])
        candidates = set(map(tuple, pending[~known].tolist()))
    first, second, scores = _score(candidates, thumbs_of, cascade, threads)
    verified = np.concatenate([verified, np.stack([first, second], axis=1)[scores >= cascade.min_similarity]])
    in_band = (scores >= cascade.band_from) & (scores < cascade.min_similarity)
    band = np.concatenate([band, np.stack([first, second], axis=1)[in_band]])
    if shrunk:
        # A removal can split a group that held a band pair the full scan never refined: refine those now.
        joined_before = components(old_count, state.verified[:, 0], state.verified[:, 1])
        verified = _rejoin(count, verified, band, joined_before, old_of, thumbs_of, cascade, threads)
    verified = np.unique(verified, axis=0) if len(verified) else _EMPTY_PAIRS
    band = np.unique(band, axis=0) if len(band) else _EMPTY_PAIRS
    sizes, mtimes = np.empty(count, dtype=np.int64), np.empty(count, dtype=np.int64)
    sizes[kept], mtimes[kept] = state.sizes[old_of[kept]], state.mtimes[old_of[kept]]  # unchanged: rows_in
    sizes[new] = [records[i].size for i in new.tolist()]
    mtimes[new] = [records[i].mtime_ns for i in new.tolist()]
    new_state = SearchState(
        records.abspaths if isinstance(records, RecordTable) else _RecordPaths(records),
        sizes,
        mtimes,
        desc,
        sims,
        ids,
        verified,
        band,
        facts,
        shift_norms=norms,
    )
    return Update(verified[:, 0].copy(), verified[:, 1].copy(), new_state, len(new) + removed, old_of)


def _copy_rows(target: np.ndarray, rows: np.ndarray, source: np.ndarray, source_rows: np.ndarray) -> None:
    """target[rows] = source[source_rows], run by run where both are consecutive: a commit splits a million
    unchanged rows into a few runs, which slices copy at memory speed (fancy indexing goes row by row)."""
    if not len(rows):
        return
    breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(source_rows) != 1)) + 1
    if len(breaks) > len(rows) // 64:  # scattered
        target[rows] = source[source_rows]
        return
    bounds = [0, *breaks.tolist(), len(rows)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        start, origin = int(rows[lo]), int(source_rows[lo])
        target[start : start + hi - lo] = source[origin : origin + hi - lo]


class _RecordPaths(Sequence[str]):
    """The records' absolute paths, read when asked: a check that does not write its state reads none."""

    def __init__(self, records: Sequence[ImageRecord]) -> None:
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - Sequence's overloads: an int or a slice
        if isinstance(index, slice):
            return list(map(_ABSPATH, self._records[index]))
        return self._records[index].abspath

    def __iter__(self) -> Iterator[str]:
        return map(_ABSPATH, self._records)


def _best_new(desc: np.ndarray, new: np.ndarray, norms: np.ndarray | None, segments: int) -> np.ndarray:
    """(n, segments): each item's best similarity to a new item, per neighbour search (verify.query_segments:
    the descriptor, then its half shifts), without shifting any row: half_shifted(d) @ q is
    d @ (matrix @ q) / norm (verify.half_shift_norms). One product of every row with all the projections."""
    fresh = desc[new].T
    shifts = HALF_SHIFTS[: segments - 1]
    projected = np.concatenate([fresh, *(half_shift_matrix(shift) @ fresh for shift in shifts)], axis=1)
    best = np.empty((len(desc), segments), dtype=np.float32)
    step = max(256, (1 << 24) // projected.shape[1])  # rows per product: ~64 MB of similarities at most
    for lo in range(0, len(desc), step):
        block = desc[lo : lo + step] @ projected
        best[lo : lo + len(block)] = block.reshape(len(block), segments, len(new)).max(axis=2)
    if segments > 1:
        assert norms is not None
        best[:, 1:] /= norms[:, : segments - 1]
    return best


def list_width(cascade: CascadeSettings) -> int:
    """The entries an item's neighbour lists hold side by side (verify.query_segments)."""
    return sum(k + 1 for _, k in query_segments(cascade))


def _merge_new(
    rows: np.ndarray,
    new: np.ndarray,
    desc: np.ndarray,
    ids: np.ndarray,
    sims: np.ndarray,
    queries: Callable[[np.ndarray], np.ndarray] | None = None,
) -> None:
    """Merge the new items into the neighbour lists of `rows` (in place): the best width entries of the old list
    and the new items, by similarity, old entries first among equals. `queries(rows)`: the descriptors the lists
    were searched with (default: the items' own)."""
    if not len(rows) or not len(new):
        return
    width = ids.shape[1]
    for lo in range(0, len(rows), 4096):  # bounded memory: 4096 x len(new) similarities at a time
        part = rows[lo : lo + 4096]
        cand_ids = np.concatenate([ids[part], np.broadcast_to(new, (len(part), len(new)))], axis=1)
        query = desc[part] if queries is None else queries(part)
        cand_sims = np.concatenate([sims[part], query @ desc[new].T], axis=1)
        cand_sims[cand_ids < 0] = -np.inf
        top = np.argpartition(-cand_sims, width - 1, axis=1)[:, :width]
        top_sims = np.take_along_axis(cand_sims, top, axis=1)
        order = np.lexsort((top, -top_sims), axis=1)
        best = np.take_along_axis(top, order, axis=1)
        chosen_sims = np.take_along_axis(cand_sims, best, axis=1)
        chosen_ids = np.take_along_axis(cand_ids, best, axis=1)
        chosen_ids[~np.isfinite(chosen_sims)] = -1
        ids[part], sims[part] = chosen_ids, chosen_sims


def rows_in(state: SearchState, records: Sequence[ImageRecord]) -> np.ndarray:
    """Each record's row in the state when it holds the file unchanged (path, size, mtime_ns), else -1."""
    count = len(records)
    if isinstance(records, RecordTable):  # its columns: no record made
        paths: list[str] = records.abspaths
        sizes, mtimes = records.sizes, records.mtimes
    else:
        paths = list(map(_ABSPATH, records))
        sizes = np.fromiter(map(_SIZE, records), dtype=np.int64, count=count)
        mtimes = np.fromiter(map(_MTIME, records), dtype=np.int64, count=count)
    names = state.paths.tolist() if isinstance(state.paths, Names) else list(state.paths)
    old_of = _aligned(names, paths)
    if old_of is None:  # too different to walk side by side
        position = dict(zip(names, range(len(names))))
        old_of = np.fromiter(map(position.get, paths, repeat(-1)), dtype=np.int64, count=count)
    held = np.nonzero(old_of >= 0)[0]
    changed = (state.sizes[old_of[held]] != sizes[held]) | (state.mtimes[old_of[held]] != mtimes[held])
    old_of[held[changed]] = -1
    return old_of


_ALIGN_STEP = 4096  # names compared at once while the two lists agree
_ALIGN_LOOKAHEAD = (64, 1 << 16)  # how far a difference is looked past for the name that resumes the agreement
_ALIGN_DIFFERENCES = 2048  # differences walked before a dict of every name is cheaper
_ALIGN_LEFT_OVER = 1 << 16  # names left unmatched on both sides, looked up in a dict of their own


def _aligned(old: list[str], new: list[str]) -> np.ndarray | None:
    """Each name of `new` as its row in `old` (-1: absent), for two lists in the same order (a scan's records,
    the state's rows: sorted by root, then path) that differ in a few names: the runs they agree on are found by
    comparing slices (C-level string comparisons, no hash of a million names), each difference by a short look
    ahead, and the few names left over on both sides by a dict of those alone: the answer of a dict of every
    name. None when they differ in too many places (the caller makes that dict)."""
    result = np.full(len(new), -1, dtype=np.int64)
    i = j = 0
    budget = _ALIGN_DIFFERENCES
    while i < len(new) and j < len(old):
        width = min(_ALIGN_STEP, len(new) - i, len(old) - j)
        if new[i : i + width] != old[j : j + width]:
            agree, differ = 0, width  # new[i:i+agree] == old[j:j+agree]; they differ within the first `differ`
            while differ - agree > 1:
                middle = (agree + differ) // 2
                if new[i : i + middle] == old[j : j + middle]:
                    agree = middle
                else:
                    differ = middle
            width = agree
        result[i : i + width] = np.arange(j, j + width)
        i, j = i + width, j + width
        if i == len(new) or j == len(old) or new[i] == old[j]:
            continue
        budget -= 1
        if budget < 0:
            return None
        i, j = _resume(old, new, i, j)
    # the names left over on both sides, matched by a dict of those alone (a name moved out of sight: found)
    missing = np.flatnonzero(result < 0)
    taken = np.zeros(len(old), dtype=bool)
    taken[result[result >= 0]] = True
    free = np.flatnonzero(~taken)
    if len(missing) + len(free) > _ALIGN_LEFT_OVER:
        return None
    if len(missing) and len(free):
        rest = {old[row]: row for row in free.tolist()}
        result[missing] = [rest.get(new[k], -1) for k in missing.tolist()]
    return result


def _resume(old: list[str], new: list[str], i: int, j: int) -> tuple[int, int]:
    """Where two lists that differ at new[i], old[j] agree again: past old rows removed, past new names added,
    or past both (a rename, or a difference too long to look across: then neither is matched)."""
    for reach in _ALIGN_LOOKAHEAD:
        try:  # old rows removed before the next new name
            return i, old.index(new[i], j, j + reach)
        except ValueError:
            pass
        try:  # new names added before the next old one
            return new.index(old[j], i, i + reach), j
        except ValueError:
            pass
    return i + 1, j + 1


def _hash_pairs(hashes: np.ndarray, rows: np.ndarray, radius: int, threads: int | None) -> set[tuple[int, int]]:
    """Unordered pairs (i, j) of `rows` with every item within the Hamming radius (faiss range search)."""
    import faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    index = faiss.IndexBinaryFlat(64)
    index.add(np.ascontiguousarray(hashes, dtype=np.uint8))
    lims, _, found = index.range_search(np.ascontiguousarray(hashes[rows], dtype=np.uint8), radius + 1)
    owners = np.repeat(rows, np.diff(lims).astype(np.int64))
    found = found.astype(np.int64)
    keep = owners != found
    return {(min(a, b), max(a, b)) for a, b in zip(owners[keep].tolist(), found[keep].tolist())}


def _distance(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())


def _mapped(pairs: np.ndarray, cur_of: np.ndarray) -> np.ndarray:
    if not len(pairs):
        return _EMPTY_PAIRS
    mapped = cur_of[pairs]
    mapped = mapped[(mapped >= 0).all(axis=1)]
    return np.sort(mapped, axis=1)


def _without(pairs: np.ndarray, gone: set[tuple[int, int]]) -> np.ndarray:
    if not len(pairs) or not gone:
        return pairs
    dropped = np.array(sorted(gone), dtype=np.int64)
    width = int(max(pairs.max(), dropped.max())) + 1  # a pair (a, b) as the number a * width + b
    keys = pairs[:, 0].astype(np.int64) * width + pairs[:, 1]
    return pairs[~np.isin(keys, dropped[:, 0] * width + dropped[:, 1])]


def _score(
    pairs: set[tuple[int, int]], thumbs_of, cascade: CascadeSettings, threads: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """Verification scores of unordered pairs, each refined when in the band (as if nothing were joined yet)."""
    if not pairs:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float32)
    ordered = np.array(sorted(pairs), dtype=np.int64)
    involved, inverse = np.unique(ordered, return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    scores = verify(
        thumbs_of(involved),
        inverse[:, 0],
        inverse[:, 1],
        np.zeros(len(ordered), dtype=bool),
        cascade,
        threads=threads or 1,
    )
    return ordered[:, 0], ordered[:, 1], scores


def _rejoin(count, verified, band, joined_before, old_of, thumbs_of, cascade, threads) -> np.ndarray:  # noqa: ANN001
    """Refine the band pairs whose items were joined before the update (`joined_before`: component labels of the
    old items, -1 for none) and no longer are, until nothing more joins."""
    if not len(band):
        return verified
    first_old, second_old = old_of[band[:, 0]], old_of[band[:, 1]]
    was = (first_old >= 0) & (second_old >= 0)
    label = joined_before[first_old[was]]
    was[was] = (label >= 0) & (label == joined_before[second_old[was]])
    joined = band[was]  # the band pairs joined before, through other pairs
    while True:
        now = components(count, verified[:, 0], verified[:, 1])
        apart = (now[joined[:, 0]] < 0) | (now[joined[:, 0]] != now[joined[:, 1]])
        todo = {(a, b) for a, b in joined[apart].tolist()}
        if not todo:
            return verified
        first, second, scores = _score(todo, thumbs_of, cascade, threads)
        good = scores >= cascade.min_similarity
        if not good.any():
            return verified
        verified = np.concatenate([verified, np.stack([first, second], axis=1)[good]])
