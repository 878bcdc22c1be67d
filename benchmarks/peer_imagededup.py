"""Time imagededup 0.3.3 PHash on a folder: encode_images, then find_duplicates with each search method.

    python benchmarks/peer_imagededup.py FOLDER [--threshold 6] [--methods bktree,brute_force_cython]
        [--workers 2] [--json OUT.json]

Run by bench_scan.py in its own process (importing imagededup imports torch: about 7 s, not counted); can be
run alone to time the slow 60,000-image search once and hand the JSON to bench_scan.py --peer-json.
Prints one JSON object: wall and CPU seconds for encode and for each search method, the number of images hashed and of
duplicate pairs found.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _cpu() -> float:
    """CPU seconds of this process and of its finished worker processes."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--threshold", type=int, default=6)
    parser.add_argument("--methods", default="bktree,brute_force_cython")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import logging

    logging.disable(logging.WARNING)  # imagededup logs every file it cannot read
    from imagededup.methods import PHash

    hasher = PHash(verbose=False)
    result: dict = {"folder": args.folder, "threshold": args.threshold, "workers": args.workers}
    started, cpu = time.perf_counter(), _cpu()
    # recursive=True: without it imagededup finds nothing in a folder of class folders
    encodings = hasher.encode_images(image_dir=args.folder, recursive=True, num_enc_workers=args.workers)
    result["encode_s"], result["encode_cpu_s"] = time.perf_counter() - started, _cpu() - cpu
    result["images"] = len(encodings)
    for method in [m for m in args.methods.split(",") if m]:
        started, cpu = time.perf_counter(), _cpu()
        duplicates = hasher.find_duplicates(
            encoding_map=encodings,
            max_distance_threshold=args.threshold,
            search_method=method,
            num_dist_workers=args.workers,
        )
        result[f"search_{method}_s"] = time.perf_counter() - started
        result[f"search_{method}_cpu_s"] = _cpu() - cpu
        print(json.dumps(result), file=sys.stderr, flush=True)  # partial results survive an interrupted run
        result[f"pairs_{method}"] = sum(len(v) for v in duplicates.values()) // 2
    text = json.dumps(result)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
