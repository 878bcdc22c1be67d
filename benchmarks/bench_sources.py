"""Scan the same 60,000 CIFAR-10 images as a folder, as WebDataset shards, as Hugging Face-layout Parquet, and
as that Parquet served by a local S3 server (moto, 127.0.0.1): ratios against the folder scan, in one run.

    python benchmarks/bench_sources.py                      # all of CIFAR-10 (../shared/data/cifar10)
    python benchmarks/bench_sources.py --limit 5000         # a quick run on the first 5,000 files of each split

Each scan runs in a fresh process with the same --jobs (default 2) and no cache (every image decoded), timing
the scan() call (interpreter and imports excluded); median of --runs. Also timed: the warm rescan of the folder
with the fingerprint cache (the fast path this layer must not slow down) and the source detection it now does.
The packing (tar shards of 1,000 samples with integer .cls and classes.txt; Parquet files of 10,000 rows in row
groups of 1,000, with ClassLabel metadata) and the upload to S3 are not timed. The machine may be shared: say so.
"""

from __future__ import annotations

import argparse
import io
import json
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
from dupaudit.engine.pipeline import scan
kwargs = json.loads(sys.argv[2])
started, cpu = time.perf_counter(), time.process_time()
report = scan(sys.argv[1], **kwargs)
wall = time.perf_counter() - started
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "cpu": time.process_time() - cpu + children.ru_utime + children.ru_stime,
                  "groups": report.summary.groups, "images": report.summary.images, "decoded": report.decoded,
                  "leaked": report.summary.leaked}))
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
        data = [(label, path, path.read_bytes()) for label, path in chosen]
        for label, path, blob in data if not whole else ():
            target = folder / split / label / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
        (shards / split).mkdir()
        for number, start in enumerate(range(0, len(data), 1000)):
            with tarfile.open(shards / split / f"shard-{number:06d}.tar", "w") as tar:
                for label, path, blob in data[start : start + 1000]:
                    for name, content in (
                        (f"{label}_{path.stem}.jpg", blob),
                        (f"{label}_{path.stem}.cls", str(classes.index(label)).encode()),
                    ):
                        info = tarfile.TarInfo(name)
                        info.size = len(content)
                        tar.addfile(info, io.BytesIO(content))
        count = max(1, -(-len(data) // 10_000))
        size = -(-len(data) // count)
        (hf / "data").mkdir(parents=True, exist_ok=True)
        for number in range(count):
            part = data[number * size : (number + 1) * size]
            table = pa.table(
                {
                    "image": pa.array([{"bytes": b, "path": p.name} for _, p, b in part], type=image_type),
                    "label": pa.array([classes.index(label) for label, _, _ in part], type=pa.int64()),
                }
            ).replace_schema_metadata(meta)
            pq.write_table(table, hf / "data" / f"{split}-{number:05d}-of-{count:05d}.parquet", row_group_size=1000)
    return folder, shards, hf


def run(target: str, kwargs: dict, env: dict, runs: int) -> dict:
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, target, json.dumps(kwargs)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = sorted(results, key=lambda r: r["wall"])[len(results) // 2]
    best["walls"] = [round(r["wall"], 2) for r in results]
    return best


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
    args = parser.parse_args()
    classes = sorted(p.name for p in (CIFAR / "train").iterdir())
    files = files_of(args.limit)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as tmp:
        base = Path(tmp)
        started = time.perf_counter()
        folder, shards, hf = pack(files, base, classes, whole=args.limit is None)
        print(
            f"packed {sum(len(f) for f in files.values()):,} images in {time.perf_counter() - started:.1f} s "
            f"(not timed below); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        cold = {"use_cache": False, "jobs": args.jobs}
        rows = {}
        wanted = set(args.only.split(",")) if args.only else {"folder", "webdataset", "parquet", "warm", "s3"}
        rows["folder"] = run(str(folder), cold, env, args.runs)  # the baseline of every ratio: always measured
        if "webdataset" in wanted:
            rows["webdataset shards"] = run(str(shards), cold, env, args.runs)
        if wanted & {"parquet", "s3"}:
            rows["parquet (HF layout)"] = run(str(hf), cold, env, args.runs)
        if "warm" in wanted:
            cache = str(base / "cache.sqlite")
            run(str(folder), {"cache_path": cache, "jobs": args.jobs}, env, 1)  # fill the cache
            warm = {"cache_path": cache, "jobs": args.jobs}
            rows["folder, warm rescan"] = run(str(folder), warm, env, max(3, args.runs))
        if "s3" in wanted and not args.no_s3:
            from moto.server import ThreadedMotoServer

            port = free_port()
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            env.update(
                AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                AWS_ACCESS_KEY_ID="bench",
                AWS_SECRET_ACCESS_KEY="bench",
                AWS_DEFAULT_REGION="us-east-1",
            )
            os.environ.update(
                {
                    k: env[k]
                    for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
                }
            )
            import s3fs

            fs = s3fs.S3FileSystem()
            fs.mkdir("bench")
            fs.put(str(hf), "bench/hf", recursive=True)
            rows["parquet on local S3 (moto)"] = run("s3://bench/hf", cold, env, args.runs)
            server.stop()
    from dupaudit.engine.sources import SourceOptions, is_plain_folder

    started = time.perf_counter()
    for _ in range(100):
        is_plain_folder(str(CIFAR), SourceOptions())
    detection_ms = (time.perf_counter() - started) * 10

    base_wall = rows["folder"]["wall"]
    print(f"\n{'scan (cold, no cache)':32} {'wall s':>8} {'cpu s':>8} {'/folder':>8}  images  groups  leaked")
    for name, row in rows.items():
        print(
            f"{name:32} {row['wall']:8.2f} {row['cpu']:8.2f} {row['wall'] / base_wall:8.2f}  "
            f"{row['images']:6}  {row['groups']:6}  {row['leaked']:6}   runs {row['walls']}"
        )
    if "parquet on local S3 (moto)" in rows:
        ratio = rows["parquet on local S3 (moto)"]["wall"] / rows["parquet (HF layout)"]["wall"]
        print(f"\nlocal S3 / local Parquet: {ratio:.2f}x (the aim: within 1.5x)")
    print(f"source detection of a folder (is_plain_folder on {CIFAR}): {detection_ms:.2f} ms a call")


if __name__ == "__main__":
    main()
