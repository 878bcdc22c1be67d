"""The scan on a Dask LocalCluster against the single-process scan, and the growth of the sharded search.

    python benchmarks/bench_cluster.py scan [--data ../shared/data/cifar10] [--workers 2] [--runs 1]
    python benchmarks/bench_cluster.py search [--sizes 1000000,2000000,4000000] [--workers 2]

scan: in one run, the whole scan of DATA with no cache, single process (`--jobs WORKERS`) and on
`local:WORKERS` (a LocalCluster started before the clock starts, as a user's running cluster would be), the
median of --runs each, the throughput ratio, and whether the two JSON reports are byte-identical.

search: per size N (random 64-bit hashes with 1% planted near copies, radius 10): the single-process exact search
(engine.search.pairs_within, all cores) and the sharded search on the cluster (cluster.search), each timed; the
bytes sent to the workers (the scattered shards, as many shard-pairs as tasks) and gathered back (the pairs);
the peak resident memory of each worker (ru_maxrss) and of this driver; and that both gave the same pairs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
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


def bench_scan(args: argparse.Namespace) -> None:
    from dupaudit.cluster import DaskRunner
    from dupaudit.engine.pipeline import scan
    from dupaudit.formats import json as json_format

    cluster, client = _cluster(args.workers)
    single_times, cluster_times, reports = [], [], {}
    try:
        for run in range(args.runs):
            started = time.perf_counter()
            single = scan(args.data, use_cache=False, jobs=args.workers)
            single_times.append(time.perf_counter() - started)
            with tempfile.TemporaryDirectory() as work:
                runner = DaskRunner(client, work)
                started = time.perf_counter()
                distributed = scan(args.data, use_cache=False, jobs=args.workers, runner=runner)
                cluster_times.append(time.perf_counter() - started)
            reports = {"single": json_format.render(single), "cluster": json_format.render(distributed)}
            print(f"run {run + 1}: single {single_times[-1]:.2f} s, cluster {cluster_times[-1]:.2f} s", flush=True)
    finally:
        client.close()
        cluster.close()
    images = single.summary.images
    s, c = statistics.median(single_times), statistics.median(cluster_times)
    print(f"{images:,} images, {args.workers} workers, load average {os.getloadavg()[0]:.1f}")
    print(f"single process: {s:.2f} s ({images / s:,.0f} images/s)")
    print(f"local:{args.workers}:      {c:.2f} s ({images / c:,.0f} images/s)")
    print(f"cluster overhead: {100 * (c / s - 1):+.1f} % (target < +25 %)")
    print(f"reports byte-identical: {reports['single'] == reports['cluster']}")


def bench_search(args: argparse.Namespace) -> None:
    import pickle

    from dupaudit.cluster.search import default_shards, shard_bounds, sharded_pairs_within
    from dupaudit.engine.search import pairs_within

    cluster, client = _cluster(args.workers)
    try:
        print("N, single s, cluster s, shards, tasks, sent MB, gathered MB, worker peak MB, driver peak MB, same")
        for n in args.sizes:
            hashes, _ = make_hashes(n, n // 100, seed=0)
            started = time.perf_counter()
            expected = pairs_within(hashes, args.radius)
            single = time.perf_counter() - started
            client.run(_reset_peak)
            shards = default_shards(len(hashes), args.workers)
            started = time.perf_counter()
            got = sharded_pairs_within(client, hashes, args.radius)
            distributed = time.perf_counter() - started
            bounds = shard_bounds(len(hashes), shards)
            tasks = len(bounds) * (len(bounds) + 1) // 2
            # each task reads two shards (one for the diagonal); the scatter sends each shard once from here
            sent = sum(8 * (b - a) for a, b in bounds) + sum(
                8 * ((bj - aj) + (bi - ai)) for i, (ai, bi) in enumerate(bounds) for (aj, bj) in bounds[i + 1 :]
            )
            gathered = len(pickle.dumps(got))
            worker_peak = max(client.run(_peak_mb).values())
            same = all(np.array_equal(x, y) for x, y in zip(expected, got))
            print(
                f"{len(hashes):,}, {single:.1f}, {distributed:.1f}, {len(bounds)}, {tasks}, {sent / 1e6:.0f}, "
                f"{gathered / 1e6:.1f}, {worker_peak:.0f}, {_peak_mb():.0f}, {same}",
                flush=True,
            )
    finally:
        client.close()
        cluster.close()
    print(f"load average {os.getloadavg()[0]:.1f}")


def _reset_peak() -> None:  # ru_maxrss cannot be reset; the figure is the worker's peak so far
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("scan")
    s.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"))
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--runs", type=int, default=1)
    q = sub.add_parser("search")
    q.add_argument("--sizes", default="1000000,2000000,4000000", type=lambda v: [int(x) for x in v.split(",")])
    q.add_argument("--workers", type=int, default=2)
    q.add_argument("--radius", type=int, default=10)
    args = parser.parse_args()
    bench_scan(args) if args.what == "scan" else bench_search(args)


if __name__ == "__main__":
    main()
