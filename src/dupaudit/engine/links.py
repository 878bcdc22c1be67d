"""Is this image a near copy of that keeper? One check per way of scanning (groups.LinkCheck).

Each check answers for a batch of (keeper, candidate) pairs with the same decision the scan makes for its
candidate pairs: the thumbnail verification score (the cascade), the Hamming radius (--no-verify), or the
cosine similarity of the embeddings (--method cnn).
"""

from __future__ import annotations

import numpy as np

from .groups import Checked
from .hashing import hamming
from .model import TRANSFORMS
from .verify import CascadeSettings, verify


def _names(codes: np.ndarray) -> list[str | None]:
    return [TRANSFORMS[code - 1] if code else None for code in codes.tolist()]


def _distances(hashes: np.ndarray, variants: dict[int, np.ndarray], first: np.ndarray, second: np.ndarray):
    """Per pair: the Hamming distance under each transform (code 0: as is; `variants` by code), as (codes, n)."""
    codes = [0, *variants]
    table = np.stack([hamming(hashes[first], (variants[c] if c else hashes)[second]) for c in codes])
    return np.asarray(codes), table.astype(np.int64)


def radius_check(hashes: np.ndarray, variants: dict[int, np.ndarray], threshold: int):
    """--no-verify: a copy lies within the Hamming radius, as is or under a transform (--flips, --rotations)."""

    def check(first: np.ndarray, second: np.ndarray) -> Checked:
        codes, table = _distances(hashes, variants, first, second)
        best = table.argmin(axis=0)  # as is first among equals
        distance = table[best, np.arange(len(first))]
        return Checked(distance <= threshold, distance, np.full(len(first), np.nan), _names(codes[best]))

    return check


def verified_check(
    thumbs: np.ndarray,
    hashes: np.ndarray,
    variants: dict[int, np.ndarray],
    cascade: CascadeSettings,
    threads: int = 1,
):
    """The cascade: a copy's verification score, the best as is and under each transform of the scan (--flips,
    --rotations), reaches cascade.min_similarity. Every pair is scored in full (no shortcut for joined pairs)."""

    def check(first: np.ndarray, second: np.ndarray) -> Checked:
        codes, table = _distances(hashes, variants, first, second)
        count = len(first)
        scores = np.stack([verify(thumbs, first, second, np.full(count, c), cascade, threads=threads) for c in codes])
        best = scores.argmax(axis=0) if count else np.zeros(0, dtype=np.int64)
        score = scores[best, np.arange(count)].astype(np.float64)
        distance = table[best, np.arange(count)]
        return Checked(score >= cascade.min_similarity, distance, score, _names(codes[best]))

    return check


def cosine_check(vectors: np.ndarray, valid: np.ndarray | None, hashes: np.ndarray, min_similarity: float):
    """--method cnn: a copy's embedding has cosine similarity >= min_similarity with the keeper's."""

    def check(first: np.ndarray, second: np.ndarray) -> Checked:
        score = np.einsum("ij,ij->i", vectors[first].astype(np.float32), vectors[second].astype(np.float32))
        linked = score >= min_similarity
        if valid is not None:
            linked &= valid[first] & valid[second]
        distance = hamming(hashes[first], hashes[second]).astype(np.int64)
        return Checked(linked, distance, score.astype(np.float64), [None] * len(first))

    return check
