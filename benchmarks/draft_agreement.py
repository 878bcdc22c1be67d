"""How much does draft decoding (JPEG at reduced scale) change pHashes and the pairs found? Real files only.

    python benchmarks/draft_agreement.py /tmp/dupaudit-photos [--thresholds 6,10] [--jobs 2]

Fingerprints every file twice (full decode, bit-identical to imagededup; and draft), then prints: the share of
identical hashes, the bit differences, and for each threshold the pHash pairs found by each (|full|, |draft|,
both, only one) - the decisions a scan without verification would take.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--thresholds", default="6,10")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    from dupaudit.engine.discover import discover, resolve_roots
    from dupaudit.engine.hashing import hamming
    from dupaudit.engine.search import pairs_within

    scan_module = importlib.import_module("dupaudit.engine.pipeline")
    records, _ = discover(resolve_roots(args.folder))
    hashes = {}
    for draft in (False, True):
        started = time.perf_counter()
        found = scan_module.fingerprint_records(records, ("phash",), jobs=args.jobs, cache=None, draft=draft)
        elapsed = time.perf_counter() - started
        assert len(found.records) == len(records), "every file must decode both ways"
        hashes[draft] = np.frombuffer(b"".join(f.hashes["phash"] for f in found.fingerprints), dtype=np.uint8).reshape(
            -1, 8
        )
        print(
            f"{'draft' if draft else 'full '} decode + hash of {len(records):,} files: {elapsed:.1f} s "
            f"({args.jobs} processes)"
        )
    bits = hamming(hashes[False], hashes[True])
    print(
        f"identical pHashes: {np.mean(bits == 0):.1%}; bits apart: mean {bits.mean():.2f}, "
        f"90th percentile {np.percentile(bits, 90):.0f}, max {bits.max()}"
    )
    for threshold in [int(t) for t in args.thresholds.split(",")]:
        full = set(zip(*[x.tolist() for x in pairs_within(hashes[False], threshold)[:2]]))
        draft = set(zip(*[x.tolist() for x in pairs_within(hashes[True], threshold)[:2]]))
        both = len(full & draft)
        print(
            f"threshold {threshold}: pairs full {len(full):,}, draft {len(draft):,}, both {both:,}, "
            f"only full {len(full - draft):,}, only draft {len(draft - full):,} "
            f"(agreement {both / max(1, len(full | draft)):.1%} of the union)"
        )


if __name__ == "__main__":
    main()
