"""The scan on a Dask LocalCluster against the single-process scan, and the growth of the sharded search.

    python benchmarks/bench_cluster.py scan [--data ../shared/data/cifar10] [--workers 2]
    python benchmarks/bench_cluster.py search [--sizes 1000000,2000000,4000000] [--workers 2]

scan: in one run, three scans of DATA with no cache, each in a fresh child process (so that each peak resident
memory is its own; the clock starts after the imports): the single process (`--jobs WORKERS`); `--cluster` on a
LocalCluster of WORKERS started before (as a user's running cluster would be), the workers verifying; and the
same with the thumbnails sent to the driver, which verifies (the design before the workers verified, kept
here as the baseline of the driver's memory). Printed: seconds, images per second, the driver's peak memory,
the cluster's overhead against the single process, and whether the JSON reports are byte-identical.

search: per size N (random 64-bit hashes with 1% planted near copies, radius 10): the single-process exact search
(engine.search.pairs_within, all cores) in a child process, and the sharded search on the cluster
(cluster.search), each timed; the bytes sent by the driver (the shards) and moved between workers (Dask's
transfer log), and gathered back (the pairs); the peak resident memory of each worker (ru_maxrss of fresh
worker processes: the workers are restarted before each size) and of each search's driver; and that both gave
the same pairs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search import make_hashes  # noqa: E402


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cluster(workers: int):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
    )
    return cluster, Client(cluster, set_as_default=False)


def _child(*args: str) -> dict:
    """Run this script's hidden `child` command; its last stdout line is a JSON object."""
    done = subprocess.run(
        [sys.executable, __file__, "child", *args], check=True, stdout=subprocess.PIPE, text=True, env=os.environ
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(args: argparse.Namespace) -> None:
    """One timed scan or search in this process, printed as JSON (time, peak memory, a digest of the answer)."""
    if args.task == "search":
        from dupaudit.engine.search import pairs_within

        hashes, _ = make_hashes(args.n, args.n // 100, seed=0)
        started = time.perf_counter()
        pairs = pairs_within(hashes, args.radius)
        seconds = time.perf_counter() - started
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes() for p in pairs)).hexdigest()
        print(json.dumps({"seconds": seconds, "peak_mb": _peak_mb(), "digest": digest, "pairs": len(pairs[0])}))
        return
    from dupaudit.engine.pipeline import scan
    from dupaudit.formats import json as json_format

    runner, client = None, None
    work = tempfile.TemporaryDirectory()
    if args.scheduler:
        from distributed import Client

        from dupaudit.cluster import DaskRunner

        client = Client(args.scheduler, set_as_default=False)
        runner = (_driver_verifies() if args.driver_verifies else DaskRunner)(client, work.name)
    started = time.perf_counter()
    report = scan(args.data, use_cache=False, jobs=args.workers, runner=runner)
    seconds = time.perf_counter() - started
    digest = hashlib.sha256(json_format.render(report).encode()).hexdigest()
    print(json.dumps({"seconds": seconds, "peak_mb": _peak_mb(), "digest": digest, "images": report.summary.images}))
    if client is not None:
        client.close()
    work.cleanup()


def _driver_verifies() -> type:
    from dupaudit.cluster import DaskRunner

    class DriverVerifies(DaskRunner):
        """The previous design, for the baseline: every thumbnail comes to the driver, which verifies."""

        def fingerprint_records(self, *args, **kwargs):
            kwargs["keep_thumbs"] = True
            return super().fingerprint_records(*args, **kwargs)

    return DriverVerifies


def bench_scan(args: argparse.Namespace) -> None:
    cluster, client = _cluster(args.workers)
    common = ["scan", "--data", args.data, "--workers", str(args.workers)]
    try:
        single = _child(*common)
        print(f"single process: {single['seconds']:.2f} s, driver peak {single['peak_mb']:.0f} MB", flush=True)
        spread = _child(*common, "--scheduler", cluster.scheduler_address)
        print(f"local:{args.workers}: {spread['seconds']:.2f} s, driver peak {spread['peak_mb']:.0f} MB", flush=True)
        client.restart()
        before = _child(*common, "--scheduler", cluster.scheduler_address, "--driver-verifies")
        print(
            f"local:{args.workers}, driver verifies (before): {before['seconds']:.2f} s, "
            f"driver peak {before['peak_mb']:.0f} MB",
            flush=True,
        )
    finally:
        client.close()
        cluster.close()
    images = single["images"]
    s, c = single["seconds"], spread["seconds"]
    print(f"{images:,} images, {args.workers} workers, load average {os.getloadavg()[0]:.1f}")
    print(f"single process: {s:.2f} s ({images / s:,.0f} images/s)")
    print(f"local:{args.workers}:      {c:.2f} s ({images / c:,.0f} images/s)")
    print(f"cluster overhead: {100 * (c / s - 1):+.1f} % (target < +25 %)")
    print(
        f"driver peak: {spread['peak_mb']:.0f} MB with the workers verifying, {before['peak_mb']:.0f} MB when the "
        f"driver verifies (single process: {single['peak_mb']:.0f} MB)"
    )
    same = single["digest"] == spread["digest"] == before["digest"]
    print(f"reports byte-identical: {same}")


def _worker_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _moved_bytes(dask_worker) -> int:
    return sum(entry["total"] for entry in dask_worker.transfer_incoming_log)


def bench_search(args: argparse.Namespace) -> None:
    from dupaudit.cluster.search import default_pieces, default_shards, sharded_pairs_within

    cluster, client = _cluster(args.workers)
    try:
        print(
            "N, single s, cluster s, shards, tasks, driver sent MB, moved between workers MB, gathered MB, "
            "worker peak MB, single peak MB, driver peak MB, same",
            flush=True,
        )
        for n in args.sizes:
            single = _child("search", "--n", str(n), "--radius", str(args.radius))
            hashes, _ = make_hashes(n, n // 100, seed=0)
            client.restart()  # fresh worker processes: their ru_maxrss is this size's peak
            started = time.perf_counter()
            got = sharded_pairs_within(client, hashes, args.radius)
            distributed = time.perf_counter() - started
            shards = default_shards(len(hashes))
            pieces = default_pieces(shards, args.workers)
            tasks = shards * pieces + shards * (shards - 1) // 2 * pieces
            moved = sum(client.run(_moved_bytes).values())
            gathered = len(pickle.dumps(got))
            worker_peak = max(client.run(_worker_peak_mb).values())
            digest = hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes() for p in got)).hexdigest()
            print(
                f"{len(hashes):,}, {single['seconds']:.1f}, {distributed:.1f}, {shards}, {tasks}, "
                f"{hashes.nbytes / 1e6:.0f}, {moved / 1e6:.0f}, {gathered / 1e6:.1f}, {worker_peak:.0f}, "
                f"{single['peak_mb']:.0f}, {_peak_mb():.0f}, {digest == single['digest']}",
                flush=True,
            )
    finally:
        client.close()
        cluster.close()
    print(f"load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("scan")
    s.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"))
    s.add_argument("--workers", type=int, default=2)
    q = sub.add_parser("search")
    q.add_argument("--sizes", default="1000000,2000000,4000000", type=lambda v: [int(x) for x in v.split(",")])
    q.add_argument("--workers", type=int, default=2)
    q.add_argument("--radius", type=int, default=10)
    c = sub.add_parser("child")  # one measured run in a fresh process (used by the two commands above)
    c.add_argument("task", choices=["scan", "search"])
    c.add_argument("--data")
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--scheduler")
    c.add_argument("--driver-verifies", action="store_true")
    c.add_argument("--n", type=int)
    c.add_argument("--radius", type=int, default=10)
    args = parser.parse_args()
    {"scan": bench_scan, "search": bench_search, "child": child}[args.what](args)


if __name__ == "__main__":
    main()
