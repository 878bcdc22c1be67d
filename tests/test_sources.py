"""The source layer: the same images as a folder, WebDataset shards, HF-layout Parquet and manifests give the same
answer; the cache keys container items by content; bad items are skipped with a reason, unusable sources exit 2."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from conftest import CIFAR, need
from sources_support import (
    as_folder,
    as_manifests,
    as_parquet,
    as_webdataset,
    groups_by_content,
    hf_table,
    pick_images,
)
from typer.testing import CliRunner

from dupaudit.cli import app
from dupaudit.engine.pipeline import scan
from dupaudit.formats.json import to_dict

pytest.importorskip("pyarrow")
runner = CliRunner()


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    need(CIFAR)
    base = tmp_path_factory.mktemp("forms")
    images = pick_images(CIFAR)
    parquet_root, stems = as_parquet(images, base / "hf")
    csv_manifest, jsonl_manifest = as_manifests(images, base / "manifests")
    return {
        "images": images,
        "folder": as_folder(images, base / "folder"),
        "webdataset": as_webdataset(images, base / "shards"),
        "parquet": parquet_root,
        "stems": stems,
        "csv": csv_manifest,
        "jsonl": jsonl_manifest,
    }


@pytest.fixture(scope="module")
def folder_report(forms):
    return to_dict(scan(forms["folder"], use_cache=False, jobs=2))


@pytest.mark.parametrize("form", ["webdataset", "parquet", "csv", "jsonl"])
def test_every_form_gives_the_folder_answer(forms, folder_report, form):
    report = to_dict(scan(str(forms[form]), use_cache=False, jobs=2))
    assert report["summary"] == folder_report["summary"]
    assert report["summary"]["groups"] >= 4 and report["summary"]["leaked"] >= 1  # the planted copies are found
    assert report["classes"] == folder_report["classes"]
    assert report["splits"] == folder_report["splits"]
    # the same keepers too: a Parquet row is named by its image's `path` (hf_table writes the file names)
    assert groups_by_content(report, forms["stems"], True) == groups_by_content(folder_report, keep=True)
    assert [r["name"] for r in report["roots"]] == ["train", "test"]
    kind = {"csv": "manifest", "jsonl": "manifest"}.get(form, form)
    assert {r["source"] for r in report["roots"]} == {kind}
    assert all(r["url"].startswith("file://") for r in report["roots"])


def test_item_ids_name_where_items_live(forms):
    report = to_dict(scan(str(forms["webdataset"]), use_cache=False, jobs=1))
    paths = [m["path"] for g in report["groups"] for m in g["members"]]
    assert any(p.startswith("train/shard-000000.tar/") and p.endswith(".jpg") for p in paths)
    report = to_dict(scan(str(forms["parquet"]), use_cache=False, jobs=1))
    paths = [m["path"] for g in report["groups"] for m in g["members"]]
    assert all(p.startswith("data/") and "#" in p for p in paths)
    assert "source" not in to_dict(scan(forms["folder"], use_cache=False, jobs=1))["roots"][0]  # folder JSON unchanged


def test_globs_and_brace_ranges_name_shards(forms):
    shards = forms["webdataset"]
    whole = to_dict(scan(str(shards), use_cache=False, jobs=1))["summary"]["images"]
    braced = to_dict(scan(f"{shards}/train/shard-{{000000..000001}}.tar", use_cache=False, jobs=1))
    assert braced["summary"]["images"] == 128 and [r["name"] for r in braced["roots"]] == ["train"]
    globbed = to_dict(scan(f"{shards}/*/shard-*.tar", use_cache=False, jobs=1))
    assert globbed["summary"]["images"] == whole


def test_container_items_are_cached_by_content(forms, tmp_path):
    shards = tmp_path / "shards"
    as_webdataset(forms["images"], shards)
    cache = tmp_path / "cache.sqlite"
    cold = scan(str(shards), cache_path=cache, jobs=1)
    assert cold.decoded == cold.summary.images and cold.cache_hits == 0
    warm = scan(str(shards), cache_path=cache, jobs=1)  # unchanged shards: the stored answer, nothing read
    assert warm.decoded == 0 and to_dict(warm) == to_dict(cold)
    # rewrite one shard with one image changed: only that image is decoded again
    shard = shards / "train" / "shard-000001.tar"
    with tarfile.open(shard) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    changed = members[0][0]
    buffer = io.BytesIO()
    from PIL import Image

    Image.open(io.BytesIO(members[0][1])).rotate(90).save(buffer, "JPEG")
    with tarfile.open(shard, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            data = buffer.getvalue() if name == changed else data
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    again = scan(str(shards), cache_path=cache, jobs=1)
    assert again.decoded == 1 and again.cache_hits == cold.summary.images - 1


def test_manifest_items_are_cached(forms, tmp_path):
    cache = tmp_path / "cache.sqlite"
    cold = scan(str(forms["csv"]), cache_path=cache, jobs=2)
    warm = scan(str(forms["csv"]), cache_path=cache, jobs=2)
    assert cold.decoded == cold.summary.images and warm.decoded == 0
    assert to_dict(warm) == to_dict(cold)


def test_parquet_columns_can_be_named(tmp_path, forms):
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = forms["images"][:20]
    table = pa.table(
        {
            "pixels": pa.array([i.data for i in images], type=pa.binary()),
            "thumbnail": pa.array([b"x"] * len(images), type=pa.binary()),
            "category": [i.label for i in images],
            "part": [i.split for i in images],
        }
    )
    pq.write_table(table, tmp_path / "plain.parquet")
    result = runner.invoke(
        app,
        [
            "scan",
            str(tmp_path / "plain.parquet"),
            "--no-cache",
            "-q",
            "-f",
            "json",
            "--image-column",
            "pixels",
            "--label-column",
            "category",
            "--split-column",
            "part",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["images"] == 20 and {c["label"] for c in report["classes"]} == {"airplane"}
    assert [r["name"] for r in report["roots"]] == ["train"]


def _noise_jpegs(count: int, seed: int = 7) -> list[bytes]:
    """Distinct 32x32 JPEGs (random pixels: no two are near copies)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
        blobs.append(buffer.getvalue())
    return blobs


def _hf_files(
    tmp_path: Path, rows: dict[str, list[bytes]], row_group_size: int = 5, names: dict[str, list[str]] | None = None
) -> Path:
    """An HF-layout Parquet dataset of the blobs, per split; `names`: the image struct's `path` of each row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "hf"
    (root / "data").mkdir(parents=True)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for split, blobs in rows.items():
        paths = (names or {}).get(split, [None] * len(blobs))
        column = [{"bytes": b, "path": p} for b, p in zip(blobs, paths)]
        table = pa.table({"image": pa.array(column, type=image_type)})
        pq.write_table(table, root / "data" / f"{split}-00000-of-00001.parquet", row_group_size=row_group_size)
    return root


def test_parquet_rows_are_in_their_stored_order(tmp_path):
    """Rows are ordered as stored (#2 before #10), as a folder's files are by name: the search breaks its ties by
    this order, so string order (#10 before #2) changed 35 of CIFAR-10's 1,324 groups against the folder's."""
    from dupaudit.engine.sources import SourceOptions, open_source
    from dupaudit.engine.sources.scanning import fingerprint_sources

    root = _hf_files(tmp_path, {"train": _noise_jpegs(12)})
    read = fingerprint_sources([open_source(str(root), SourceOptions())], ("phash",), jobs=2, cache=None)
    assert [r.path for r in read.records] == [f"data/train-00000-of-00001.parquet#{i}" for i in range(12)]


def test_a_tie_across_splits_keeps_the_folder_keeper(tmp_path):
    """The same bytes in train (row 10) and test (row 0): equal resolution and size, so the keep rule falls to
    the name, which a Parquet row does not have (its file name and row number are no file name): the first root
    decides, as in the folder, and the training copy is kept."""
    blobs = _noise_jpegs(11)
    folder = tmp_path / "folder"
    for split, names in (("train", [f"{i:02d}" for i in range(11)]), ("test", ["00"])):
        for index, name in enumerate(names):
            (folder / split).mkdir(parents=True, exist_ok=True)
            (folder / split / f"{name}.jpg").write_bytes(blobs[10] if split == "test" else blobs[index])
    hf = _hf_files(tmp_path, {"train": blobs, "test": [blobs[10]]})
    kept = {}
    for form, target in (("folder", folder), ("parquet", hf)):
        report = to_dict(scan(str(target), use_cache=False, jobs=1))
        assert report["summary"]["groups"] == 1 and report["summary"]["leaked"] == 1
        kept[form] = [m["root"] for m in report["groups"][0]["members"] if m["keep"]]
    assert kept["folder"] == kept["parquet"] == ["train"]


def test_parquet_rows_are_kept_by_the_names_their_images_record(tmp_path):
    """Rows whose image struct records a file name (HF's `path`) are kept as the folder keeps those files, whatever
    the rows' order: `a.jpg` (row 2) over `b.jpg` (row 10), though the ids sort `#10` first; `c.jpg` (row 6) over
    `d.jpg` (row 5), though row 5 is stored first; `cat.jpg` over `cat (1).jpg` (the name step). The report gives
    each row's name, and dedup's plan keeps what the report keeps."""
    from dupaudit.dedup import make_plan

    blobs = _noise_jpegs(12)
    names = [f"n{i:02d}.jpg" for i in range(12)]
    for row, name, twin in ((2, "a.jpg", 10), (10, "b.jpg", 10), (5, "d.jpg", 5), (6, "c.jpg", 5)):
        names[row], blobs[row] = name, blobs[twin]
    names[3], names[4], blobs[3] = "cat (1).jpg", "cat.jpg", blobs[4]
    folder = tmp_path / "folder" / "train"
    folder.mkdir(parents=True)
    for name, blob in zip(names, blobs):
        (folder / name).write_bytes(blob)
    hf = _hf_files(tmp_path, {"train": blobs}, names={"train": names})
    kept = {}
    for form, target in (("folder", folder.parent), ("parquet", hf)):
        report = scan(str(target), use_cache=False, jobs=1)
        data = to_dict(report)
        assert data["summary"]["groups"] == 3
        keepers = [m for g in data["groups"] for m in g["members"] if m["keep"]]
        kept[form] = sorted(m.get("name", m["path"]) for m in keepers)
        plan = make_plan(report)
        assert sorted(f.path for g in plan.groups for f in g.keep) == sorted(m["path"] for m in keepers)
    assert kept["folder"] == kept["parquet"] == ["a.jpg", "c.jpg", "cat.jpg"]
    assert {m["path"]: m["name"] for g in data["groups"] for m in g["members"]}[
        "data/train-00000-of-00001.parquet#3"
    ] == "cat (1).jpg"


# --- bad input: skipped items with a reason; unusable sources exit 2 with one line -------------------------------


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_bad_items_are_skipped_with_a_reason(tmp_path, forms):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = [i.data for i in forms["images"][:3]]
    shards = tmp_path / "shards"
    shards.mkdir()
    with tarfile.open(shards / "a.tar", "w") as tar:
        _add(tar, "x0.jpg", good[0])
        _add(tar, "x1.jpg", b"not an image at all")
        _add(tar, "x2.jpg", good[1])
    with tarfile.open(shards / "a.tar") as tar:
        cut = tar.getmember("x2.jpg").offset_data + 100
    (shards / "b.tar").write_bytes((shards / "a.tar").read_bytes()[:cut])  # truncated inside the last member
    report = to_dict(scan(str(shards), use_cache=False, jobs=1))
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    assert report["summary"]["images"] >= 2
    assert "not an image" in reasons["a.tar/x1.jpg"]
    assert any(path.startswith("b.tar") and "truncated" in reason for path, reason in reasons.items())

    table = hf_table(forms["images"][:3])
    rows = table.to_pylist()
    rows[1]["image"] = None
    rows[2]["image"] = {"bytes": b"garbage", "path": "g.jpg"}
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), tmp_path / "t.parquet")
    report = to_dict(scan(str(tmp_path / "t.parquet"), use_cache=False, jobs=1))
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    assert report["summary"]["images"] == 1
    assert reasons["t.parquet#1"] == "image bytes are null" and "not an image" in reasons["t.parquet#2"]

    (tmp_path / "m.csv").write_text(f"path,label\n{forms['csv'].parent}/files/copy_leak.jpg,a\nmissing.jpg,b\n")
    report = to_dict(scan(str(tmp_path / "m.csv"), use_cache=False, jobs=1))
    assert report["summary"]["images"] == 1
    assert report["skipped"] == [{"root": "m", "path": "missing.jpg", "reason": "not found"}]


def _fails(*args, expect):
    result = runner.invoke(app, ["scan", *map(str, args), "--no-cache", "-q"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert expect in result.output, result.output


def test_unusable_sources_exit_2_with_one_line(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), tmp_path / "noimage.parquet")
    _fails(tmp_path / "noimage.parquet", expect="no path column")  # neither image bytes nor paths
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "other.parquet")
    _fails(tmp_path / "other.parquet", "--source-type", "parquet", expect="no image column")
    (tmp_path / "m.csv").write_text("name,label\na.jpg,x\n")
    _fails(tmp_path / "m.csv", expect="no path column")
    _fails("foo://bucket/data", expect="unknown URL scheme foo://")
    _fails(tmp_path / "m.csv", "--source-type", "zip", expect="--source-type")
    _fails(tmp_path / "nothing-here.tar", expect="not found")
    (tmp_path / "empty").mkdir()
    _fails(tmp_path / "empty" / "*.tar", expect="no .tar shards")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    _fails(tmp_path / "bad.parquet", "--source-type", "parquet", expect="not a readable Parquet file")
    _fails(tmp_path / "m.csv", "--storage-option", "novalue", expect="KEY=VALUE")


def test_a_missing_cloud_extra_names_the_pip_line():
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401

        pytest.skip("gcsfs is installed: the missing-extra message cannot be seen")
    except ImportError:
        pass
    _fails("gs://bucket/data", expect="pip install 'dupaudit[cloud]'")


# --- acting on findings inside containers: ids and a filtered copy in the same format ----------------------------


def _digest_tree(root: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("form", ["parquet", "webdataset", "csv"])
def test_write_filtered_copy_reads_back_without_the_dropped_items(forms, form, tmp_path):
    target = forms[form]
    before = _digest_tree(target if target.is_dir() else target.parent)
    out = tmp_path / ("filtered.csv" if form == "csv" else "filtered")
    args = ["dedup", str(target), "--no-cache", "--plan", str(tmp_path / "plan.json")]
    args += [
        "--write-filtered",
        str(out),
        "--drop-list",
        str(tmp_path / "drop.txt"),
        "--list",
        str(tmp_path / "keep.txt"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    dropped = (tmp_path / "drop.txt").read_text().split()
    kept = (tmp_path / "keep.txt").read_text().split()
    assert len(dropped) == 4  # one per planted copy: the groups keep one member each
    assert len(kept) + len(dropped) == len(forms["images"]) and not set(kept) & set(dropped)
    assert _digest_tree(target if target.is_dir() else target.parent) == before  # the input is only read
    rescanned = to_dict(scan(str(out), use_cache=False, jobs=1))
    assert rescanned["summary"]["images"] == len(kept) and rescanned["summary"]["groups"] == 0
    if form == "parquet":
        import pyarrow.parquet as pq

        for original in sorted((target / "data").glob("*.parquet")):
            copy = pq.ParquetFile(out / "data" / original.name)
            assert copy.schema_arrow == pq.ParquetFile(original).schema_arrow
            assert copy.schema_arrow.metadata == pq.ParquetFile(original).schema_arrow.metadata  # ClassLabel names
        ids = {m["path"] for g in rescanned["groups"] for m in g["members"]}
        assert not ids & set(dropped)
    if form == "webdataset":
        assert (out / "classes.txt").read_text() == (target / "classes.txt").read_text()
        with tarfile.open(out / "train" / "shard-000000.tar") as tar:
            names = tar.getnames()
        assert names and all(f"train/shard-000000.tar/{n}" not in dropped for n in names)
        assert {n.rsplit(".", 1)[1] for n in names} == {"jpg", "cls"}  # labels travel with their images
    if form == "csv":
        assert out.read_text().splitlines()[0] == "path,label,split"
        assert sum(c["images"] for c in rescanned["classes"]) == len(kept)  # labels and splits came along
        assert [r["name"] for r in rescanned["roots"]] == ["train", "test"]


def test_write_filtered_never_overwrites(forms, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("mine")
    result = runner.invoke(
        app, ["dedup", str(forms["parquet"]), "--no-cache", "--write-filtered", str(tmp_path / "taken")]
    )
    assert result.exit_code == 2 and "never over anything" in result.output
    assert (tmp_path / "taken" / "file").read_text() == "mine"
    result = runner.invoke(app, ["dedup", str(forms["folder"]), "--no-cache", "--write-filtered", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--write-filtered" in result.output


def test_sources_mix_with_folders(forms):
    """A Parquet dataset checked against an evaluation folder (and the reverse): one scan, leakage across them."""
    holdout = forms["folder"] / "test"
    report = to_dict(scan(str(forms["parquet"]), [str(holdout)], use_cache=False, jobs=1))
    assert [r["name"] for r in report["roots"]] == ["train", "test", "test-test"]
    assert [r.get("source", "folder") for r in report["roots"]] == ["parquet", "parquet", "folder"]
    test_images = sum(1 for i in forms["images"] if i.split == "test")
    assert report["summary"]["images"] == len(forms["images"]) + test_images
    # every evaluation image of the folder is a byte copy of the Parquet test split's
    groups = [g for g in report["groups"] if any(m["root"] == "test-test" for m in g["members"])]
    assert sum(1 for g in groups for m in g["members"] if m["root"] == "test-test") == test_images
    reverse = to_dict(scan(str(forms["folder"]), [str(forms["csv"])], use_cache=False, jobs=1))
    assert [r.get("source", "folder") for r in reverse["roots"]] == ["folder", "folder", "manifest", "manifest"]


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_shards_of_every_tar_format_read_the_same(tmp_path, forms, tar_format):
    """The lean header reader handles plain headers; long names (GNU, pax) make tarfile read the shard."""
    images = forms["images"][:4]
    names = ["a.jpg", "folder/b.jpg", "c" * 120 + ".jpg", "d.jpg"]
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w", format=tar_format) as tar:
        for name, image in zip(names, images):
            if len(name) > 100 and tar_format == tarfile.USTAR_FORMAT:
                name = "c.jpg"  # ustar cannot hold the long name
            _add(tar, name, image.data)
            _add(tar, name.replace(".jpg", ".cls"), image.label.encode())
    report = to_dict(scan(str(shard), use_cache=False, jobs=1))
    assert report["summary"]["images"] == 4 and report["skipped"] == []
    assert {c["label"] for c in report["classes"]} == {i.label for i in images}


def test_a_plan_from_a_saved_scan_names_container_items(forms, tmp_path):
    saved = tmp_path / "scan.json"
    assert runner.invoke(app, ["scan", str(forms["parquet"]), "--no-cache", "-q", "--json", str(saved)]).exit_code == 0
    result = runner.invoke(app, ["dedup", "--from-scan", str(saved), "--plan", str(tmp_path / "plan.json"), "-q"])
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / "plan.json").read_text())
    dropped = [f["path"] for g in plan["groups"] for f in g["drop"]]
    assert len(dropped) == 4 and all(p.startswith("data/") and "#" in p for p in dropped)
    # the filtered copy and the lists from the saved scan alone: its roots record the dataset and its kind
    args = ["dedup", "--from-scan", str(saved), "--write-filtered", str(tmp_path / "out")]
    result = runner.invoke(app, [*args, "--drop-list", str(tmp_path / "drop.txt")])
    assert result.exit_code == 0, result.output
    assert sorted((tmp_path / "drop.txt").read_text().split()) == sorted(dropped)
    rescanned = to_dict(scan(str(tmp_path / "out"), use_cache=False, jobs=1))
    assert rescanned["summary"]["groups"] == 0 and rescanned["summary"]["images"] == len(forms["images"]) - 4
