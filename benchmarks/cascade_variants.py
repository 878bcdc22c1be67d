"""Variants of the cascade's candidate stage, pre-check and keeper rule, tried on one captured scan (issue 17).

    python benchmarks/cascade_variants.py [--cache FILE] [--state FILE] [VARIANT ...]

Scans CIFAR-10 once with the defaults (the cache keeps the fingerprints) and keeps what the cascade and the groups
are built from (the hash pairs, the thumbnails, build_groups' inputs); `--state FILE` saves that (about 70 MB) and
reuses it when it exists. Then, for each variant, it reruns the candidate stage and the groups and prints: candidate
pairs, verified pairs, verified pairs joining two classes (certainly not one photograph, up to CIFAR's own label
errors), groups, the judgment-1 recall of the ciFAIR development half, the test/train pairs the groups imply, label
conflicts, the candidate stage's wall and CPU seconds (search + verification, in this run: compare variants of
one run only; variants that differ only in the keeper rule share one candidate stage), the grouping's seconds,
and which judgment-1 pairs it gains and loses against the first variant. Variants (default: all):

- `default`: the scan as it is;
- `exact`: the neighbour search exact (a flat index) instead of approximate above APPROXIMATE_FROM images;
- `no-floor`: each image's nearest neighbours proposed whatever their descriptor similarity (floor 0.75 -> 0);
- `coarse-0.45`, `no-coarse`: the 16x16 pre-check's bar at 0.45 (wide_from) or none;
- `shift2-k1`, `shift2-k3`: the neighbour search also queried with each thumbnail shifted by 2 px left, right, up
  and down (edges repeated), keeping the nearest 1 (3) of each shifted query (on top of the half-shifted
  descriptors, which approximate these from the descriptor alone): the 8x8 block descriptor is not tolerant of
  the 2-3 px re-crops that the wide verification accepts;
- `no-half-shift`: without the queries by half-shifted descriptors (verify.half_shifted, shifted_neighbours 0);
- `first-keeper`: the keeper rule before the exhaustive split of small components (groups.EXACT_UP_TO = 0:
  every component by the first-keeper rule); `before`: both (the defaults before issue 17's last step);
  `split-4`, `split-12`: components of up to 4 (12) images split exhaustively instead of 8;
- `shifted-probes-1`, `-2`, `-3`: the half-shifted queries search 1, 2 or 3 inverted lists instead of
  verify._SHIFTED_PROBES (what they cost at a million images: docs/scale.md).
"""

from __future__ import annotations

import argparse
import csv
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

import dupaudit.engine.groups as groups_module
import dupaudit.engine.pipeline as pipeline
import dupaudit.engine.verify as verify
from dupaudit import scan
from dupaudit.engine.groups import build_groups
from dupaudit.engine.links import verified_check

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
make_groups: Any = build_groups  # called with the captured inputs, a list mypy cannot count
SHIFTS_2PX = ((0, 2), (0, -2), (2, 0), (-2, 0))


def capture(data: Path, cache: Path | None) -> dict:
    """One default scan's cascade inputs (hash pairs, thumbnails, block sums) and build_groups' inputs."""
    kept: dict = {}
    candidate_pairs, groups = pipeline.candidate_pairs, pipeline.build_groups

    def keep_candidates(hash_pairs, thumbs, *rest, **options):
        kept.update(hash_pairs=hash_pairs, thumbs=thumbs, sums=options.get("sums"))
        return candidate_pairs(hash_pairs, thumbs, *rest, **options)

    def keep_inputs(*inputs):
        kept["groups_inputs"] = inputs[:-1]  # all but the LinkCheck (a closure), rebuilt per variant
        return groups(*inputs)

    pipeline.candidate_pairs, pipeline.build_groups = keep_candidates, keep_inputs
    try:
        scan(data, cache_path=cache, verify_content=True)  # verify_content: no stored answer reused
    finally:
        pipeline.candidate_pairs, pipeline.build_groups = candidate_pairs, groups
    return kept


def shifted(thumbs: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Thumbnails shifted by (dy, dx) pixels, the edges repeated."""
    pad = max(abs(dy), abs(dx))
    padded = np.pad(thumbs, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    size = thumbs.shape[-1]
    return np.ascontiguousarray(padded[:, pad + dy : pad + dy + size, pad + dx : pad + dx + size])


def neighbour_search(thumbs: np.ndarray, shifts=(), k_shifted: int = 1, exact: bool = False):
    """A drop-in for verify.neighbour_pairs: optionally exact, optionally also queried with shifted thumbnails."""
    plain = verify.neighbour_pairs

    def search(desc, k, min_similarity, queries=None, threads=None, raw=None, query_items=None, index=None):
        saved = verify.APPROXIMATE_FROM
        if exact:
            verify.APPROXIMATE_FROM = len(desc) + 1
            index = None  # (the caller's index is the approximate one)
        try:
            first, second = plain(desc, k, min_similarity, queries, threads, raw, query_items, index=index)
            firsts, seconds = [first], [second]
            for dy, dx in shifts if queries is None else ():
                query = verify.descriptors(shifted(thumbs, dy, dx))
                a, b = plain(desc, k_shifted, min_similarity, queries=query, threads=threads)
                firsts.append(a)
                seconds.append(b)
        finally:
            verify.APPROXIMATE_FROM = saved
        return np.concatenate(firsts), np.concatenate(seconds)

    return search


SPLIT = groups_module.EXACT_UP_TO
SHIFT2_K1 = {"shifts": SHIFTS_2PX, "k_shifted": 1}
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], int]] = {  # name: (CascadeSettings, search, EXACT_UP_TO)
    "default": ({}, {}, SPLIT),
    "exact": ({}, {"exact": True}, SPLIT),
    "no-floor": ({"min_descriptor_similarity": 0.0}, {}, SPLIT),
    "coarse-0.45": ({"min_coarse": 0.45}, {}, SPLIT),
    "no-coarse": ({"min_coarse": -1.0}, {}, SPLIT),
    "shift2-k1": ({}, SHIFT2_K1, SPLIT),
    "shift2-k3": ({}, {"shifts": SHIFTS_2PX, "k_shifted": 3}, SPLIT),
    "no-half-shift": ({"shifted_neighbours": 0}, {}, SPLIT),
    "first-keeper": ({}, {}, 0),
    "before": ({"shifted_neighbours": 0}, {}, 0),
    "split-4": ({}, {}, 4),
    "split-12": ({}, {}, 12),
    "shifted-probes-1": ({}, {"shifted_probes": 1}, SPLIT),
    "shifted-probes-2": ({}, {"shifted_probes": 2}, SPLIT),
    "shifted-probes-3": ({}, {"shifted_probes": 3}, SPLIT),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", help=f"any of {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--data", type=Path, default=SHARED / "cifar10")
    parser.add_argument("--pairs", type=Path, default=SHARED / "cifair" / "cifar10_train_test_pairs_dev.csv")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--state", type=Path, default=None, help="save the captured scan here; reuse it if present")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}: choose among {list(VARIANTS)}")
    args.variants = args.variants or list(VARIANTS)
    if args.state is not None and args.state.exists():
        with open(args.state, "rb") as handle:
            state = pickle.load(handle)
    else:
        state = capture(args.data, args.cache)
        if args.state is not None:
            with open(args.state, "wb") as handle:
                pickle.dump(state, handle, protocol=5)
    inputs, thumbs = state["groups_inputs"], state["thumbs"]
    records, hashes = inputs[0], inputs[6]
    names = [f"{r.root}/{r.path}" for r in records]
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([r.label or "" for r in records])
    is_test = np.array([r.root == "test" for r in records])
    with open(args.pairs, newline="") as handle:
        judged = [
            (index[r["test_path"]], index[r["train_path"]]) for r in csv.DictReader(handle) if r["judgment"] == "1"
        ]
    first_missed: set | None = None
    stages: dict[str, tuple[Any, float, float]] = {}  # one candidate stage per (CascadeSettings, search)
    for name in args.variants:
        overrides, search, split = VARIANTS[name]
        cascade = verify.CascadeSettings(**overrides)
        key = repr((overrides, search))
        if key not in stages:
            plain, saved = verify.neighbour_pairs, (verify.APPROXIMATE_FROM, verify._SHIFTED_PROBES)
            options = dict(search)
            verify._SHIFTED_PROBES = options.pop("shifted_probes", verify._SHIFTED_PROBES)
            if options.get("exact"):  # the half-shifted queries too (they search the plain queries' index)
                verify.APPROXIMATE_FROM = len(thumbs) + 1
            verify.neighbour_pairs = neighbour_search(thumbs, **options)
            started, cpu = time.perf_counter(), time.process_time()
            try:
                found = verify.candidate_pairs(
                    state["hash_pairs"], thumbs, False, cascade, threads=args.jobs, groups_only=True, sums=state["sums"]
                )
            finally:
                verify.neighbour_pairs = plain
                verify.APPROXIMATE_FROM, verify._SHIFTED_PROBES = saved
            stages[key] = found, time.perf_counter() - started, time.process_time() - cpu
        found, seconds, cpu_seconds = stages[key]
        ok = found.scores >= cascade.min_similarity
        across = int((ok & (labels[found.first] != labels[found.second])).sum())
        grouped: list[Any] = list(inputs)
        grouped[2], grouped[3] = found.first[ok], found.second[ok]
        saved, groups_module.EXACT_UP_TO = groups_module.EXACT_UP_TO, split
        started = time.perf_counter()
        try:
            groups = make_groups(*grouped, verified_check(thumbs, hashes, {}, cascade, threads=args.jobs))
        finally:
            groups_module.EXACT_UP_TO = saved
        grouping = time.perf_counter() - started
        group_of, implied, conflicts = {}, 0, 0
        for group in groups:
            members = [index[f"{m.root}/{m.path}"] for m in group.members]
            group_of.update(dict.fromkeys(members, group.id))
            tests = int(is_test[members].sum())
            implied += tests * (len(members) - tests)
            conflicts += len(set(labels[members].tolist())) > 1
        missed = {(a, b) for a, b in judged if a not in group_of or group_of[a] != group_of.get(b)}
        first_missed = missed if first_missed is None else first_missed
        largest = sorted((len(g.members) for g in groups), reverse=True)[:5]
        print(
            f"{name}: {len(found.first):,} candidates, {int(ok.sum()):,} verified ({across} across classes), "
            f"{len(groups):,} groups (largest {largest}), recall {len(judged) - len(missed)}/{len(judged)}, "
            f"{implied:,} implied test/train pairs, {conflicts} label conflicts; "
            f"candidate stage {seconds:.1f} s ({cpu_seconds:.1f} s CPU), "
            f"groups {grouping:.1f} s",
            flush=True,
        )
        for verb, changed in (("gains", first_missed - missed), ("loses", missed - first_missed)):
            for a, b in sorted(changed):
                print(f"  {verb} {names[a]} {names[b]}")


if __name__ == "__main__":
    main()
