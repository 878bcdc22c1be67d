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
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from pathlib import Path

import numpy as np

from .alignment import agreeing_runs
from .cache import FingerprintCache
from .discover import FolderPaths, RecordTable
from .model import ImageRecord, Root, Settings
from .regroup import components
from .verify import (
    HALF_SHIFTS,
    CascadeSettings,
    descriptors,
    exact_nearest,
    half_shift_matrix,
    half_shift_norms,
    half_shifted,
    lists_from_centroids,
    query_segments,
    verify,
)

# The arrays of a state an update reads whole (the others, such as the neighbour lists, a row at a time): what a
# pre-commit check asks the kernel to read ahead (FingerprintCache.prefetch_arrays).
READ_WHOLE = (
    "desc",
    "floors",
    "shift_norms",
    "hashes",
    "byte_digests",
    "pixel_digests",
    "wh",
    "sizes",
    "mtimes",
    "names",
    "name_ends",
    "verified",
    "band",
    "components",
    "group_ids",
)
STATE_VERSION = 3  # bump when the stored arrays change meaning (3: the half-shifted lists beside the plain one)
MAX_CHANGED = 0.2  # above this share of changed items, a full search is as cheap: the caller does one
_EMPTY_PAIRS = np.empty((0, 2), dtype=np.int64)
_EMPTY_ROWS = np.empty(0, dtype=np.int64)
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
        """The facts of `rows`, copied run by run where they are consecutive (a check takes a million rows in a
        few runs: fancy indexing goes row by row, ~0.15 s)."""
        return Facts(*_gathered([self.hashes, self.byte_digests, self.pixel_digests, self.sizes], rows))

    @staticmethod
    def concat(parts: Sequence[Facts]) -> Facts:
        return Facts(*(np.concatenate([getattr(p, name) for p in parts]) for name in Facts.__slots__))

    @staticmethod
    def patched(stored: Facts, fresh: Facts, source: np.ndarray) -> Facts:
        """Facts.concat([stored, fresh]).take(source), copied run by run: a commit leaves a million stored rows
        in a few runs, which slices copy at memory speed (a gather goes row by row)."""
        held = np.nonzero(source < len(stored.hashes))[0]
        made = np.nonzero(source >= len(stored.hashes))[0]
        columns = []
        for name in Facts.__slots__:
            old, new = getattr(stored, name), getattr(fresh, name)
            column = np.empty((len(source), *old.shape[1:]), dtype=old.dtype)
            _copy_rows(column, held, old, source[held])
            column[made] = new[source[made] - len(stored.hashes)]
            columns.append(column)
        return Facts(*columns)


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
        if isinstance(paths, FolderPaths):  # a join per folder, no string per path
            text = "".join(p + ("\0" + p).join(n) + "\0" for p, n in zip(paths.prefixes, paths.names) if n)
        else:
            text = "".join(p + "\0" for p in paths)
        blob = np.frombuffer(text.encode("utf-8", "surrogateescape"), dtype=np.uint8)
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

    def text(self, start: int, end: int) -> str:
        """Rows start to end (exclusive) as one string, each name followed by a NUL."""
        if start >= end:
            return ""
        first = int(self.ends[start - 1]) + 1 if start else 0
        return self.blob[first : int(self.ends[end - 1]) + 1].tobytes().decode("utf-8", "surrogateescape")

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
    # (n, searches) float32, list_floors: each list's least similarity (the bar a new item must reach to enter
    # it), so that an update reads these instead of every list (None in a state written before them)
    floors: np.ndarray | None = None
    # (n, 1 + len(HALF_SHIFTS)) int32 and (lists, 64) float32: each item's inverted list in the full scan's
    # search (plain, then each half shift) and the lists' centroids, so that the query structures are filled
    # without training or routing every item again (lookup.py). A full scan above APPROXIMATE_FROM items writes
    # them (None below, or in a state written before them: the structures are then trained from scratch); an
    # update keeps the lists and routes its new rows (route)
    routes: np.ndarray | None = None
    centroids: np.ndarray | None = None
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
            **({} if self.floors is None else {"floors": self.floors}),
            **({} if self.routes is None or self.centroids is None else self._routing()),
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

    def _routing(self) -> dict[str, np.ndarray]:
        return {"routes": self.routes, "centroids": self.centroids}  # type: ignore[dict-item]

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
                floors=data["floors"] if "floors" in data else None,
                routes=data["routes"] if "routes" in data and "centroids" in data else None,
                centroids=data["centroids"] if "routes" in data and "centroids" in data else None,
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
        if callable(collect["desc"]):  # made again now (verify.candidate_pairs); the function and what it holds go
            collect["desc"] = collect["desc"]()
        desc = np.ascontiguousarray(collect["desc"], dtype=np.float32)
        sims, ids = np.asarray(sims, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        return cls(
            [r.abspath for r in records],
            np.array([r.size for r in records], dtype=np.int64),
            np.array([r.mtime_ns for r in records], dtype=np.int64),
            desc,
            sims,
            ids,
            np.stack([first[verified], second[verified]], axis=1).astype(np.int64),
            np.stack([first[band], second[band]], axis=1).astype(np.int64),
            facts,
            shift_norms=half_shift_norms(desc) if cascade.shifted_neighbours else None,
            floors=list_floors(sims, ids, cascade),
            routes=collect.get("routes"),
            centroids=collect.get("centroids"),
        )


def state_key(settings: Settings, roots: Sequence[Root]) -> bytes:
    """The key a search state is kept under: the scan's settings and roots (and the engine's code, as every key)."""
    return FingerprintCache.index_key((settings, tuple(roots)))


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
    """The near pairs of the current records after an incremental update, and the state to keep (made when asked
    for: a pre-commit check that does not write its state never gathers a million rows into the records' order)."""

    first: np.ndarray
    second: np.ndarray
    changed: int  # items added or removed
    old_of: np.ndarray  # per current item, its index in the old state (-1: new or changed)
    build: Callable[[], SearchState]
    components: np.ndarray | None = None  # regroup's, given to the state when it is made
    group_ids: np.ndarray | None = None
    made: SearchState | None = None

    @property
    def state(self) -> SearchState:
        if self.made is None:
            self.made = self.build()
        self.made.components, self.made.group_ids = self.components, self.group_ids
        return self.made


# Rows per block of _entered_lists' product (their descriptors, similarities and lists stay in cache), and its
# bound on the similarities held at once (a commit of many new items: fewer rows per block).
_BEST_NEW_BLOCK, _BEST_NEW_FLOATS = 1 << 15, 1 << 22
_ENTER_MARGIN = 1e-4  # a new item's similarity may fall this far short of a list's floor (rounding) and be merged

# _sorted_unique sorts everything again when more than 1 / this of the keys follow their sorted run.
_SORTED_RUN_SHARE = 8

# Above this many removed rows, the searches of an update run over a compact copy of the kept descriptors;
# below, over the stored ones in place, asking for this many more neighbours (a removed row may be among them).
_REMOVED_SEARCHED_PAST = 1024


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
    """_update with its matrix products and faiss searches on `threads` threads (all cores when None): a caller
    whose other core is busy (a child stat-ing files: listing.Confirmation) asks for one, since a product split
    over two threads waits for the one that shares its core."""
    arguments = (state, records, hashes, thumbs_of, settings, threads, limit, facts, old_of)
    if threads is None:
        return _update(*arguments)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return _update(*arguments)


def _update(
    state: SearchState,
    records: Sequence[ImageRecord],
    hashes: np.ndarray,
    thumbs_of: Callable[[np.ndarray], np.ndarray],
    settings: Settings,
    threads: int | None,
    limit: float | None,
    facts: Facts | None,
    old_of: np.ndarray | None,
) -> Update | None:
    """The verified near pairs of `records` (aligned with `hashes`), updated from `state`; None when too much
    changed (or the settings are not supported: mirrored copies), so that the caller searches everything.

    `thumbs_of(indices)`: the (len, 32, 32) uint8 thumbnails of those records (only new and candidate items).
    `old_of`: each record's row in `state` (-1: new or changed), when the caller has it already.

    The work is done in the state's own rows, read where they lie (memory-mapped), with the new items after them
    ("ext" rows: state row r is r, new item j is len(state) + j): only the lists that change are copied, and the
    answer is mapped to the records' order at the end."""
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

    rows = _ExtRows(state, new, cur_of, removed, descriptors(thumbs_of(new)) if len(new) else None)
    new_ext = np.arange(old_count, old_count + len(new), dtype=np.int64)
    segments = query_segments(cascade)
    # Per neighbour search (the plain lists, then each half shift), the lists to search again (new items, kept
    # items that lost a neighbour) and the lists a new item enters (merged with the new items, no search).
    alive = cur_of[:old_count] >= 0
    all_lists = _list_columns(cascade)
    entering = (
        _entered_lists(
            rows.state_desc,
            rows.new_desc,
            rows.state_norms() if len(segments) > 1 else None,
            state.knn_sims,
            state.knn_ids,
            all_lists,
            alive,
            state.floors,
        )
        if len(new) and len(kept)
        else [_EMPTY_ROWS] * len(segments)
    )
    plans = []
    for (shift, k), lists, entered in zip(segments, all_lists, entering):
        lost = _EMPTY_ROWS
        if removed:
            old_ids = state.knn_ids[:, lists]
            lost = np.nonzero(alive & ((old_ids >= 0) & ~alive[np.maximum(old_ids, 0)]).any(axis=1))[0]
        research = np.union1d(lost, new_ext)
        merged = np.setdiff1d(entered, research)  # a list that lost an entry is searched again (research)
        plans.append((shift, k, lists, research, merged))
    again = np.unique(np.concatenate([new_ext, *(np.concatenate([p[3], p[4]]) for p in plans)]))
    before_ids, before_sims = rows.lists(again)
    ids, sims = before_ids.copy(), before_sims.copy()
    # New items and lists that lost an entry are searched again over everything (every search's queries in one
    # pass over the stored rows); a list that only gains entries is its old list merged with the new items
    # (nothing else can enter it): no search over the dataset.
    searched = [(research, shift) for shift, _, _, research, _ in plans if len(research)] if count >= 2 else []
    answers: Iterator[tuple[np.ndarray, np.ndarray]] = iter([])
    if searched:
        widest = max(k for _, k, _, research, _ in plans if len(research))
        all_sims, all_ids = rows.nearest(
            np.concatenate([rows.queries(r, shift) for r, shift in searched]), widest, threads
        )
        bounds = np.cumsum([0] + [len(r) for r, _ in searched]).tolist()
        answers = iter([(all_sims[lo:hi], all_ids[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])])
    alive_count = old_count - removed + len(new)
    for shift, k, lists, research, merged in plans:
        if len(research) and count >= 2:
            at = np.searchsorted(again, research)
            found_sims, found_ids = next(answers)
            width = min(k + 1, alive_count)  # the searches' answers hold the widest one's entries
            found_sims, found_ids = found_sims[:, :width], found_ids[:, :width]
            ids[at, lists] = -1
            sims[at, lists] = -np.inf
            ids[at, lists.start : lists.start + found_ids.shape[1]] = found_ids
            sims[at, lists.start : lists.start + found_sims.shape[1]] = found_sims
        if len(merged) and len(new):

            def queries(at: np.ndarray, shift: tuple[int, int] | None = shift) -> np.ndarray:
                return rows.queries(again[at], shift)

            at = np.searchsorted(again, merged)
            _merge_new(at, new_ext, None, ids[:, lists], sims[:, lists], queries, rows.new_desc)

    ext_cur = rows.ext_cur

    def list_pairs(owners: np.ndarray, table_ids: np.ndarray, table_sims: np.ndarray) -> np.ndarray:
        """The unordered pairs the lists of `owners` (ext rows) propose, as sorted unique numbers low * count +
        high in the records' order (an entry whose item is gone proposes nothing)."""
        found = ext_cur[table_ids]
        mine = np.broadcast_to(ext_cur[owners][:, None], found.shape)
        keep = (found >= 0) & (found != mine) & (table_sims >= cascade.min_descriptor_similarity)
        low, high = np.minimum(mine[keep], found[keep]), np.maximum(mine[keep], found[keep])
        return np.unique(low * count + high)

    def as_pairs(numbers: np.ndarray) -> set[tuple[int, int]]:
        return set(zip((numbers // count).tolist(), (numbers % count).tolist()))

    before = list_pairs(again, before_ids, before_sims)
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
        ends_cur = np.unique(np.concatenate([dropped_numbers // count, dropped_numbers % count]))
        ends = np.where(old_of[ends_cur] >= 0, old_of[ends_cur], old_count + np.searchsorted(new, ends_cur))
        at = np.searchsorted(again, ends).clip(max=len(again) - 1)
        ends_ids, ends_sims = rows.lists(ends)
        changed_list = again[at] == ends
        ends_ids[changed_list], ends_sims[changed_list] = ids[at[changed_list]], sims[at[changed_list]]
        still = as_pairs(list_pairs(ends, ends_ids, ends_sims))
        left = set()
        for a, b in dropped:
            if (a, b) in still or _distance(hashes[a], hashes[b]) <= settings.threshold:
                continue
            left.add((a, b))
        if left:
            kept_pairs = len(verified)
            verified = _without(verified, left)
            band = _without(band, left)
            # only a verified pair lost can split a group (band pairs join nothing): with none lost and no row
            # removed, every pair joined before still is, and _rejoin would refine nothing
            shrunk = shrunk or len(verified) < kept_pairs
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
    verified, band = _unique_pairs(verified, count), _unique_pairs(band, count)

    def build() -> SearchState:
        """The state in the records' order: kept rows copied run by run, the changed lists and the new rows
        put in, every list entry mapped to the records' order."""
        desc = np.empty((count, 64), dtype=np.float32)
        _copy_rows(desc, kept, rows.state_desc, old_of[kept])
        desc[new] = rows.new_desc
        norms = None
        if cascade.shifted_neighbours:
            norms = np.empty((count, len(HALF_SHIFTS)), dtype=np.float32)
            _copy_rows(norms, kept, rows.state_norms(), old_of[kept])
            norms[new] = rows.new_norms()
        width = list_width(cascade)
        table_ids = np.empty((count, width), dtype=np.int64)
        table_sims = np.empty((count, width), dtype=np.float32)
        _copy_rows(table_ids, kept, state.knn_ids, old_of[kept])
        _copy_rows(table_sims, kept, state.knn_sims, old_of[kept])
        table_ids[ext_cur[again]], table_sims[ext_cur[again]] = ids, sims  # new rows are all in `again`
        table_ids = ext_cur[table_ids]  # ext rows to current ones: -1 stays -1 (ext_cur's last slot)
        sizes, mtimes = np.empty(count, dtype=np.int64), np.empty(count, dtype=np.int64)
        sizes[kept], mtimes[kept] = state.sizes[old_of[kept]], state.mtimes[old_of[kept]]  # unchanged: rows_in
        sizes[new] = [records[i].size for i in new.tolist()]
        mtimes[new] = [records[i].mtime_ns for i in new.tolist()]
        routes = None
        if state.routes is not None and state.centroids is not None and len(state.routes) == old_count:
            # the lists stay the full scan's: kept rows keep theirs, new rows go to their nearest centroid
            routes = np.empty((count, state.routes.shape[1]), dtype=np.int32)
            _copy_rows(routes, kept, state.routes, old_of[kept])
            routes[new] = route(state.centroids, rows.new_desc, state.routes.shape[1])
        return SearchState(
            records.abspaths if isinstance(records, RecordTable) else _RecordPaths(records),
            sizes,
            mtimes,
            desc,
            table_sims,
            table_ids,
            verified,
            band,
            facts,
            shift_norms=norms,
            floors=list_floors(table_sims, table_ids, cascade),
            routes=routes,
            centroids=None if routes is None else state.centroids,
        )

    return Update(verified[:, 0].copy(), verified[:, 1].copy(), len(new) + removed, old_of, build)


class _ExtRows:
    """The rows an update works in: the state's (memory-mapped, read in place), then the new items'."""

    def __init__(
        self,
        state: SearchState,
        new: np.ndarray,
        cur_of: np.ndarray,
        removed: int,
        new_desc: np.ndarray | None,
    ) -> None:
        self.state, self.new, self.removed = state, new, removed
        self.old_count = len(state.paths)
        self.state_desc = np.ascontiguousarray(state.desc, dtype=np.float32)
        self.new_desc = np.empty((0, 64), dtype=np.float32) if new_desc is None else new_desc
        # ext row -> current row (-1: removed); the extra last slot maps -1 (no entry) to -1
        self.ext_cur = np.concatenate([cur_of[: self.old_count], new, [-1]]).astype(np.int64)
        self._norms: np.ndarray | None = None
        self._base: tuple[np.ndarray, np.ndarray | None, int] | None = None

    def state_norms(self) -> np.ndarray:
        """The stored rows' half-shift norms (computed once for a state written before they were kept)."""
        if self._norms is None:
            stored = self.state.shift_norms
            good = stored is not None and stored.shape == (self.old_count, len(HALF_SHIFTS))
            self._norms = stored if stored is not None and good else half_shift_norms(self.state_desc)
        return self._norms

    def new_norms(self) -> np.ndarray:
        return half_shift_norms(self.new_desc)

    def desc(self, rows: np.ndarray) -> np.ndarray:
        """The descriptors of ext rows."""
        result = np.empty((len(rows), 64), dtype=np.float32)
        stored = rows < self.old_count
        result[stored] = self.state_desc[rows[stored]]
        result[~stored] = self.new_desc[rows[~stored] - self.old_count]
        return result

    def queries(self, rows: np.ndarray, shift: tuple[int, int] | None) -> np.ndarray:
        """What the lists of ext rows were searched with (verify.query_segments)."""
        desc = self.desc(rows)
        return desc if shift is None else half_shifted(desc, shift)

    def lists(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored lists of ext rows (ext rows as entries), empty for new items."""
        width = self.state.knn_ids.shape[1]
        ids = np.full((len(rows), width), -1, dtype=np.int64)
        sims = np.full((len(rows), width), -np.inf, dtype=np.float32)
        stored = rows < self.old_count
        ids[stored], sims[stored] = self.state.knn_ids[rows[stored]], self.state.knn_sims[rows[stored]]
        return ids, sims

    def nearest(self, queries: np.ndarray, k: int, threads: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The k + 1 most similar current items of each query (ext rows), as an exact search of the records in
        their order finds them: ties go to the item first in the records' order."""
        alive = self.old_count - self.removed + len(self.new)
        width = min(k + 1, alive)
        base, base_ext, dead = self._searched()
        sims, ids = [], []
        if len(base):
            found_sims, found = exact_nearest(base, min(width + dead, len(base)) - 1, queries, threads)
            found = found.astype(np.int64)
            if base_ext is not None:
                found = np.where(found >= 0, base_ext[np.maximum(found, 0)], -1)
            sims.append(found_sims)
            ids.append(found)
        if len(self.new):
            found_sims, found = exact_nearest(self.new_desc, min(width, len(self.new)) - 1, queries, threads)
            sims.append(found_sims)
            ids.append(np.where(found >= 0, found.astype(np.int64) + self.old_count, -1))
        all_sims, all_ids = np.concatenate(sims, axis=1), np.concatenate(ids, axis=1)
        current = self.ext_cur[all_ids]
        all_sims = np.where(current >= 0, all_sims, -np.inf).astype(np.float32)
        order = np.lexsort((np.where(current >= 0, current, np.iinfo(np.int64).max), -all_sims), axis=1)[:, :width]
        chosen_sims = np.take_along_axis(all_sims, order, axis=1)
        chosen_ids = np.take_along_axis(all_ids, order, axis=1)
        chosen_ids[~np.isfinite(chosen_sims)] = -1
        return chosen_sims, chosen_ids

    def _searched(self) -> tuple[np.ndarray, np.ndarray | None, int]:
        """The stored descriptors a search runs over: in place with the removed rows among them (asked past),
        or, when many were removed, a compact copy of the kept ones and their ext rows."""
        if self._base is None:
            if self.removed <= _REMOVED_SEARCHED_PAST:
                self._base = (self.state_desc, None, self.removed)
            else:
                kept_rows = np.nonzero(self.ext_cur[: self.old_count] >= 0)[0]
                self._base = (np.ascontiguousarray(self.state_desc[kept_rows]), kept_rows, 0)
        return self._base


def _column_fold(function: np.ufunc, table: np.ndarray) -> np.ndarray:
    """function.reduce(table, axis=1) for a table of a few columns, column by column: numpy's reduction over a
    short row is ~5x slower than a few whole-column operations (the floors of a million lists)."""
    result = np.array(table[:, 0])
    for column in range(1, table.shape[1]):
        function(result, table[:, column], out=result)
    return result


def _unique_pairs(pairs: np.ndarray, count: int) -> np.ndarray:
    """np.unique(pairs, axis=0) for pairs of row numbers below `count`, as one integer each (axis=0 sorts rows
    as opaque records: slow). An update's pairs are the stored ones, mapped in order, then the few it found:
    the sorted run they start with is merged with the rest sorted, not sorted again."""
    if not len(pairs):
        return _EMPTY_PAIRS
    keys = _sorted_unique(pairs[:, 0].astype(np.int64) * count + pairs[:, 1])
    return np.stack([keys // count, keys % count], axis=1)


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """np.unique(keys), in linear time when all but a few of them come first in increasing order."""
    descents = np.flatnonzero(keys[1:] <= keys[:-1])
    head = len(keys) if not len(descents) else int(descents[0]) + 1
    if len(keys) - head > len(keys) // _SORTED_RUN_SHARE:
        return np.unique(keys)
    run, rest = keys[:head], np.unique(keys[head:])
    at = np.searchsorted(run, rest)
    known = run[np.minimum(at, len(run) - 1)] == rest
    return np.insert(run, at[~known], rest[~known])


def _copy_rows(target: np.ndarray, rows: np.ndarray, source: np.ndarray, source_rows: np.ndarray) -> None:
    """target[rows] = source[source_rows], run by run where both are consecutive: a commit splits a million
    unchanged rows into a few runs, which slices copy at memory speed (fancy indexing goes row by row)."""
    if not len(rows):
        return
    runs = _runs(rows, source_rows)
    if runs is None:
        target[rows] = source[source_rows]
        return
    for start, origin, length in runs:
        target[start : start + length] = source[origin : origin + length]


def _gathered(sources: Sequence[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
    """[source[rows] for source in sources], copied run by run where the rows are consecutive (_copy_rows)."""
    taken = [np.empty((len(rows), *source.shape[1:]), dtype=source.dtype) for source in sources]
    runs = _runs(np.arange(len(rows)), rows) if len(rows) and rows.min() >= 0 else None
    for target, source in zip(taken, sources):
        if runs is None:
            target[:] = source[rows]
            continue
        for start, origin, length in runs:
            target[start : start + length] = source[origin : origin + length]
    return taken


def _runs(rows: np.ndarray, source_rows: np.ndarray) -> list[tuple[int, int, int]] | None:
    """(row, source row, length) of each run where both go up by one, or None when they are scattered (more
    than one break in 64 rows: fancy indexing is then as fast)."""
    breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(source_rows) != 1)) + 1
    if len(breaks) > len(rows) // 64:
        return None
    bounds = [0, *breaks.tolist(), len(rows)]
    return [(int(rows[lo]), int(source_rows[lo]), hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:])]


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


def _entered_lists(
    desc: np.ndarray,
    new_desc: np.ndarray,
    norms: np.ndarray | None,
    knn_sims: np.ndarray,
    knn_ids: np.ndarray,
    lists: Sequence[slice],
    alive: np.ndarray,
    floors: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Per neighbour search (verify.query_segments; its columns of the stored lists), the alive stored rows whose
    list a new item (`new_desc`) may enter: the row's best similarity to a new item reaches the list's floor, its
    least similar entry (-inf when not full: it takes anyone), from `floors` when the state keeps them (else
    read from the lists first: list_floors). The similarities of half-shifted rows come
    without shifting any: half_shifted(d) @ q is d @ (matrix @ q) / norm (verify.half_shift_norms). One pass
    over the stored rows, block by block, each block's descriptors, similarities and lists in cache; a block's
    similarities are laid out a projection per row, so the best over the new items is a maximum of long
    contiguous rows (over a short strided axis numpy is several times slower)."""
    if not lists:
        return []
    if floors is None or floors.shape != (len(desc), len(lists)):  # none kept, or another search's
        floors = _floors(knn_sims, knn_ids, lists)
    fresh = np.asarray(new_desc, dtype=np.float32)
    shifts = HALF_SHIFTS[: len(lists) - 1]
    projected = np.concatenate([fresh, *(fresh @ half_shift_matrix(shift).T for shift in shifts)])
    items = len(fresh)
    step = min(_BEST_NEW_BLOCK, max(256, _BEST_NEW_FLOATS // len(projected)))
    block = np.empty((len(projected), step), dtype=np.float32)
    best = np.empty(step, dtype=np.float32)
    found: list[list[np.ndarray]] = [[] for _ in lists]
    for lo in range(0, len(desc), step):
        hi = min(lo + step, len(desc))
        sims = block[:, : hi - lo]
        np.matmul(projected, desc[lo:hi].T, out=sims)
        for segment in range(len(lists)):
            top = best[: hi - lo]
            np.max(sims[segment * items : (segment + 1) * items], axis=0, out=top)
            if segment:
                assert norms is not None
                top /= norms[lo:hi, segment - 1]
            floor = floors[lo:hi, segment]
            # rounding differs from the list's own similarities by ~1e-7, hence the margin: a row let in by it is
            # merged exactly (_merge_new), where a new item that does not beat the list changes nothing
            entered = alive[lo:hi] & (top >= floor - _ENTER_MARGIN)
            found[segment].append(np.flatnonzero(entered) + lo)
    return [np.concatenate(parts) for parts in found]


def _list_columns(cascade: CascadeSettings) -> list[slice]:
    """Each neighbour search's columns of the lists kept side by side (verify.query_segments)."""
    bounds = np.cumsum([0] + [k + 1 for _, k in query_segments(cascade)]).tolist()
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


def route(centroids: np.ndarray, desc: np.ndarray, searches: int) -> np.ndarray:
    """(n, searches) int32: the inverted list faiss's add puts each descriptor in (its nearest centroid), as is and
    half-shifted each way (SearchState.routes' columns)."""
    lists = lists_from_centroids(centroids)  # held: it owns its quantizer
    quantizer = lists.quantizer
    routes = np.empty((len(desc), searches), dtype=np.int32)
    for column, shift in enumerate([None, *HALF_SHIFTS][:searches]):
        vectors = desc if shift is None else half_shifted(desc, shift)
        routes[:, column] = quantizer.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)[1].ravel()
    return routes


def list_floors(knn_sims: np.ndarray, knn_ids: np.ndarray, cascade: CascadeSettings) -> np.ndarray:
    """(n, searches) float32: each list's least similar entry, -inf where a list is not full (it takes anyone):
    what a new item must reach to enter it (_entered_lists)."""
    return _floors(knn_sims, knn_ids, _list_columns(cascade))


def _floors(knn_sims: np.ndarray, knn_ids: np.ndarray, lists: Sequence[slice]) -> np.ndarray:
    """list_floors of the lists in those columns."""
    floors = np.empty((len(knn_sims), len(lists)), dtype=np.float32)
    for lo in range(0, len(knn_sims), _BEST_NEW_BLOCK):  # block by block: the lists' slices stay in cache
        hi = min(lo + _BEST_NEW_BLOCK, len(knn_sims))
        for segment, columns in enumerate(lists):
            floor = _column_fold(np.minimum, knn_sims[lo:hi, columns])
            floor[_column_fold(np.minimum, knn_ids[lo:hi, columns]) < 0] = -np.inf
            floors[lo:hi, segment] = floor
    return floors


def list_width(cascade: CascadeSettings) -> int:
    """The entries an item's neighbour lists hold side by side (verify.query_segments)."""
    return sum(k + 1 for _, k in query_segments(cascade))


def _merge_new(
    rows: np.ndarray,
    new: np.ndarray,
    desc: np.ndarray | None,
    ids: np.ndarray,
    sims: np.ndarray,
    queries: Callable[[np.ndarray], np.ndarray] | None = None,
    new_desc: np.ndarray | None = None,
) -> None:
    """Merge the new items into the neighbour lists of `rows` (in place): the best width entries of the old list
    and the new items, by similarity, old entries first among equals. `queries(rows)`: the descriptors the lists
    were searched with (default: the items' own); `new_desc`: the new items' descriptors (default: desc[new])."""
    if not len(rows) or not len(new):
        return
    width = ids.shape[1]
    fresh = (desc[new] if new_desc is None else new_desc).T  # type: ignore[index]
    for lo in range(0, len(rows), 4096):  # bounded memory: 4096 x len(new) similarities at a time
        part = rows[lo : lo + 4096]
        cand_ids = np.concatenate([ids[part], np.broadcast_to(new, (len(part), len(new)))], axis=1)
        query = desc[part] if queries is None else queries(part)  # type: ignore[index]
        cand_sims = np.concatenate([sims[part], query @ fresh], axis=1)
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
    old_of = None
    if isinstance(records, RecordTable):  # its columns: no record made
        paths: Sequence[str] = records.abspaths
        sizes, mtimes = records.sizes, records.mtimes
        if isinstance(paths, FolderPaths) and isinstance(state.paths, Names):
            old_of = _rows_by_folder(state.paths, paths, records)
    else:
        paths = list(map(_ABSPATH, records))
        sizes = np.fromiter(map(_SIZE, records), dtype=np.int64, count=count)
        mtimes = np.fromiter(map(_MTIME, records), dtype=np.int64, count=count)
    if old_of is None:
        names = state.paths.tolist() if isinstance(state.paths, Names) else list(state.paths)
        listed = paths.tolist() if isinstance(paths, FolderPaths) else paths if isinstance(paths, list) else list(paths)
        old_of = _aligned(names, listed)
        if old_of is None:  # too different to walk side by side
            position = dict(zip(names, range(len(names))))
            old_of = np.fromiter(map(position.get, listed, repeat(-1)), dtype=np.int64, count=count)
    held = np.nonzero(old_of >= 0)[0]
    changed = (state.sizes[old_of[held]] != sizes[held]) | (state.mtimes[old_of[held]] != mtimes[held])
    old_of[held[changed]] = -1
    return old_of


def _rows_by_folder(names: Names, paths: FolderPaths, records: RecordTable) -> np.ndarray | None:
    """rows_in's rows for records whose paths are kept folder by folder: each folder's names found in the
    state's rows as one block of text (its rows: those that start with the folder's path, found by binary
    search within its root's rows) and matched to them by comparing the two texts (_folder_rows). No string per
    unchanged file. None when a root's path is inside another's (their rows need not be apart)."""
    relative = records.paths
    assert isinstance(relative, FolderPaths)
    base_of: dict[int, str] = {}  # each root's path: a folder's absolute prefix without its relative one
    for number, absolute, inside in zip(paths.roots, paths.prefixes, relative.prefixes):
        base_of.setdefault(number, absolute[: len(absolute) - len(inside)])
    ordered = sorted(base_of.values())
    if any(b.startswith(a) for a, b in zip(ordered, ordered[1:])):
        return None
    result = np.full(len(paths), -1, dtype=np.int64)
    root_end = 0  # each root's rows follow the last's (the records' order)
    current = -1
    for k, (number, prefix, folder_names) in enumerate(zip(paths.roots, paths.prefixes, paths.names)):
        if number != current:  # this root's rows: from the last root's end, while they start with its path
            current = number
            root_start = root_end
            root_end = _block_end(names, base_of[number], root_start)
        lo = bisect_left(names, prefix, root_start, root_end)
        hi = bisect_left(names, prefix[:-1] + chr(ord("/") + 1), lo, root_end)  # past every name under prefix
        start = paths.starts[k]
        first = int(names.ends[lo - 1]) + 1 if lo else 0
        last = int(names.ends[hi - 1]) + 1 if hi > lo else first
        rows = _folder_rows(names.blob[first:last], names.ends[lo:hi] - first, folder_names, prefix)
        result[start : start + len(folder_names)] = np.where(rows >= 0, rows + lo, -1)
    return result


_TEXT_WINDOW = 1 << 16  # bytes of two folders' texts compared at once while they agree


def _folder_rows(old_text: np.ndarray, old_ends: np.ndarray, names: list[str], prefix: str) -> np.ndarray:
    """Each of a folder's names (sorted) as its row among the state's rows under that folder's path, -1 when
    absent. `old_text`: those rows' paths as bytes, each followed by a NUL (at `old_ends`), sorted alike. The two
    texts are compared a window at a time (numpy); the names before the first differing byte are the same on
    both sides, and at a difference the name that sorts first is the one the other side lacks. A name is
    matched only where the bytes agree: never a wrong row."""
    text = np.frombuffer((prefix + ("\0" + prefix).join(names) + "\0").encode("utf-8", "surrogateescape"), np.uint8)
    ends = np.flatnonzero(text == 0)
    result = np.full(len(names), -1, dtype=np.int64)
    i = j = 0  # the next name of each side
    while i < len(names) and j < len(old_ends):
        here = int(ends[i - 1]) + 1 if i else 0
        there = int(old_ends[j - 1]) + 1 if j else 0
        offset = 0
        while True:  # the first byte where the texts differ from here and there on (or where one ends)
            ours = text[here + offset : here + offset + _TEXT_WINDOW]
            theirs = old_text[there + offset : there + offset + _TEXT_WINDOW]
            width = min(len(ours), len(theirs))
            differ = np.flatnonzero(ours[:width] != theirs[:width])
            if len(differ):
                offset += int(differ[0])
                break
            offset += width
            if width < _TEXT_WINDOW:
                break
        agreed = int(np.searchsorted(ends, here + offset)) - i  # names whose NUL precedes the difference
        result[i : i + agreed] = np.arange(j, j + agreed)
        i, j = i + agreed, j + agreed
        if i == len(names) or j == len(old_ends):
            break
        start = int(old_ends[j - 1]) + 1 if j else 0
        theirs_name = old_text[start : int(old_ends[j])].tobytes().decode("utf-8", "surrogateescape")[len(prefix) :]
        if names[i] < theirs_name:
            i += 1  # a name the state does not hold
        else:
            j += 1  # a row no longer listed
    return result


def _block_end(names: Names, base: str, start: int) -> int:
    """The end of the run of rows from `start` whose names start with `base` (galloping, then a binary
    search: the run is followed by other roots' rows only)."""
    step, end = 1, start
    while end < len(names) and names[end].startswith(base):
        end = start + step
        step *= 2
    lo, hi = start, min(end, len(names))  # names[lo:...] start with base up to somewhere in (lo, hi]
    while lo < hi:
        middle = (lo + hi) // 2
        if names[middle].startswith(base):
            lo = middle + 1
        else:
            hi = middle
    return lo


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
    runs = agreeing_runs(old, new, step=_ALIGN_STEP, lookahead=_ALIGN_LOOKAHEAD, differences=_ALIGN_DIFFERENCES)
    if runs is None:
        return None
    result = np.full(len(new), -1, dtype=np.int64)
    for i, j, width in runs:
        result[i : i + width] = np.arange(j, j + width)
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
    first, second = cur_of[pairs[:, 0]], cur_of[pairs[:, 1]]
    kept = (first >= 0) & (second >= 0)
    first, second = first[kept], second[kept]
    return np.stack([np.minimum(first, second), np.maximum(first, second)], axis=1)  # np.sort(axis=1), faster


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
