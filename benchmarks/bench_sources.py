"""Scan the same 60,000 CIFAR-10 images as a folder, as WebDataset shards, as Hugging Face-layout Parquet, and
as that Parquet served by a local S3 server (moto, 127.0.0.1): ratios against the folder scan, in one run.

    python benchmarks/bench_sources.py                      # all of CIFAR-10 (../shared/data/cifar10)
    python benchmarks/bench_sources.py --limit 5000         # a quick run on the first 5,000 files of each split
    python benchmarks/bench_sources.py --runs 3 --workdir /tmp/bench-sources   # pack once, keep it for reruns

Each scan runs in a fresh process with the same --jobs (default 2) and no cache (every image decoded), timing
the scan() call (interpreter and imports excluded). The forms are run in rounds, one scan of each per round,
the order rotated each round, so that a load that varies during the run weighs on every form alike; a form's
figure is its median over --runs, and its ratio the median of its per-round ratios to that round's folder scan.
CPU seconds (this process and its workers) are printed beside wall seconds: on a shared machine they vary less;
"read cpu" is the CPU before the search (listing or opening the source, reading, fingerprinting): the search that
follows is the same work for every form. The first round's groups and keepers of each form are compared with the
folder's, members named by their original files. Also timed: the warm rescan of the folder
with the fingerprint cache (the fast path this layer must not slow down) and the source detection it now does.
The packing (tar shards of 1,000 samples with integer .cls and classes.txt; Parquet files of 10,000 rows in row
groups of 1,000, with ClassLabel metadata and each image's file name as its `path`) and the upload to S3 are not
timed. The machine may be shared: say so.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CIFAR = HERE.parent.parent / "shared" / "data" / "cifar10"
SPLITS = ("train", "test")

_CHILD = """
import json, sys, time, resource
from dupaudit.engine import pipeline

def cpu():  # this process's CPU seconds and its finished children's (the decoding workers)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime

marks = {}
search = pipeline._hash_groups  # the search, the same work for every form: the CPU before it is the reading's

def timed_search(*args, **kwargs):
    marks["search"] = cpu()
    return search(*args, **kwargs)

pipeline._hash_groups = timed_search
kwargs = json.loads(sys.argv[2])
started, begun = time.perf_counter(), cpu()
report = pipeline.scan(sys.argv[1], **kwargs)
wall = time.perf_counter() - started
members = [[(m.root, m.path, m.keep) for m in g.members] for g in report.groups]
print(json.dumps({"wall": wall, "cpu": cpu() - begun, "read_cpu": marks.get("search", cpu()) - begun,
                  "groups": report.summary.groups, "images": report.summary.images, "decoded": report.decoded,
                  "leaked": report.summary.leaked, "timings": report.timings, "members": members}))
"""


def files_of(limit: int | None) -> dict[str, list[tuple[str, Path]]]:
    classes = sorted(p.name for p in (CIFAR / "train").iterdir())
    chosen = {}
    for split in SPLITS:
        files = [(label, path) for label in classes for path in sorted((CIFAR / split / label).iterdir())]
        chosen[split] = files[: limit or None] if limit is None else _spread(files, limit)
    return chosen


def _spread(files, limit):
    step = max(1, len(files) // limit)
    return files[::step][:limit]


SHARD_SAMPLES = 1000  # samples per tar shard
PARQUET_ROWS = 10_000  # rows per Parquet file (at most), in row groups of ROW_GROUP
ROW_GROUP = 1000


def shard_layout(split: str, chosen: list) -> list[tuple[str, list]]:
    """(shard id, its files) for a split's chosen files, in order."""
    return [
        (f"{split}/shard-{number:06d}.tar", chosen[start : start + SHARD_SAMPLES])
        for number, start in enumerate(range(0, len(chosen), SHARD_SAMPLES))
    ]


def parquet_layout(split: str, chosen: list) -> list[tuple[str, list]]:
    """(Parquet file id, its files) for a split's chosen files: the HF layout, data/<split>-NNNNN-of-NNNNN.parquet."""
    count = max(1, -(-len(chosen) // PARQUET_ROWS))
    size = -(-len(chosen) // count)
    return [
        (f"data/{split}-{number:05d}-of-{count:05d}.parquet", chosen[number * size : (number + 1) * size])
        for number in range(count)
    ]


def member_name(label: str, path: Path) -> str:
    """A sample's key in its shard (the original file name after its class: classes and names are unique)."""
    return f"{label}_{path.stem}"


def originals(files) -> dict[str, dict[str, str]]:
    """{form: {item id: the original file, relative to its split's folder}}: to compare groups across forms."""
    shards: dict[str, str] = {}
    rows: dict[str, str] = {}
    for split, chosen in files.items():
        for shard, part in shard_layout(split, chosen):
            shards.update((f"{shard}/{member_name(label, path)}.jpg", f"{label}/{path.name}") for label, path in part)
        for name, part in parquet_layout(split, chosen):
            rows.update((f"{name}#{row}", f"{label}/{path.name}") for row, (label, path) in enumerate(part))
    return {"webdataset shards": shards, "parquet (HF layout)": rows, "parquet on local S3 (moto)": rows}


def pack(files, base: Path, classes: list[str], whole: bool) -> tuple[Path, Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # the whole data set is scanned where it lies (../shared); a --limit subset is copied as a folder too
    folder, shards, hf = (CIFAR if whole else base / "folder"), base / "shards", base / "hf"
    (shards).mkdir(parents=True)
    (shards / "classes.txt").write_text("\n".join(classes) + "\n")
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    meta = {
        b"huggingface": json.dumps(
            {"info": {"features": {"image": {"_type": "Image"}, "label": {"names": classes, "_type": "ClassLabel"}}}}
        ).encode()
    }
    for split, chosen in files.items():
        for label, path in chosen if not whole else ():
            target = folder / split / label / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
        (shards / split).mkdir()
        for shard, part in shard_layout(split, chosen):
            with tarfile.open(shards / shard, "w") as tar:
                for label, path in part:
                    for name, content in (
                        (f"{member_name(label, path)}.jpg", path.read_bytes()),
                        (f"{member_name(label, path)}.cls", str(classes.index(label)).encode()),
                    ):
                        info = tarfile.TarInfo(name)
                        info.size = len(content)
                        tar.addfile(info, io.BytesIO(content))
        (hf / "data").mkdir(parents=True, exist_ok=True)
        for name, part in parquet_layout(split, chosen):
            table = pa.table(
                {  # the image's path: its file name, as the Hub's datasets keep it
                    "image": pa.array([{"bytes": p.read_bytes(), "path": p.name} for _, p in part], type=image_type),
                    "label": pa.array([classes.index(label) for label, _ in part], type=pa.int64()),
                }
            ).replace_schema_metadata(meta)
            pq.write_table(table, hf / name, row_group_size=ROW_GROUP)
    return folder, shards, hf


def same_groups(results: dict[str, list[dict]], names: dict[str, dict[str, str]]) -> None:
    """Each form's groups and keepers against the folder's (first round), members named by their original files."""

    def groups(form: str) -> dict[frozenset, tuple[str, str]]:
        rename = names.get(form, {})
        found = {}
        for members in results[form][0]["members"]:
            named = [(root, rename.get(path, path), keep) for root, path, keep in members]
            found[frozenset((root, path) for root, path, _ in named)] = next((r, p) for r, p, k in named if k)
        return found

    folder = groups("folder")
    for form in results:
        if form == "folder":
            continue
        other = groups(form)
        shared = folder.keys() & other.keys()
        differ = [members for members in shared if folder[members] != other[members]]
        print(
            f"  {form}: {len(shared)} of {len(folder)} groups equal to the folder's ({len(other)} found), "
            f"keepers equal in {len(shared) - len(differ)} of {len(shared)}"
        )
        for members in differ[:5]:
            print(f"    keeps {other[members]} where the folder keeps {folder[members]}")


def run_once(target: str, kwargs: dict, env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, target, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load": round(os.getloadavg()[0], 1)}


def run(target: str, kwargs: dict, env: dict, runs: int) -> dict:
    return summarise([run_once(target, kwargs, env) for _ in range(runs)])


def summarise(results: list[dict]) -> dict:
    """The median run (by wall time), with every run's wall and CPU seconds."""
    middle = sorted(results, key=lambda r: r["wall"])[len(results) // 2]
    return {
        **middle,
        "walls": [round(r["wall"], 2) for r in results],
        "cpus": [round(r["cpu"], 2) for r in results],
        "read_cpus": [round(r["read_cpu"], 2) for r in results],
        "loads": [r["load"] for r in results],
    }


def rounds(targets: dict[str, str], kwargs: dict, env: dict, runs: int) -> dict[str, list[dict]]:
    """Every form once per round, the order rotated each round: each form's runs, in round order."""
    names = list(targets)
    results: dict[str, list[dict]] = {name: [] for name in names}
    for number in range(runs):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            result = run_once(targets[name], kwargs, env)
            results[name].append(result)
            phases = ", ".join(f"{k} {v:.2f}" for k, v in result["timings"].items() if k != "total")
            print(
                f"  round {number + 1} {name}: {result['wall']:.2f} s wall ({phases}), {result['cpu']:.2f} s CPU, "
                f"load {result['load']}",
                flush=True,
            )
    return results


def paired(results: dict[str, list[dict]], name: str, base: str, kind: str) -> list[float]:
    """`name`'s per-round ratios to `base` (wall or cpu), each against the run of the same round."""
    return [r[kind] / b[kind] for r, b in zip(results[name], results[base])]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="files per split (default: all)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated: folder,webdataset,parquet,warm,s3 (default all)")
    parser.add_argument("--workdir", default=None, help="pack here, or reuse what an earlier run packed here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as tmp:
        measure(args, Path(args.workdir) if args.workdir else Path(tmp))


def packed(args, base: Path) -> tuple[Path, Path, Path]:
    """The three forms of the chosen images, packed in `base` (or found there, packed by an earlier run)."""
    marker = base / "packed.json"
    if marker.exists() and json.loads(marker.read_text()) == {"limit": args.limit}:
        folder = CIFAR if args.limit is None else base / "folder"
        print(f"reusing the forms packed in {base}")
        return folder, base / "shards", base / "hf"
    if base.exists() and any(base.iterdir()) and args.workdir:
        raise SystemExit(f"{base} holds something else: give an empty or new --workdir")
    classes = sorted(p.name for p in (CIFAR / "train").iterdir())
    files = files_of(args.limit)
    started = time.perf_counter()
    forms = pack(files, base, classes, whole=args.limit is None)
    marker.write_text(json.dumps({"limit": args.limit}))
    print(f"packed {sum(len(f) for f in files.values()):,} images in {time.perf_counter() - started:.1f} s (not timed)")
    return forms


def measure(args, base: Path) -> None:
    folder, shards, hf = packed(args, base)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    env = dict(os.environ)
    cold = {"use_cache": False, "jobs": args.jobs}
    wanted = set(args.only.split(",")) if args.only else {"folder", "webdataset", "parquet", "warm", "s3"}
    targets = {"folder": str(folder)}  # the baseline of every ratio: always measured
    if "webdataset" in wanted:
        targets["webdataset shards"] = str(shards)
    if wanted & {"parquet", "s3"}:
        targets["parquet (HF layout)"] = str(hf)
    server = None
    if "s3" in wanted and not args.no_s3:
        server = start_s3(env, hf)
        targets["parquet on local S3 (moto)"] = "s3://bench/hf"
    try:
        results = rounds(targets, cold, env, args.runs)
    finally:
        if server is not None:
            server.stop()
    rows = {name: summarise(found) for name, found in results.items()}
    if "warm" in wanted:
        cache = str(base / "cache.sqlite")
        run(str(folder), {"cache_path": cache, "jobs": args.jobs}, env, 1)  # fill the cache
        warm = {"cache_path": cache, "jobs": args.jobs}
        rows["folder, warm rescan"] = run(str(folder), warm, env, max(3, args.runs))
    from dupaudit.engine.sources import SourceOptions, is_plain_folder

    started = time.perf_counter()
    for _ in range(100):
        is_plain_folder(str(CIFAR), SourceOptions())
    detection_ms = (time.perf_counter() - started) * 10

    print(
        f"\n{'scan (cold, no cache)':28} {'wall s':>7} {'cpu s':>7} {'wall/folder':>12} {'cpu/folder':>11}"
        f" {'read cpu s':>10} {'/folder':>7}  images  groups  leaked  (runs: wall, cpu, read cpu, load)"
    )
    for name, row in rows.items():
        measured = name in results
        ratios = [
            f"{median(paired(results, name, 'folder', kind)):{width}.2f}" if measured else " " * width
            for kind, width in (("wall", 12), ("cpu", 11), ("read_cpu", 7))
        ]
        print(
            f"{name:28} {row['wall']:7.2f} {row['cpu']:7.2f} {ratios[0]} {ratios[1]} {row['read_cpu']:10.2f} "
            f"{ratios[2]}  {row['images']:6}  {row['groups']:6}  {row['leaked']:6}  {row['walls']} {row['cpus']} "
            f"{row['read_cpus']} {row['loads']}"
        )
    print(
        "(ratios: the median of the per-round ratios, each against the folder scan of the same round; read cpu:\n"
        " the CPU seconds before the search, i.e. listing or opening the source, reading and fingerprinting)"
    )
    for name in results:
        for kind in ("wall", "cpu", "read_cpu"):
            by_round = [round(x, 3) for x in paired(results, name, "folder", kind)]
            print(f"  {name} / folder, {kind} by round: {by_round}")
    print("same answer as the folder (the first round's reports):")
    same_groups(results, originals(files_of(args.limit)))
    s3, local = "parquet on local S3 (moto)", "parquet (HF layout)"
    if s3 in results:
        by_round = paired(results, s3, local, "wall")
        print(
            f"\nlocal S3 / local Parquet: {median(by_round):.2f}x wall (by round {[round(x, 3) for x in by_round]};"
            " the aim: within 1.5x)"
        )
    print(f"source detection of a folder (is_plain_folder on {CIFAR}): {detection_ms:.2f} ms a call")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def start_s3(env: dict, hf: Path):
    """moto's S3 server on 127.0.0.1 holding the Parquet form as s3://bench/hf; the AWS variables in `env`."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    aws = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.update(aws)
    os.environ.update(aws)
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.mkdir("bench")
    fs.put(str(hf), "bench/hf", recursive=True)
    return server


if __name__ == "__main__":
    main()
