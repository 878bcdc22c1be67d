"""Time `dupaudit scan` (cold and warm) against imagededup and against the decode floor, on the same files.

    python benchmarks/bench_scan.py                                   # CIFAR-10 (../shared) and the photo set
    python benchmarks/bench_scan.py --datasets cifar --runs 3 --peer-json /tmp/peer_cifar.json
    python benchmarks/make_photo_set.py /tmp/dupaudit-photos           # makes the photo set first

Per dataset, all in this one run and with the same number of processes (--jobs, default 2):
- floor: Pillow open + convert('L') + resize to 32x32 (LANCZOS) of every file: the least any pHash tool must do;
- dupaudit cold: dupaudit.scan() with an empty cache; warm: the same again (cache filled); each in a fresh
  process, timing the call (interpreter and imports excluded, as for the peer), median of --runs runs;
  plus the whole `dupaudit scan` command line, warm, as a user runs it (interpreter start-up included);
- dupaudit no-verify: the same with scan(verify=False) (pHash radius only, no thumbnail verification stage);
- dupaudit draft (photo set): cold with draft decoding of JPEGs (opt-in, not bit-identical to imagededup);
- peer: imagededup 0.3.3 PHash encode_images + find_duplicates with each search method (benchmarks/
  peer_imagededup.py in its own process; its torch import is not counted). Its 60,000-image search takes many
  minutes: --peer-json reuses a saved run of that script (say where it came from when you quote it).
Ratios printed: peer / dupaudit cold, dupaudit cold / floor, cold / warm, and throughput against the floor.
The machine is shared: quote medians, and the CPU seconds next to the wall seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
DATASETS = {"cifar": SHARED / "cifar10", "photos": Path(tempfile.gettempdir()) / "dupaudit-photos"}

_CHILD = """
import json, sys, time, resource
from dupaudit.engine.pipeline import scan
kwargs = json.loads(sys.argv[2])
started, cpu = time.perf_counter(), time.process_time()
report = scan(sys.argv[1], **kwargs)
wall = time.perf_counter() - started
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "cpu": time.process_time() - cpu + children.ru_utime + children.ru_stime,
                  "timings": report.timings, "groups": report.summary.groups, "images": report.summary.images,
                  "decoded": report.decoded}))
"""


def _floor_batch(paths: list[str]) -> int:
    from PIL import Image

    for path in paths:
        with open(path, "rb") as handle:
            image = Image.open(io.BytesIO(handle.read()))
            image.convert("L").resize((32, 32), Image.LANCZOS)
    return len(paths)


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def decode_floor(paths: list[str], jobs: int) -> tuple[float, float]:
    """Wall and CPU seconds to open, convert to gray and resize every file in `jobs` processes (pool included)."""
    batches = [paths[i : i + 256] for i in range(0, len(paths), 256)]
    started, cpu = time.perf_counter(), time.process_time() + _children_cpu()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        sum(pool.map(_floor_batch, batches))
    return time.perf_counter() - started, time.process_time() + _children_cpu() - cpu


def run_scan(folder: Path, cache: Path, **kwargs) -> dict:
    command = [sys.executable, "-c", _CHILD, str(folder), json.dumps(kwargs)]
    env = dict(os.environ, DUPAUDIT_CACHE=str(cache))
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout)


def run_cli(folder: Path, cache: Path, jobs: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dupaudit", "scan", str(folder), "--cache", str(cache), "--quiet", "--jobs", str(jobs)],
        check=False,
        capture_output=True,
    )
    return time.perf_counter() - started


def run_peer(folder: Path, threshold: int, jobs: int, methods: str) -> dict:
    command = [
        sys.executable,
        str(HERE / "peer_imagededup.py"),
        str(folder),
        "--threshold",
        str(threshold),
        "--workers",
        str(jobs),
        "--methods",
        methods,
    ]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def bench(name: str, folder: Path, args: argparse.Namespace) -> dict:
    from dupaudit.engine.model import Settings

    default_threshold = Settings().threshold

    paths = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    print(f"\n== {name}: {len(paths):,} files under {folder}, {args.jobs} processes, {args.runs} runs ==")
    result: dict = {"dataset": name, "files": len(paths), "jobs": args.jobs}
    floor_runs = [decode_floor(paths, args.jobs) for _ in range(args.runs)]
    floors = [wall for wall, _ in floor_runs]
    result["floor_s"], result["floor_cpu_s"] = _median(floors), _median([cpu for _, cpu in floor_runs])
    print(
        f"decode floor (open+convert+resize): {result['floor_s']:.2f} s median (runs {_runs(floors)}; "
        f"CPU {result['floor_cpu_s']:.1f} s), {len(paths) / result['floor_s']:,.0f} files/s"
    )

    modes = [("default", {}), ("no-verify", {"verify": False})]
    if name != "cifar" or args.draft_cifar:
        modes.append(("draft", {"fast_decode": True}))
        modes.append(("draft no-verify", {"fast_decode": True, "verify": False}))
    if args.modes:
        modes = [m for m in modes if m[0] in args.modes.split(",")]
    for mode, extra in modes:
        colds, warms, cpus, warm_cpus, first = [], [], [], [], None
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as scratch:
                cache = Path(scratch) / "cache.sqlite"
                try:
                    cold = run_scan(folder, cache, jobs=args.jobs, **extra)
                except subprocess.CalledProcessError as exc:
                    print(f"dupaudit {mode}: failed ({exc.stderr.strip().splitlines()[-1] if exc.stderr else exc})")
                    break
                warm = run_scan(folder, cache, jobs=args.jobs, **extra)
                if mode == "default" and first is None:
                    result["cli_warm_s"] = _median([run_cli(folder, cache, args.jobs) for _ in range(3)])
                first = first or cold
                if warm["timings"].get("search", 0.0) > 0.0:
                    print(f"  note: a warm {mode} run recomputed its answer (the code changed in between?)")
                colds.append(cold["wall"])
                cpus.append(cold["cpu"])
                warms.append(warm["wall"])
                warm_cpus.append(warm["cpu"])
        if not colds:
            continue
        cold_s, warm_s = _median(colds), _median(warms)
        result[f"{mode}_cold_s"], result[f"{mode}_warm_s"] = cold_s, warm_s
        result[f"{mode}_cold_cpu_s"], result[f"{mode}_warm_cpu_s"] = _median(cpus), _median(warm_cpus)
        result[f"{mode}_timings"] = first["timings"]
        result[f"{mode}_groups"] = first["groups"]
        print(
            f"dupaudit {mode} cold: {cold_s:.2f} s median (runs {_runs(colds)}; CPU {_median(cpus):.1f} s; "
            f"stages {', '.join(f'{k} {v:.2f}' for k, v in first['timings'].items())}), {first['groups']:,} groups"
        )
        print(f"dupaudit {mode} warm: {warm_s:.3f} s median (runs {_runs(warms)}; CPU {_median(warm_cpus):.2f} s)")
        print(
            f"  cold / floor = {cold_s / result['floor_s']:.2f}x (CPU: {_median(cpus) / result['floor_cpu_s']:.2f}x);"
            f"  throughput vs floor = {result['floor_s'] / cold_s:.2f}x;  cold / warm = {cold_s / warm_s:.1f}x "
            f"(CPU: {_median(cpus) / _median(warm_cpus):.1f}x)"
        )
        if mode == "default" and "cli_warm_s" in result:
            print(
                f"  `dupaudit scan` command line, warm, whole process: {result['cli_warm_s']:.2f} s "
                f"(cold / that = {cold_s / result['cli_warm_s']:.1f}x)"
            )

    peer = None
    if args.peer_json.get(name):
        peer = json.loads(Path(args.peer_json[name]).read_text())
        print(f"imagededup (saved run {args.peer_json[name]}):", end=" ")
    elif not args.no_peer:
        peer = run_peer(
            folder, default_threshold if args.threshold is None else args.threshold, args.jobs, args.peer_methods
        )
        print("imagededup (this run):", end=" ")
    if peer:
        result["peer"] = peer
        cpu_note = f" (CPU {peer['encode_cpu_s']:.1f} s)" if "encode_cpu_s" in peer else ""
        print(
            f"encode_images {peer['encode_s']:.1f} s{cpu_note} for {peer['images']:,} images, threshold "
            f"{peer['threshold']}"
        )
        cold_s, cold_cpu = result.get("default_cold_s"), result.get("default_cold_cpu_s")
        for key in [k for k in peer if k.startswith("search_") and not k.endswith("_cpu_s")]:
            method = key[len("search_") : -2]
            total = peer["encode_s"] + peer[key]
            ratio = f" -> {total / cold_s:.1f}x dupaudit cold" if cold_s else ""
            if cold_cpu and f"search_{method}_cpu_s" in peer:
                total_cpu = peer["encode_cpu_s"] + peer[f"search_{method}_cpu_s"]
                ratio += f" (CPU {total_cpu:.1f} s -> {total_cpu / cold_cpu:.1f}x)"
            print(
                f"  + find_duplicates({method}) {peer[key]:.1f} s = {total:.1f} s{ratio} "
                f"({peer.get('pairs_' + method, '?'):,} pairs)"
            )
    return result


def freeze_package() -> None:
    """Copy the dupaudit package aside and make the child processes import that copy.

    Other people's edits during a long run would otherwise change the code between a cold and a warm scan
    (and a warm scan rightly refuses an answer computed by other code)."""
    import shutil

    import dupaudit

    package = Path(dupaudit.__file__).resolve().parent
    frozen = Path(tempfile.mkdtemp(prefix="dupaudit-bench-"))
    shutil.copytree(package, frozen / "dupaudit", ignore=shutil.ignore_patterns("__pycache__"))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(frozen), os.environ.get("PYTHONPATH")) if p)
    try:
        head = subprocess.run(
            ["git", "-C", str(package), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        head = ""
    print(f"code: a frozen copy of {package} ({head or 'no git'}) in {frozen}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="cifar,photos", help="cifar, photos, or NAME=FOLDER (comma-separated)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threshold", type=int, help="peer threshold (default: dupaudit's default threshold)")
    parser.add_argument(
        "--peer-json",
        action="append",
        default=[],
        metavar="DATASET=FILE",
        help="reuse a saved peer_imagededup.py result for a dataset",
    )
    parser.add_argument("--peer-methods", default="brute_force_cython,bktree")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--draft-cifar", action="store_true", help="also time draft decoding on CIFAR-10")
    parser.add_argument("--modes", help="only these: default, no-verify, draft, 'draft no-verify' (comma-separated)")
    parser.add_argument("--json", type=Path, help="write all figures as JSON")
    parser.add_argument(
        "--live",
        action="store_true",
        help="run the working tree's code as it changes (default: a frozen copy taken at the start)",
    )
    args = parser.parse_args()
    args.peer_json = dict(item.split("=", 1) for item in args.peer_json)
    if not args.live:
        freeze_package()
    print(
        f"bench_scan {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} (a shared machine: figures are noisy)"
    )
    results = []
    for item in args.datasets.split(","):
        name, _, folder = item.partition("=")
        folder_path = Path(folder) if folder else DATASETS[name]
        if not folder_path.is_dir():
            print(
                f"\n== {name}: {folder_path} is missing"
                + (
                    " (make it: python benchmarks/make_photo_set.py " + str(folder_path) + ")"
                    if name == "photos"
                    else ""
                )
            )
            continue
        results.append(bench(name, folder_path, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
