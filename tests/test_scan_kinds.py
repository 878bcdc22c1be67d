"""Each duplicate kind, planted with images made in the test, is found with the default settings."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance, ImageOps

from dupaudit import scan
from dupaudit.sample import procedural_image


def _save(image: Image.Image, path: Path, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)


def _planted(tmp_path: Path, transform, name: str, seed: int) -> Path:
    """A folder with 20 distinct images plus one transformed copy of image 0."""
    root = tmp_path / name
    for index in range(20):
        _save(procedural_image(1000 * seed + index, size=128), root / f"img{index:02d}.jpg", quality=92)
    original = Image.open(root / "img00.jpg")
    original.load()
    transform(original, root)
    return root


TRANSFORMS = {
    "jpeg_q60": (lambda im, root: _save(im, root / "copy.jpg", quality=60), "near"),
    "upscale_2x": (lambda im, root: _save(im.resize((256, 256), Image.LANCZOS), root / "copy.jpg", quality=92), "near"),
    "brightness_8pct": (
        lambda im, root: _save(ImageEnhance.Brightness(im).enhance(1.08), root / "copy.jpg", quality=92),
        "near",
    ),
    "crop_1px_resize": (
        lambda im, root: _save(
            im.crop((1, 1, 127, 127)).resize((128, 128), Image.LANCZOS), root / "copy.jpg", quality=92
        ),
        "near",
    ),
    "grayscale": (lambda im, root: _save(ImageOps.grayscale(im), root / "copy.jpg", quality=92), "near"),
    "png_of_jpeg": (lambda im, root: _save(im, root / "copy.png"), "pixel"),
    "bmp_of_jpeg": (lambda im, root: _save(im, root / "copy.bmp"), "pixel"),
    "exact_copy": (lambda im, root: (root / "copy.jpg").write_bytes((root / "img00.jpg").read_bytes()), "exact"),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_planted_copy_found_with_defaults(tmp_path, cache_file, name):
    transform, kind = TRANSFORMS[name]
    root = _planted(tmp_path, transform, name, seed=sorted(TRANSFORMS).index(name) + 1)
    report = scan(root, cache_path=cache_file)
    assert len(report.groups) == 1, [g.members for g in report.groups]
    group = report.groups[0]
    assert {m.path for m in group.members} == {"img00.jpg", next(p.name for p in root.iterdir() if "copy" in p.name)}
    assert group.kind == kind
    assert sum(m.keep for m in group.members) == 1


def test_mirrored_copy_needs_flips(tmp_path, cache_file):
    root = _planted(tmp_path, lambda im, r: _save(ImageOps.mirror(im), r / "mirror.jpg", quality=92), "m", seed=50)
    assert scan(root, cache_path=cache_file).groups == ()
    flipped = scan(root, flips=True, cache_path=cache_file)
    assert [sorted(m.path for m in g.members) for g in flipped.groups] == [["img00.jpg", "mirror.jpg"]]
    assert flipped.decoded == 0  # the mirrored hashes were cached with the first scan


def test_keep_rule_prefers_highest_resolution_then_size_then_path(tmp_path, cache_file):
    root = tmp_path / "keep"
    image = procedural_image(7, size=128)
    _save(image, root / "a_original.jpg", quality=92)
    _save(image.resize((64, 64), Image.LANCZOS), root / "b_small.jpg", quality=92)
    report = scan(root, cache_path=cache_file)
    assert [m.path for m in report.groups[0].members if m.keep] == ["a_original.jpg"]
    # an upscale is never kept over its original (engine/keep.py; tests/test_keep.py)
    _save(image.resize((256, 256), Image.LANCZOS), root / "c_upscaled.jpg", quality=92)
    report = scan(root, cache_path=cache_file)
    assert [m.path for m in report.groups[0].members if m.keep] == ["a_original.jpg"]
    # equal resolution: the larger file wins; equal files: the first path
    _save(image, root / "c_q99.jpg", quality=99)
    root2 = tmp_path / "keep2"
    _save(image, root2 / "x.jpg", quality=70)
    _save(image, root2 / "y.jpg", quality=99)
    (root2 / "z.jpg").write_bytes((root2 / "y.jpg").read_bytes())
    group = scan(root2, cache_path=cache_file).groups[0]
    assert [m.path for m in group.members if m.keep] == ["y.jpg"]


def test_exact_copies_inside_a_near_group_make_it_near(tmp_path, cache_file):
    root = tmp_path / "mixed"
    image = procedural_image(3, size=128)
    _save(image, root / "a.jpg", quality=92)
    (root / "b.jpg").write_bytes((root / "a.jpg").read_bytes())
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=60)
    (root / "c.jpg").write_bytes(buffer.getvalue())
    (group,) = scan(root, cache_path=cache_file).groups
    assert group.kind == "near" and len(group.members) == 3


@pytest.mark.parametrize(
    "name, transpose, options",
    [
        ("rot90", Image.ROTATE_90, {"rotations": True}),
        ("rot180", Image.ROTATE_180, {"rotations": True}),
        ("rot270", Image.ROTATE_270, {"rotations": True}),
        ("vertical_flip", Image.FLIP_TOP_BOTTOM, {"rotations": True, "flips": True}),
    ],
)
def test_rotated_copy_needs_rotations(tmp_path, cache_file, name, transpose, options):
    root = _planted(tmp_path, lambda im, r: _save(im.transpose(transpose), r / "turned.jpg", quality=92), name, 60)
    assert scan(root, cache_path=cache_file).groups == ()
    report = scan(root, cache_path=cache_file, **options)
    assert [sorted(m.path for m in g.members) for g in report.groups] == [["img00.jpg", "turned.jpg"]]
    (copy,) = [m for m in report.groups[0].members if not m.keep]
    assert copy.link.kind == "near" and copy.link.transform is not None
    assert report.settings.rotations


def test_rotations_are_refused_with_other_hashes(tmp_path, cache_file):
    from dupaudit.errors import InputError

    root = _planted(tmp_path, lambda im, r: None, "plain", 61)
    with pytest.raises(InputError, match="rotations"):
        scan(root, cache_path=cache_file, method="dhash", rotations=True)
