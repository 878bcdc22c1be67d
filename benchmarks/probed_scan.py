"""The neighbour search's probed lists scanned as matrix products (verify.ProbedLists) against faiss's own scans.

    python benchmarks/probed_scan.py INDEX_OR_DESC [--queries 200000] [--runs 2]

INDEX_OR_DESC: an index file written by `dupaudit index build` (its state folder's desc.npy is read; scale.py
leaves one of a million images in WORKDIR/data.index), or a .npy file of (n, 64) float32 descriptors. With the
same coarse quantizer and probes (verify.trained_lists), the same random rows searched as half-shifted queries
(2 results) and as plain ones (4 results) by: faiss's half-precision lists (what the scan used before), faiss's
float32 lists (IndexIVFFlat: the exact answer of those probes), and ProbedLists. Prints each one's wall and CPU
seconds per run, and, on the first run, how many queries get the same ids as faiss's lists (in the same order,
the nearest one) and the largest similarity difference. docs/scale.md quotes a run on a million descriptors.
"""

from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path

import numpy as np


def _descriptors(source: Path) -> np.ndarray:
    if source.suffix == ".npy":
        path = source
    else:
        found = sorted(glob.glob(str(source) + ".states/*/desc.npy"))
        if not found:
            raise SystemExit(f"{source}: no state folder with desc.npy beside it (build the index first)")
        path = Path(found[-1])
    return np.ascontiguousarray(np.load(path), dtype=np.float32)


def _timed(search):  # noqa: ANN001, ANN202 - a search call
    wall, cpu = time.perf_counter(), time.process_time()
    answer = search()
    return answer, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("--queries", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import faiss

    from dupaudit.engine.verify import _PROBES, HALF_SHIFTS, ProbedLists, half_shifted, trained_lists

    faiss.omp_set_num_threads(args.threads)
    desc = _descriptors(args.source)
    half = trained_lists(desc)  # faiss's half-precision lists, filled below
    lists = ProbedLists(half, desc)
    half.add(desc)
    exact = faiss.IndexIVFFlat(half.quantizer, 64, half.nlist, faiss.METRIC_INNER_PRODUCT)
    exact.add(desc)
    exact.nprobe = _PROBES
    rows = np.random.default_rng(1).choice(len(desc), min(args.queries, len(desc)), replace=False)
    print(f"{len(desc):,} descriptors, {half.nlist:,} lists, {_PROBES} probed, {len(rows):,} queries")
    for run in range(args.runs):
        for width in (2, 4):
            queries = half_shifted(desc[rows], HALF_SHIFTS[0]) if width == 2 else np.ascontiguousarray(desc[rows])
            answers = {}
            line = []
            for name, index in (("faiss fp16 lists", half), ("faiss float32 lists", exact), ("matrix products", lists)):
                answers[name], wall, cpu = _timed(lambda index=index: index.search(queries, width))
                line.append(f"{name} {wall:.2f} s (CPU {cpu:.2f} s)")
            load = open("/proc/loadavg").read().split()[0]
            kind = "half-shifted" if width == 2 else "plain"
            print(f"run {run + 1}, {kind}, {width} results: " + ", ".join(line) + f"; load {load}")
            if run:
                continue
            sims, ids = answers["matrix products"]
            for name in ("faiss fp16 lists", "faiss float32 lists"):
                their_sims, their_ids = answers[name]
                print(
                    f"  against {name}: same ids {np.mean(np.all(their_ids == ids, axis=1)):.5f}, "
                    f"same nearest {np.mean(their_ids[:, 0] == ids[:, 0]):.5f}, "
                    f"largest similarity difference {np.abs(their_sims - sims).max():.1e}"
                )


if __name__ == "__main__":
    main()
