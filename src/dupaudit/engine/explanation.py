"""Why two files are, or are not, duplicates: every distance and score next to its threshold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .fingerprint import Fingerprint, fingerprint_paths
from .hashing import THUMB_SIZE, hamming
from .model import Settings
from .verify import CascadeSettings, descriptors, verify


@dataclass(frozen=True, slots=True)
class Explanation:
    first: str
    second: str
    settings: Settings
    same_bytes: bool
    same_pixels: bool
    hash_distance: int
    mirrored_hash_distance: int | None  # with --flips: the first against the mirror of the second
    descriptor_similarity: float
    similarity: float  # verification score (-1: dropped by the coarse 16x16 pass)
    mirrored_similarity: float | None
    verdict: str  # "exact", "pixel", "near" or "not a duplicate"
    reasons: tuple[str, ...]


def explain(first: str, second: str, settings: Settings | None = None) -> Explanation:
    """Fingerprint two files and say, step by step, how the scan would judge the pair."""
    settings = settings or Settings()
    results = fingerprint_paths([str(first), str(second)], (settings.method,))
    for path, result in zip((first, second), results):
        if isinstance(result, str):
            raise InputError(f"{path}: {result}")
    a, b = results
    assert isinstance(a, Fingerprint) and isinstance(b, Fingerprint)
    distance = _distance(a.hashes[settings.method], b.hashes[settings.method])
    mirrored = _distance(a.hashes[settings.method], b.flip_hashes[settings.method]) if settings.flips else None
    thumbs = np.stack([np.frombuffer(f.thumb, np.uint8).reshape(THUMB_SIZE, THUMB_SIZE) for f in (a, b)])
    desc = descriptors(thumbs)
    descriptor_similarity = float(desc[0] @ desc[1])
    if settings.flips:  # a mirrored copy is proposed by the mirrored descriptor
        mirror_desc = descriptors(np.ascontiguousarray(thumbs[1:, :, ::-1]))
        descriptor_similarity = max(descriptor_similarity, float(desc[0] @ mirror_desc[0]))
    cascade = CascadeSettings(neighbours=settings.neighbours, min_similarity=settings.min_similarity)
    zero, one = np.array([0]), np.array([1])
    similarity = float(verify(thumbs, zero, one, np.array([False]), cascade)[0])
    mirrored_similarity = float(verify(thumbs, zero, one, np.array([True]), cascade)[0]) if settings.flips else None

    reasons = [
        f"same bytes: {'yes' if a.byte_digest == b.byte_digest else 'no'}",
        f"same decoded pixels: {'yes' if a.pixel_digest == b.pixel_digest else 'no'}",
        f"{settings.method} Hamming distance {distance} (candidate radius {settings.threshold})",
    ]
    if mirrored is not None:
        reasons.append(f"{settings.method} distance to the mirrored second image {mirrored}")
    if settings.verify:
        reasons.append(
            f"descriptor similarity {descriptor_similarity:.3f} (neighbour candidates need >= "
            f"{cascade.min_descriptor_similarity} and to be among the {settings.neighbours} nearest "
            "neighbours in the dataset)"
        )
        reasons.append(
            f"verification score {_score(similarity, cascade)} (needs >= {settings.min_similarity}; "
            "the best high-passed correlation over 1-px shifts and a 1.12x zoom, refined to half a pixel "
            f"and 6% zoom per axis when it lies between {cascade.refine_from} and the threshold)"
        )
        if mirrored_similarity is not None:
            reasons.append(f"verification score against the mirror {_score(mirrored_similarity, cascade)}")
    if a.byte_digest == b.byte_digest:
        verdict = "exact"
    elif a.pixel_digest == b.pixel_digest:
        verdict = "pixel"
    elif _near(settings, distance, mirrored, descriptor_similarity, cascade, similarity, mirrored_similarity):
        verdict = "near"
    else:
        verdict = "not a duplicate"
    return Explanation(
        str(first),
        str(second),
        settings,
        a.byte_digest == b.byte_digest,
        a.pixel_digest == b.pixel_digest,
        distance,
        mirrored,
        descriptor_similarity,
        similarity,
        mirrored_similarity,
        verdict,
        tuple(reasons),
    )


def _distance(x: bytes, y: bytes) -> int:
    return int(hamming(np.frombuffer(x, np.uint8), np.frombuffer(y, np.uint8)))


def _score(value: float, cascade: CascadeSettings) -> str:
    return f"{value:.3f}" if value >= 0 else f"dropped by the coarse 16x16 check (< {cascade.min_coarse})"


def _near(settings, distance, mirrored, descriptor_similarity, cascade, similarity, mirrored_similarity) -> bool:
    within = distance <= settings.threshold or (mirrored is not None and mirrored <= settings.threshold)
    if not settings.verify:
        return within
    candidate = within or descriptor_similarity >= cascade.min_descriptor_similarity
    best = max(similarity, mirrored_similarity if mirrored_similarity is not None else -1.0)
    return candidate and best >= settings.min_similarity
