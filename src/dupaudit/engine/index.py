"""Index files: a dataset's fingerprints and search state in one SQLite file (`dupaudit index build/update`),
and queries of new images against it (`dupaudit scan NEW --against-index INDEX`) that never touch the indexed
images: their hashes, digests, descriptors, neighbour lists and verified pairs come from the file, and only the
thumbnails of candidate pairs are read from it.

An index file is a fingerprint cache (cache.py) with a description of what it indexes (roots and settings, in
its meta table) and the incremental search state of that dataset (incremental.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, replace
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from . import incremental, lookup, regroup
from .analysis import analyse
from .cache import FingerprintCache, open_cache, read_ahead
from .discover import image_records, resolve_roots
from .fingerprint import default_jobs
from .listing import list_files
from .model import DuplicateGroup, ImageRecord, Root, ScanReport, Settings, Skipped, StoredAnswer
from .pipeline import Fingerprinted, _fill_thumbs, _report, fingerprint_records, scan
from .progress import ProgressSink
from .sources import SourceOptions, holds_container, is_plain_folder, open_source
from .sources.scanning import fingerprint_sources
from .verify import APPROXIMATE_FROM, CascadeSettings, descriptors

_META = "index"  # the meta-table key of an index file's description


def build(
    root: str | os.PathLike,
    index_path: str | os.PathLike,
    against: Sequence[str | os.PathLike] = (),
    *,
    jobs: int | None = None,
    progress: ProgressSink | None = None,
    **settings: Any,
) -> ScanReport:
    """Scan `root` (and `against`) into the index file `index_path`, keeping the search state; the report is the
    scan's. `settings`: scan()'s keyword settings (method, threshold, neighbours, min_similarity)."""
    if settings.get("flips") or settings.get("verify") is False or settings.get("method") == "cnn":
        raise InputError(
            "an index keeps the default cascade's search: --flips, --no-verify and --method cnn are not supported"
        )
    for target in (root, *against):
        if not is_plain_folder(str(target), SourceOptions()):
            raise InputError(
                f"{target}: an index holds folders of images; tar shards, Parquet and manifests can be queried "
                "against one (`dupaudit scan NEW --against-index INDEX`) but not indexed yet"
            )
    report = scan(
        root, list(against), cache_path=index_path, jobs=jobs, progress=progress, incremental=True, **settings
    )
    key = incremental.state_key(report.settings, report.roots)
    description = {
        "root": str(Path(root).resolve()),
        "against": [str(Path(a).resolve()) for a in against],
        "roots": [asdict(r) for r in report.roots],  # every field: the search state is keyed by the roots
        "settings": asdict(report.settings),
        # the key of its search state: a later version of dupaudit (whose keys differ) still finds it
        "state": key.hex(),
    }
    cache = open_cache(index_path)
    if cache is None:
        raise InputError(f"{index_path}: the index file cannot be written")
    with cache:
        cache.store_meta(_META, json.dumps(description, sort_keys=True))
        # what a query needs beyond the state, made now rather than by the first query (lookup.py)
        state = incremental.load_state(cache, key)
        if state is not None and len(state.paths) > APPROXIMATE_FROM:
            lookup.prepare(state, cache, jobs)
            _class_counts(state, report.roots)
    return report


def _root(saved: dict | list) -> Root:
    """A Root from an index description (a list [name, path, labelled] in files written before layouts)."""
    if isinstance(saved, list):
        return Root(*saved)
    return Root(**{**saved, "exclude": tuple(saved.get("exclude", ()))})


def describe(index_path: str | os.PathLike) -> dict:
    """The description an index file holds (what `build` wrote), or an InputError saying what is wrong."""
    if not Path(index_path).is_file():
        raise InputError(
            f"{index_path}: no such index file (make one with `dupaudit index build DATA -o {index_path}`)"
        )
    cache = open_cache(index_path)
    if cache is None:
        raise InputError(f"{index_path}: the index file cannot be opened")
    with cache:
        text = cache.load_meta(_META)
    if text is None:
        raise InputError(f"{index_path}: not a dupaudit index (make one with `dupaudit index build DATA -o FILE`)")
    return json.loads(text)


def update(
    index_path: str | os.PathLike, *, jobs: int | None = None, progress: ProgressSink | None = None
) -> ScanReport:
    """Bring an index up to date with its folders: only changed files are decoded, and the search state is
    updated (a full search only when much changed)."""
    description = describe(index_path)
    settings = {
        k: v for k, v in description["settings"].items() if k in ("method", "threshold", "neighbours", "min_similarity")
    }
    return build(description["root"], index_path, description["against"], jobs=jobs, progress=progress, **settings)


def query(
    new_root: str | os.PathLike,
    index_path: str | os.PathLike,
    *,
    jobs: int | None = None,
    cache_path: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: ProgressSink | None = None,
    source_options: SourceOptions | None = None,
) -> ScanReport:
    """Which images of `new_root` duplicate the indexed dataset, or each other: the groups that hold a new image,
    as a full scan of both would form them, with the index's settings. New images are fingerprinted through the
    fingerprint cache (`cache_path`); the indexed images are not opened, listed or stat'ed. `new_root` may be any
    source (tar shards, Parquet, a manifest, local or remote: engine/sources), read as `source_options` say."""
    description = describe(index_path)
    settings = Settings(**description["settings"])
    indexed_roots = tuple(_root(r) for r in description["roots"])
    key = incremental.state_key(settings, indexed_roots)
    cache = open_cache(index_path)
    if cache is None:
        raise InputError(f"{index_path}: the index file cannot be opened")
    with cache:
        state = _load_state(cache, key, description, settings)
    if state is None or state.facts is None:
        raise InputError(
            f"{index_path}: the index holds no search state for this version: run `dupaudit index update {index_path}`"
        )
    if state.folder is not None and len(state.paths) > APPROXIMATE_FROM:
        read_ahead(state.folder, lookup.QUERY_FILES)  # read while the new images are decoded

    options = source_options or SourceOptions()
    fresh_cache = open_cache(cache_path) if use_cache else None
    try:
        folder = None
        if is_plain_folder(str(new_root), options):
            folder = _new_folder(new_root, indexed_roots, settings, jobs, fresh_cache, progress, options)
        if folder is not None:
            new_roots, found, problems = folder
        else:  # another source (or a folder of tar shards, Parquet files): its reader, its roots apart from the index's
            read = fingerprint_sources(
                [open_source(str(new_root), options)],
                (settings.method,),
                jobs=jobs or default_jobs(),
                cache=fresh_cache,
                progress=progress,
                taken=[r.name for r in indexed_roots],
            )
            if not read.records and not read.skipped:
                raise InputError(f"{new_root}: no images found")
            new_roots = tuple(read.roots)
            found = Fingerprinted(read.records, read.fingerprints, read.skipped, read.decoded, read.cache_hits)
            problems = []
        _fill_thumbs(found, fresh_cache)
    finally:
        if fresh_cache is not None:
            fresh_cache.close()

    offset = len(state.paths)
    new_facts = incremental.Facts.of(found.fingerprints, settings.method)
    new_thumbs = {offset + i: f.thumb for i, f in enumerate(found.fingerprints)}
    roots = indexed_roots + new_roots
    index_cache = open_cache(index_path)
    assert index_cache is not None
    with index_cache:

        def thumbs_of(rows: np.ndarray) -> np.ndarray:
            wanted = [state.paths[i] for i in rows.tolist() if i < offset]
            stored = index_cache.thumbs(wanted)
            missing = [p for p in wanted if p not in stored]
            if missing:
                raise InputError(
                    f"{index_path}: the index lacks the thumbnails of {len(missing)} "
                    f"image{'' if len(missing) == 1 else 's'}: "
                    f"run `dupaudit index update {index_path}`"
                )
            parts = [new_thumbs[i] if i >= offset else stored[state.paths[i]] for i in rows.tolist()]
            return np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(-1, 32, 32)

        structures = lookup.prepare(state, index_cache, jobs) if offset > APPROXIMATE_FROM else None
        if structures is not None:
            groups, records = _approximate_groups(
                state, structures, found, new_facts, roots, indexed_roots, settings, thumbs_of, jobs
            )
        else:
            groups, records = _exact_groups(state, found, new_facts, roots, indexed_roots, settings, thumbs_of, jobs)
    new_names = {r.name for r in new_roots}
    touching = [g for g in groups if any(m.root in new_names for m in g.members)]
    groups = tuple(replace(g, id=i) for i, g in enumerate(touching))  # numbered again, as the report's groups
    skipped = tuple(sorted(problems + found.skipped, key=lambda s: (s.root, s.path)))
    train_split = next((r.name for r in indexed_roots if r.name == "train"), indexed_roots[0].name)
    summary, classes, splits = analyse(roots, train_split, records, list(groups), len(skipped))
    answer = StoredAnswer(summary, classes, splits, groups, skipped, train_split)
    return _report(roots, settings, answer, {}, cache_hits=found.cache_hits, decoded=found.decoded)


def _exact_groups(
    state: incremental.SearchState,
    found: Fingerprinted,
    new_facts: incremental.Facts,
    roots: tuple[Root, ...],
    indexed_roots: Sequence[Root],
    settings: Settings,
    thumbs_of: Callable[[np.ndarray], np.ndarray],
    jobs: int | None,
) -> tuple[tuple[DuplicateGroup, ...], list[ImageRecord]]:
    """The groups of the components that hold a new item, as a full scan of both forms them (an update of the
    state by the new items: exact where the full scan's search is), and every item's record."""
    assert state.facts is not None
    indexed = _indexed_records(state, indexed_roots)
    records = indexed + found.records
    facts = incremental.Facts.concat([state.facts, new_facts])
    offset = len(indexed)
    old_of = np.concatenate([np.arange(offset), np.full(len(found.records), -1)]).astype(np.int64)
    result = incremental.update(
        state, records, facts.hashes, thumbs_of, settings, threads=jobs, limit=None, facts=facts, old_of=old_of
    )
    assert result is not None  # limit=None: never refused for its size
    # only the components that hold a new image can hold a group that touches one (regroup.py)
    first, second = regroup.matched_pairs(result.first, result.second, facts)
    labels = regroup.components(len(records), first, second)
    touched = np.unique(labels[offset:][labels[offset:] >= 0])
    rows = np.nonzero(np.isin(labels, touched))[0]
    return regroup.build_in(rows, records, roots, first, second, facts, thumbs_of, settings, jobs), records


def _approximate_groups(
    state: incremental.SearchState,
    structures: dict,
    found: Fingerprinted,
    new_facts: incremental.Facts,
    roots: tuple[Root, ...],
    indexed_roots: Sequence[Root],
    settings: Settings,
    thumbs_of: Callable[[np.ndarray], np.ndarray],
    jobs: int | None,
) -> tuple[tuple[DuplicateGroup, ...], list[ImageRecord]]:
    """The groups that hold a new item, from the candidates of the stored search structures (lookup.py) and the
    stored components of the indexed items they reach: no pass over the indexed items in Python. The records
    returned are those analyse needs: the real ones of the groups' indexed members and of the new items, and
    for the other indexed items one shared record per class (a lone item counts by its class alone)."""
    assert state.facts is not None
    count = len(state.paths)
    cascade = CascadeSettings(neighbours=settings.neighbours, min_similarity=settings.min_similarity)
    new_desc = descriptors(thumbs_of(np.arange(count, count + len(found.records))))
    all_hashes = np.concatenate([state.facts.hashes, new_facts.hashes])
    pairs = lookup.candidates(state, structures, new_desc, all_hashes, cascade, settings.threshold, jobs)
    first, second, scores = incremental._score(pairs, thumbs_of, cascade, jobs)
    near = scores >= cascade.min_similarity
    first, second = first[near], second[near]
    # the stored items reached: by a verified pair or an equal digest, then their whole stored components
    reached = [first[first < count], second[second < count]]
    for column in ("byte_digests", "pixel_digests"):
        order = lookup.digest_order(state, column)
        rows, _ = lookup.equal_digests(getattr(state.facts, column), getattr(new_facts, column), order)
        reached.append(rows)
    linked = np.unique(np.concatenate(reached))
    labels = _stored_components(state)
    touched = np.unique(labels[linked][labels[linked] >= 0])
    stored_rows = np.union1d(linked, np.nonzero(np.isin(labels, touched))[0]) if len(touched) else linked
    # the sub-problem: those stored items, then the new ones
    position = np.full(count + len(found.records), -1, dtype=np.int64)
    position[stored_rows] = np.arange(len(stored_rows))
    position[count:] = len(stored_rows) + np.arange(len(found.records))
    inside = (position[state.verified[:, 0]] >= 0) & (position[state.verified[:, 1]] >= 0)
    near_a = np.concatenate([position[state.verified[inside, 0]], position[first]])
    near_b = np.concatenate([position[state.verified[inside, 1]], position[second]])
    facts = incremental.Facts.concat([state.facts.take(stored_rows), new_facts])
    members = _records_item_by_item(state, indexed_roots, stored_rows)
    local = members + found.records
    every = np.concatenate([stored_rows, np.arange(count, count + len(found.records))])
    pair_a, pair_b = regroup.matched_pairs(near_a, near_b, facts)

    def local_thumbs(rows: np.ndarray) -> np.ndarray:
        return thumbs_of(every[rows])

    groups = regroup.build_in(np.arange(len(local)), local, roots, pair_a, pair_b, facts, local_thumbs, settings, jobs)
    return groups, _records_for_counts(state, indexed_roots, members) + found.records


def _stored_components(state: incremental.SearchState) -> np.ndarray:
    """Each stored item's component label over its matched pairs (kept with the state; else computed)."""
    if state.components is not None and len(state.components) == len(state.paths):
        return np.asarray(state.components)
    assert state.facts is not None
    first, second = regroup.matched_pairs(state.verified[:, 0], state.verified[:, 1], state.facts)
    return regroup.components(len(state.paths), first, second)


_CLASSES = "classes.json"  # in a state's folder: the indexed items per class, for the query's statistics


def _records_for_counts(
    state: incremental.SearchState, roots: Sequence[Root], members: list[ImageRecord]
) -> list[ImageRecord]:
    """The indexed items for analyse: `members` (the stored items of the sub-problem) as they are, and the
    others as one shared record per class, repeated (its path names no file, so it joins no group)."""
    counts = _class_counts(state, roots)
    for record in members:
        counts[(record.root, record.label)] -= 1
    records = list(members)
    for (root, label), left in counts.items():
        records.extend([ImageRecord(root, "\0", label, 0, 0, "")] * left)
    return records


def _class_counts(state: incremental.SearchState, roots: Sequence[Root]) -> dict[tuple[str, str | None], int]:
    """How many indexed items each (root, label) holds: kept in the state's folder after the first count."""
    stored = state.folder / _CLASSES if state.folder is not None else None
    if stored is not None and stored.exists():
        try:
            return {(root, label): count for root, label, count in json.loads(stored.read_text())}
        except (OSError, ValueError):
            pass
    counts: dict[tuple[str, str | None], int] = {}
    for record in _indexed_records(state, roots):
        counts[(record.root, record.label)] = counts.get((record.root, record.label), 0) + 1
    if stored is not None:
        part = stored.with_name(f".{_CLASSES}.{os.getpid()}")
        try:
            part.write_text(json.dumps([[root, label, count] for (root, label), count in counts.items()]))
            os.replace(part, stored)
        except OSError:
            part.unlink(missing_ok=True)
    return counts


def _load_state(
    cache: FingerprintCache, key: bytes, description: dict, settings: Settings
) -> incremental.SearchState | None:
    """The index's search state: the one of this code, else the one an earlier version of dupaudit kept, read
    when its format (STATE_VERSION) is this one: an upgrade does not force a rebuild of an index. That one is
    the state the description names, or (an index described before it named its state) the most recently used
    state whose items lie under the index's roots and whose neighbour lists have the settings' width."""
    state = incremental.load_state(cache, key)
    if state is not None:
        return state
    if "state" in description:
        return incremental.load_state(cache, bytes.fromhex(description["state"]))
    prefixes = tuple(_root(r).path.rstrip(os.sep) + os.sep for r in description["roots"])
    cascade = CascadeSettings(neighbours=settings.neighbours, min_similarity=settings.min_similarity)
    for other in cache.index_keys():
        if other == key:
            continue
        state = incremental.load_state(cache, other)
        if state is None or state.facts is None or not len(state.paths):
            continue
        if state.knn_ids.shape[1] == incremental.list_width(cascade) and all(
            state.paths[i].startswith(prefixes) for i in (0, len(state.paths) - 1)
        ):
            return state
    return None


def _new_folder(
    new_root: str | os.PathLike,
    indexed_roots: Sequence[Root],
    settings: Settings,
    jobs: int | None,
    cache: FingerprintCache | None,
    progress: ProgressSink | None,
    options: SourceOptions,
) -> tuple[tuple[Root, ...], Fingerprinted, list[Skipped]] | None:
    """A new folder's roots (renamed where the index has the name: "new-<name>"), fingerprinted, and what its
    listing could not read; None for a folder without images that holds tar shards or Parquet files (as scan)."""
    taken = {r.name for r in indexed_roots}
    renamed: list[Root] = []
    for root in resolve_roots(new_root):
        name = root.name if root.name not in taken else f"new-{root.name}"
        while name in taken:
            name = f"new-{name}"
        taken.add(name)
        renamed.append(replace(root, name=name))  # keeps the layout's role, label rule and exclusions
    listing = list_files(tuple(renamed))
    records = image_records(listing)
    if not records and options.source_type is None and holds_container(str(new_root)):
        return None
    if not records and not listing.problems:
        raise InputError(f"{new_root}: no images found")
    found = fingerprint_records(records, (settings.method,), jobs=jobs, cache=cache, progress=progress)
    return tuple(renamed), found, [Skipped(*p) for p in listing.problems]


def _indexed_records(state: incremental.SearchState, roots: Sequence[Root]) -> list[ImageRecord]:
    """The indexed items as records (root, path, label), from their stored absolute paths alone.

    The stored paths come root by root, in the roots' order: each root's run is cut off whole and its records
    made column by column (a million items: no per-item Python loop). Roots inside other roots: item by item."""
    prefixes = [r.path.rstrip(os.sep) + os.sep for r in roots]
    if any(a != b and b.startswith(a) for a in prefixes for b in prefixes):
        return _records_item_by_item(state, roots)
    paths, sizes, mtimes = state.paths, state.sizes.tolist(), state.mtimes.tolist()
    records: list[ImageRecord] = []
    start = 0
    for root, prefix in zip(roots, prefixes):
        inside = list(map(str.startswith, paths[start:], repeat(prefix)))
        end = start + (inside.index(False) if False in inside else len(inside))
        block, cut = paths[start:end], len(prefix)
        relative = [path[cut:] for path in block]
        if os.sep != "/":
            relative = [path.replace(os.sep, "/") for path in relative]
        labels: Iterable[str | None] = repeat(None)
        if root.labelled:  # the first folder names the label
            labels = [head if slash else None for head, slash, _ in map(str.partition, relative, repeat("/"))]
        records.extend(
            map(ImageRecord, repeat(root.name), relative, labels, sizes[start:end], mtimes[start:end], block)
        )
        start = end
    if start != len(paths):  # (not expected) a path under no root in order: the careful way
        return _records_item_by_item(state, roots)
    return records


def _records_item_by_item(
    state: incremental.SearchState, roots: Sequence[Root], rows: np.ndarray | None = None
) -> list[ImageRecord]:
    """_indexed_records for roots that lie inside other roots (each path goes to the longest root prefix), or
    for some items of the state (`rows`)."""
    prefixes = sorted(((r.path.rstrip(os.sep) + os.sep, r) for r in roots), key=lambda p: len(p[0]), reverse=True)
    # the stored paths come root by root: the last root found is tried first, unless another root lies inside it
    alone = {prefix for prefix, _ in prefixes if not any(o != prefix and o.startswith(prefix) for o, _ in prefixes)}
    records = []
    last, root = "", roots[0]
    if rows is None:
        items = zip(state.paths, state.sizes.tolist(), state.mtimes.tolist())
    else:
        items = zip([state.paths[i] for i in rows.tolist()], state.sizes[rows].tolist(), state.mtimes[rows].tolist())
    for path, size, mtime in items:
        if not (last in alone and path.startswith(last)):
            last, root = next(p for p in prefixes if path.startswith(p[0]))
        relative = path[len(last) :].replace(os.sep, "/")
        slash = relative.find("/")
        label = relative[:slash] if root.labelled and slash >= 0 else None
        records.append(ImageRecord(root.name, relative, label, size, mtime, path))
    return records
