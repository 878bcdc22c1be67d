"""Scale on one machine: N distinct CIFAR-size images derived from ../shared/data/cifar10, with planted copies.

    python benchmarks/scale.py --n 1000000 --workdir /tmp/dupaudit-scale [--jobs 2] [--keep]

Generates N 32x32 JPEGs (quality 90) under WORKDIR/data/train/<class>/: each CIFAR-10 image (train and test,
60,000) under one of 32 transformations (the 8 rotations/mirrors of the square x colour inversion x a swap of
the image's quadrants), so that no two derived images are copies of each other unless their CIFAR sources are
(CIFAR-10 itself holds ~1,250 near-duplicate groups, which recur under each transformation). Planted on top:
N/1000 exact copies and N/1000 near copies (re-encoded at quality 70, 5% brighter) of random derived images, whose
recall is reported. Then, each as the real command line in a fresh process (wall clock, peak memory of the
process tree sampled every 50 ms):

1. the decode floor: open + convert to gray + resize to 32x32 of every file with Pillow, `--jobs` processes;
2. cold scan: `dupaudit index build DATA -o INDEX` (a scan that also keeps the search state) -> ratio to the floor;
3. the index (cache) file size;
4. warm rescan: `dupaudit scan DATA --cache INDEX`;
5. a 10-image check: 5 new pictures and 5 re-encoded copies, `dupaudit check --root DATA --cache INDEX FILES`;
6. `dupaudit scan NEW --against-index INDEX` with 1,000 new images (100 exact and 100 near copies of indexed
   images among them), and the recall of those 200.

`--reuse-index INDEX` runs only steps 5 and 6 on an existing index of WORKDIR/data (no 8-minute rebuild; pass a
copy: both steps may write to it), `--no-check` only step 6; both print the load average.

Targets (issue 16, 2-core machine): cold <= 1.5x the floor, peak < 4 GB, warm < 15 s, 10-image check < 3 s,
1,000 new images against the index < 5 s.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
VARIANTS = 32


def load_sources() -> tuple[np.ndarray, list[str]]:
    """All 60,000 CIFAR-10 images as (n, 32, 32, 3) uint8 with their class names."""
    paths = sorted(CIFAR.glob("*/*/*.jpg"))
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    return pixels, [p.parent.name for p in paths]


def transform(image: np.ndarray, variant: int) -> np.ndarray:
    """One of VARIANTS distinct versions of a 32x32x3 image."""
    out = np.rot90(image, variant % 4)
    if variant & 4:
        out = out[:, ::-1]
    if variant & 8:
        out = 255 - out
    if variant & 16:  # swap the quadrants diagonally
        out = np.roll(out, (16, 16), axis=(0, 1))
    return np.ascontiguousarray(out)


_SOURCES: tuple[np.ndarray, list[str]] | None = None  # set before the pool forks: inherited, never pickled


def _write_chunk(args: tuple) -> int:
    indices, root = args
    assert _SOURCES is not None
    sources, labels = _SOURCES
    for i in indices:
        source, variant = i % len(sources), i // len(sources)
        image = Image.fromarray(transform(sources[source], variant))
        image.save(os.path.join(root, "train", labels[source], f"v{variant:02d}_{source:05d}.jpg"), quality=90)
    return len(indices)


def generate(root: Path, count: int, jobs: int, seed: int = 0) -> dict:
    """Write the derived images and the planted copies; returns the planted pairs (relative paths)."""
    if count > 60000 * VARIANTS:
        raise SystemExit(f"at most {60000 * VARIANTS:,} distinct images")
    global _SOURCES
    sources, labels = load_sources()
    _SOURCES = (sources, labels)  # the workers inherit the 184 MB of pixels by fork instead of one pickle per chunk
    for label in sorted(set(labels)):
        (root / "train" / label).mkdir(parents=True, exist_ok=True)
    order = np.arange(count)
    chunks = [order[i : i + 5000] for i in range(0, count, 5000)]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(_write_chunk, [(c.tolist(), str(root)) for c in chunks]))
    rng = np.random.default_rng(seed)
    planted = {"exact": [], "near": []}
    for kind in planted:
        for i in rng.choice(count, size=max(1, count // 1000), replace=False).tolist():
            source, variant = i % len(sources), i // len(sources)
            original = f"train/{labels[source]}/v{variant:02d}_{source:05d}.jpg"
            copy = f"train/{labels[source]}/planted_{kind}_{i:07d}.jpg"
            if kind == "exact":
                shutil.copy(root / original, root / copy)
            else:
                image = Image.open(root / original).convert("RGB")
                ImageEnhance.Brightness(image).enhance(1.05).save(root / copy, quality=70)
            planted[kind].append((original, copy))
    return planted


class PeakMemory:
    """Peak resident memory of a process and its descendants, sampled from /proc every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as handle:
                        parent = int(handle.read().rsplit(")", 1)[1].split()[1])
                    children.setdefault(parent, []).append(int(entry))
                except (OSError, ValueError, IndexError):
                    pass
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in self._tree():
                try:
                    with open(f"/proc/{pid}/status") as handle:
                        for line in handle:
                            if line.startswith("VmRSS:"):
                                total += int(line.split()[1]) * 1024
                except OSError:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


CPU = {"last": 0.0}  # CPU seconds (user + system) of the last command's process tree


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], cwd: Path) -> tuple[float, int, int, str]:
    """Wall seconds, exit code, peak bytes and output of `dupaudit ARGS` in a fresh process (CPU in CPU["last"])."""
    cpu = _children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "dupaudit", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    memory = PeakMemory(process.pid)
    out, err = process.communicate()
    elapsed = time.perf_counter() - started
    peak = memory.stop()
    CPU["last"] = _children_cpu() - cpu
    if process.returncode not in (0, 1):
        raise SystemExit(f"dupaudit {' '.join(args)} exited {process.returncode}:\n{err}")
    return elapsed, process.returncode, peak, out + err


def _floor_batch(paths: list[str]) -> int:
    for path in paths:
        with open(path, "rb") as handle:
            Image.open(io.BytesIO(handle.read())).convert("L").resize((32, 32), Image.LANCZOS)
    return len(paths)


def decode_floor(root: Path, jobs: int) -> tuple[float, int]:
    paths = [str(p) for p in root.rglob("*.jpg")]
    cpu = _children_cpu()
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(_floor_batch, [paths[i : i + 256] for i in range(0, len(paths), 256)]))
    CPU["last"] = _children_cpu() - cpu
    return time.perf_counter() - started, len(paths)


def recall(report: dict, pairs: list[tuple[str, str]], prefix: str = "") -> int:
    group_of = {}
    for group in report["groups"]:
        for member in group["members"]:
            group_of[f"{member['root']}/{member['path']}"] = group["id"]
    return sum(1 for a, b in pairs if a in group_of and group_of[a] == group_of.get(prefix + b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="distinct derived images (default 1,000,000)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dupaudit-scale"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--keep", action="store_true", help="reuse WORKDIR/data when it holds N images already")
    parser.add_argument(
        "--reuse-index",
        type=Path,
        metavar="INDEX",
        help="skip generation, floor, cold scan and warm rescan: run the 10-image check and the query against "
        "INDEX (an index of WORKDIR/data; the check and the query may write to it: pass a copy)",
    )
    parser.add_argument("--no-check", action="store_true", help="with --reuse-index: only the query")
    args = parser.parse_args()
    work = args.workdir.resolve()
    data, index, new = work / "data", work / "data.index", work / "new"
    jobs = ["--jobs", str(args.jobs)]
    if args.reuse_index is not None:
        print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the start")
        later_steps(work, data, args.reuse_index.resolve(), new, jobs, check=not args.no_check)
        print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")
        return
    marker = work / "planted.json"
    if not (args.keep and marker.exists() and json.loads(marker.read_text())["n"] == args.n):
        shutil.rmtree(work, ignore_errors=True)
        started = time.perf_counter()
        planted = generate(data, args.n, args.jobs)
        marker.write_text(json.dumps({"n": args.n, "planted": planted}))
        print(
            f"generated {args.n:,} images + {sum(map(len, planted.values())):,} planted copies: "
            f"{time.perf_counter() - started:.0f} s"
        )
    planted = {k: [tuple(p) for p in v] for k, v in json.loads(marker.read_text())["planted"].items()}
    for path in (index, Path(f"{index}-wal"), Path(f"{index}-shm"), work / "query.json", work / "scan.json"):
        path.unlink(missing_ok=True)
    shutil.rmtree(new, ignore_errors=True)
    shutil.rmtree(f"{index}.states", ignore_errors=True)  # the index's search state folders (cache.py)

    floor, files = decode_floor(data, args.jobs)
    floor_cpu = CPU["last"]
    print(f"decode floor ({files:,} files, {args.jobs} processes): {floor:.1f} s, CPU {floor_cpu:.1f} s")
    if floor_cpu < 0.5 * floor * min(args.jobs, os.cpu_count() or 1):
        # the processes waited for the disk: the images were not in the page cache (generated long ago, or the
        # kernel reclaimed them), so the floor measured the disk and every ratio below would be too small
        print(
            "warning: the floor's processes were busy less than half the time: the images came from the disk, "
            "not the page cache; run again without --keep (the images are generated anew)"
        )
    seconds, _, peak, output = run(["index", "build", str(data), "-o", str(index), *jobs], work)
    size = index.stat().st_size + (Path(f"{index}-wal").stat().st_size if Path(f"{index}-wal").exists() else 0)
    size += sum(f.stat().st_size for f in Path(f"{index}.states").rglob("*") if f.is_file())  # its state folder
    print(
        f"cold scan (index build): {seconds:.1f} s = {seconds / floor:.2f}x the floor (target <= 1.5x), CPU "
        f"{CPU['last']:.1f} s = {CPU['last'] / floor_cpu:.2f}x the floor's; "
        f"peak memory {peak / 1e9:.2f} GB (target < 4); index file and its state folder {size / 1e6:,.0f} MB"
    )
    print(f"  {output.strip().splitlines()[-1]}")
    seconds, _, peak, _ = run(["scan", str(data), "--cache", str(index), "-q", "--json", "scan.json", *jobs], work)
    report = json.loads((work / "scan.json").read_text())
    found = {kind: recall(report, pairs) for kind, pairs in planted.items()}
    print(
        f"warm rescan: {seconds:.2f} s (target < 15), CPU {CPU['last']:.2f} s, peak {peak / 1e9:.2f} GB; "
        "planted copies found: "
        + ", ".join(f"{kind} {found[kind]}/{len(pairs)}" for kind, pairs in planted.items())
        + f"; {report['summary']['groups']:,} groups in all"
    )

    later_steps(work, data, index, new, jobs)


def later_steps(work: Path, data: Path, index: Path, new: Path, jobs: list[str], check: bool = True) -> None:
    """Steps 5 and 6 (the 10-image check, the query), alone with --reuse-index: the same random draws each run."""
    # A 10-image commit: 5 new pictures, 5 re-encoded copies of indexed images.
    rng = np.random.default_rng(1)
    pictures = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    derived = sorted(data.glob("train/*/v*_*.jpg"))
    picks = [derived[i] for i in rng.choice(len(derived), size=205, replace=False)]
    if check:
        check_step(work, data, index, jobs, pictures, picks[:5])
    query_step(work, index, new, jobs, rng, picks[5:])


def check_step(work: Path, data: Path, index: Path, jobs: list[str], pictures: list, picks: list[Path]) -> None:
    names = []
    for i, picture in enumerate(pictures):
        target = data / "train" / "cat" / f"commit_new_{i}.jpg"
        Image.fromarray(picture).save(target, quality=90)
        names.append(str(target.relative_to(work)))
    for i, source in enumerate(picks):
        target = source.parent / f"commit_copy_{i}.jpg"
        Image.open(source).convert("RGB").save(target, quality=75)
        names.append(str(target.relative_to(work)))
    check = ["check", "--root", str(data), "--cache", str(index), "--baseline", str(work / "baseline.json"), *jobs]
    seconds, code, peak, output = run([*check, *names], work)
    findings = [line for line in output.splitlines() if line.startswith("train/")]
    print(
        f"10-image check: {seconds:.2f} s (target < 3), CPU {CPU['last']:.2f} s, exit {code}, "
        f"{len(findings)} findings, "
        f"peak {peak / 1e9:.2f} GB"
    )
    for path in names:
        (work / path).unlink()


def query_step(work: Path, index: Path, new: Path, jobs: list[str], rng: np.random.Generator, sources: list) -> None:
    # 1,000 new images, 100 exact and 100 near copies of indexed ones among them (written again: the same bytes).
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    expected = []
    for i in range(800):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(new / f"fresh_{i:04d}.jpg", quality=90)
    for i, source in enumerate(sources[:100]):
        shutil.copy(source, new / f"exact_{i:03d}.jpg")
        expected.append((f"train/{source.parent.name}/{source.name}", f"exact_{i:03d}.jpg"))
    for i, source in enumerate(sources[100:200]):
        image = Image.open(source).convert("RGB")
        ImageEnhance.Brightness(image).enhance(1.05).save(new / f"near_{i:03d}.jpg", quality=70)
        expected.append((f"train/{source.parent.name}/{source.name}", f"near_{i:03d}.jpg"))
    seconds, _, peak, _ = run(
        ["scan", str(new), "--against-index", str(index), "--no-cache", "-q", "--json", "query.json", *jobs], work
    )
    answer = json.loads((work / "query.json").read_text())
    new_root = next(r["name"] for r in answer["roots"] if r["path"] == str(new)) if "roots" in answer else "new"
    hits = recall(answer, expected, prefix=f"{new_root}/")
    print(
        f"1,000 new images --against-index: {seconds:.2f} s (target < 5), CPU {CPU['last']:.2f} s, "
        f"peak {peak / 1e9:.2f} GB; "
        f"copies of indexed images found: {hits}/{len(expected)}; {answer['summary']['groups']:,} groups"
    )


if __name__ == "__main__":
    main()
