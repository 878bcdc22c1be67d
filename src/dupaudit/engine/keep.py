"""The keep rule: which member of a duplicate group is kept (the others are the redundant copies).

README "The keep rule" states it for users:
1. not an upscale of a smaller member (an upscale adds pixels, not detail: see `holds_no_more_detail`);
2. then the highest resolution, then the largest file (less compressed);
3. then the plainest name (`camera.jpg` over `camera\nnewline.jpg`, `rocket.jpg` over `ROCKET_UPPER.JPG`, `a.jpg`
   over `a (1).jpg`), then the first (root, name, path). The name is the file's path, or for a Parquet row the
   name its image column records (keep_name): the same images give the same keepers as a folder or a table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .model import ImageRecord

# An upscale by k leaves its spectrum empty above 1/k of the Nyquist frequency. Measured on planted upscales
# (benchmarks/keep_upscales.py): the whitened power just below that cut-off over the power just above it is
# 3-14 for upscales of sharp photos (1.5x-8x, bilinear, bicubic, Lanczos, JPEG 90) and at most 1.9 for the
# originals at the same cut-offs; blurry photos give 1.4-2.6 either way, so they are left to rule 2.
UPSCALE_RATIO = 2.5
MIN_UPSCALE = 1.4  # per axis: below this the bands around the cut-off are too close to the Nyquist limit
_WORKING_CUTOFF = 0.3  # cycles/pixel: decode large files at reduced scale while the cut-off stays below this

_COPY_MARK = re.compile(r"(copy|kopie|duplicate|\(\d+\)|~\d*$|[ _-]\d+$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A group member as the keep rule sees it."""

    path: str  # relative to its root, or the item's own name (keep_name): for the name rule
    abspath: str
    width: int
    height: int
    size: int


def keep_order(record: ImageRecord, width: int, height: int) -> tuple:
    """Rules 2 and 3 for one member (smaller sorts first); `choose_keeper` adds rule 1 across the group."""
    return (-(width * height), -record.size, name_oddness(keep_name(record.path, record.name)))


def keep_name(path: str, name: str | None) -> str:
    """The name rule 3 reads, and orders ties by: a file's path, or an item's own name where its id does not hold
    it (a Parquet row's image path, as the file it came from was named; "" for a row that records none: a tie).
    `name`: ImageRecord.name, GroupMember.name."""
    return path if name is None else name


def name_oddness(path: str) -> tuple:
    """How odd a file name looks (smaller is plainer): control characters, copy marks, capitals, spaces, length."""
    name = path.rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0]
    return (
        not name.isprintable(),
        bool(_COPY_MARK.search(stem)),
        name != name.lower(),
        any(c.isspace() for c in name),
        len(name),
    )


def choose_keeper(candidates: Sequence[Candidate]) -> int:
    """The index of the member to keep (ties: the first, so pass members in (root, path) order)."""
    order = [(-(c.width * c.height), -c.size, name_oddness(c.path), i) for i, c in enumerate(candidates)]
    upscaled = [False] * len(candidates)
    sizes = {(c.width, c.height) for c in candidates}
    if len(sizes) > 1:  # only a group of several resolutions can hold an upscale: decode only then
        for i, big in enumerate(candidates):
            smaller = [c for c in candidates if _upscale_factors(c, big) is not None]
            # the largest smaller member first: if big holds no more detail than it, big is an upscale
            for small in sorted(smaller, key=lambda c: -(c.width * c.height)):
                if holds_no_more_detail(big, small):
                    upscaled[i] = True
                    break
    return min(range(len(candidates)), key=lambda i: (upscaled[i], order[i]))


def _upscale_factors(small: Candidate, big: Candidate) -> tuple[float, float] | None:
    """Per-axis factors from `small` to `big` (matched by orientation), or None if big is not MIN_UPSCALE larger."""
    width, height = small.width, small.height
    if (width > height) != (big.width > big.height) and width != height and big.width != big.height:
        width, height = height, width  # one of them is stored rotated (EXIF orientation)
    if width <= 0 or height <= 0:
        return None
    fx, fy = big.width / width, big.height / height
    if max(fx, fy) < MIN_UPSCALE or min(fx, fy) < 1:
        return None
    return fx, fy


def holds_no_more_detail(big: Candidate, small: Candidate) -> bool:
    """True when `big` is an upscale of `small`: on each enlarged axis its spectrum drops off a cliff at the
    frequency `small` can hold (the whitened power below the cut-off is UPSCALE_RATIO times that above it)."""
    factors = _upscale_factors(small, big)
    if factors is None:
        return False
    cutoffs = [0.5 / factor for factor in factors]  # cycles per pixel of big
    scale = 1
    while scale < 8 and min(cutoffs) * scale * 2 <= _WORKING_CUTOFF:
        scale *= 2
    pixels = _gray(big.abspath, scale)
    if pixels is None:
        return False
    array, reduction = pixels
    for axis, (factor, cutoff, reduced) in enumerate(zip(factors, cutoffs, reduction)):
        if factor < MIN_UPSCALE:
            continue
        if _cliff(array, cutoff * reduced, 1 - axis) < UPSCALE_RATIO:  # x runs along array axis 1
            return False
    return True


@lru_cache(maxsize=4)  # a large member is compared with each smaller one: decode it once
def _gray(path: str, scale: int) -> tuple[np.ndarray, tuple[float, float]] | None:
    """The file as float grayscale reduced `scale` times (a JPEG decoded at reduced scale, as the cut-off stays
    low enough to measure above it), and the actual (x, y) reduction factors."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            if scale > 1 and image.format == "JPEG":
                image.draft("L", (width // scale, height // scale))
            gray = image.convert("L")
            if scale > 1 and gray.size == (width, height):  # not a JPEG: average the pixels instead
                gray = gray.reduce(scale)
            return np.asarray(gray, dtype=np.float64), (width / gray.size[0], height / gray.size[1])
    except Exception:  # an unreadable file is never demoted by this rule
        return None


def _cliff(array: np.ndarray, cutoff: float, axis: int) -> float:
    """Whitened power (power x f^2, flat for natural images) in [0.6, 0.9] x cutoff over [1.1, 1.5] x cutoff."""
    if array.shape[axis] < 32:
        return 0.0
    centred = array - array.mean(axis=axis, keepdims=True)
    window = np.hanning(array.shape[axis])
    centred = centred * (window if axis == 1 else window[:, None])
    power = (np.abs(np.fft.rfft(centred, axis=axis)) ** 2).mean(axis=1 - axis)
    freq = np.fft.rfftfreq(array.shape[axis])
    power = power * freq**2
    below = power[(freq >= 0.6 * cutoff) & (freq < 0.9 * cutoff)]
    above = power[(freq > 1.1 * cutoff) & (freq <= min(1.5 * cutoff, 0.5))]
    if not len(below) or not len(above) or above.mean() <= 0:
        return 0.0
    return float(below.mean() / above.mean())
