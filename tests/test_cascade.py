"""The near-duplicate cascade: candidates + thumbnail verification, and --explain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import CIFAR, need
from PIL import Image
from typer.testing import CliRunner

from dupaudit import scan
from dupaudit.cli import app
from dupaudit.engine.verify import CascadeSettings, similarity, verify
from dupaudit.sample import procedural_image


def _crop_copy(source: Path, target: Path) -> None:
    with Image.open(source) as image:
        w, h = image.size
        image.convert("RGB").crop((1, 1, w - 1, h - 1)).resize((w, h), Image.LANCZOS).save(target, quality=90)


def test_tiny_images_cropped_by_a_pixel_are_found_only_with_verification(tmp_path, cache_file):
    """On 32 px photos a 1-pixel crop moves pHash by up to 20 bits: the neighbour search + check finds them."""
    need(CIFAR)
    root = tmp_path / "tiny"
    root.mkdir()
    sources = sorted((CIFAR / "test" / "ship").glob("*.jpg"))[:40]
    for path in sources:
        (root / path.name).write_bytes(path.read_bytes())
    planted = sources[:8]
    for path in planted:
        _crop_copy(path, root / f"crop_{path.name}")
    report = scan(root, cache_path=cache_file)
    found = {frozenset(m.path for m in g.members) for g in report.groups}
    expected = {frozenset({p.name, f"crop_{p.name}"}) for p in planted}
    assert found == expected
    plain = scan(root, cache_path=cache_file, verify=False)
    assert len(plain.groups) < len(planted)  # pHash alone misses some of them


def test_letterbox_bars_do_not_make_different_pictures_match():
    """Two unrelated pictures with the same white bars: the bars' edges must not carry the correlation."""
    thumbs = []
    for seed in (11, 12):
        picture = np.asarray(procedural_image(seed, size=32).convert("L"), dtype=np.uint8).copy()
        picture[:7] = 255
        picture[-7:] = 255
        thumbs.append(picture)
    thumbs = np.stack(thumbs)
    assert similarity(thumbs[:1], thumbs[1:])[0] < 0.5
    assert similarity(thumbs[:1], thumbs[:1])[0] > 0.99


def test_mirrored_candidates_compare_the_mirror_image():
    picture = np.asarray(procedural_image(5, size=32).convert("L"), dtype=np.uint8)
    thumbs = np.stack([picture, picture[:, ::-1]])
    settings = CascadeSettings()
    plain = verify(thumbs, np.array([0]), np.array([1]), np.array([False]), settings)[0]
    mirrored = verify(thumbs, np.array([0]), np.array([1]), np.array([True]), settings)[0]
    assert mirrored > 0.99 and plain < mirrored


def test_explain_says_why(tmp_path):
    image = procedural_image(21, size=128)
    image.save(tmp_path / "a.jpg", quality=92)
    image.save(tmp_path / "b.jpg", quality=60)
    procedural_image(22, size=128).save(tmp_path / "c.jpg", quality=92)
    runner = CliRunner()
    near = runner.invoke(app, ["scan", "--explain", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")])
    assert near.exit_code == 0, near.output
    assert "verdict: near duplicate" in near.stdout
    assert "phash Hamming distance" in near.stdout and "verification score" in near.stdout
    assert "needs >= 0.84" in near.stdout and "refined to half a pixel" in near.stdout
    other = runner.invoke(app, ["scan", "--explain", str(tmp_path / "a.jpg"), str(tmp_path / "c.jpg")])
    assert other.exit_code == 0 and "verdict: not a duplicate" in other.stdout
    exact = runner.invoke(app, ["scan", "--explain", str(tmp_path / "a.jpg"), str(tmp_path / "a.jpg")])
    assert "verdict: exact duplicate" in exact.stdout
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    bad = runner.invoke(app, ["scan", "--explain", str(tmp_path / "a.jpg"), str(broken)])
    assert bad.exit_code == 2 and "not an image" in bad.output


def test_no_verify_uses_the_plain_pHash_radius(tmp_path, cache_file):
    image = procedural_image(31, size=128)
    image.save(tmp_path / "a.jpg", quality=92)
    image.save(tmp_path / "b.jpg", quality=60)
    report = scan(tmp_path, cache_path=cache_file, verify=False)
    assert report.settings.threshold == 6 and not report.settings.verify
    assert len(report.groups) == 1
    assert scan(tmp_path, cache_path=cache_file).settings.threshold == 10


def _partition(count: int, first: np.ndarray, second: np.ndarray) -> list[int]:
    parent = list(range(count))

    def root(node: int) -> int:
        while parent[node] != node:
            node = parent[node]
        return node

    for a, b in zip(first.tolist(), second.tolist()):
        parent[root(a)] = root(b)
    first_seen: dict[int, int] = {}
    return [first_seen.setdefault(root(i), i) for i in range(count)]


def test_refining_only_unjoined_pairs_gives_the_same_groups():
    """groups_only skips refinements that cannot change a group: the partition must be identical."""
    need(CIFAR)
    from dupaudit.engine.verify import candidate_pairs

    paths = sorted((CIFAR / "train" / "automobile").glob("*.jpg"))[:1500]  # holds a large cluster of copies
    thumbs = np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.uint8) for p in paths])
    settings = CascadeSettings()
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), False)
    full = candidate_pairs([empty], thumbs, False, settings)
    lean = candidate_pairs([empty], thumbs, False, settings, groups_only=True)
    full_ok, lean_ok = full.scores >= settings.min_similarity, lean.scores >= settings.min_similarity
    assert lean_ok.sum() < full_ok.sum()  # some refinements were skipped...
    assert _partition(len(thumbs), full.first[full_ok], full.second[full_ok]) == _partition(
        len(thumbs), lean.first[lean_ok], lean.second[lean_ok]
    )  # ...and the groups are the same


def test_descriptors_from_worker_block_sums_equal_those_from_thumbs():
    from dupaudit.engine.verify import block_sums, descriptors

    thumbs = np.random.default_rng(3).integers(0, 256, size=(50, 32, 32), dtype=np.uint8)
    reference = thumbs.reshape(50, 8, 4, 8, 4).astype(np.float64).mean(axis=(2, 4)).reshape(50, 64)
    reference -= reference.mean(axis=1, keepdims=True)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    assert np.array_equal(descriptors(sums=block_sums(thumbs)), descriptors(thumbs))
    assert np.allclose(descriptors(thumbs), reference, atol=1e-5)
