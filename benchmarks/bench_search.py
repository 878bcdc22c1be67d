"""Time dupaudit's exact Hamming search on a million random 64-bit hashes with planted near copies.

    python benchmarks/bench_search.py                  # 1,000,000 + 10,000 planted, radius 10, 3 runs
    python benchmarks/bench_search.py --n 200000 --runs 1 --check 2000   # quicker

Each timed run is a fresh process (so its peak memory is its own): it builds the hashes from a seed and calls
dupaudit.engine.search.pairs_within. Printed per radius: wall and CPU seconds (median of the runs), peak resident
memory, the number of pairs, and the recall of the planted pairs (each planted copy differs from its source in
0-8 random bits, so at radius >= 8 every one must be found). Exactness: for --check random rows, the pairs
touching them are compared with faiss's IndexBinaryFlat brute force over all rows (must be identical); the time
of that brute force, scaled to all rows, is printed as the peer (clearly labelled as extrapolated), unless
--flat-full times the full brute force itself (about 400 s here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np


def make_hashes(count: int, planted: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """count random hashes plus `planted` copies of random ones with 0-8 bits flipped; (hashes, sources)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(count, 8), dtype=np.uint8)
    sources = rng.choice(count, size=planted, replace=False)
    copies = base[sources].copy()
    flips = rng.integers(0, 9, size=planted)
    for row, k in enumerate(flips):
        for bit in rng.choice(64, size=k, replace=False):
            copies[row, bit // 8] ^= np.uint8(1 << (bit % 8))
    return np.concatenate([base, copies]), sources


def child(args: argparse.Namespace) -> None:
    """One timed search in this process; prints a JSON line."""
    import resource

    from dupaudit.engine.search import pairs_within, plan_blocks

    hashes, sources = make_hashes(args.n, args.planted, args.seed)
    started, cpu = time.perf_counter(), time.process_time()
    first, second, distance = pairs_within(hashes, args.radius, threads=args.threads)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from dupaudit.engine.hashing import hamming

    copies = np.arange(args.n, args.n + args.planted)
    within = hamming(hashes[sources], hashes[copies]) <= args.radius  # planted pairs the radius must find
    found = set(zip(first.tolist(), second.tolist()))
    hits = sum((int(a), int(b)) in found for a, b in zip(sources[within], copies[within]))
    recall = hits / max(1, int(within.sum()))
    result = {
        "wall": wall,
        "cpu": cpu,
        "peak_mb": peak_mb,
        "pairs": len(first),
        "recall": recall,
        "planted_within": int(within.sum()),
        "plan": [list(b) for b in plan_blocks(len(hashes), args.radius).blocks],
    }
    if args.check:
        import faiss

        rng = np.random.default_rng(args.seed + 1)
        rows = np.sort(
            np.concatenate(
                [
                    rng.choice(len(hashes), size=args.check, replace=False),
                    np.arange(args.n, args.n + min(args.planted, args.check)),
                ]
            )
        )
        rows = np.unique(rows)
        index = faiss.IndexBinaryFlat(64)
        index.add(hashes)
        if args.threads:
            faiss.omp_set_num_threads(args.threads)
        flat_started = time.perf_counter()
        lims, dists, ids = index.range_search(hashes[rows], args.radius + 1)
        flat_time = time.perf_counter() - flat_started
        owners = np.repeat(rows, np.diff(lims).astype(np.int64))
        truth = {
            (min(a, b), max(a, b), int(d)) for a, b, d in zip(owners.tolist(), ids.tolist(), dists.tolist()) if a != b
        }
        wanted = set(rows.tolist())
        mine = {
            (a, b, d)
            for a, b, d in zip(first.tolist(), second.tolist(), distance.tolist())
            if a in wanted or b in wanted
        }
        result.update(
            check_rows=len(rows),
            check_identical=(mine == truth),
            check_pairs=len(truth),
            flat_extrapolated_s=flat_time * len(hashes) / len(rows),
        )  # faiss compares all rows with all
    if args.flat_full:
        from dupaudit.engine.search import _faiss_pairs

        flat_started = time.perf_counter()
        flat = _faiss_pairs(hashes, args.radius, None, args.threads)
        result["flat_full_s"] = time.perf_counter() - flat_started
        result["flat_identical"] = set(zip(*[x.tolist() for x in flat])) == set(
            zip(first.tolist(), second.tolist(), distance.tolist())
        )
    print(json.dumps(result))


def main() -> None:
    from dupaudit.engine.model import Settings

    default_threshold = Settings().threshold

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="random hashes")
    parser.add_argument("--planted", type=int, default=10_000, help="planted near copies (0-8 bits flipped)")
    parser.add_argument("--radii", default=",".join(str(r) for r in sorted({10, default_threshold})))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", type=int, default=10_000, help="rows whose pairs are checked against faiss flat")
    parser.add_argument("--flat-full", action="store_true", help="also time faiss IndexBinaryFlat on all rows")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--radius", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(
        f"{args.n:,} random 64-bit hashes + {args.planted:,} planted copies (0-8 bits flipped), "
        f"{args.threads} threads, {args.runs} run(s), default threshold {default_threshold}"
    )
    for radius in [int(r) for r in args.radii.split(",")]:
        runs = []
        for run in range(args.runs):
            command = [
                sys.executable,
                __file__,
                "--child",
                "--n",
                str(args.n),
                "--planted",
                str(args.planted),
                "--radius",
                str(radius),
                "--threads",
                str(args.threads),
                "--seed",
                str(args.seed),
                "--check",
                str(args.check if run == 0 else 0),
            ]
            if args.flat_full and run == 0:
                command.append("--flat-full")
            runs.append(json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout))
        wall = statistics.median(r["wall"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        peak = max(r["peak_mb"] for r in runs)
        first = runs[0]
        each = ", ".join(f"{r['wall']:.1f}" for r in runs)
        print(
            f"radius {radius}: dupaudit {wall:.1f} s wall (median; runs {each}),"
            f" {cpu:.1f} s CPU, peak {peak:.0f} MB, {first['pairs']:,} pairs, recall {first['recall']:.4f} of the "
            f"{first['planted_within']:,} planted pairs within the radius,"
            f" blocks (offset, bits, flips) {first['plan']}"
        )
        if "check_identical" in first:
            print(
                f"  exactness: pairs of {first['check_rows']:,} rows vs faiss IndexBinaryFlat: "
                f"{'identical' if first['check_identical'] else 'DIFFERENT'} ({first['check_pairs']:,} pairs)"
            )
            flat = first["flat_extrapolated_s"]
            print(
                f"  peer faiss IndexBinaryFlat, all pairs, extrapolated from those rows: "
                f"{flat:.0f} s -> dupaudit is {flat / wall:.1f}x faster"
            )
        if "flat_full_s" in first:
            print(
                f"  peer faiss IndexBinaryFlat, all pairs, measured: {first['flat_full_s']:.0f} s "
                f"({'identical' if first['flat_identical'] else 'DIFFERENT'} pairs) -> "
                f"{first['flat_full_s'] / wall:.1f}x"
            )


if __name__ == "__main__":
    main()
