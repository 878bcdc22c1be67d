"""Why two files of a dataset are, or are not, in one duplicate group: the scan's own decision, step by step.

The dataset is scanned as `dupaudit scan` scans it (the cache makes a repeated scan instant), then each step is
measured for the pair: digests, the hash radius, the neighbour rank, the verification score, and the keeper
(groups.py: a member must copy its group's keeper, not merely the other file).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .cache import open_cache
from .discover import discover
from .hashing import THUMB_SIZE, hamming
from .model import TRANSFORMS, DuplicateGroup, GroupMember, Root, ScanReport, Settings
from .pipeline import Fingerprinted, fingerprint_records, variant_hashes
from .verify import (
    APPROXIMATE_FROM,
    HALF_SHIFTS,
    CascadeSettings,
    descriptors,
    half_shifted,
    nearest,
    transform_codes,
    transformed,
    verify,
)


@dataclass(frozen=True, slots=True)
class Explanation:
    first: str  # dataset paths (root/path)
    second: str
    settings: Settings
    same_bytes: bool
    same_pixels: bool
    hash_distance: int
    mirrored_hash_distance: int | None  # with --flips: the first against the mirror of the second
    descriptor_similarity: float
    neighbour_rank: int  # the best rank by which the scan's neighbour search proposes the pair (0: it does not)
    similarity: float  # verification score (-1: dropped by the coarse 16x16 pass)
    mirrored_similarity: float | None  # the best score under --flips/--rotations transforms
    first_group: DuplicateGroup | None
    second_group: DuplicateGroup | None
    # "exact", "pixel", "near" (the scan groups them together), "in separate groups" (they match, but the keeper
    # rule puts them apart) or "not a duplicate"
    verdict: str
    decided_by: str  # digest, hash radius, neighbour rank, verification score or keeper
    reasons: tuple[str, ...]
    routes: tuple[
        tuple[str, str, int], ...
    ] = ()  # how the scan proposes the pair: (radius|neighbours, transform, rank)


def explain(
    root: str | os.PathLike,
    first: str | os.PathLike,
    second: str | os.PathLike,
    against=(),
    **options,
) -> Explanation:
    """Scan `root` (and `against`) with the scan's `options`, then say step by step how it judged the pair."""
    from .pipeline import scan

    if options.get("method") == "cnn":
        raise InputError("--explain does not support --method cnn yet: scan the folder with --method cnn instead")
    report = scan(root, against, **options)
    settings = report.settings
    if any(r.source != "folder" for r in report.roots):  # items of tar shards, Parquet, a manifest
        names, found = _items(report, root, against, (first, second), options)
        index = {f"{r.root}/{r.path}" for r in found.records} | {f"{s.root}/{s.path}" for s in report.skipped}
    else:
        names = [_dataset_path(report.roots, path) for path in (first, second)]
        found, index = _files(report, options)
    if names[0] == names[1]:
        raise InputError(f"{first} and {second} are the same file")
    position = {f"{r.root}/{r.path}": i for i, r in enumerate(found.records)}
    for name, given in zip(names, (first, second)):
        if name not in index:
            raise InputError(f"{given}: not an image of the dataset")
        if name not in position:
            reason = next((s.reason for s in report.skipped if f"{s.root}/{s.path}" == name), "not decoded")
            raise InputError(f"{given}: {reason}")
    a, b = (found.fingerprints[position[n]] for n in names)
    hashes = np.frombuffer(b"".join(f.hashes[settings.method] for f in found.fingerprints), np.uint8).reshape(-1, 8)
    ia, ib = position[names[0]], position[names[1]]
    thumbs = np.frombuffer(b"".join(f.thumb for f in found.fingerprints), np.uint8).reshape(-1, THUMB_SIZE, THUMB_SIZE)
    # the scan's own candidate step (pipeline.find_groups, verify.candidate_pairs), asked for these two images only
    variants = variant_hashes(found.fingerprints, thumbs, settings)
    distance = int(hamming(hashes[ia], hashes[ib]))
    mirrored = int(hamming(hashes[ia], variants[1][ib])) if 1 in variants else None
    cascade = CascadeSettings(neighbours=settings.neighbours, min_similarity=settings.min_similarity)
    proposals = _proposals(hashes, variants, thumbs, ia, ib, settings, cascade)
    within = any(source == "radius" for source, _, _, _ in proposals)
    proposed = any(source != "radius" for source, _, _, _ in proposals)
    ranked = [(rank, sim) for source, _, rank, sim in proposals if source == "neighbours"]
    rank, descriptor_similarity = min(ranked) if ranked else _exact_rank(thumbs, ia, ib)
    pair = np.stack([thumbs[ia], thumbs[ib]])
    zero, one = np.array([0]), np.array([1])

    def score(code: int) -> float:  # the scan's score: either way round (a candidate may come in either order)
        return max(
            float(verify(pair, zero, one, np.array([code]), cascade)[0]),
            float(verify(pair, one, zero, np.array([code]), cascade)[0]),
        )

    similarity = score(0)
    codes = transform_codes(settings.flips, settings.rotations)
    transformed_scores = {code: score(code) for code in codes}
    mirrored_similarity = max(transformed_scores.values()) if codes else None

    group_of = {f"{m.root}/{m.path}": g for g in report.groups for m in g.members}
    groups = [group_of.get(n) for n in names]
    same_bytes, same_pixels = a.byte_digest == b.byte_digest, a.pixel_digest == b.pixel_digest
    best = max(similarity, mirrored_similarity if mirrored_similarity is not None else -1.0)
    how = sorted({TRANSFORMS[code - 1] if code else "as is" for _, code, _, _ in proposals})

    reasons = [
        f"same bytes: {'yes' if same_bytes else 'no'}",
        f"same decoded pixels: {'yes' if same_pixels else 'no'}",
    ]
    if settings.verify:
        reasons.append(
            f"{settings.method} Hamming distance {distance}: {'within' if within else 'beyond'} the candidate radius "
            f"{settings.threshold} (--threshold proposes pairs for verification; it does not decide)"
        )
    else:
        reasons.append(
            f"{settings.method} Hamming distance {distance}: {'within' if within else 'beyond'} the radius "
            f"{settings.threshold} (--no-verify: the radius decides)"
        )
    if mirrored is not None:
        reasons.append(f"{settings.method} distance to the mirrored second image {mirrored}")
    if codes:
        reasons.append(
            f"{'within' if within else 'beyond'} the radius as is or {', '.join(TRANSFORMS[c - 1] for c in codes)}"
            f" (--flips/--rotations): {len(proposals)} candidate route(s)" + (f" ({', '.join(how)})" if how else "")
        )
    if settings.verify:
        search = "approximate (inverted lists)" if len(found.records) > APPROXIMATE_FROM else "exact"
        reasons.append(
            f"neighbour rank {rank if rank else 'beyond ' + str(settings.neighbours)} in the dataset of "
            f"{len(found.records):,} images, descriptor similarity {descriptor_similarity:.3f} (the scan's {search} "
            f"search proposes each image's {settings.neighbours} nearest neighbours with similarity >= "
            f"{cascade.min_descriptor_similarity}, as is and under each transform tried, and the nearest "
            f"{cascade.shifted_neighbours} of its descriptor half-shifted each way): "
            f"{'proposed' if proposed else 'not proposed'}"
        )
        reasons.append(
            f"verification score {_score(best, cascade)} (needs >= {settings.min_similarity}; the best "
            "high-passed correlation over 1-px shifts and a 1.12x zoom, refined to half a pixel and 6% zoom per "
            f"axis when it lies between {cascade.refine_from} and the threshold, then searched over zooms up to "
            f"1.3x and shifts up to 3 px from {cascade.wide_from}, less {cascade.wide_penalty})"
        )
    for name, group in zip(names, groups):
        reasons.append(_membership(name, group))

    shared = groups[0] if groups[0] is not None and groups[0] is groups[1] else None
    if shared is not None and (same_bytes or same_pixels):
        verdict, decided_by = ("exact" if same_bytes else "pixel"), "digest"
    elif shared is not None:
        verdict, decided_by = _verdict_in_group(shared, names, settings)
        if decided_by == "keeper":
            reasons.append(f"both are copies of the keeper {_name(shared.kept)}: grouped through it")
    else:
        verdict = "not a duplicate"
        if same_pixels:  # cannot happen: twins are always grouped together; said rather than hidden
            decided_by = "digest"
        elif settings.verify and not (within or proposed):
            decided_by = "neighbour rank"
            reasons.append("not a candidate: beyond the radius and not among the nearest neighbours")
        elif not settings.verify and not within:
            decided_by = "hash radius"
        elif settings.verify and best < settings.min_similarity:
            decided_by = "verification score"
        else:
            decided_by, verdict = "keeper", "in separate groups"
            reasons.append(
                "the pair matches, but a group holds only copies of its keeper, and the split of their component "
                "into groups (engine/groups.py) gives these two different keepers"
            )
    reasons.append(f"decided by: {decided_by}")
    return Explanation(
        names[0],
        names[1],
        settings,
        same_bytes,
        same_pixels,
        distance,
        mirrored,
        descriptor_similarity,
        rank,
        similarity,
        mirrored_similarity,
        groups[0],
        groups[1],
        verdict,
        decided_by,
        tuple(reasons),
        tuple((source, TRANSFORMS[code - 1] if code else "as is", rank) for source, code, rank, _ in proposals),
    )


def _files(report: ScanReport, options: dict) -> tuple[Fingerprinted, set[str]]:
    """Every file of the folders with its fingerprint and thumbnail (the scan left them in the cache)."""
    settings = report.settings
    records, _ = discover(report.roots)
    index = {f"{r.root}/{r.path}" for r in records}
    cache = open_cache(options.get("cache_path")) if options.get("use_cache", True) else None
    try:
        found = fingerprint_records(records, (settings.method,), cache=cache, draft=settings.fast_decode)
        if cache is not None:
            missing = [r.abspath for r, f in zip(found.records, found.fingerprints) if not f.thumb]
            stored = cache.thumbs(missing) if missing else {}
            for record, fingerprint in zip(found.records, found.fingerprints):
                fingerprint.thumb = fingerprint.thumb or stored[record.abspath]
    finally:
        if cache is not None:
            cache.close()
    return found, index


def _items(report: ScanReport, root, against, given, options: dict) -> tuple[list[str], Fingerprinted]:
    """The dataset paths (root/id) of two items of sources that are not folders, and every item's fingerprint."""
    from .sources import SourceOptions
    from .sources.naming import select
    from .sources.scanning import every_item

    settings = report.settings
    cache = open_cache(options.get("cache_path")) if options.get("use_cache", True) else None
    try:
        targets = [str(t) for t in (root, *against)]
        source_options = options.get("source_options") or SourceOptions()
        records, fingerprints, sources = every_item(
            targets,
            source_options,
            settings.method,
            draft=settings.fast_decode,
            cache=cache,
            jobs=options.get("jobs") or 1,  # with a cache (the usual case) nothing is decoded again
        )
    finally:
        if cache is not None:
            cache.close()
    roots_of = {
        i: {r.name for r in report.roots if (r.source, r.path) == (s.kind, s.url)} for i, s in enumerate(sources)
    }
    known = [(r.root, r.path) for r in records] + [(s.root, s.path) for s in report.skipped]
    folders = [r for r in report.roots if r.source == "folder"]  # a folder scanned with the containers
    names = []
    for name in map(str, given):
        matches = [f"{root}/{path}" for root, path in known if name in (path, f"{root}/{path}")]
        if not matches and folders and Path(name).is_file():  # a file of that folder, given by its path
            try:
                matches = [_dataset_path(folders, name)]
            except InputError:
                pass
        for i, source in enumerate(sources):
            chosen = select(source, name)
            if chosen is not None and chosen.id is not None:
                matches += [f"{root}/{path}" for root, path in known if root in roots_of[i] and path == chosen.id]
        if not matches:
            raise InputError(f"{name}: not an item of the dataset (give an item id, e.g. a shard's path/member)")
        names.append(matches[0])
    return names, Fingerprinted(records, fingerprints, [], 0, 0)


def _dataset_path(roots: Sequence[Root], path: str | os.PathLike) -> str:
    """root/path of a file given on the command line; InputError when it is outside every root."""
    given = Path(path)
    if not given.is_file():
        raise InputError(f"{path}: no such file")
    absolute = given.parent.resolve() / given.name  # a symlinked file keeps its own name, as discovery lists it
    for root in roots:
        try:
            relative = absolute.relative_to(root.path)
        except ValueError:
            continue
        return f"{root.name}/{relative.as_posix()}"
    raise InputError(f"{path}: not inside the dataset ({', '.join(r.path for r in roots)})")


def _proposals(hashes, variants, thumbs, ia: int, ib: int, settings: Settings, cascade: CascadeSettings) -> list:
    """How the scan proposes the pair (ia, ib) for verification, as it does (pipeline.find_groups): (source, transform
    code, neighbour rank or 0, descriptor similarity or NaN) for each route: "radius" (the hash of one within the
    radius of the other's, transformed by the code), "neighbours" (one among the other's nearest neighbours, its
    descriptor transformed by the code, found by the scan's own search: verify.nearest, approximate above
    APPROXIMATE_FROM images) and "shifted neighbours" (the nearest of the other's half-shifted descriptor)."""
    routes = []
    for code, variant in ((0, hashes), *variants.items()):
        for x, y in ((ia, ib), (ib, ia)):
            if hamming(hashes[x], variant[y]) <= settings.threshold:
                routes.append(("radius", code, 0, float("nan")))
                break
    if not settings.verify or settings.neighbours <= 0:
        return routes
    desc = descriptors(thumbs)
    searches = [
        (
            "neighbours",
            code,
            settings.neighbours,
            desc[[ia, ib]] if code == 0 else descriptors(transformed(thumbs[[ia, ib]], code)),
        )
        for code in (0, *transform_codes(settings.flips, settings.rotations))
    ]
    if cascade.shifted_neighbours:  # verify.query_segments: each descriptor half-shifted each way
        searches += [
            ("shifted neighbours", 0, cascade.shifted_neighbours, half_shifted(desc[[ia, ib]], shift))
            for shift in HALF_SHIFTS
        ]
    for source, code, k, queries in searches:
        similarity, found = nearest(desc, k, queries)
        for row, other in ((0, ib), (1, ia)):
            # as verify.neighbour_pairs: the query itself is not its own neighbour; similarity must reach the floor
            hits = [(s, f) for s, f in zip(similarity[row].tolist(), found[row].tolist()) if f >= 0]
            ranked = [(s, f) for s, f in hits if f != (ia, ib)[row]]
            for rank, (sim, item) in enumerate(ranked, start=1):
                if item == other and sim >= cascade.min_descriptor_similarity:
                    routes.append((source, code, rank, sim))
    return routes


def _exact_rank(thumbs: np.ndarray, ia: int, ib: int) -> tuple[int, float]:
    """For a pair the search did not propose: (0, the descriptor similarity as is)."""
    desc = descriptors(thumbs[[ia, ib]])
    return 0, float(desc[0] @ desc[1])


def _name(member: GroupMember) -> str:
    return f"{member.root}/{member.path}"


def _membership(name: str, group: DuplicateGroup | None) -> str:
    if group is None:
        return f"{name}: in no group"
    member = next(m for m in group.members if _name(m) == name)
    if member.keep:
        return f"{name}: keeper of group {group.id} ({len(group.members)} members)"
    link = member.link
    if link is None:  # a report saved without links
        return f"{name}: in group {group.id}, kept member {_name(group.kept)}"
    details = f"distance {link.distance}" + (f", score {link.score:.3f}" if link.score is not None else "")
    details += f", {link.transform}" if link.transform else ""
    return f"{name}: in group {group.id}, {link.kind} copy of {_name(group.members[link.to])} ({details})"


def _verdict_in_group(group: DuplicateGroup, names: list[str], settings: Settings) -> tuple[str, str]:
    """The kind of the link joining the two members, and the step that decided it."""
    slot = {_name(m): i for i, m in enumerate(group.members)}
    i, j = slot[names[0]], slot[names[1]]
    for x, y in ((i, j), (j, i)):
        link = group.members[x].link
        if link is not None and link.to == y:
            return "near", "verification score" if settings.verify else "hash radius"
    return group.kind, "keeper"


def _score(value: float, cascade: CascadeSettings) -> str:
    return f"{value:.3f}" if value >= 0 else f"dropped by the coarse 16x16 check (< {cascade.min_coarse})"
