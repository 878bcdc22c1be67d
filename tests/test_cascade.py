"""The near-duplicate cascade: candidates + thumbnail verification, and --explain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import CIFAR, need
from PIL import Image
from typer.testing import CliRunner

from dupaudit import scan
from dupaudit.cli import app
from dupaudit.engine.verify import (
    HALF_SHIFTS,
    CascadeSettings,
    ProbedLists,
    descriptors,
    half_shifted,
    similarity,
    trained_lists,
    verify,
)
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


def _chain(folder: Path) -> None:
    """a ~ b ~ c, but c not ~ a: mixes of two pictures at 0, 25 and 50 degrees apart (the high-passed pictures are
    nearly orthogonal, so the correlations are about cos 25 = 0.91 between neighbours and cos 50 = 0.64 across)."""
    first = np.asarray(procedural_image(41, size=128), dtype=np.float64)
    second = np.asarray(procedural_image(42, size=128), dtype=np.float64)
    for name, degrees in (("a", 0), ("b", 25), ("c", 50)):
        weight_first, weight_second = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
        mixed = (weight_first * first + weight_second * second) / (weight_first + weight_second)
        Image.fromarray(np.clip(mixed.round(), 0, 255).astype(np.uint8)).save(folder / f"{name}.png")


def test_explain_says_why(tmp_path, cache_file):
    image = procedural_image(21, size=128)
    image.save(tmp_path / "a.jpg", quality=92)
    image.save(tmp_path / "b.jpg", quality=60)
    procedural_image(22, size=128).save(tmp_path / "c.jpg", quality=92)
    (tmp_path / "d.jpg").write_bytes((tmp_path / "a.jpg").read_bytes())
    runner = CliRunner()

    def explain(*pair):
        return runner.invoke(app, ["scan", str(tmp_path), "--cache", str(cache_file), "--explain", *map(str, pair)])

    near = explain(tmp_path / "a.jpg", tmp_path / "b.jpg")
    assert near.exit_code == 0, near.output
    assert "verdict: near duplicate" in near.stdout
    assert "phash Hamming distance" in near.stdout and "verification score" in near.stdout
    assert "needs >= 0.84" in near.stdout and "refined to half a pixel" in near.stdout
    assert "decided by: " in near.stdout and "neighbour rank" in near.stdout
    other = explain(tmp_path / "a.jpg", tmp_path / "c.jpg")
    assert other.exit_code == 0 and "verdict: not a duplicate" in other.stdout
    exact = explain(tmp_path / "a.jpg", tmp_path / "d.jpg")
    assert "verdict: exact duplicate" in exact.stdout and "decided by: digest" in exact.stdout
    outside = tmp_path.parent / f"{tmp_path.name}-outside.jpg"
    image.save(outside, quality=92)
    bad = explain(tmp_path / "a.jpg", outside)
    assert bad.exit_code == 2 and "not inside the dataset" in bad.output
    assert runner.invoke(app, ["scan", "--explain", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]).exit_code == 2


def test_explain_follows_the_scan_not_the_pair(tmp_path, cache_file):
    """A chain a ~ b ~ c where c does not copy a: the scan splits it, and --explain says the same for (b, c)
    whenever the scan does (it reports the groups, not a verdict of its own)."""
    from dupaudit.engine.explanation import explain

    _chain(tmp_path)
    report = scan(tmp_path, cache_path=cache_file)
    group_of = {m.path: g.id for g in report.groups for m in g.members}
    # connected components would give one group {a, b, c}; around a keeper, a and c are never together
    assert len(report.groups) == 1 and len(report.groups[0].members) == 2
    assert group_of.get("a.png") != group_of.get("c.png")
    for x, y in (("a.png", "b.png"), ("b.png", "c.png"), ("a.png", "c.png")):
        result = explain(tmp_path, tmp_path / x, tmp_path / y, cache_path=cache_file)
        together = x in group_of and group_of.get(x) == group_of.get(y)
        assert (result.verdict in ("exact", "pixel", "near")) == together, (x, y, result.reasons)


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


def test_explain_counts_rotated_candidates(tmp_path, cache_file):
    """A copy turned by 90 degrees is found only with --rotations: --explain proposes it by the same routes as the
    scan (a rotated hash or a rotated descriptor's neighbours), and says what the scan says, with and without."""
    from dupaudit.engine.explanation import explain

    for seed in range(8):
        procedural_image(60 + seed, size=96).save(tmp_path / f"img{seed}.png")
    with Image.open(tmp_path / "img0.png") as image:
        image.transpose(Image.ROTATE_90).save(tmp_path / "turned.png")
    first, second = tmp_path / "img0.png", tmp_path / "turned.png"
    plain = explain(tmp_path, first, second, cache_path=cache_file)
    assert plain.verdict == "not a duplicate" and not plain.routes, plain.reasons
    assert not any(
        {"img0.png", "turned.png"} <= {m.path for m in g.members} for g in scan(tmp_path, cache_path=cache_file).groups
    )
    report = scan(tmp_path, cache_path=cache_file, rotations=True)
    together = [g for g in report.groups if {"img0.png", "turned.png"} <= {m.path for m in g.members}]
    assert len(together) == 1
    link = next(m.link for m in together[0].members if not m.keep)
    assert link.transform in ("rot90", "rot270")
    turned = explain(tmp_path, first, second, cache_path=cache_file, rotations=True)
    assert turned.verdict == "near" and turned.decided_by == "verification score", turned.reasons
    assert turned.routes and all(how in ("rot90", "rot270") for _, how, _ in turned.routes), turned.routes
    assert turned.mirrored_similarity is not None and turned.mirrored_similarity >= 0.84 > turned.similarity


def test_half_shifted_descriptors_come_from_the_descriptors_alone():
    """A half-shifted descriptor is the descriptor of the block sums averaged with their neighbours (what a 2-px
    move of the thumbnail gives, up to the detail inside blocks), computed from the stored descriptor: so the
    incremental index, which keeps only descriptors, searches with the same queries as the full scan."""
    rng = np.random.default_rng(3)
    sums = rng.integers(0, 16 * 255, size=(50, 64)).astype(np.float64)
    desc = descriptors(sums=sums)
    for dy, dx in HALF_SHIFTS:
        grid = sums.reshape(-1, 8, 8)
        padded = np.pad(grid, ((0, 0), (1, 1), (1, 1)), mode="edge")
        averaged = (grid + padded[:, 1 + dy : 9 + dy, 1 + dx : 9 + dx]).reshape(-1, 64) / 2
        assert np.allclose(half_shifted(desc, (dy, dx)), descriptors(sums=averaged), atol=1e-4)
    assert not np.allclose(half_shifted(desc, HALF_SHIFTS[0]), desc, atol=1e-2)


def test_probed_lists_answer_as_faiss_float32_lists():
    """The approximate search's list scan by matrix products (verify.ProbedLists) finds what faiss's float32
    inverted lists find with the same quantizer and probes: the same similarities, the same rows up to exact
    copies, and faiss's -1 and lowest float where the probed lists hold fewer rows than asked."""
    import faiss

    rng = np.random.default_rng(5)
    desc = descriptors(sums=rng.integers(0, 16 * 255, size=(3000, 64)).astype(np.float64))
    desc[2000:2100] = desc[:100]  # exact copies: ties
    trained = trained_lists(desc)
    lists = ProbedLists(trained, desc)
    reference = faiss.IndexIVFFlat(trained.quantizer, 64, trained.nlist, faiss.METRIC_INNER_PRODUCT)
    reference.add(desc)
    for probes, width, queries in ((6, 4, desc), (6, 2, half_shifted(desc, HALF_SHIFTS[0])), (1, 60, desc[:300])):
        lists.nprobe = reference.nprobe = probes
        sims, ids = lists.search(queries, width)
        want_sims, want_ids = reference.search(queries, width)
        assert sims.dtype == np.float32 and ids.dtype == np.int64 and sims.shape == ids.shape == want_ids.shape
        assert np.allclose(sims, want_sims, atol=1e-5)
        assert np.array_equal(ids < 0, want_ids < 0) and (sims[ids < 0] == np.finfo(np.float32).min).all()
        differ = ids != want_ids  # only where exact copies tie (faiss's heap keeps one or the other)
        assert np.mean(differ) < 0.05 and np.array_equal(desc[ids[differ]], desc[want_ids[differ]])
        listed = ids >= 0
        rows = np.nonzero(listed)[0]
        assert np.allclose(np.einsum("ij,ij->i", queries[rows], desc[ids[listed]]), sims[listed], atol=1e-5)
    assert (ids < 0).any()  # the last case asked for more rows than one list holds


def test_probed_lists_search_their_own_rows_and_route_as_faiss_adds():
    """The rows' own search reuses the probes found when the lists were made (ProbedLists.search_rows): the same
    answer bit for bit as searching them as queries; and each row's and query's nearest list (the routes the
    index file's structures are filled by) is the list faiss's add puts it in, flat rows (zero descriptors,
    tied with every list) included."""
    rng = np.random.default_rng(7)
    desc = descriptors(sums=rng.integers(0, 16 * 255, size=(3000, 64)).astype(np.float64))
    desc[:5] = 0  # flat images
    desc[2000:2100] = desc[:100]
    lists = ProbedLists(trained_lists(desc), desc)
    own_sims, own_ids = lists.search_rows(4)
    assert np.array_equal(lists.routes, lists.assigned)
    sims, ids = lists.search(desc, 4)
    assert np.array_equal(own_sims, sims) and np.array_equal(own_ids, ids)
    _, added = lists.trained.quantizer.search(desc, 1)  # faiss's add routes by this search
    assert np.array_equal(lists.assigned, added.ravel()) and np.array_equal(lists.routes, added.ravel())
    shifted = half_shifted(desc, HALF_SHIFTS[1])
    lists.search(shifted, 2)
    assert np.array_equal(lists.routes, lists.trained.quantizer.search(shifted, 1)[1].ravel())
    tied = lists.trained.quantizer.search(desc[:5], 6)[0]
    assert (tied[:, 0] == tied[:, 1]).all()  # the flat rows did tie
