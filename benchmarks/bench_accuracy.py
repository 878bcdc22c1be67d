"""Near-duplicate accuracy on real data: recall of the ciFAIR pairs, a precision sample, the cascade's cost.

    python benchmarks/bench_accuracy.py [--data ../shared/data/cifar10] [--out /tmp/dupaudit-accuracy]

Prints, for CIFAR-10 (train + test, 60,000 images):
- recall of the judgment-1 pairs of the ciFAIR development half (../shared/data/cifair) at the default
  operating point, for pHash alone at distance 10 (imagededup's default) and across verification thresholds;
- the number of near pairs found, and a seeded sample of 50 verified pairs that are not in the dev list,
  written side by side to OUT/precision_sample.png (with OUT/precision_sample.csv) to judge by eye;
- the cost: cold scan with and without the cascade (fresh caches), and a warm rescan.

    python benchmarks/bench_accuracy.py --groups [--cache FILE] [--planted 100]

prints what the groups claim instead (issue 17): group sizes, the test/train pairs the groups imply (every test
member with every train member of a group; target <= 1,000) and the judgment-1 recall of those pairs (target
>= 0.92), writes 50 random implied pairs outside the ciFAIR list to OUT/implied_sample.png (+ .csv) to judge by
eye, and plants copies of random CIFAR-10 training images (exact, pixel, re-encoded, resized, brightened,
cropped, grayscale, mirrored, rotated, flipped vertically) in OUT/planted, scanned --against the dataset: the
share found in the group of their original, per kind (mirrored with --flips, rotated with --rotations, flipped
vertically with both), and the cost of each option (scan and search seconds, fingerprints cached).
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
    parser.add_argument("--groups", action="store_true", help="what the groups claim (issue 17), then stop")
    parser.add_argument("--cache", type=Path, help="--groups: the fingerprint cache (default: a fresh one)")
    parser.add_argument("--planted", type=int, default=100, help="--groups: planted copies of each kind")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = load_pairs(args.pairs)
    judged = [(a, b) for a, b, j in pairs if j == 1]
    print(f"ciFAIR development half: {len(pairs)} pairs, {len(judged)} of judgment 1 (same photograph)")
    if args.groups:
        with tempfile.TemporaryDirectory() as scratch:
            group_claims(args, pairs, judged, args.cache or Path(scratch) / "cache.sqlite")
        return

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


def implied_pairs(report) -> list[tuple[str, str, int]]:
    """Every (test member, train member, group id) of every group: the test/train duplicates the groups claim."""
    result = []
    for group in report.groups:
        names = [(m.root, f"{m.root}/{m.path}") for m in group.members]
        tests = [name for root, name in names if root == "test"]
        trains = [name for root, name in names if root == "train"]
        result.extend((a, b, group.id) for a in tests for b in trains)
    return result


def group_claims(args, pairs, judged, cache: Path) -> None:
    started = time.perf_counter()
    report = scan(args.data, cache_path=cache, jobs=args.jobs)
    seconds = time.perf_counter() - started
    s = report.summary
    sizes = sorted((len(g.members) for g in report.groups), reverse=True)
    print(
        f"scan {seconds:.1f} s (search {report.timings.get('search', 0):.1f} s): {s.groups:,} groups, "
        f"{s.redundant:,} redundant copies (exact {s.exact_copies}, pixel {s.pixel_copies}, near {s.near_copies}), "
        f"{s.label_conflicts} label conflicts, {s.leaked} leaked test images; largest groups {sizes[:6]}"
    )
    by_size = sorted(report.groups, key=lambda g: -len(g.members))[:5]
    links = [m.link.distance for g in report.groups for m in g.members if m.link is not None]
    print(
        f"max distance of the 5 largest groups {[g.max_distance for g in by_size]}; link distances: median "
        f"{np.median(links):.0f}, 99th percentile {np.percentile(links, 99):.0f}, max {max(links)}"
    )
    implied = implied_pairs(report)
    size_of = {g.id: len(g.members) for g in report.groups}
    large = sum(1 for _, _, gid in implied if size_of[gid] > 10)
    group_of = {f"{m.root}/{m.path}": g.id for g in report.groups for m in g.members}
    hits = sum(1 for a, b in judged if a in group_of and group_of[a] == group_of.get(b))
    print(
        f"implied test/train pairs: {len(implied):,} ({large:,} from groups of more than 10; target <= 1,000); "
        f"judgment-1 recall {hits}/{len(judged)} = {hits / len(judged):.3f} (target >= 0.92)"
    )
    listed = {frozenset((a, b)) for a, b, _ in pairs}
    outside = [p for p in implied if frozenset(p[:2]) not in listed]
    rng = np.random.default_rng(args.seed)
    chosen = sorted(rng.choice(len(outside), size=min(args.sample, len(outside)), replace=False).tolist())
    write_pairs(args.data, [outside[i] for i in chosen], args.out / "implied_sample")
    print(
        f"{len(chosen)} random implied pairs outside the ciFAIR list: {args.out / 'implied_sample.png'} (judge by eye)"
    )
    planted_recall(args, cache)


PLANTS = {
    "exact": (lambda im, src, dst: dst.with_suffix(".jpg").write_bytes(src.read_bytes())),
    "pixel": (lambda im, src, dst: im.save(dst.with_suffix(".png"))),
    "re-encoded": (lambda im, src, dst: im.save(dst.with_suffix(".jpg"), quality=60)),
    "resized": (lambda im, src, dst: im.resize((64, 64), Image.LANCZOS).save(dst.with_suffix(".jpg"), quality=95)),
    "brightened": (
        lambda im, src, dst: Image.eval(im, lambda v: min(255, round(v * 1.08))).save(
            dst.with_suffix(".jpg"), quality=95
        )
    ),
    "cropped": (
        lambda im, src, dst: im.crop((1, 1, 31, 31)).resize((32, 32), Image.LANCZOS).save(dst.with_suffix(".png"))
    ),
    "grayscale": (lambda im, src, dst: im.convert("L").save(dst.with_suffix(".png"))),
    "mirrored": (lambda im, src, dst: im.transpose(Image.FLIP_LEFT_RIGHT).save(dst.with_suffix(".png"))),
    "rotated": (lambda im, src, dst: im.transpose(ROTATIONS[int(dst.name) % 3]).save(dst.with_suffix(".png"))),
    "flipped vertically": (lambda im, src, dst: im.transpose(Image.FLIP_TOP_BOTTOM).save(dst.with_suffix(".png"))),
}
ROTATIONS = (Image.ROTATE_90, Image.ROTATE_180, Image.ROTATE_270)  # a third of the rotated copies each
# the options a kind needs; the others are found with the defaults
NEEDS = {
    "mirrored": {"flips": True},
    "rotated": {"rotations": True},
    "flipped vertically": {"flips": True, "rotations": True},
}


def planted_recall(args, cache: Path) -> None:
    rng = np.random.default_rng(args.seed + 1)
    train = sorted((args.data / "train").glob("*/*.jpg"))
    planted = args.out / "planted"
    origin: dict[str, str] = {}
    for kind, make in PLANTS.items():
        folder = planted / kind
        folder.mkdir(parents=True, exist_ok=True)
        for number, i in enumerate(rng.choice(len(train), size=args.planted, replace=False).tolist()):
            source = train[i]
            with Image.open(source) as image:
                image = image.convert("RGB")
                make(image, source, folder / f"{number:04d}")
            origin[f"{kind}/{number:04d}"] = f"train/{source.relative_to(args.data / 'train').as_posix()}"
    for options in ({}, {"flips": True}, {"rotations": True}, {"flips": True, "rotations": True}):
        started = time.perf_counter()
        report = scan(args.data, against=[planted], cache_path=cache, jobs=args.jobs, **options)
        seconds = time.perf_counter() - started
        group_of = {f"{m.root}/{m.path}": g.id for g in report.groups for m in g.members}
        plant_root = report.roots[-1].name
        found: dict[str, list[int]] = {}
        for g in report.groups:
            for m in g.members:
                if m.root == plant_root:
                    key = m.path.rsplit(".", 1)[0]
                    hit = group_of.get(origin[key]) == g.id
                    found.setdefault(key.split("/")[0], []).append(hit)
        shown = ", ".join(
            f"{kind} {sum(found.get(kind, [])) / args.planted:.2f}"
            for kind in PLANTS
            if NEEDS.get(kind, {}).items() <= options.items()
        )
        print(
            f"planted copies found with their original ({args.planted} each; {options or 'defaults'}; scan "
            f"{seconds:.1f} s, search {report.timings['search']:.1f} s, {report.summary.groups:,} groups, "
            f"{report.summary.label_conflicts} label conflicts): {shown}"
        )


def write_pairs(data: Path, rows: list[tuple[str, str, int]], stem: Path) -> None:
    """Side by side, enlarged 3x, numbered, with a CSV of the same rows."""
    cell, columns = 32 * 3, 5
    count = (len(rows) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (2 * cell + 30), count * (cell + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    with open(stem.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "test", "train", "group"])
        for number, (a, b, gid) in enumerate(rows):
            writer.writerow([number, a, b, gid])
            x, y = (number % columns) * (2 * cell + 30), (number // columns) * (cell + 16)
            for offset, name in ((0, a), (cell + 2, b)):
                with Image.open(data / name) as image:
                    sheet.paste(image.convert("RGB").resize((cell, cell), Image.NEAREST), (x + offset, y))
            draw.text((x, y + cell + 1), f"{number}", fill="black")
    sheet.save(stem.with_suffix(".png"))


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
