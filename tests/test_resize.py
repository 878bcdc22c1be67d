"""The draft path's Lanczos resize: Pillow's coefficients, and a result within a gray level of Pillow's."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dupaudit.engine.hashing import phash
from dupaudit.engine.resize import gray_thumbnail, weights
from dupaudit.sample import procedural_image


def _pillow_coefficients(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's precompute_coeffs (Resample.c) for Lanczos-3, written out one output pixel at a time."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    matrix = np.zeros((out_size, in_size))
    for out in range(out_size):
        center = (out + 0.5) * scale
        first, last = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), in_size)
        for x in range(first, last):
            t = (x - center + 0.5) / filterscale
            matrix[out, x] = np.sinc(t) * np.sinc(t / 3) if abs(t) < 3 else 0.0
        matrix[out] /= matrix[out].sum()
    return matrix


def test_weights_are_pillows_lanczos_coefficients():
    for in_size in (8, 9, 31, 32, 33, 47, 100, 257):
        for out_size in (8, 9, 32):
            np.testing.assert_allclose(weights(in_size, out_size), _pillow_coefficients(in_size, out_size), atol=1e-6)


def test_gray_thumbnail_is_within_a_few_levels_of_pillow_and_keeps_most_phashes():
    images = [
        np.asarray(procedural_image(seed, size=48).convert("RGB").resize((40 + seed % 20, 33 + seed % 17)))
        for seed in range(200)
    ]
    pillow = np.stack([np.asarray(Image.fromarray(a).resize((32, 32), Image.LANCZOS).convert("L")) for a in images])
    ours = np.stack([gray_thumbnail(a, (32, 32)) for a in images])
    difference = np.abs(pillow.astype(int) - ours)
    assert difference.mean() < 0.5 and difference.max() <= 8
    assert (phash(pillow) == phash(ours)).all(axis=1).mean() >= 0.8
    assert gray_thumbnail(images[0], (9, 8)).shape == (8, 9)  # (width, height), as Pillow's sizes
