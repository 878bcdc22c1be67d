"""Why the groups miss each missed ciFAIR judgment-1 pair: never proposed, rejected by verification, or split.

    python benchmarks/diagnose_pairs.py [--data ../shared/data/cifar10] [--cache FILE]

Scans once (the cache keeps the fingerprints), keeping the scan's candidate pairs and scores, then prints for each
judgment-1 pair that is not in one group: (a) not a candidate (pHash distance, never among the neighbours), (b) a
candidate scored below min_similarity (its full score, both ways round), or (c) verified but split by the keeper
rule (each file's group, keeper and its score against the other file). Issue 17's diagnosis was made with it.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

import dupaudit.engine.pipeline as pipeline
from dupaudit import scan
from dupaudit.engine.hashing import hamming
from dupaudit.engine.verify import CascadeSettings, verify

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "cifar10")
    parser.add_argument("--pairs", type=Path, default=SHARED / "cifair" / "cifar10_train_test_pairs_dev.csv")
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    kept: dict = {}
    candidate_pairs, build_groups = pipeline.candidate_pairs, pipeline.build_groups

    def keep_candidates(hash_pairs, thumbs, *rest, **options):
        kept["candidates"] = found = candidate_pairs(hash_pairs, thumbs, *rest, **options)
        kept["thumbs"] = thumbs
        return found

    def keep_inputs(*inputs):
        kept["records"], kept["hashes"] = inputs[0], inputs[6]
        return build_groups(*inputs)

    pipeline.candidate_pairs, pipeline.build_groups = keep_candidates, keep_inputs
    report = scan(args.data, cache_path=args.cache, verify_content=True)  # verify_content: no stored answer reused
    records, hashes, thumbs, found = kept["records"], kept["hashes"], kept["thumbs"], kept["candidates"]
    index = {f"{r.root}/{r.path}": i for i, r in enumerate(records)}
    candidates = {}
    for a, b, s in zip(found.first.tolist(), found.second.tolist(), found.scores.tolist()):
        key = (min(a, b), max(a, b))
        candidates[key] = max(candidates.get(key, -1.0), s)
    cascade = CascadeSettings(neighbours=report.settings.neighbours, min_similarity=report.settings.min_similarity)

    def score(a: int, b: int) -> float:
        one = [np.array([x]) for x in (a, b)]
        return max(
            float(verify(thumbs, *one, np.array([0]), cascade)[0]),
            float(verify(thumbs, *one[::-1], np.array([0]), cascade)[0]),
        )

    group_of = {index[f"{m.root}/{m.path}"]: g for g in report.groups for m in g.members}
    with open(args.pairs, newline="") as handle:
        judged = [
            (index[r["test_path"]], index[r["train_path"]]) for r in csv.DictReader(handle) if r["judgment"] == "1"
        ]
    missed = [(a, b) for a, b in judged if group_of.get(a) is None or group_of.get(a) is not group_of.get(b)]
    print(f"{len(judged) - len(missed)}/{len(judged)} judgment-1 pairs in one group; {len(missed)} missed:")
    for a, b in missed:
        full = score(a, b)
        key = (min(a, b), max(a, b))
        kind = (
            "a: not a candidate"
            if key not in candidates
            else "b: rejected"
            if full < cascade.min_similarity
            else "c: split"
        )
        sides = []
        for x, other in ((a, b), (b, a)):
            group = group_of.get(x)
            if group is None:
                sides.append("in no group")
                continue
            keeper = index[f"{group.kept.root}/{group.kept.path}"]
            mine = (
                "itself the keeper"
                if keeper == x
                else f"keeper {records[keeper].path} (other file's score {score(keeper, other):.3f})"
            )
            sides.append(f"group of {len(group.members)}, {mine}")
        name = lambda i: f"{records[i].root}/{records[i].path}"  # noqa: E731
        print(
            f"{kind:20s} {name(a)} {name(b)}: pHash {int(hamming(hashes[a], hashes[b]))}, score {full:.3f}; "
            + " | ".join(sides)
        )


if __name__ == "__main__":
    main()
