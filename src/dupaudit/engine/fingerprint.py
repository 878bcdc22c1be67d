"""Decode each file once and derive everything the search needs: digests, perceptual hashes, a thumbnail.

A file is read once; its bytes give the byte digest and are decoded from memory; the decoded pixels give
the pixel digest and the small grayscale images the hashes need (resized exactly as imagededup resizes,
so the hashes match it bit for bit). Hashes are computed per batch, one transform call per batch.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xxhash
from PIL import Image, ImageOps, UnidentifiedImageError

from .hashing import HASH_FUNCTIONS, HASH_SIZES, THUMB_SIZE, phash_and_mirrored
from .resize import gray_thumbnail
from .verify import block_sums

FINGERPRINT_VERSION = 4  # bump when anything below changes what is stored, so caches are rebuilt

_EXIF_ORIENTATION = 0x0112
# Draft decoding (opt-in): a JPEG is decoded at 1/2, 1/4 or 1/8 scale in the DCT domain, no smaller than
# THUMB_SIZE px a side (the pHash input size), several times cheaper for photos, then made gray and resized
# by resize.gray_thumbnail. Not bit-identical to imagededup and it moves pairs across a threshold (measured in
# docs/performance.md, "Draft decoding"): not the default.


@dataclass(slots=True)
class Fingerprint:
    """What one decoded file contributes to the search (and what the cache stores)."""

    width: int
    height: int
    byte_digest: bytes
    pixel_digest: bytes
    hashes: dict[str, bytes]  # method -> 8 packed bytes
    flip_hashes: dict[str, bytes]  # method -> hash of the horizontally mirrored image
    thumb: bytes  # THUMB_SIZE x THUMB_SIZE grayscale, uint8
    blocks: bytes = b""  # verify.block_sums of the thumb (64 uint16), when fresh from a worker (not cached)
    draft: bool = False  # decoded at reduced scale: hashes may differ from imagededup's by a few bits


class BadImage(Exception):
    """A file that cannot be fingerprinted; its message is the one-line reason shown to the user."""


try:  # libjpeg-turbo without Pillow's per-file overhead (speed: docs/performance.md)
    import simplejpeg as _simplejpeg
except ImportError:  # optional: Pillow decodes the same pixels, only slower
    _simplejpeg = None


def _decode_jpeg_fast(data: bytes, draft: bool = False) -> tuple[np.ndarray, tuple[int, int]] | None:
    """An 8-bit YCbCr JPEG decoded straight to RGB pixels (h, w, 3) with simplejpeg, with its full (width,
    height), or None when Pillow must. With `draft`, decoded at the reduced scale Pillow's draft() picks.

    Pixel-identical to Pillow's decode on all 66,000 files checked (60,000 CIFAR-10, 6,000 photos): both are
    libjpeg-turbo with the accurate integer IDCT and fancy upsampling. Anything unusual (EXIF, so a possible
    orientation; CMYK or gray; oversized; truncated or corrupt: strict mode raises) goes to Pillow, which also
    words the error messages.
    """
    if _simplejpeg is None or data[:3] != b"\xff\xd8\xff" or _may_have_exif(data):
        return None
    try:
        height, width, colorspace, _ = _simplejpeg.decode_jpeg_header(data)
        limit = Image.MAX_IMAGE_PIXELS
        if colorspace != "YCbCr" or (limit and width * height > limit):
            return None
        if draft:  # libjpeg-turbo's DCT scaling, to no less than THUMB_SIZE a side, as Image.draft() does
            pixels = _simplejpeg.decode_jpeg(
                data, colorspace="RGB", strict=True, min_height=THUMB_SIZE, min_width=THUMB_SIZE
            )
        else:
            pixels = _simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
        return pixels, (width, height)
    except Exception:  # noqa: BLE001 - whatever it is, Pillow decides and explains
        return None


def _may_have_exif(data: bytes) -> bool:
    """True when a JPEG's header segments hold an EXIF block (APP1 "Exif"), or cannot be followed to the image
    data: then Pillow decodes it and applies the orientation. Reads the few segment headers only."""
    position, end = 2, min(len(data), 1 << 20)
    while position + 4 <= end:
        if data[position] != 0xFF:
            return True  # not a segment where one should start: let Pillow judge
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xDA:  # start of scan: the header is over
            return False
        if marker == 0xE1 and data[position + 4 : position + 10] == b"Exif\x00\x00":
            return True
        position += 2 + ((data[position + 2] << 8) | data[position + 3])
    return True


def _open_rgb(data: bytes, draft: bool = False) -> tuple[Image.Image, tuple[int, int]]:
    """Decode bytes to an RGB image the way imagededup does (alpha dropped), EXIF orientation applied.

    Also returns the full (width, height) as people see it, which differs from the image's when `draft`
    let a JPEG decode at reduced scale."""
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its pixel limit; a scan treats both as a bomb.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image: Image.Image = Image.open(io.BytesIO(data))
        full_size = image.size
        drafted = draft and image.format == "JPEG" and image.draft("RGB", (THUMB_SIZE, THUMB_SIZE)) is not None
        image.load()
    # Orientation other than 1 means the pixels are stored rotated or mirrored: compare what people see.
    # (imagededup ignores EXIF; for files without an orientation tag the result is the same.)
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation not in (0, 1):
        image = ImageOps.exif_transpose(image)
        if orientation in (5, 6, 7, 8):  # a quarter turn: width and height swap
            full_size = full_size[::-1]
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit gray: Pillow's RGB conversion clips every value above 255 (a white image); keep the top 8 bits.
        values = np.asarray(image, dtype=np.int64)
        if image.mode != "I" or values.max(initial=0) > 255:
            values = values >> 8
        image = Image.fromarray(values.clip(0, 255).astype(np.uint8), "L")
    if image.mode != "RGB":
        image = image.convert("RGBA").convert("RGB")
    return image, (full_size if drafted else image.size)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression bomb: {exc}".split(" could be")[0].rstrip(",")
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (content not recognised)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, OSError) and "truncated" in str(exc):
        return "truncated image"
    if isinstance(exc, (OSError, SyntaxError, ValueError)):
        return f"corrupt image: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return f"cannot decode: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def _facts(
    data: bytes, pixels, width: int, height: int, reduced: bool, decoded_size: tuple[int, int] | None = None
) -> dict:
    """Size and digests of one file. `pixels`: the decoded RGB bytes (or an array holding them).

    The digests are 128-bit XXH3: equal bytes (or pixels) are what they detect, not tampering, and XXH3 is
    far cheaper than BLAKE2b (measured: docs/performance.md)."""
    decoded = decoded_size or (width, height)
    # keyed by the decoded size (and "d" when reduced): digests of different decodes never collide
    seed = xxhash.xxh3_64_intdigest(b"%dx%d%s" % (*decoded, b"d" if reduced else b""))
    return {
        "width": width,
        "height": height,
        "byte_digest": byte_digest(data),
        "pixel_digest": xxhash.xxh3_128_digest(pixels, seed),
    }


def byte_digest(data: bytes) -> bytes:
    """The identity of a file's content: what exact copies share, and what the cache finds a moved file by."""
    return xxhash.xxh3_128_digest(data)


def content_digests(paths: Sequence[str]) -> list[bytes | None]:
    """The byte digest of each file, None for one that cannot be read (its decode will say why)."""
    digests: list[bytes | None] = []
    for path in paths:
        try:
            digests.append(byte_digest(_read(path)))
        except OSError:
            digests.append(None)
    return digests


def pillow_gray(rgb: np.ndarray) -> np.ndarray:
    """RGB (..., 3) uint8 to gray exactly as Pillow's convert("L") (ITU-R 601-2 in 16-bit fixed point)."""
    wide = rgb.astype(np.uint32)
    gray = (wide[..., 0] * 19595 + wide[..., 1] * 38470 + wide[..., 2] * 7471 + 0x8000) >> 16
    return gray.astype(np.uint8)


def decode_small(
    path: str, methods: tuple[str, ...], draft: bool = False, rgb_ok: bool = False
) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and decode one file; return its facts and the small gray arrays each method needs.

    With `draft`, a JPEG decodes at reduced scale (no less than THUMB_SIZE a side); its pixel digest is then that of the
    reduced image (still equal for two JPEGs with the same coefficients, no longer for a PNG copy).
    With `rgb_ok`, an image already of the pHash size may come back RGB (h, w, 3), for pillow_gray to turn
    gray a whole batch at once (decode_paths): per image, those numpy calls cost as much as the decode."""
    try:
        data = _read(path)
    except OSError as exc:
        raise BadImage(_reason(exc) if isinstance(exc, PermissionError) else f"cannot read: {exc.strerror}")
    return decode_bytes(data, methods, draft, rgb_ok)


def decode_bytes(
    data: bytes, methods: tuple[str, ...], draft: bool = False, rgb_ok: bool = False
) -> tuple[dict, dict[str, np.ndarray]]:
    """decode_small for an image already in memory (a tar member, a Parquet cell, a downloaded object)."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        fast = _decode_jpeg_fast(data, draft)
        pixels, (width, height) = fast if fast is not None else (None, (0, 0))
        if (
            pixels is not None
            and pixels.shape[:2] == (THUMB_SIZE, THUMB_SIZE) == (height, width)
            and set(methods) <= {"phash"}
        ):
            # Already the pHash input size (CIFAR-style): Pillow's resize would be a copy, and its RGB->L is
            # this integer formula (bit-identical, checked in tests), so no Pillow image is made at all.
            facts = _facts(data, pixels, THUMB_SIZE, THUMB_SIZE, reduced=False)
            return facts, {"phash": pixels if rgb_ok else pillow_gray(pixels)}
        if pixels is not None and draft:  # already approximate: the fast resize (resize.py) is close enough
            decoded_size = (pixels.shape[1], pixels.shape[0])
            facts = _facts(
                data, pixels, width, height, reduced=decoded_size != (width, height), decoded_size=decoded_size
            )
            return facts, {m: gray_thumbnail(pixels, HASH_SIZES[m]) for m in dict.fromkeys(("phash", *methods))}
        if pixels is not None:
            image = Image.fromarray(pixels, "RGB")
            facts = _facts(data, pixels, width, height, reduced=image.size != (width, height), decoded_size=image.size)
        else:
            image, (width, height) = _open_rgb(data, draft)
            facts = _facts(
                data, image.tobytes(), width, height, reduced=image.size != (width, height), decoded_size=image.size
            )
        del pixels
        small: dict[str, np.ndarray] = {}
        for method in dict.fromkeys(("phash", *methods)):
            small[method] = np.asarray(
                image.resize(HASH_SIZES[method], Image.Resampling.LANCZOS).convert("L"), dtype=np.uint8
            )
    except BadImage:
        raise
    except Exception as exc:  # any decoder failure is a property of the file, never a reason to stop
        raise BadImage(_reason(exc)) from None
    return facts, small


def _read(path: str) -> bytes:
    """The whole file, by plain system calls (a third cheaper than open().read() for small files)."""
    handle = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        chunks = []
        while chunk := os.read(handle, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]
    finally:
        os.close(handle)


@dataclass(slots=True)
class DecodedBatch:
    """A batch of files decoded (decode_paths), not yet hashed (fingerprints_of): the hash transforms run once
    per batch, on the stacked inputs."""

    results: list[dict | str]  # per file: its facts (see _facts), or the reason it could not be decoded
    small: dict[str, np.ndarray]  # method -> (good files, h, w) uint8: the hash inputs, in file order


def decode_paths(paths: list[str], methods: tuple[str, ...], draft: bool = False) -> DecodedBatch:
    """Read and decode a batch of files (see decode_small); nothing is hashed yet."""
    return _decode_each(decode_small, paths, methods, draft)


def decode_blobs(blobs: list[bytes], methods: tuple[str, ...], draft: bool = False) -> DecodedBatch:
    """Decode a batch of images held in memory (see decode_bytes); nothing is hashed yet."""
    return _decode_each(decode_bytes, blobs, methods, draft)


def _decode_each(decode, inputs: list, methods: tuple[str, ...], draft: bool) -> DecodedBatch:
    results: list[dict | str] = []
    arrays: dict[str, list[np.ndarray]] = {}
    for value in inputs:
        try:
            facts, small = decode(value, methods, draft, rgb_ok=True)
        except BadImage as exc:
            results.append(str(exc))
            continue
        results.append(facts)
        for method, array in small.items():
            arrays.setdefault(method, []).append(array)
    return DecodedBatch(results, {method: _stack_gray(stack) for method, stack in arrays.items()})


def _stack_gray(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack gray arrays, turning the RGB ones among them (decode_small's rgb_ok) gray in one call."""
    rgb = [i for i, array in enumerate(arrays) if array.ndim == 3]
    if not rgb:
        return np.stack(arrays)
    if len(rgb) == len(arrays):
        return pillow_gray(np.stack(arrays))
    grays = pillow_gray(np.stack([arrays[i] for i in rgb]))
    arrays = list(arrays)
    for row, index in enumerate(rgb):
        arrays[index] = grays[row]
    return np.stack(arrays)


def _hashed(decoded: DecodedBatch) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The hashes and mirrored hashes per method, the thumbnails and their block sums of a decoded batch's good
    files (decoded.small must hold some); one transform call per method."""
    hashes: dict[str, np.ndarray] = {}
    flips: dict[str, np.ndarray] = {}
    for method, batch in decoded.small.items():
        if method == "phash":  # the default: hash and mirrored hash share half the transform work
            hashes[method], flips[method] = phash_and_mirrored(batch)
            continue
        hashes[method] = HASH_FUNCTIONS[method](batch)
        flips[method] = HASH_FUNCTIONS[method](np.ascontiguousarray(batch[:, :, ::-1]))
    thumbs = decoded.small["phash"]  # the pHash input doubles as the thumbnail
    return hashes, flips, thumbs, block_sums(thumbs)


def fingerprints_of(decoded: DecodedBatch, draft: bool = False) -> list[Fingerprint | str]:
    """A Fingerprint per decoded file, a reason string per bad one; one transform call per method."""
    if not decoded.small:
        return [str(reason) for reason in decoded.results]  # nothing decoded: all reasons
    hashes, flips, thumbs, sums = _hashed(decoded)
    results: list[Fingerprint | str] = []
    row = 0
    for facts in decoded.results:
        if isinstance(facts, str):
            results.append(facts)
            continue
        results.append(
            Fingerprint(
                width=facts["width"],
                height=facts["height"],
                byte_digest=facts["byte_digest"],
                pixel_digest=facts["pixel_digest"],
                hashes={m: hashes[m][row].tobytes() for m in hashes},
                flip_hashes={m: flips[m][row].tobytes() for m in flips},
                thumb=thumbs[row].tobytes(),
                blocks=sums[row].tobytes(),
                draft=draft,
            )
        )
        row += 1
    return results


def fingerprint_paths(paths: list[str], methods: tuple[str, ...], draft: bool = False) -> list[Fingerprint | str]:
    """Fingerprint a batch of files in this process: a Fingerprint per good file, a reason string per bad one.

    `draft`: decode JPEGs at reduced scale (faster for photos; hashes not bit-identical to imagededup's)."""
    return fingerprints_of(decode_paths(paths, methods, draft), draft)


@dataclass(slots=True)
class Columns:
    """The fingerprints of good files as arrays, one row per file in file order: what a worker sends back and a
    scan keeps of a million images, without a Python object per image (a Fingerprint with its dicts and bytes
    costs ~1.9 KB; these rows 1,240 bytes, the thumbnail's 1,024 among them). One hash method."""

    method: str
    sizes: np.ndarray  # (n, 2) int64: width, height
    byte_digests: np.ndarray  # (n, 16) uint8
    pixel_digests: np.ndarray  # (n, 16) uint8
    hashes: np.ndarray  # (n, 8) uint8
    flips: np.ndarray  # (n, 8) uint8: the hash of the mirrored image
    thumbs: np.ndarray  # (n, THUMB_SIZE, THUMB_SIZE) uint8
    blocks: np.ndarray  # (n, 64) uint16: verify.block_sums of the thumbnails
    draft: bool = False

    @classmethod
    def allocate(cls, count: int, method: str, draft: bool) -> Columns:
        return cls(
            method,
            np.zeros((count, 2), dtype=np.int64),
            np.zeros((count, 16), dtype=np.uint8),
            np.zeros((count, 16), dtype=np.uint8),
            np.zeros((count, 8), dtype=np.uint8),
            np.zeros((count, 8), dtype=np.uint8),
            np.zeros((count, THUMB_SIZE, THUMB_SIZE), dtype=np.uint8),
            np.zeros((count, 64), dtype=np.uint16),
            draft,
        )

    def __len__(self) -> int:
        return len(self.hashes)

    def put(self, start: int, rows: Columns) -> None:
        """Copy `rows` into rows start.. of this (allocated) table."""
        end = start + len(rows)
        for name in _ARRAYS:
            getattr(self, name)[start:end] = getattr(rows, name)

    def head(self, count: int) -> Columns:
        """The first `count` rows (views, no copy)."""
        views = {name: getattr(self, name)[:count] for name in _ARRAYS}
        return Columns(self.method, draft=self.draft, **views)

    def take(self, rows: np.ndarray) -> Columns:
        """The given rows, in that order (a copy)."""
        return Columns(self.method, draft=self.draft, **{name: getattr(self, name)[rows] for name in _ARRAYS})

    def fingerprint(self, row: int) -> Fingerprint:
        """Row `row` as a Fingerprint object."""
        width, height = self.sizes[row].tolist()
        return Fingerprint(
            width,
            height,
            self.byte_digests[row].tobytes(),
            self.pixel_digests[row].tobytes(),
            {self.method: self.hashes[row].tobytes()},
            {self.method: self.flips[row].tobytes()},
            self.thumbs[row].tobytes() if row < len(self.thumbs) else b"",  # none once released
            self.blocks[row].tobytes() if row < len(self.blocks) else b"",
            self.draft,
        )


def row_bytes(array: np.ndarray) -> list[bytes]:
    """Each row of an array as bytes: slices of one buffer (cheaper than a tobytes() call per row)."""
    data = array.tobytes()
    width = array[0].nbytes if len(array) else 1
    return [data[start : start + width] for start in range(0, len(data), width)]


_ARRAYS = ("sizes", "byte_digests", "pixel_digests", "hashes", "flips", "thumbs", "blocks")


def columns_of(decoded: DecodedBatch, method: str, draft: bool = False) -> tuple[list[str | None], Columns]:
    """fingerprints_of as columns: per file None (decoded) or the reason it could not be, and the good files' rows.
    The same values as fingerprints_of (tests/test_parallel.py)."""
    reasons = [facts if isinstance(facts, str) else None for facts in decoded.results]
    good = [facts for facts in decoded.results if not isinstance(facts, str)]
    if not good:
        return reasons, Columns.allocate(0, method, draft)
    hashes, flips, thumbs, sums = _hashed(decoded)
    count = len(good)
    return reasons, Columns(
        method,
        np.array([(f["width"], f["height"]) for f in good], dtype=np.int64).reshape(count, 2),
        np.frombuffer(b"".join(f["byte_digest"] for f in good), dtype=np.uint8).reshape(count, 16),
        np.frombuffer(b"".join(f["pixel_digest"] for f in good), dtype=np.uint8).reshape(count, 16),
        hashes[method].reshape(count, 8),
        flips[method].reshape(count, 8),
        thumbs,
        sums,
        draft,
    )


def fingerprint_columns(
    paths: list[str], methods: tuple[str, ...], draft: bool = False
) -> tuple[list[str | None], Columns]:
    """fingerprint_paths as columns (columns_of), for one method: what the scan's workers send back."""
    (method,) = methods
    return columns_of(decode_paths(paths, methods, draft), method, draft)


def fingerprint_blobs(blobs: list[bytes], methods: tuple[str, ...], draft: bool = False) -> list[Fingerprint | str]:
    """fingerprint_paths for images held in memory: a Fingerprint per good image, a reason string per bad one."""
    return fingerprints_of(decode_blobs(blobs, methods, draft), draft)


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
