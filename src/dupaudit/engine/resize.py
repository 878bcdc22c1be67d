"""Lanczos downscaling by two small matrix products: Pillow's filter and coefficients, without its per-image cost.

Used where bit-identity with imagededup is already given up (draft decoding, --fast-decode): a JPEG decoded at
1/8 scale is about 40x50 pixels, and Pillow's fromarray + resize + convert are a large part of the per-file cost
for it (docs/performance.md). Here the image is turned gray first and resized in float32, rounded once: the result
is within a gray level or two of Pillow's (which rounds after each pass and converts to gray last).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_SUPPORT = 3.0  # Lanczos-3, as Pillow's Image.LANCZOS


def _lanczos(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < _SUPPORT, np.sinc(x) * np.sinc(x / _SUPPORT), 0.0)


@lru_cache(maxsize=1024)
def weights(in_size: int, out_size: int) -> np.ndarray:
    """The (out_size, in_size) matrix of Pillow's resampling coefficients along one axis (precompute_coeffs)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _SUPPORT * filterscale
    centers = (np.arange(out_size) + 0.5) * scale
    first = np.maximum((centers - support + 0.5).astype(np.int64), 0)  # int() truncates, as in C
    last = np.minimum((centers + support + 0.5).astype(np.int64), in_size)
    positions = np.arange(in_size)
    inside = (positions >= first[:, None]) & (positions < last[:, None])
    matrix = np.where(inside, _lanczos((positions - centers[:, None] + 0.5) / filterscale), 0.0)
    totals = matrix.sum(axis=1, keepdims=True)
    matrix = np.divide(matrix, totals, out=matrix, where=totals != 0)
    result = matrix.astype(np.float32)
    result.setflags(write=False)  # shared by every caller through the cache
    return result


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as Pillow's convert("L")


def gray_thumbnail(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (height, width) uint8 gray image, size = (width, height) as Pillow's, from an (h, w, 3) uint8 RGB one."""
    gray = rgb.astype(np.float32) @ _LUMA
    height, width = gray.shape
    small = weights(height, size[1]) @ gray @ weights(width, size[0]).T
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)
