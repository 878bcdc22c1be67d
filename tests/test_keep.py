"""The keep rule (engine/keep.py): never an upscale over its original, then resolution, file size, plain names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from dupaudit import scan
from dupaudit.engine.keep import Candidate, choose_keeper, name_oddness


def _photo(size: int = 256) -> Image.Image:
    """A detailed test picture: skimage's astronaut when available, else a sharp procedural one."""
    try:
        import skimage.data

        return Image.fromarray(skimage.data.astronaut()).convert("RGB").resize((size, size), Image.LANCZOS)
    except ImportError:
        from dupaudit.sample import procedural_image

        return procedural_image(7, size=size)


def _candidate(path: Path, root: Path) -> Candidate:
    with Image.open(path) as image:
        width, height = image.size
    return Candidate(path.relative_to(root).as_posix(), str(path), width, height, os.path.getsize(path))


@pytest.mark.parametrize("target", [(512, 512), (800, 600), (1024, 1024)], ids=["2x", "aspect", "4x"])
@pytest.mark.parametrize("method", [Image.BICUBIC, Image.LANCZOS], ids=["bicubic", "lanczos"])
def test_the_original_beats_its_upscale(tmp_path, target, method):
    photo = _photo()
    photo.save(tmp_path / "original.jpg", quality=95)
    photo.resize(target, method).save(tmp_path / "blown_up.jpg", quality=90)
    members = [_candidate(tmp_path / name, tmp_path) for name in ("blown_up.jpg", "original.jpg")]
    assert members[0].width * members[0].height > members[1].width * members[1].height
    assert members[0].size > members[1].size  # the old rule's two reasons to keep the upscale
    assert choose_keeper(members) == 1


def test_the_original_beats_its_downscale(tmp_path):
    photo = _photo(512)
    photo.save(tmp_path / "original.jpg", quality=90)
    photo.resize((256, 256), Image.LANCZOS).save(tmp_path / "small.jpg", quality=95)
    members = [_candidate(tmp_path / name, tmp_path) for name in ("small.jpg", "original.jpg")]
    assert choose_keeper(members) == 1


def test_byte_identical_copies_keep_the_plainest_name(tmp_path):
    _photo(64).save(tmp_path / "camera.jpg", quality=90)
    for odd in ("camera\nnewline.jpg", "ROCKET_UPPER.JPG", "camera (1).jpg", "camera copy.jpg", "a b.jpg"):
        (tmp_path / odd).write_bytes((tmp_path / "camera.jpg").read_bytes())
        members = [_candidate(tmp_path / name, tmp_path) for name in (odd, "camera.jpg")]
        assert choose_keeper(members) == 1, odd
    assert name_oddness("rocket.jpg") < name_oddness("ROCKET_UPPER.JPG")


def test_a_scan_keeps_the_plain_original(tmp_path, cache_file):
    data = tmp_path / "data" / "cat"
    data.mkdir(parents=True)
    photo = _photo()
    photo.save(data / "photo.jpg", quality=95)
    photo.resize((768, 768), Image.BICUBIC).save(data / "photo_upscaled.jpg", quality=90)
    (data / "ROCKET_UPPER.JPG").write_bytes((data / "photo.jpg").read_bytes())
    (data / "camera\nnewline.jpg").write_bytes((data / "photo.jpg").read_bytes())
    report = scan(tmp_path / "data", cache_path=cache_file)
    (group,) = report.groups
    assert group.kept.path == "cat/photo.jpg"
