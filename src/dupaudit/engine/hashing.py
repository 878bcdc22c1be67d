"""Batched perceptual hashes, bit-identical to imagededup's PHash, DHash, AHash and WHash.

Each function takes a stack of grayscale arrays already resized the way imagededup resizes (see
HASH_SIZES) and returns an (n, 8) uint8 array: the 64 hash bits packed in imagededup's order, so that
`bytes(row).hex()` is imagededup's hash string. One transform call per batch, not one per image.
"""

from __future__ import annotations

import numpy as np

# The side of the pHash input (32x32 gray, LANCZOS), which doubles as the thumbnail the cascade verifies on
# (verify.py), is stored in the cache (fingerprint.py) and is the floor of draft decoding: defined here only.
THUMB_SIZE = 32
# (width, height) that imagededup resizes to before hashing each method.
HASH_SIZES: dict[str, tuple[int, int]] = {
    "phash": (THUMB_SIZE, THUMB_SIZE),
    "dhash": (9, 8),
    "ahash": (8, 8),
    "whash": (256, 256),
}


def phash(batch: np.ndarray) -> np.ndarray:
    """imagededup PHash: 2-D DCT-II of 32x32, top-left 8x8, >= median of all but the DC term."""
    from scipy.fftpack import dct  # the same routine imagededup calls, so rounding is identical

    coefficients = dct(dct(batch.astype(np.float64), axis=1), axis=2)[:, :8, :8].reshape(len(batch), 64)
    medians = np.median(coefficients[:, 1:], axis=1)
    return np.packbits(coefficients >= medians[:, None], axis=1)


def phash_and_mirrored(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """phash(batch) and phash of the batch mirrored left-right, bit-identical to two phash calls, ~2.5x cheaper.

    Mirroring only reorders the columns, so the vertical DCT is shared (each column's transform is the same
    computation either way), and the horizontal DCT runs on the 8 rows kept only: the same 1-D transforms,
    so the same floating-point results; checked equal on the 60,000 CIFAR-10 and 6,000 photo-size images.
    """
    from scipy.fftpack import dct

    vertical = dct(batch.astype(np.float64), axis=1)[:, :8, :]
    results = []
    for rows in (vertical, vertical[:, :, ::-1]):
        coefficients = dct(np.ascontiguousarray(rows), axis=2)[:, :, :8].reshape(len(batch), 64)
        medians = np.median(coefficients[:, 1:], axis=1)
        results.append(np.packbits(coefficients >= medians[:, None], axis=1))
    return results[0], results[1]


def dhash(batch: np.ndarray) -> np.ndarray:
    """imagededup DHash: each pixel of a 9x8 image brighter than its left neighbour."""
    bits = batch[:, :, 1:] > batch[:, :, :-1]
    return np.packbits(bits.reshape(len(batch), 64), axis=1)


def ahash(batch: np.ndarray) -> np.ndarray:
    """imagededup AHash: each pixel of an 8x8 image >= the image mean."""
    flat = batch.reshape(len(batch), 64)
    means = flat.mean(axis=1)
    return np.packbits(flat >= means[:, None], axis=1)


def whash(batch: np.ndarray) -> np.ndarray:
    """imagededup WHash: Haar wavelet of 256x256 to level 5, LL band >= its median."""
    import pywt

    coefficients = pywt.wavedec2(batch / 255, "haar", level=5, axes=(1, 2))[0].reshape(len(batch), 64)
    medians = np.median(coefficients, axis=1)
    return np.packbits(coefficients >= medians[:, None], axis=1)


HASH_FUNCTIONS = {"phash": phash, "dhash": dhash, "ahash": ahash, "whash": whash}


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between packed hashes (broadcasting over leading axes)."""
    return _POPCOUNT[np.bitwise_xor(a, b)].sum(axis=-1, dtype=np.int64)
