"""Our batched hashes equal imagededup's PHash/DHash/AHash/WHash bit for bit (imagededup is the reference)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CIFAR, FORMATS, need
from PIL import Image, ImageOps

from dupaudit.engine.fingerprint import fingerprint_paths

METHODS = ("phash", "dhash", "ahash", "whash")


@pytest.fixture(scope="module")
def reference():
    methods = pytest.importorskip("imagededup.methods", reason="imagededup is the reference (dev extra)")
    return {
        "phash": methods.PHash(verbose=False),
        "dhash": methods.DHash(verbose=False),
        "ahash": methods.AHash(verbose=False),
        "whash": methods.WHash(verbose=False),
    }


def _has_exif_orientation(path) -> bool:
    try:
        with Image.open(path) as image:
            return image.getexif().get(0x0112, 1) not in (0, 1)
    except Exception:
        return False


def _reference_hash(encoder, path) -> str | None:
    if _has_exif_orientation(path):
        # dupaudit applies EXIF orientation (what people see); compare with imagededup on the same pixels.
        with Image.open(path) as image:
            upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        return encoder.encode_image(image_array=upright)
    return encoder.encode_image(image_file=str(path))


def _compare(paths, reference, methods=METHODS):
    ours = fingerprint_paths([str(p) for p in paths], methods)
    mismatches, compared = [], 0
    for path, fingerprint in zip(paths, ours):
        for method in methods:
            expected = _reference_hash(reference[method], path)
            got = None if isinstance(fingerprint, str) else fingerprint.hashes[method].hex()
            compared += expected is not None
            if expected != got:
                mismatches.append((str(path), method, expected, got))
    return compared, mismatches


def test_formats_folder_matches_imagededup(reference):
    need(FORMATS)
    paths = sorted(p for p in FORMATS.rglob("*") if p.is_file() and not p.name.startswith("LICENSE"))
    compared, mismatches = _compare(paths, reference)
    assert mismatches == []
    assert compared >= 4 * 25


def test_2000_cifar_images_match_imagededup(reference):
    need(CIFAR)
    paths = sorted(CIFAR.glob("*/*/*.jpg"))[::30][:2000]
    assert len(paths) == 2000
    compared, mismatches = _compare(paths, reference)
    assert mismatches == []
    assert compared == 4 * 2000


def test_phash_only_scan_of_32px_jpegs_matches_imagededup(reference):
    """pHash alone on 32x32 JPEGs takes the path without Pillow (numpy RGB->L): still imagededup's bits,
    and the same thumbnail and pixel digest as the Pillow path."""
    need(CIFAR)
    paths = sorted(CIFAR.glob("*/*/*.jpg"))[7::30][:2000]
    compared, mismatches = _compare(paths, reference, ("phash",))
    assert mismatches == []
    assert compared == 2000
    fast = fingerprint_paths([str(p) for p in paths[:200]], ("phash",))
    full = fingerprint_paths([str(p) for p in paths[:200]], ("phash", "dhash"))  # goes through Pillow
    assert [f.thumb for f in fast] == [f.thumb for f in full]
    assert [f.pixel_digest for f in fast] == [f.pixel_digest for f in full]


def test_light_dct_is_scipy_fftpack_bit_for_bit():
    """hashing.dct loads scipy's compiled pocketfft alone (a hook's import saving): the same numbers as
    scipy.fftpack.dct, the routine imagededup calls, on pHash-like inputs and on wide-range noise."""
    from scipy.fftpack import dct as fftpack_dct

    from dupaudit.engine import hashing

    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (64, 32, 32)).astype(np.float64)
    noise = rng.normal(0, 1e6, (16, 32, 32))
    for batch in (pixels, noise):
        for axis in (1, 2):
            ours, theirs = hashing.dct(batch, axis), fftpack_dct(batch, axis=axis)
            assert np.array_equal(ours.view(np.uint64), theirs.view(np.uint64))
    assert hashing._pocketfft_dct() is not None  # the light route is taken with this scipy, not the fallback


def test_hashing_a_file_does_not_import_scipy(tmp_path):
    """The pHash of a few files (a pre-commit check) does not pay for scipy's package imports."""
    import subprocess
    import sys

    Image.new("RGB", (40, 30), (200, 10, 30)).save(tmp_path / "a.png")
    code = (
        "import sys; from dupaudit.engine.fingerprint import fingerprint_paths; "
        f"f = fingerprint_paths([{str(tmp_path / 'a.png')!r}], ('phash',)); "
        "assert not isinstance(f[0], str); print('scipy.fft' in sys.modules, 'scipy.fftpack' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
