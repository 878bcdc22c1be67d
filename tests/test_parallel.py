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


@pytest.fixture(scope="module")
def with_bad_files(dataset, tmp_path_factory):
    """The dataset plus a file that is not an image and an empty one (skipped, cached with their reasons)."""
    import shutil

    root = tmp_path_factory.mktemp("columns") / "data"
    shutil.copytree(dataset, root)
    folder = next(path for path in (root / "train").iterdir() if path.is_dir())
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    (folder / "empty.jpg").write_bytes(b"")
    return root


def test_columns_hold_exactly_the_fingerprints_of_the_objects(with_bad_files):
    from dupaudit.engine.fingerprint import fingerprint_columns

    records, _ = discover(resolve_roots(with_bad_files))
    paths = [r.abspath for r in records]
    objects = fingerprint_paths(paths, ("phash",))
    reasons, columns = fingerprint_columns(paths, ("phash",))
    assert [value if isinstance(value, str) else None for value in objects] == reasons
    assert sum(reason is not None for reason in reasons) == 2
    good = [value for value in objects if not isinstance(value, str)]
    assert [columns.fingerprint(row) for row in range(len(columns))] == good


def _objects_only(monkeypatch):
    """Make every scan fingerprint as Fingerprint objects (the path a partly cached scan takes)."""
    original = scan_module.fingerprint_records
    monkeypatch.setattr(
        scan_module, "fingerprint_records", lambda *args, **kwargs: original(*args, **{**kwargs, "columns": False})
    )


@pytest.mark.parametrize("incremental", [False, True])  # scan, and index build (which also keeps the search state)
def test_a_cold_scan_as_columns_gives_the_report_and_cache_rows_of_objects(
    with_bad_files, tmp_path, monkeypatch, incremental
):
    import sqlite3

    monkeypatch.setattr(scan_module, "BATCH", 16)
    monkeypatch.setattr(scan_module, "STORE_ROWS", 40)  # several transactions, cut inside batches' rows
    as_columns = scan_module.scan(with_bad_files, jobs=2, cache_path=tmp_path / "a.sqlite", incremental=incremental)
    assert as_columns.decoded == as_columns.summary.images + 2 and as_columns.summary.groups > 0
    with monkeypatch.context() as patch:
        _objects_only(patch)
        as_objects = scan_module.scan(with_bad_files, jobs=2, cache_path=tmp_path / "b.sqlite", incremental=incremental)
    assert render(as_columns) == render(as_objects)
    assert len(as_columns.skipped) == 2

    def rows(name: str) -> list:
        with sqlite3.connect(tmp_path / name) as db:
            return db.execute("SELECT * FROM fingerprints ORDER BY path").fetchall()

    assert rows("a.sqlite") == rows("b.sqlite")
    assert len(rows("a.sqlite")) == as_columns.summary.images + 2


@pytest.mark.parametrize("flips", [False, True])
def test_verification_in_parts_gives_the_same_groups(dataset, monkeypatch, flips):
    whole = scan_module.scan(dataset, jobs=2, use_cache=False, flips=flips)
    calls = []
    original = scan_module.verify
    monkeypatch.setattr(scan_module, "verify", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    monkeypatch.setattr(scan_module, "VERIFY_IMAGES", 8)  # parts of at most 8 images
    in_parts = scan_module.scan(dataset, jobs=2, use_cache=False, flips=flips)
    assert len(calls) > 3  # it was cut
    assert whole.summary.groups > 0
    assert render(in_parts) == render(whole)
