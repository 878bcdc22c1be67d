"""The parallel, batched fingerprinting gives exactly what one process fingerprinting file by file gives."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from dupaudit.engine.discover import discover, resolve_roots
from dupaudit.engine.fingerprint import fingerprint_paths
from dupaudit.formats.json import render
from dupaudit.sample import make_sample

scan_module = importlib.import_module(
    "dupaudit.engine.pipeline"
)  # the module (dupaudit.engine.pipeline the attribute is the function)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """About 300 images with planted exact, pixel and near copies, a label conflict and a leak."""
    root = tmp_path_factory.mktemp("parallel") / "data"
    make_sample(root, per_class=60, test_per_class=15)
    return root


@pytest.mark.parametrize("hashed_by", ["workers", "parent"])  # small files hash in the workers, large in the parent
def test_parallel_batched_scan_gives_the_same_report_as_one_process(dataset, monkeypatch, hashed_by):
    one_process = scan_module.scan(dataset, jobs=1, use_cache=False)
    monkeypatch.setattr(scan_module, "BATCH", 16)  # many batches, spread over two worker processes
    monkeypatch.setattr(scan_module, "PARENT_HASHING_BYTES", 0 if hashed_by == "parent" else 10**12)
    parallel = scan_module.scan(dataset, jobs=2, use_cache=False)
    assert one_process.summary.images >= 300
    assert one_process.summary.groups > 0  # the comparison is about something
    assert render(parallel) == render(one_process)


def test_batch_boundaries_do_not_change_any_fingerprint(dataset):
    records, _ = discover(resolve_roots(dataset))
    paths = [r.abspath for r in records]
    methods = ("phash", "dhash", "ahash")
    whole = fingerprint_paths(paths, methods)
    pieces = [fp for start in range(0, len(paths), 7) for fp in fingerprint_paths(paths[start : start + 7], methods)]
    singles = [fingerprint_paths([path], methods)[0] for path in paths[:40]]
    assert whole == pieces
    assert whole[:40] == singles


def test_warm_scan_after_a_parallel_cold_scan_is_identical(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(scan_module, "BATCH", 16)
    cache = tmp_path / "cache.sqlite"
    cold = scan_module.scan(dataset, jobs=2, cache_path=cache)
    warm = scan_module.scan(dataset, jobs=2, cache_path=cache)
    assert warm.decoded == 0
    assert render(warm) == render(cold)


def test_draft_decoding_keeps_true_sizes_and_leaves_png_unchanged(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = (rng.random((1, 1, 3)) * 255 + np.zeros((480, 640, 3))).astype(np.uint8)
    pixels[100:300, 200:500] = 30
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", quality=90)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    paths = [str(tmp_path / "photo.jpg"), str(tmp_path / "photo.png")]
    full, draft = fingerprint_paths(paths, ("phash",)), fingerprint_paths(paths, ("phash",), draft=True)
    assert (draft[0].width, draft[0].height) == (full[0].width, full[0].height) == (640, 480)
    assert draft[0].draft and not full[0].draft
    assert draft[0].pixel_digest != full[0].pixel_digest  # a reduced decode never passes for the full one
    assert draft[1].hashes == full[1].hashes and draft[1].pixel_digest == full[1].pixel_digest  # PNG: no draft


def test_shared_transform_mirrored_phash_is_bit_identical_to_two_phash_calls():
    from dupaudit.engine.hashing import phash, phash_and_mirrored

    rng = np.random.default_rng(5)
    smooth = rng.integers(0, 256, size=(64, 8, 8)).repeat(4, axis=1).repeat(4, axis=2)  # ties and plateaus
    batch = np.concatenate([rng.integers(0, 256, size=(200, 32, 32)), smooth]).astype(np.uint8)
    plain, mirrored = phash_and_mirrored(batch)
    assert np.array_equal(plain, phash(batch))
    assert np.array_equal(mirrored, phash(np.ascontiguousarray(batch[:, :, ::-1])))


def test_fast_jpeg_decoder_gives_the_same_fingerprints_as_pillow(dataset, tmp_path, monkeypatch):
    """simplejpeg (when installed) must change nothing: same digests, hashes, sizes and reasons as Pillow."""
    from PIL import Image

    from dupaudit.engine import fingerprint

    records, _ = discover(resolve_roots(dataset))
    rng = np.random.default_rng(2)
    photo = Image.fromarray(rng.integers(0, 256, size=(120, 90, 3), dtype=np.uint8))
    extra = {"progressive.jpg": dict(progressive=True, quality=80), "444.jpg": dict(subsampling=0)}
    for name, options in extra.items():
        photo.save(tmp_path / name, **options)
    photo.convert("L").save(tmp_path / "gray.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: Pillow's path applies it
    photo.save(tmp_path / "rotated.jpg", exif=exif)
    (tmp_path / "truncated.jpg").write_bytes((tmp_path / "444.jpg").read_bytes()[:700])
    paths = [r.abspath for r in records if r.abspath.endswith(".jpg")][:120]
    paths += sorted(str(p) for p in tmp_path.glob("*.jpg"))
    fast = fingerprint_paths(paths, ("phash", "dhash"))
    monkeypatch.setattr(fingerprint, "_simplejpeg", None)
    assert fingerprint_paths(paths, ("phash", "dhash")) == fast
    rotated = fast[paths.index(str(tmp_path / "rotated.jpg"))]
    assert (rotated.width, rotated.height) == (120, 90)  # 90x120 stored, turned a quarter
    assert isinstance(fast[paths.index(str(tmp_path / "truncated.jpg"))], str)
