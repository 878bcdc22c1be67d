"""Near-duplicate accuracy on real data: recall of the ciFAIR pairs, a precision sample, the cascade's cost.

    python benchmarks/bench_accuracy.py [--data ../shared/data/cifar10] [--out /tmp/dupaudit-accuracy]

Prints, for CIFAR-10 (train + test, 60,000 images):
- recall of the judgment-1 pairs of the ciFAIR development half (../shared/data/cifair) at the default
  operating point, for pHash alone at distance 10 (imagededup's default) and across verification thresholds;
- the number of near pairs found, and a seeded sample of 50 verified pairs that are not in the dev list,
  written side by side to OUT/precision_sample.png (with OUT/precision_sample.csv) to judge by eye;
- the cost: cold scan with and without the cascade (fresh caches), and a warm rescan.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dupaudit import scan
from dupaudit.engine.cache import FingerprintCache
from dupaudit.engine.discover import discover, resolve_roots
from dupaudit.engine.hashing import hamming
from dupaudit.engine.pipeline import fingerprint_records
from dupaudit.engine.search import pairs_within
from dupaudit.engine.verify import CascadeSettings, candidate_pairs

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"


def load_pairs(path: Path) -> list[tuple[str, str, int]]:
    with open(path, newline="") as handle:
        return [(row["test_path"], row["train_path"], int(row["judgment"])) for row in csv.DictReader(handle)]


def timed_scan(data: Path, cache: Path, **options):
    started = time.perf_counter()
    report = scan(data, cache_path=cache, **options)
    return report, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "cifar10")
    parser.add_argument("--pairs", type=Path, default=SHARED / "cifair" / "cifar10_train_test_pairs_dev.csv")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "dupaudit-accuracy")
    parser.add_argument("--sample", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--runs", type=int, default=3, help="cold scans of each kind for the cost (median)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = load_pairs(args.pairs)
    judged = [(a, b) for a, b, j in pairs if j == 1]
    print(f"ciFAIR development half: {len(pairs)} pairs, {len(judged)} of judgment 1 (same photograph)")

    with tempfile.TemporaryDirectory() as scratch:
        # the cost: cold scans with and without the cascade, alternated, fresh caches, median of --runs
        plain_times, cascade_times = [], []
        for run in range(args.runs):
            plain_report, seconds = timed_scan(
                args.data, Path(scratch) / f"plain{run}.sqlite", verify=False, jobs=args.jobs
            )
            plain_times.append(seconds)
            report, seconds = timed_scan(args.data, Path(scratch) / f"cascade{run}.sqlite", jobs=args.jobs)
            cascade_times.append(seconds)
        plain_cold, cascade_cold = statistics.median(plain_times), statistics.median(cascade_times)
        warm_times = [
            timed_scan(args.data, Path(scratch) / "cascade0.sqlite", jobs=args.jobs)[1] for _ in range(args.runs)
        ]
        cascade_warm = statistics.median(warm_times)
        cache_file = Path(scratch) / "cascade0.sqlite"
        settings = report.settings
        # The verified pairs themselves (groups keep only their union): recompute from the warm cache.
        roots = resolve_roots(args.data)
        records, _ = discover(roots)
        order = {r.name: i for i, r in enumerate(roots)}
        records.sort(key=lambda r: (order[r.root], r.path))
        with FingerprintCache(cache_file) as cache:
            found = fingerprint_records(records, (settings.method,), cache=cache)
            thumbs = cache.thumbs([r.abspath for r in found.records])
    names = [f"{r.root}/{r.path}" for r in found.records]
    index = {name: i for i, name in enumerate(names)}
    hashes = np.frombuffer(b"".join(f.hashes[settings.method] for f in found.fingerprints), np.uint8).reshape(-1, 8)
    thumb_stack = np.frombuffer(b"".join(thumbs[r.abspath] for r in found.records), np.uint8).reshape(-1, 32, 32)

    def recall(group_report) -> float:
        group_of = {f"{m.root}/{m.path}": g.id for g in group_report.groups for m in g.members}
        return sum(1 for a, b in judged if a in group_of and group_of[a] == group_of.get(b)) / len(judged)

    first = np.array([index[a] for a, _ in judged])
    second = np.array([index[b] for _, b in judged])
    distances = hamming(hashes[first], hashes[second])
    print(
        f"pHash distance of the judgment-1 pairs: median {np.median(distances):.0f}, "
        f"75th percentile {np.percentile(distances, 75):.0f}, 90th {np.percentile(distances, 90):.0f}"
    )
    print(f"recall, pHash alone at distance <= 10 (imagededup's default): {(distances <= 10).mean():.3f}")
    print(
        f"recall, pHash alone at distance <= {plain_report.settings.threshold} (dupaudit --no-verify): "
        f"{recall(plain_report):.3f}"
    )
    print(
        f"recall, default cascade (radius {settings.threshold}, {settings.neighbours} neighbours, "
        f"similarity >= {settings.min_similarity}): {recall(report):.3f}"
    )

    near_a, near_b, _ = pairs_within(hashes, settings.threshold)

    def cascade(min_similarity: float):
        return candidate_pairs(
            [(near_a, near_b, False)],
            thumb_stack,
            False,
            CascadeSettings(neighbours=settings.neighbours, min_similarity=min_similarity),
        )

    dev = {frozenset((index[a], index[b])) for a, b, _ in pairs}
    partner = {frozenset(p) for p in zip(first.tolist(), second.tolist())}
    print(
        "recall across verification thresholds (pairs verified directly, before grouping; the refinement "
        "runs below each threshold, so each row is a cascade run at that threshold):"
    )
    for threshold in (0.78, 0.80, 0.82, 0.84, 0.86, 0.88):
        run = cascade(threshold)
        score_of = {frozenset(p): s for p, s in zip(zip(run.first.tolist(), run.second.tolist()), run.scores.tolist())}
        hit = sum(1 for p in partner if score_of.get(p, -1) >= threshold)
        count = int((run.scores >= threshold).sum())
        print(f"  >= {threshold:.2f}: recall {hit / len(partner):.3f}, verified pairs {count:,}")
    candidates = cascade(settings.min_similarity)
    verified = np.nonzero(candidates.scores >= settings.min_similarity)[0]
    print(
        f"near pairs found at the default operating point: {len(verified):,} verified pairs "
        f"({report.summary.groups:,} groups, {report.summary.redundant:,} redundant copies, "
        f"{report.summary.label_conflicts} label conflicts, {report.summary.leaked} leaked test images)"
    )
    outside = [i for i in verified if frozenset((candidates.first[i], candidates.second[i])) not in dev]
    rng = np.random.default_rng(args.seed)
    sample = sorted(rng.choice(outside, size=min(args.sample, len(outside)), replace=False).tolist())
    write_sample(args.data, names, candidates, sample, args.out)
    print(
        f"sample of {len(sample)} verified pairs outside the dev list: {args.out / 'precision_sample.png'} "
        f"(judge by eye; list in precision_sample.csv)"
    )

    runs = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(plain_times, cascade_times))
    print(
        f"cost (median of {args.runs}, alternated; runs without/with: {runs}): cold scan without the cascade "
        f"{plain_cold:.1f} s, with it {cascade_cold:.1f} s (+{cascade_cold / plain_cold - 1:.0%}); "
        f"warm rescan {cascade_warm:.2f} s"
    )


def write_sample(data: Path, names: list[str], candidates, sample: list[int], out: Path) -> None:
    cell = 32 * 3  # thumbnails enlarged 3x, nearest neighbour, so pixels stay visible
    columns = 5
    rows = (len(sample) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (2 * cell + 30), rows * (cell + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    with open(out / "precision_sample.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "first", "second", "score"])
        for number, i in enumerate(sample):
            a, b = names[candidates.first[i]], names[candidates.second[i]]
            writer.writerow([number, a, b, f"{candidates.scores[i]:.3f}"])
            x, y = (number % columns) * (2 * cell + 30), (number // columns) * (cell + 16)
            for offset, name in ((0, a), (cell + 2, b)):
                with Image.open(data / name) as image:
                    sheet.paste(image.convert("RGB").resize((cell, cell), Image.NEAREST), (x + offset, y))
            draw.text((x, y + cell + 1), f"{number}: {candidates.scores[i]:.2f}", fill="black")
    sheet.save(out / "precision_sample.png")


if __name__ == "__main__":
    main()
