"""The incremental index: a scan that updates its groups from the stored search state gives the report a full
scan gives, over a sequence of commits that add, modify, rename and delete images."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image, ImageEnhance

from dupaudit.engine import pipeline
from dupaudit.formats.json import render
from dupaudit.sample import make_sample, procedural_image


def _same_as_full(root, cache_file, full_searches) -> set[str]:
    """Scan incrementally, compare with a full scan, return the grouped files (split/path)."""
    before = len(full_searches)
    incremental = pipeline.scan(root, cache_path=cache_file, incremental=True)
    assert len(full_searches) == before, "the update searched everything"
    full = pipeline.scan(root, use_cache=False)
    assert render(incremental) == render(full)
    return {f"{m.root}/{m.path}" for g in incremental.groups for m in g.members}


@pytest.mark.parametrize(
    ("compact", "blocks"),
    [(False, False), (True, False), (False, True)],
    ids=["stored-rows-in-place", "kept-rows-copied", "searched-in-blocks"],
)
def test_updates_give_the_full_scan_report_over_a_sequence_of_commits(
    tmp_path, cache_file, full_searches, monkeypatch, compact, blocks
):
    from dupaudit.engine import incremental, verify

    if compact:  # the searches of an update after removals run over a copy of the kept rows, not in place
        monkeypatch.setattr(incremental, "_REMOVED_SEARCHED_PAST", 0)
    if blocks:  # the exact searches and the new items' best similarities run block by block, as at a million
        monkeypatch.setattr(verify, "_EXACT_BLOCK", 16)
        monkeypatch.setattr(incremental, "_BEST_NEW_BLOCK", 16)
    plan = make_sample(tmp_path / "data", per_class=30)
    root = plan.root
    first = pipeline.scan(root, cache_path=cache_file, incremental=True)
    assert len(full_searches) == 1 and first.groups  # the first scan searches everything and keeps its state
    train = root / "train"

    # 1. Add: a brightened copy joins the circle group, a new distinct picture, a re-encoded copy of a stripe.
    source = Image.open(train / "circle" / "0000.jpg").convert("RGB")
    ImageEnhance.Brightness(source).enhance(1.05).save(train / "circle" / "joins_group.jpg", quality=88)
    procedural_image(987_654).save(train / "blobs" / "new_picture.jpg", quality=90)
    Image.open(train / "stripes" / "0007.jpg").convert("RGB").save(train / "checker" / "stripe_copy.jpg", quality=70)
    grouped = _same_as_full(root, cache_file, full_searches)
    assert {"train/circle/joins_group.jpg", "train/checker/stripe_copy.jpg"} <= grouped
    assert "train/blobs/new_picture.jpg" not in grouped

    # 2. Modify: the stripe copy becomes another picture (it stops being a duplicate).
    procedural_image(123_321).save(train / "checker" / "stripe_copy.jpg", quality=90)
    grouped = _same_as_full(root, cache_file, full_searches)
    assert "train/checker/stripe_copy.jpg" not in grouped and "train/stripes/0007.jpg" not in grouped

    # 3. Rename: a group member moves to another class folder.
    (train / "circle" / "copy_q60.jpg").rename(train / "stripes" / "moved_q60.jpg")
    grouped = _same_as_full(root, cache_file, full_searches)
    assert "train/stripes/moved_q60.jpg" in grouped

    # 4. Delete: the original of the circle group, and a lone image.
    (train / "circle" / "0000.jpg").unlink()
    (train / "checker" / "0010.jpg").unlink()
    grouped = _same_as_full(root, cache_file, full_searches)
    assert "train/circle/joins_group.jpg" in grouped

    # 5. Copy a test image into train (a leak), and delete a member of a two-image group.
    shutil.copy(root / "test" / "circle" / "0002.jpg", train / "circle" / "leaked.jpg")
    (train / "stripes" / "0001_again.jpg").unlink()
    grouped = _same_as_full(root, cache_file, full_searches)
    assert "train/circle/leaked.jpg" in grouped and "train/stripes/0001.jpg" not in grouped


def test_too_many_changes_search_everything(tmp_path, cache_file, full_searches):
    plan = make_sample(tmp_path / "data", per_class=12)
    pipeline.scan(plan.root, cache_path=cache_file, incremental=True)
    for index in range(80):  # more than a fifth of the dataset, and more than 64 files
        procedural_image(50_000 + index).save(plan.root / "train" / "blobs" / f"n{index}.jpg")
    report = pipeline.scan(plan.root, cache_path=cache_file, incremental=True)
    assert len(full_searches) == 2
    assert render(report) == render(pipeline.scan(plan.root, use_cache=False))


def test_an_update_builds_only_the_groups_whose_components_changed(tmp_path, cache_file, full_searches, monkeypatch):
    from dupaudit.engine import regroup

    plan = make_sample(tmp_path / "data", per_class=30)
    root = plan.root
    first = pipeline.scan(root, cache_path=cache_file, incremental=True)
    built: list[set[str]] = []
    original = regroup.build_in

    def recording(rows, records, *args, **kwargs):
        built.append({f"{records[i].root}/{records[i].path}" for i in rows.tolist()})
        return original(rows, records, *args, **kwargs)

    monkeypatch.setattr(regroup, "build_in", recording)
    train = root / "train"
    Image.open(train / "stripes" / "0007.jpg").convert("RGB").save(train / "checker" / "stripe_copy.jpg", quality=70)
    _same_as_full(root, cache_file, full_searches)
    assert built[-1] == {"train/checker/stripe_copy.jpg", "train/stripes/0007.jpg"}  # one new pair, one component
    grouped_before = {f"{m.root}/{m.path}" for g in first.groups for m in g.members}
    assert len(grouped_before) > 2

    # a second update starts from the groups the first update stored (the stripe copy's among them)
    Image.open(train / "stripes" / "0003.jpg").convert("RGB").save(train / "blobs" / "other_copy.jpg", quality=70)
    grouped = _same_as_full(root, cache_file, full_searches)
    assert built[-1] == {"train/blobs/other_copy.jpg", "train/stripes/0003.jpg"}
    assert "train/checker/stripe_copy.jpg" in grouped


def test_a_list_that_only_gains_entries_is_merged_as_a_search_would_find_it():
    import numpy as np

    from dupaudit.engine.incremental import _merge_new
    from dupaudit.engine.verify import nearest

    rng = np.random.default_rng(7)
    desc = rng.normal(size=(3000, 64)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    old, new = np.arange(2500), np.arange(2500, 3000)
    old_sims, old_ids = nearest(desc[old], 3, exact=True)  # the lists before the new items came
    ids, sims = old_ids.astype(np.int64).copy(), old_sims.copy()
    ids = np.vstack([ids, np.full((500, 4), -1)])
    sims = np.vstack([sims, np.full((500, 4), -np.inf, dtype=np.float32)])
    _merge_new(old, new, desc, ids, sims)
    want_sims, want_ids = nearest(desc, 3, desc[old], exact=True)
    assert (ids[old] == want_ids).mean() > 0.999  # the same lists, up to ties at the last float bit
    assert np.allclose(sims[old], want_sims, atol=1e-5)
    assert (ids[old] >= 2500).any()  # new items did enter lists


def test_a_half_shifted_list_that_only_gains_entries_is_merged_as_a_search_would_find_it():
    import numpy as np

    from dupaudit.engine.incremental import _merge_new
    from dupaudit.engine.verify import HALF_SHIFTS, half_shifted, nearest

    rng = np.random.default_rng(8)
    desc = rng.normal(size=(3000, 64)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    old, new = np.arange(2500), np.arange(2500, 3000)
    for shift in HALF_SHIFTS:

        def queries(rows, shift=shift):
            return half_shifted(desc[rows], shift)

        old_sims, old_ids = nearest(desc[old], 1, queries(old), exact=True)
        ids = np.vstack([old_ids.astype(np.int64), np.full((500, 2), -1)])
        sims = np.vstack([old_sims, np.full((500, 2), -np.inf, dtype=np.float32)])
        _merge_new(old, new, desc, ids, sims, queries)
        want_sims, want_ids = nearest(desc, 1, queries(old), exact=True)
        assert (ids[old] == want_ids).mean() > 0.999  # the same lists, up to ties at the last float bit
        assert np.allclose(sims[old], want_sims, atol=1e-5)
        assert (ids[old] >= 2500).any()


@pytest.mark.parametrize("threads", [1, 2])
def test_an_exact_search_in_blocks_gives_faiss_answer_bit_for_bit(monkeypatch, threads):
    """Block by block, the same similarities and the same rows as faiss's whole scan, ties included (many equal
    descriptors: exact copies; a zero query, similar to every row alike), whichever side of a block's edge they
    fall on."""
    import faiss
    import numpy as np

    from dupaudit.engine import verify

    monkeypatch.setattr(verify, "_EXACT_BLOCK", 100)
    rng = np.random.default_rng(10)
    distinct = rng.normal(size=(40, 64)).astype(np.float32)
    distinct /= np.linalg.norm(distinct, axis=1, keepdims=True)
    desc = np.ascontiguousarray(distinct[rng.integers(0, 40, 2345)])
    desc[::7] += rng.normal(scale=0.01, size=desc[::7].shape).astype(np.float32)
    desc[5::13] = 0  # flat images: a zero descriptor, equally similar (0) to every query
    for queries in (desc[:9], distinct[:5], desc[:2], desc[5:7]):
        for k in (0, 1, 4, 30, 98, 150):
            faiss.omp_set_num_threads(threads)
            want = faiss.knn(queries, desc, k + 1, faiss.METRIC_INNER_PRODUCT)
            got = verify.exact_nearest(desc, k, queries, threads)
            assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes()


def test_sorted_unique_merges_a_sorted_run_with_the_rest():
    import numpy as np

    from dupaudit.engine.incremental import _sorted_unique

    rng = np.random.default_rng(11)
    for _ in range(500):
        run = np.unique(rng.integers(0, 100, int(rng.integers(1, 60))))
        keys = np.concatenate([run, rng.integers(0, 110, int(rng.integers(0, 9)))])
        if rng.random() < 0.2:
            keys = rng.permutation(keys)
        assert _sorted_unique(keys).tolist() == np.unique(keys).tolist()


def test_the_lists_a_new_item_enters_are_found_block_by_block(monkeypatch):
    """_entered_lists: every alive row whose list (plain or half-shifted) a new item beats, and only rows that
    come within its rounding margin of doing so; full lists and lists with an empty entry, over several blocks."""
    import numpy as np

    from dupaudit.engine import incremental
    from dupaudit.engine.verify import HALF_SHIFTS, half_shift_norms, half_shifted, nearest

    monkeypatch.setattr(incremental, "_BEST_NEW_BLOCK", 256)
    rng = np.random.default_rng(12)
    desc = rng.normal(size=(3000, 64)).astype(np.float32)
    desc -= desc.mean(axis=1, keepdims=True)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    new_desc = desc[:5] + rng.normal(scale=0.3, size=(5, 64)).astype(np.float32)
    new_desc /= np.linalg.norm(new_desc, axis=1, keepdims=True)
    queries = [desc, *(half_shifted(desc, shift) for shift in HALF_SHIFTS)]
    found = [nearest(desc, k, query, exact=True) for k, query in zip([3, 1, 1, 1, 1], queries)]
    sims = np.concatenate([f[0] for f in found], axis=1)
    ids = np.concatenate([f[1] for f in found], axis=1).astype(np.int64)
    ids[::50, 3], sims[::50, 3] = -1, -np.inf  # lists with an empty entry take anyone
    lists = [slice(0, 4), *(slice(4 + 2 * s, 6 + 2 * s) for s in range(len(HALF_SHIFTS)))]
    alive = rng.random(len(desc)) > 0.05
    entered = incremental._entered_lists(desc, new_desc, half_shift_norms(desc), sims, ids, lists, alive)
    total = 0
    for query, columns, rows in zip(queries, lists, entered):
        best = (query.astype(np.float64) @ new_desc.T.astype(np.float64)).max(axis=1)
        floor = np.where((ids[:, columns] < 0).any(axis=1), -np.inf, sims[:, columns].min(axis=1))
        beaten = np.flatnonzero(alive & (best >= floor))
        near = np.flatnonzero(alive & (best >= floor - 2 * incremental._ENTER_MARGIN))
        assert set(beaten) <= set(rows.tolist()) <= set(near)
        total += len(beaten)
    assert total > 50  # the lists with an empty entry, and lists the new items beat
    # the floors a state keeps (list_floors) give the same rows as the lists read block by block
    from dupaudit.engine.verify import CascadeSettings

    floors = incremental.list_floors(sims, ids, CascadeSettings(neighbours=3, shifted_neighbours=1))
    assert floors.shape == (len(desc), len(lists)) and np.isneginf(floors[::50, 0]).all()
    kept = incremental._entered_lists(desc, new_desc, half_shift_norms(desc), sims, ids, lists, alive, floors)
    assert [rows.tolist() for rows in kept] == [rows.tolist() for rows in entered]


def test_half_shift_norms_give_the_shifted_similarities_without_shifting():
    """The update's "which lists does a new item enter" test: d @ (matrix @ q) / norm is half_shifted(d) @ q."""
    import numpy as np

    from dupaudit.engine.verify import HALF_SHIFTS, half_shift_matrix, half_shift_norms, half_shifted

    rng = np.random.default_rng(9)
    desc = rng.normal(size=(70_000, 64)).astype(np.float32)  # more than one block of half_shift_norms
    desc -= desc.mean(axis=1, keepdims=True)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    norms = half_shift_norms(desc)
    queries = desc[:7]
    for column, shift in enumerate(HALF_SHIFTS):
        direct = half_shifted(desc, shift) @ queries.T
        projected = desc @ (half_shift_matrix(shift) @ queries.T) / norms[:, column : column + 1]
        assert np.abs(direct - projected).max() < 1e-5  # far inside the update's 1e-4 margin


def test_a_state_kept_before_the_half_shift_norms_gains_them_and_updates_alike(tmp_path, cache_file, full_searches):
    """A state written without the norms (an earlier version) is updated as before and written back with them."""
    from dupaudit.engine import incremental
    from dupaudit.engine.cache import FingerprintCache, open_cache
    from dupaudit.engine.layout import detect_layout
    from dupaudit.engine.model import Settings

    plan = make_sample(tmp_path / "data", per_class=20)
    root = plan.root
    first = pipeline.scan(root, cache_path=cache_file, incremental=True)
    key = FingerprintCache.index_key((first.settings, detect_layout(root, []).roots))
    assert Settings.resolve() == first.settings
    with open_cache(cache_file) as cache:
        held = incremental.load_state(cache, key)
        assert held is not None and held.shift_norms is not None
        held.shift_norms = None
        held.folder = None
        incremental.store_state(cache, key, held)
    copy = root / "train" / "blobs" / "c.jpg"
    Image.open(root / "train" / "stripes" / "0004.jpg").convert("RGB").save(copy, quality=70)
    before = len(full_searches)
    report = pipeline.scan(root, cache_path=cache_file, incremental=True, lazy_state=True)
    assert len(full_searches) == before
    assert render(report) == render(pipeline.scan(root, use_cache=False))
    with open_cache(cache_file) as cache:
        kept = incremental.load_state(cache, key)
        assert kept is not None and kept.shift_norms is not None and len(kept.shift_norms) == len(kept.paths)


def test_names_kept_as_one_blob_read_back_one_by_one_or_all():
    """The state's paths as one UTF-8 blob and the ends of the names: a name is decoded alone, all of them only
    when iterated; undecodable bytes (lone surrogates) and an empty name survive, as in the .npz blob format."""
    from dupaudit.engine.incremental import Names

    paths = ["/d/train/cat/0001.jpg", "/d/tést/ünï.png", "/d/bad-\udcff.jpg", "", "/d/last.jpg"]
    names = Names.of(paths)
    assert (
        len(names) == 5 and names[1] == paths[1] and names[2] == paths[2] and names[3] == "" and names[-1] == paths[4]
    )
    assert list(names) == paths and names[1:3] == paths[1:3]
    again = Names(names.blob.copy(), names.ends.copy())
    assert [again[i] for i in range(5)] == paths
    assert Names.of(names) is names and len(Names.of([])) == 0 and list(Names.of([])) == []
    with pytest.raises(IndexError):
        again[5]


def test_rows_found_by_walking_both_lists_equal_a_lookup_of_every_name():
    """incremental._aligned: the runs two sorted-alike lists agree on, and each difference (removed, added,
    renamed, a long run of new names), give the rows a dict of every name gives; never a wrong match."""
    import random

    from dupaudit.engine.incremental import _aligned

    rng = random.Random(3)
    old = [f"/data/train/c{c}/{i:06d}.jpg" for c in range(3) for i in range(20_000)]
    for trial in range(6):
        new = list(old)
        for _ in range(rng.randrange(1, 40)):
            at = rng.randrange(len(new))
            kind = rng.choice(["remove", "add", "rename", "burst"])
            if kind == "remove":
                del new[at]
            elif kind == "add":
                new.insert(at, new[at][:-4] + "_new.jpg")
            elif kind == "rename":
                new[at] = new[at][:-4] + "_renamed.jpg"
            else:  # more new names in a row than the first look ahead
                new[at:at] = [f"{new[at][:-4]}_burst{k:03d}.jpg" for k in range(300)]
        position = {name: row for row, name in enumerate(old)}
        want = [position.get(name, -1) for name in new]
        got = _aligned(old, new)
        assert got is not None, trial
        assert got.tolist() == want
    moved = old[1:30_000] + [old[0]] + old[30_000:]  # a name far from its old place: found all the same
    assert _aligned(old, moved).tolist() == [old.index(name) for name in moved]
    assert _aligned(old, list(reversed(old))) is None  # too different: the caller uses a dict


def test_rows_matched_folder_by_folder_equal_a_lookup_of_every_name(tmp_path):
    """rows_in on a listing's records (paths kept folder by folder): unchanged folders as one block of the
    state's names, changed ones walked side by side, over two roots; the rows a dict of every name gives."""
    from types import SimpleNamespace

    from dupaudit.engine.discover import FolderPaths, record_table, resolve_roots
    from dupaudit.engine.incremental import Names, rows_in
    from dupaudit.engine.listing import list_files

    base = tmp_path / "data"
    for split in ("train", "test"):
        for label in ("cat", "dog", "eel"):
            (base / split / label).mkdir(parents=True)
            for i in range(40):
                (base / split / label / f"{i:03d}.jpg").write_bytes(b"x" * (i + 1))
    roots = resolve_roots(base)
    before = record_table(list_files(roots))
    assert isinstance(before.abspaths, FolderPaths) and len(before) == 240
    state = SimpleNamespace(paths=Names.of(list(before.abspaths)), sizes=before.sizes, mtimes=before.mtimes)
    assert rows_in(state, before).tolist() == list(range(240))  # nothing changed

    (base / "train" / "cat" / "005.jpg").unlink()
    (base / "train" / "dog" / "new.jpg").write_bytes(b"new")
    (base / "test" / "cat" / "007.jpg").rename(base / "test" / "cat" / "zz.jpg")
    (base / "test" / "dog" / "009.jpg").write_bytes(b"rewritten, another size")
    shutil.rmtree(base / "train" / "eel")
    (base / "test" / "fox").mkdir()
    (base / "test" / "fox" / "000.jpg").write_bytes(b"f")
    after = record_table(list_files(resolve_roots(base)))
    assert isinstance(after.abspaths, FolderPaths)
    position = {name: row for row, name in enumerate(state.paths)}
    want = []
    for name, size, mtime in zip(after.abspaths, after.sizes.tolist(), after.mtimes.tolist()):
        row = position.get(name, -1)
        same = row >= 0 and state.sizes[row] == size and state.mtimes[row] == mtime
        want.append(row if same else -1)
    got = rows_in(state, after).tolist()
    assert got == want and want.count(-1) == 4  # new.jpg, zz.jpg, the rewritten 009.jpg, fox/000.jpg


def test_facts_patched_run_by_run_equal_a_gather():
    import numpy as np

    from dupaudit.engine.incremental import Facts

    rng = np.random.default_rng(0)

    def facts(count: int) -> Facts:
        return Facts(
            rng.integers(0, 256, (count, 8), dtype=np.uint8),
            rng.integers(0, 256, (count, 16), dtype=np.uint8),
            rng.integers(0, 256, (count, 16), dtype=np.uint8),
            rng.integers(1, 500, (count, 2)).astype(np.int64),
        )

    stored, fresh = facts(5000), facts(7)
    runs = np.concatenate([np.arange(0, 1200), [5003, 5000], np.arange(1300, 4990), [5006]])
    for source in (runs, rng.permutation(5007)[:3000]):  # a commit's few runs, and scattered rows
        want = Facts.concat([stored, fresh]).take(source)
        got = Facts.patched(stored, fresh, source)
        assert all(np.array_equal(getattr(got, name), getattr(want, name)) for name in Facts.__slots__)


def test_names_of_folder_kept_paths_equal_those_of_the_strings():
    from dupaudit.engine.discover import FolderPaths
    from dupaudit.engine.incremental import Names

    paths = FolderPaths([0, 0, 1], ["/a/x/", "/a/y/", "/b/"], [["1.jpg", "2.jpg"], [], ["\u00e9-\udcff.png"]])
    assert len(paths) == 3 and paths[2] == "/b/\u00e9-\udcff.png" and paths[-3] == "/a/x/1.jpg"
    names, strings = Names.of(paths), Names.of(list(paths))
    assert list(names) == list(paths) and names.blob.tobytes() == strings.blob.tobytes()
    assert paths.find_all(
        [(0, "/a/x/2.jpg"), (1, "/b/\u00e9-\udcff.png"), (0, "/b/\u00e9-\udcff.png"), (0, "/a/z.jpg")]
    ) == [1, 2, -1, -1]


def test_the_equal_digest_pairs_kept_beside_a_state_follow_its_items(tmp_path, cache_file, full_searches):
    """A written state keeps the equal-digest pairs of its items beside it (regroup.keep_equal_pairs); a state
    without them, or with damaged ones, gets them made again by the next update, which gives the full scan's
    report either way."""
    import numpy as np

    from dupaudit.engine import incremental, regroup
    from dupaudit.engine.cache import FingerprintCache, open_cache
    from dupaudit.engine.layout import detect_layout

    plan = make_sample(tmp_path / "data", per_class=20)
    root = plan.root
    first = pipeline.scan(root, cache_path=cache_file, incremental=True)
    key = FingerprintCache.index_key((first.settings, detect_layout(root, []).roots))

    def kept_pairs_are_the_states() -> None:
        with open_cache(cache_file) as cache:
            state = incremental.load_state(cache, key)
            assert state is not None and state.facts is not None and state.folder is not None
            for column in regroup.DIGEST_COLUMNS:
                stored = np.load(state.folder / f"equal-{column}.pairs")
                expected = np.stack(regroup.equal_pairs(getattr(state.facts, column)))
                assert stored.tolist() == expected.tolist()

    kept_pairs_are_the_states()
    train = root / "train"
    shutil.copy(train / "stripes" / "0004.jpg", train / "blobs" / "exact_copy.jpg")  # an equal byte digest
    _same_as_full(root, cache_file, full_searches)
    kept_pairs_are_the_states()  # written again with the updated state

    with open_cache(cache_file) as cache:
        state = incremental.load_state(cache, key)
        assert state is not None and state.folder is not None
        (state.folder / "equal-byte_digests.pairs").unlink()  # a state written before them
        (state.folder / "equal-pixel_digests.pairs").write_bytes(b"damaged")
    (train / "stripes" / "0004.jpg").unlink()  # the exact copy's owner goes
    shutil.copy(train / "circle" / "0003.jpg", train / "stripes" / "circle_copy.jpg")
    before = len(full_searches)
    report = pipeline.scan(root, cache_path=cache_file, incremental=True, lazy_state=True)
    assert len(full_searches) == before
    assert render(report) == render(pipeline.scan(root, use_cache=False))
    kept_pairs_are_the_states()  # made again beside the state the update started from (not written: lazy)


def test_an_updates_answer_is_kept_as_a_change_of_the_stored_groups(tmp_path, cache_file, full_searches, monkeypatch):
    """A check's answer is kept as the change of the groups stored with the state (model.GroupsChange), read back
    whole by a rescan of the unchanged tree; with those groups gone, the rescan updates again: the same report."""
    from dupaudit.engine.cache import FingerprintCache
    from dupaudit.engine.model import GroupsChange, StoredAnswer

    stored: dict[bytes, object] = {}
    original = FingerprintCache.store_result

    def recording(self, key, value):
        stored[key] = value
        original(self, key, value)

    monkeypatch.setattr(FingerprintCache, "store_result", recording)
    plan = make_sample(tmp_path / "data", per_class=20)
    root = plan.root
    pipeline.scan(root, cache_path=cache_file, incremental=True)
    train = root / "train"
    shutil.copy(train / "stripes" / "0004.jpg", train / "blobs" / "exact_copy.jpg")
    Image.open(train / "circle" / "0003.jpg").convert("RGB").save(train / "checker" / "near_copy.jpg", quality=70)
    stored.clear()
    updated = pipeline.scan(root, cache_path=cache_file, incremental=True, lazy_state=True)
    (answer,) = stored.values()  # the state is not written (lazy): only the answer is
    assert isinstance(answer, StoredAnswer) and isinstance(answer.groups, GroupsChange)
    assert 0 < len(answer.groups.placed) < len(updated.groups)
    full = render(pipeline.scan(root, use_cache=False))
    assert render(updated) == full

    again = pipeline.scan(root, cache_path=cache_file, incremental=True, lazy_state=True)
    assert again.timings["search"] == 0.0 and again.decoded == 0  # the stored answer, read back
    assert again.groups == updated.groups and render(again) == full

    monkeypatch.setattr(FingerprintCache, "load_result", lambda self, key: None)  # the stored groups are gone
    searches = len(full_searches)
    without = pipeline.scan(root, cache_path=cache_file, incremental=True, lazy_state=True)
    assert without.timings["search"] > 0.0 and len(full_searches) == searches
    assert render(without) == full


def test_a_folders_rows_found_by_comparing_texts_equal_a_lookup_of_every_name():
    """incremental._folder_rows: the state's rows under a folder's path (subfolders' among them) against the
    folder's names after removals, additions, renames, names that extend another and odd characters: the rows a
    dict of every name gives, over windows smaller than the texts."""
    import random

    import numpy as np

    from dupaudit.engine import incremental
    from dupaudit.engine.incremental import Names, _folder_rows

    rng = random.Random(11)
    prefix = "/d/train/c\u00e9/"
    alphabet = "ab\u00e9z0._-\udcff"
    base = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9))) + ".jpg" for _ in range(3000)})
    stored_rest = sorted(base + ["sub/x.jpg", "sub/y.jpg", "a.jpg.jpg"])
    for trial in range(30):
        names = [n for n in base if rng.random() > 0.02]
        names += [n + "2" for n in rng.sample(base, rng.randint(0, 20))]  # a name extending another
        names += ["".join(rng.choice(alphabet) for _ in range(5)) + ".png" for _ in range(rng.randint(0, 20))]
        names = sorted(set(names))
        old = Names.of([prefix + rest for rest in stored_rest])
        for window in (1 << 16, 7):
            incremental._TEXT_WINDOW = window
            try:
                rows = _folder_rows(old.blob, old.ends, names, prefix)
            finally:
                incremental._TEXT_WINDOW = 1 << 16
            where = {rest: row for row, rest in enumerate(stored_rest)}
            assert rows.tolist() == [where.get(n, -1) for n in names], (trial, window)
    empty = Names.of([])
    assert _folder_rows(empty.blob, empty.ends, ["a.jpg"], prefix).tolist() == [-1]
    assert _folder_rows(old.blob, old.ends, [], prefix).tolist() == []
    assert np.array_equal(_folder_rows(old.blob, old.ends, stored_rest, prefix), np.arange(len(stored_rest)))
