"""Index files: `dupaudit index build/update` and `scan NEW --against-index INDEX` (the groups that hold a new
image are those a full scan of both forms; the indexed images are never opened)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageEnhance

from dupaudit.engine import index
from dupaudit.engine.pipeline import scan
from dupaudit.sample import make_sample, procedural_image

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _new_images(folder: Path, data: Path) -> None:
    folder.mkdir(parents=True)
    source = Image.open(data / "train" / "stripes" / "0003.jpg").convert("RGB")
    ImageEnhance.Brightness(source).enhance(1.06).save(folder / "near_of_indexed.jpg", quality=80)
    shutil.copy(data / "test" / "blobs" / "0002.jpg", folder / "exact_of_indexed.jpg")
    procedural_image(424_242).save(folder / "distinct.jpg", quality=90)
    twin = procedural_image(434_343)
    twin.save(folder / "twin_a.jpg", quality=90)
    twin.save(folder / "twin_b.png")
    shutil.copy(data / "train" / "circle" / "0000.jpg", folder / "joins_planted_group.jpg")


def _groups_by_file(report) -> set[frozenset[str]]:
    where = {r.name: r.path for r in report.roots}
    return {frozenset(os.path.join(where[m.root], m.path) for m in g.members) for g in report.groups}


def test_against_index_equals_the_new_images_groups_of_a_full_scan(tmp_path):
    data = make_sample(tmp_path / "data", per_class=16).root
    new = tmp_path / "incoming"
    _new_images(new, data)
    index_file = tmp_path / "data.index"
    index.build(data, index_file, jobs=1)
    full = scan(data, [new], use_cache=False, jobs=1)
    expected = {g for g in _groups_by_file(full) if any(p.startswith(str(new.resolve())) for p in g)}

    # The indexed folder is moved away: the query must not need it.
    data.rename(tmp_path / "elsewhere")
    answer = index.query(new, index_file, use_cache=False, jobs=1)
    assert _groups_by_file(answer) == expected
    grouped = {Path(p).name for g in expected for p in g}
    assert {"near_of_indexed.jpg", "exact_of_indexed.jpg", "twin_a.jpg", "twin_b.png"} <= grouped
    assert "joins_planted_group.jpg" in grouped and "distinct.jpg" not in grouped
    assert answer.decoded == 6


def test_index_update_decodes_only_what_changed(tmp_path):
    data = make_sample(tmp_path / "data", per_class=12).root
    index_file = tmp_path / "data.index"
    first = index.build(data, index_file, jobs=1)
    assert first.decoded == first.summary.images
    procedural_image(515_151).save(data / "train" / "blobs" / "added.jpg", quality=90)
    updated = index.update(index_file, jobs=1)
    assert updated.decoded == 1
    assert updated.groups == scan(data, use_cache=False, jobs=1).groups
    # The query sees the added image (an exact copy of it is found).
    new = tmp_path / "incoming"
    new.mkdir()
    shutil.copy(data / "train" / "blobs" / "added.jpg", new / "again.jpg")
    answer = index.query(new, index_file, use_cache=False, jobs=1)
    assert [sorted(m.path for m in g.members) for g in answer.groups] == [["again.jpg", "blobs/added.jpg"]]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC)
    env.pop("DUPAUDIT_CACHE", None)
    return subprocess.run([sys.executable, "-m", "dupaudit", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_the_commands(tmp_path):
    data = make_sample(tmp_path / "data", per_class=8).root
    new = tmp_path / "incoming"
    new.mkdir()
    shutil.copy(data / "train" / "checker" / "0001.jpg", new / "copy.jpg")
    built = _cli("index", "build", str(data), "-o", "data.index", "-j", "1", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "images indexed" in built.stderr
    query = _cli("scan", str(new), "--against-index", "data.index", "--no-cache", "-f", "json", "-q", cwd=tmp_path)
    assert query.returncode == 0, query.stderr
    assert '"path": "copy.jpg"' in query.stdout and '"path": "checker/0001.jpg"' in query.stdout
    failing = _cli("scan", str(new), "--against-index", "data.index", "--fail-on", "exact", "-q", cwd=tmp_path)
    assert failing.returncode == 1
    for args in (
        ("scan", str(new), "--against-index", "missing.index"),
        ("scan", str(new), "--against-index", "data.index", "--threshold", "4"),
        ("index", "update", "missing.index"),
    ):
        result = _cli(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert _cli("index", "update", "data.index", "-q", cwd=tmp_path).returncode == 0


def test_against_index_reads_new_images_from_a_tar_shard(tmp_path):
    import tarfile

    data = make_sample(tmp_path / "data", per_class=16).root
    new = tmp_path / "incoming"
    _new_images(new, data)
    shards = tmp_path / "shards"
    shards.mkdir()
    with tarfile.open(shards / "shard-000000.tar", "w") as tar:
        for path in sorted(new.iterdir()):
            tar.add(path, arcname=path.name)
    index_file = tmp_path / "data.index"
    index.build(data, index_file, jobs=1)
    from_folder = index.query(new, index_file, use_cache=False, jobs=1)
    from_tar = index.query(shards, index_file, use_cache=False, jobs=1)

    def names(report) -> set[frozenset[str]]:
        return {frozenset(m.path.rsplit("/", 1)[-1] for m in g.members) for g in report.groups}

    assert names(from_tar) == names(from_folder) and from_tar.groups
    assert any("shard-000000.tar" in m.path for g in from_tar.groups for m in g.members)


def test_an_index_of_a_tar_source_is_refused_clearly(tmp_path):
    import tarfile

    import pytest

    from dupaudit.errors import InputError

    shards = tmp_path / "shards"
    shards.mkdir()
    procedural_image(1).save(tmp_path / "a.jpg")
    with tarfile.open(shards / "shard-000000.tar", "w") as tar:
        tar.add(tmp_path / "a.jpg", arcname="a.jpg")
    with pytest.raises(InputError, match="not indexed yet"):
        index.build(shards / "shard-000000.tar", tmp_path / "x.index", jobs=1)


def test_indexed_records_made_by_columns_equal_those_made_item_by_item(tmp_path):
    """The query's records of the indexed items (cut root by root, column by column) are the careful per-path
    ones, with splits, labels and an evaluation folder outside the root."""
    from dupaudit.engine import incremental
    from dupaudit.engine.cache import FingerprintCache, open_cache

    data = make_sample(tmp_path / "data", per_class=6).root
    holdout = tmp_path / "holdout"
    _new_images(holdout, data)
    index_file = tmp_path / "data.index"
    report = index.build(data, index_file, [holdout], jobs=1)
    cache = open_cache(index_file)
    assert cache is not None
    with cache:
        state = incremental.load_state(cache, FingerprintCache.index_key((report.settings, report.roots)))
    assert state is not None and len(state.paths) == report.summary.images
    fast = index._indexed_records(state, report.roots)
    assert fast == index._records_item_by_item(state, report.roots)
    assert {r.root for r in fast} == {r.name for r in report.roots} and len({r.root for r in fast}) >= 3
    assert any(r.label is None for r in fast) and any(r.label == "stripes" for r in fast)


def _report_json(report) -> str:
    """The JSON report without its timings (each run has its own)."""
    from dupaudit.formats import json as json_format

    data = json_format.to_dict(report)
    data.pop("timings", None)
    return json.dumps(data, sort_keys=True)


def test_the_approximate_query_gives_the_exact_querys_report(tmp_path, monkeypatch):
    """Above APPROXIMATE_FROM items (lowered here: a sample of 96) the query runs on the IVF indexes kept in the
    state's folder at build time (lookup.py) and the stored components; on this sample its report is the exact
    path's, and it finds the copies of indexed images, the new twins and the joined planted group."""
    from dupaudit.engine import lookup

    data = make_sample(tmp_path / "data", per_class=16).root
    new = tmp_path / "incoming"
    _new_images(new, data)
    index_file = tmp_path / "data.index"
    index.build(data, index_file, jobs=1)
    exact = index.query(new, index_file, use_cache=False, jobs=1)
    monkeypatch.setattr(index, "APPROXIMATE_FROM", 40)
    index.update(index_file, jobs=1)  # nothing changed: the build step makes the query structures
    # The states folder also holds the listing's snapshot (its arrays include snapshot_version): one search state
    states = [f for f in (tmp_path / "data.index.states").iterdir() if not (f / "snapshot_version.npy").exists()]
    assert len(states) == 1 and len(list(states[0].glob("*.faiss"))) == 5 and (states[0] / "classes.json").exists()
    used = []
    original = lookup.candidates
    monkeypatch.setattr(lookup, "candidates", lambda *a, **k: used.append(1) or original(*a, **k))
    approximate = index.query(new, index_file, use_cache=False, jobs=1)
    assert used == [1]
    assert _report_json(approximate) == _report_json(exact)
    grouped = {Path(m.path).name for g in approximate.groups for m in g.members}
    assert {"near_of_indexed.jpg", "exact_of_indexed.jpg", "twin_a.jpg", "joins_planted_group.jpg"} <= grouped


def test_the_approximate_query_reads_its_structures_ahead(tmp_path, monkeypatch):
    """Above APPROXIMATE_FROM (lowered here) a query first asks the kernel to read ahead the files it reads nearly
    whole (lookup.QUERY_FILES: the five IVF indexes, the stored hashes, the components), from its state's folder,
    where they all are; below it, nothing is asked."""
    from dupaudit.engine import lookup

    data = make_sample(tmp_path / "data", per_class=16).root
    new = tmp_path / "incoming"
    _new_images(new, data)
    index_file = tmp_path / "data.index"
    index.build(data, index_file, jobs=1)
    asked: list[tuple[Path, tuple[str, ...]]] = []
    original = index.read_ahead
    monkeypatch.setattr(index, "read_ahead", lambda folder, names: asked.append((folder, tuple(names))))
    index.query(new, index_file, use_cache=False, jobs=1)
    assert asked == []
    monkeypatch.setattr(index, "APPROXIMATE_FROM", 40)
    index.update(index_file, jobs=1)  # makes the structures
    index.query(new, index_file, use_cache=False, jobs=1)
    assert len(asked) == 1
    folder, names = asked[0]
    assert names == lookup.QUERY_FILES and len([n for n in names if n.endswith(".faiss")]) == 5
    assert all((folder / name).is_file() for name in names)
    original(folder, names)  # and asking is harmless
    original(folder, ["no-such-file.npy"])


def test_the_query_structures_are_filled_by_the_scans_own_routes(tmp_path, monkeypatch):
    """A full scan above APPROXIMATE_FROM (lowered here) keeps each item's inverted list per search and the
    lists' centroids in its state; index build fills the five IVF indexes from them, without training or
    routing again, and they are byte for byte those a fresh training and routing make (flat images included:
    their zero descriptors tie for every list, where faiss's own pick is kept). An update keeps the scan's lists:
    kept rows keep their routes, new rows are routed as faiss's add routes them, nothing is trained again."""
    import numpy as np

    from dupaudit.engine import incremental, lookup, verify
    from dupaudit.engine.cache import FingerprintCache, open_cache

    data = make_sample(tmp_path / "data", per_class=16).root
    for number in range(3):  # flat images: zero descriptors
        Image.new("RGB", (32, 32), (90 + number, 90, 90)).save(data / "train" / "blobs" / f"flat{number}.png")
    monkeypatch.setattr(verify, "APPROXIMATE_FROM", 40)
    monkeypatch.setattr(index, "APPROXIMATE_FROM", 40)
    trainings = []
    original = lookup.trained_lists
    monkeypatch.setattr(lookup, "trained_lists", lambda desc: trainings.append(len(desc)) or original(desc))
    index_file = tmp_path / "data.index"
    report = index.build(data, index_file, jobs=1)
    assert trainings == []  # filled from the routes
    cache = open_cache(index_file)
    assert cache is not None
    with cache:
        state = incremental.load_state(cache, FingerprintCache.index_key((report.settings, report.roots)))
    assert state is not None and state.folder is not None and state.routes is not None
    count = len(state.paths)
    assert count > 40 and state.routes.shape == (count, 1 + len(verify.HALF_SHIFTS))
    assert (np.linalg.norm(state.desc, axis=1) < 1e-3).sum() >= 3  # the ties were there to be broken

    class Kept:  # what _build would add to a state's folder
        def __init__(self) -> None:
            self.files: dict[str, bytes] = {}

        def add_to_state(self, folder, name, blob) -> None:  # noqa: ANN001
            self.files[name] = blob

    fresh = Kept()
    lookup._build(
        incremental.SearchState(**{**_fields(state), "routes": None}), fresh, state.folder, [None, *verify.HALF_SHIFTS]
    )
    assert trainings == [count] and len(fresh.files) == 5
    for name, blob in fresh.files.items():
        assert (state.folder / name).read_bytes() == blob, name

    # an update keeps the full scan's lists: the kept rows' routes, the new rows routed as faiss's add routes them
    (data / "train" / "blobs" / "flat0.png").unlink()
    Image.new("RGB", (32, 32), (30, 200, 30)).save(data / "train" / "blobs" / "flat9.png")
    procedural_image(515_151).save(data / "test" / "blobs" / "added.jpg", quality=90)
    index.update(index_file, jobs=1)
    assert trainings == [count]
    cache = open_cache(index_file)
    assert cache is not None
    with cache:
        updated = incremental.load_state(cache, FingerprintCache.index_key((report.settings, report.roots)))
    assert updated is not None and updated.folder is not None and updated.routes is not None
    assert len(updated.paths) == count + 1 and np.array_equal(updated.centroids, state.centroids)
    old_rows = {path: row for row, path in enumerate(state.paths)}
    kept = [row for row, path in enumerate(updated.paths) if path in old_rows]
    assert np.array_equal(updated.routes[kept], state.routes[[old_rows[updated.paths[row]] for row in kept]])
    routed = Kept()
    trained = verify.lists_from_centroids(np.asarray(state.centroids))
    for name, shift in zip(sorted(fresh.files), sorted([None, *verify.HALF_SHIFTS], key=lookup._file)):
        assert lookup._file(shift) == name
        filled = __import__("faiss").clone_index(trained)
        filled.add(updated.desc if shift is None else verify.half_shifted(np.asarray(updated.desc), shift))
        routed.add_to_state(None, name, __import__("faiss").serialize_index(filled).tobytes())
    for name, blob in routed.files.items():  # faiss's add with the kept centroids routes every row alike
        assert (updated.folder / name).read_bytes() == blob, name


def test_a_state_kept_as_one_blob_is_converted_on_first_use(tmp_path):
    """An index written before the state folders (the state as an .npz blob in the indexes table) answers, and
    its state is moved into a folder once: no search again, the blob row replaced by the folder's name."""
    from dupaudit.engine import incremental
    from dupaudit.engine.cache import FingerprintCache, open_cache

    data = make_sample(tmp_path / "data", per_class=12).root
    new = tmp_path / "incoming"
    _new_images(new, data)
    index_file = tmp_path / "data.index"
    report = index.build(data, index_file, jobs=1)
    expected = _report_json(index.query(new, index_file, use_cache=False, jobs=1))
    key = FingerprintCache.index_key((report.settings, report.roots))
    cache = open_cache(index_file)
    assert cache is not None
    with cache:
        state = incremental.load_state(cache, key)
        assert state is not None and state.folder is not None
        blob = state.to_bytes()
        cache.store_index(key, blob)  # as the earlier code kept it
    shutil.rmtree(tmp_path / "data.index.states")
    assert _report_json(index.query(new, index_file, use_cache=False, jobs=1)) == expected
    cache = open_cache(index_file)
    assert cache is not None
    with cache:
        assert cache.load_index(key).startswith(b"folder:")
        again = incremental.load_state(cache, key)
    assert again is not None and again.folder is not None and list(again.paths) == list(state.paths)
    assert isinstance(again.desc, __import__("numpy").memmap)


def test_a_mapped_state_outlives_its_replacement(tmp_path):
    """A process that mapped a state keeps reading it after another stored a new one and its folder was
    removed; the next load maps the new one."""
    import numpy as np

    from dupaudit.engine import incremental
    from dupaudit.engine.cache import FingerprintCache, open_cache

    data = make_sample(tmp_path / "data", per_class=8).root
    index_file = tmp_path / "data.index"
    report = index.build(data, index_file, jobs=1)
    key = FingerprintCache.index_key((report.settings, report.roots))
    reader, writer = open_cache(index_file), open_cache(index_file)
    assert reader is not None and writer is not None
    with reader, writer:
        held = incremental.load_state(reader, key)
        assert held is not None and held.folder is not None
        before = np.array(held.desc)
        replaced = incremental.SearchState(**{**_fields(held), "desc": -before})
        os.utime(held.folder, (0, 0))  # an old folder: removed as soon as no row names it
        incremental.store_state(writer, key, replaced)
        assert not held.folder.exists() and replaced.folder is not None and replaced.folder.exists()
        assert np.array_equal(held.desc, before)  # still mapped
        fresh = incremental.load_state(reader, key)
        assert fresh is not None and np.array_equal(fresh.desc, -before)


def _fields(state) -> dict:
    return {name: getattr(state, name) for name in state.__slots__ if name != "folder"}


def test_two_processes_query_one_index_at_once(tmp_path):
    """Two `--against-index` processes at once on an index whose state lies in a folder: both answer alike."""
    data = make_sample(tmp_path / "data", per_class=8).root
    new = tmp_path / "incoming"
    _new_images(new, data)
    assert _cli("index", "build", str(data), "-o", "data.index", "--jobs", "1", cwd=tmp_path).returncode == 0
    env = dict(os.environ, PYTHONPATH=SRC)
    env.pop("DUPAUDIT_CACHE", None)
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dupaudit",
                "scan",
                str(new),
                "--against-index",
                "data.index",
                "--no-cache",
                "-q",
                "--json",
                f"q{i}.json",
                "--jobs",
                "1",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode in (0, 1), err
    assert (tmp_path / "q0.json").read_text() == (tmp_path / "q1.json").read_text()
    assert '"groups"' in (tmp_path / "q0.json").read_text()


def test_an_index_made_by_another_version_of_the_code_still_answers(tmp_path, monkeypatch):
    """The state's key holds a digest of the engine's code: after an upgrade the query finds the state by the
    key the index's description names, or (a description written before it named one) by its roots and width."""
    from dupaudit.engine.cache import FingerprintCache, open_cache

    data = make_sample(tmp_path / "data", per_class=8).root
    new = tmp_path / "incoming"
    _new_images(new, data)
    index_file = tmp_path / "data.index"
    index.build(data, index_file, jobs=1)
    expected = _report_json(index.query(new, index_file, use_cache=False, jobs=1))
    original = FingerprintCache.index_key
    monkeypatch.setattr(FingerprintCache, "index_key", staticmethod(lambda s: original(("upgraded", s))))
    assert _report_json(index.query(new, index_file, use_cache=False, jobs=1)) == expected
    description = index.describe(index_file)
    del description["state"]
    cache = open_cache(index_file)
    assert cache is not None
    with cache:
        cache.store_meta("index", json.dumps(description))
    assert _report_json(index.query(new, index_file, use_cache=False, jobs=1)) == expected
