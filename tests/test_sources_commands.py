"""Every command reads every source: `check` and `baseline` over tar shards, Parquet and manifests (findings name
items by id; staged shards, item ids and listed files select the items a commit touched), `dedup --keep-list`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import CIFAR, need
from sources_support import as_manifests, as_parquet, as_webdataset, pick_images
from typer.testing import CliRunner

from dupaudit.cli import app
from dupaudit.config import load_config

pytest.importorskip("pyarrow")
runner = CliRunner()


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """The planted copies (exact, near, a label conflict, a train/test leak) in a few CIFAR-10 images, in each form."""
    need(CIFAR)
    base = tmp_path_factory.mktemp("commands")
    images = pick_images(CIFAR, per_class=10, test_per_class=4)
    csv_manifest, _ = as_manifests(images, base / "manifests")
    return {
        "shards": as_webdataset(images, base / "shards", per_shard=32),
        "hf": as_parquet(images, base / "hf")[0],
        "manifests": csv_manifest.parent,
    }


@pytest.fixture
def repo(tmp_path, packed, monkeypatch) -> Path:
    """A data repository holding the three forms, the current folder; the cache in tmp_path, one process."""
    root = tmp_path / "repo"
    for name, folder in packed.items():
        shutil.copytree(folder, root / name)
    (root / ".dupaudit.toml").write_text(f'cache = "{(tmp_path / "c.sqlite").as_posix()}"\njobs = 1\n')
    monkeypatch.chdir(root)
    for name in list(os.environ):
        if name.startswith("DUPAUDIT_"):
            monkeypatch.delenv(name)
    return root


def invoke(*args: str):
    return runner.invoke(app, list(args))


ROOTS = {"shards": "shards", "hf": "hf", "manifest": "manifests/manifest.csv"}


@pytest.mark.parametrize("form", ["shards", "hf", "manifest"])
def test_check_and_baseline_read_every_source(repo, form):
    root = ROOTS[form]
    result = invoke("check", "--root", root, "-q")
    assert result.exit_code == 1, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4  # the exact copy, the near copy, the label conflict, the leak
    marker = {"shards": ".tar/", "hf": ".parquet#", "manifest": "/files/"}[form]
    assert all(marker in line for line in lines), lines  # findings name items by id, under their split
    assert any("leakage" in line for line in lines) and any("label conflict" in line for line in lines)

    accepted = invoke("baseline", "--root", root, "-q")
    assert accepted.exit_code == 0, accepted.output
    again = invoke("check", "--root", root)
    assert again.exit_code == 0, again.output  # the baseline accepts them all, and keeps them (nothing pruned)
    assert "4 groups accepted" in again.stderr and "dropped" not in again.stderr


def test_a_staged_shard_names_its_items(repo):
    test_shard = "shards/test/shard-000000.tar"
    result = invoke("check", "--root", "shards", test_shard, "-q")
    assert result.exit_code == 1, result.output
    # only the leaked copy lives in the test shard; the train shards' findings are not about this commit
    assert result.stdout.strip().splitlines() == [
        "test/test/shard-000000.tar/copy_leak.jpg: exact copy of train/train/shard-000000.tar/train_airplane_0000.jpg "
        "(leakage test/train)"
    ]
    by_id = invoke("check", "--root", "shards", "train/shard-000001.tar/copy_near.jpg", "-q")
    assert by_id.exit_code == 1 and by_id.stdout.startswith("train/train/shard-000001.tar/copy_near.jpg: near")
    assert len(by_id.stdout.strip().splitlines()) == 1
    clean = invoke("check", "--root", "shards", "train/shard-000001.tar/train_cat_0003.jpg")
    assert clean.exit_code == 0 and "1 changed file" in clean.stderr, clean.output  # an item without a finding
    outside = invoke("check", "--root", "shards", ".dupaudit.toml")
    assert outside.exit_code == 0 and "nothing to check" in outside.stderr, outside.output


def test_files_a_manifest_lists_and_the_manifest_itself(repo):
    listed = invoke("check", "--root", "manifests/manifest.csv", "manifests/files/copy_near.jpg", "-q")
    assert listed.exit_code == 1, listed.output
    assert listed.stdout.strip().splitlines() == [
        "train/files/copy_near.jpg: near duplicate of train/files/train_truck_0000.jpg (distance 2, score 1.00)"
    ]
    whole = invoke("check", "--root", "manifests/manifest.csv", "manifests/manifest.csv")
    assert whole.exit_code == 1 and "whole dataset" in whole.stderr, whole.output  # its rows set labels and splits
    assert len(whole.stdout.strip().splitlines()) == 4


def test_parquet_rows_by_id_and_file(repo):
    staged = invoke("check", "--root", "hf", "hf/data/test-00000-of-00001.parquet", "-q")
    assert staged.exit_code == 1, staged.output
    assert [line.split(":")[0] for line in staged.stdout.strip().splitlines()] == [
        "test/data/test-00000-of-00001.parquet#16"
    ]
    row = invoke("check", "--root", "hf", "data/test-00000-of-00001.parquet#16", "-q")
    assert row.stdout == staged.stdout


def test_a_gone_container_is_pruned_from_the_baseline(repo):
    assert invoke("baseline", "--root", "shards", "-q").exit_code == 0
    (repo / "shards" / "test" / "shard-000000.tar").unlink()  # the leaked copy goes with its shard
    result = invoke("check", "--root", "shards")
    assert result.exit_code == 3, result.output  # the baseline was rewritten: stage it
    assert "dropped 1 accepted file" in result.stderr
    assert "copy_leak" not in (repo / ".dupaudit-baseline.json").read_text()


def test_source_options_and_urls_in_the_config(tmp_path):
    (tmp_path / ".dupaudit.toml").write_text(
        'root = "s3://bucket/shards"\nagainst = ["https://example.org/m.csv", "local"]\nsource_type = "webdataset"\n'
        "storage_options = {anon = true, region = 'x'}\n"
    )
    config = load_config(start=tmp_path)
    assert config.root == "s3://bucket/shards"  # a URL is not made a local path
    assert config.against == ("https://example.org/m.csv", str((tmp_path / "local").resolve()))
    options = config.source_options()
    assert options.source_type == "webdataset" and dict(options.storage_options) == {"anon": "true", "region": "x"}
    (tmp_path / ".dupaudit.toml").write_text('source_type = "zip"\n')
    bad = runner.invoke(app, ["check", "--config", str(tmp_path / ".dupaudit.toml")])
    assert bad.exit_code == 2 and "source_type" in bad.output and "Traceback" not in bad.output


def test_dedup_keep_list_is_the_clear_name_of_list(repo, tmp_path):
    kept = invoke("dedup", "shards", "--keep-list", str(tmp_path / "keep.txt"), "--drop-list", str(tmp_path / "d.txt"))
    assert kept.exit_code == 0, kept.output
    old = invoke("dedup", "shards", "--list", str(tmp_path / "list.txt"))
    assert old.exit_code == 0, old.output
    ids = (tmp_path / "keep.txt").read_text().split()
    assert ids == (tmp_path / "list.txt").read_text().split() and len(ids) == 60 - 4
    assert all(".tar/" in i for i in ids) and not set(ids) & set((tmp_path / "d.txt").read_text().split())


@pytest.mark.parametrize(
    ("root", "first", "second", "verdict"),
    [
        (
            "shards",
            "train/shard-000001.tar/copy_near.jpg",
            "shards/train/shard-000000.tar/train_truck_0000.jpg",
            "near",
        ),
        ("hf", "data/test-00000-of-00001.parquet#16", "train/data/train-00000-of-00002.parquet#0", "exact"),
        ("manifests/manifest.csv", "files/copy_near.jpg", "manifests/files/train_cat_0001.jpg", "not a duplicate"),
    ],
)
def test_explain_takes_items_of_a_container(repo, root, first, second, verdict):
    # an item id, a path inside the dataset, an id with its root's name in front: each names one item
    result = invoke("scan", root, "--explain", first, second, "-f", "json")
    assert result.exit_code == 0, result.output
    import json

    explanation = json.loads(result.stdout)
    assert explanation["verdict"] == verdict
    assert explanation["first"] == ("test/" if root == "hf" else "train/") + first  # <split>/<item id>
    unknown = invoke("scan", root, "--explain", "absent.jpg", second)
    assert unknown.exit_code == 2 and "absent.jpg: not an item of the dataset" in unknown.output


@pytest.mark.parametrize("root", ["shards", "hf", "manifests/manifest.csv"])
def test_the_html_report_shows_container_items(repo, root, tmp_path):
    from dupaudit.engine.pipeline import scan
    from dupaudit.formats import html as html_format

    report = scan(root, cache_path=tmp_path / "c.sqlite", jobs=1)
    data = html_format._gallery_data(report, html_format.THUMBNAIL_PX)
    members = [m for g in data["groups"] for m in g[4]]
    assert len(members) == 8 and all(m[7] and m[7].startswith("data:image/") for m in members), members
    # the saved report, rendered later, reads them again through the source layer (detecting the form)
    saved = tmp_path / "scan.json"
    report.to_json(saved)
    result = invoke("report", str(saved), "--html", str(tmp_path / "r.html"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").read_text().count("data:image/jpeg;base64,") == 8
    if root == "shards":  # an item whose shard is gone gets a placeholder with the reason, the page is written
        (repo / "shards" / "train" / "shard-000001.tar").unlink()
        gone = [m for g in html_format._gallery_data(report, 96)["groups"] for m in g[4] if m[7] is None]
        assert gone and all("not found" in m[8] for m in gone)


def test_probe_pixels_of_container_items_are_the_files_pixels(packed, tmp_path):
    """The probe decodes items of shards and Parquet files into the same tensors as the same images' files."""
    from sources_support import stem_of

    from dupaudit.engine.sources import SourceOptions
    from dupaudit.engine.sources.reading import record_bytes
    from dupaudit.probing.data import load_images, load_records

    folder_pixels = {}
    for path in sorted((packed["manifests"] / "files").iterdir()):
        folder_pixels[path.stem] = load_images([str(path)], 24)[0]
    stems = as_parquet(pick_images(CIFAR, per_class=10, test_per_class=4), tmp_path / "hf")[1]
    for root in ("shards", "hf"):
        from dupaudit.engine.pipeline import scan
        from dupaudit.probing.experiment import _records

        report = scan(str(packed[root]), cache_path=tmp_path / "c.sqlite", jobs=1)
        records, fetch = _records(report, str(packed[root]), None, {}, tmp_path / "c.sqlite", True)
        assert len(records) == 60 and fetch is not None
        pixels, decoded = load_records(records, 24, jobs=1, fetch=fetch)
        assert decoded == 60
        for record, image in zip(records, pixels):
            assert (image == folder_pixels[stem_of(record.path, stems)]).all(), record.path
        assert record_bytes(report.roots, records[:1], SourceOptions())[0] == fetch(records[:1])[0]


def test_probe_trains_from_shards(packed, tmp_path):
    pytest.importorskip("torch")
    from dupaudit.probing import ProbeSettings, run_probe

    tiny = ProbeSettings(arms=("as-is", "deduplicated"), seeds=1, epochs=1, size=16, width=8, threads=1)
    shards = run_probe(str(packed["shards"]), settings=tiny, cache_path=tmp_path / "c.sqlite", jobs=1)
    manifest = run_probe(
        str(packed["manifests"] / "manifest.csv"), settings=tiny, cache_path=tmp_path / "c.sqlite", jobs=1
    )
    for report in (shards, manifest):
        assert report.data.classes == ("airplane", "cat", "ship", "truck")
        assert (report.data.train_images, report.data.test_images, report.data.redundant) == (43, 17, 3)
        assert {a.arm for c in report.conditions for a in c.arms} == {"as-is", "deduplicated"}
    again = run_probe(str(packed["shards"]), settings=tiny, cache_path=tmp_path / "c.sqlite", jobs=1)
    assert again.data.decoded_files == 0  # the pixel store keys container items by content


def test_check_a_folder_beside_a_source(repo, tmp_path):
    """--against an evaluation folder for a shard dataset: a staged file of the folder is checked too."""
    folder = repo / "holdout" / "cat"
    folder.mkdir(parents=True)
    copied = repo / "shards" / "extracted.jpg"
    import tarfile

    with tarfile.open(repo / "shards" / "train" / "shard-000000.tar") as shard:
        copied.write_bytes(shard.extractfile("train_cat_0001.jpg").read())  # type: ignore[union-attr]
    (folder / "leaked.jpg").write_bytes(copied.read_bytes())
    copied.unlink()
    result = invoke("check", "--root", "shards", "--against", "holdout", "holdout/cat/leaked.jpg", "-q")
    assert result.exit_code == 1, result.output
    assert result.stdout.strip().splitlines() == [
        "holdout/cat/leaked.jpg: exact copy of train/train/shard-000000.tar/train_cat_0001.jpg (leakage holdout/train)"
    ]
    assert invoke("baseline", "--root", "shards", "--against", "holdout", "-q").exit_code == 0
    again = invoke("check", "--root", "shards", "--against", "holdout")
    assert again.exit_code == 0 and "dropped" not in again.stderr, again.output  # folder members stay accepted


def test_github_annotations_land_on_the_shard_or_listed_file(repo):
    shards = invoke("check", "--root", "shards", "--format", "github", "-q")
    files = {line.split("file=", 1)[1].split(",", 1)[0] for line in shards.stdout.splitlines() if "file=" in line}
    assert files == {"shards/train/shard-000000.tar", "shards/train/shard-000001.tar"}  # the blamed copies' shards
    listed = invoke("check", "--root", "manifests/manifest.csv", "--format", "github", "-q")
    assert all("file=manifests/files/" in line for line in listed.stdout.splitlines() if "file=" in line)


def test_an_image_folder_with_a_stray_parquet_file_is_checked_as_a_folder(repo):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = repo / "images"
    shutil.copytree(repo / "manifests" / "files", folder / "train" / "cat")
    (folder / "meta").mkdir()
    pq.write_table(pa.table({"note": ["x"]}), folder / "meta" / "notes.parquet")
    result = invoke("check", "--root", "images", "images/train/cat/copy_near.jpg", "-q")
    assert result.exit_code == 1, result.output  # the folder check: the file names its own finding
    assert result.stdout.startswith("train/cat/copy_near.jpg: near duplicate of train/cat/train_truck_0000.jpg")


def _holdout_folder(repo: Path) -> Path:
    """An evaluation folder beside the shards: an exact copy of a training image and an unrelated one."""
    files = repo / "manifests" / "files"
    for label, stem in (("airplane", "train_airplane_0000"), ("ship", "test_ship_0001")):
        (repo / "holdout" / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(files / f"{stem}.jpg", repo / "holdout" / label / f"h_{stem}.jpg")
    return repo / "holdout"


def test_explain_over_a_folder_mixed_with_shards(repo):
    """A file of the evaluation folder (by its path) against an item of a shard (by its id): one scan, both read."""
    import json

    _holdout_folder(repo)
    first, second = "holdout/airplane/h_train_airplane_0000.jpg", "train/shard-000000.tar/train_airplane_0000.jpg"
    result = invoke("scan", "shards", "--against", "holdout", "--explain", first, second, "-f", "json")
    assert result.exit_code == 0, result.output
    explanation = json.loads(result.stdout)
    assert explanation["verdict"] == "exact"
    assert (explanation["first"], explanation["second"]) == (
        "holdout/airplane/h_train_airplane_0000.jpg",
        f"train/{second}",
    )
    unrelated = invoke(
        "scan", "shards", "--against", "holdout", "--explain", "holdout/ship/h_test_ship_0001.jpg", second
    )
    assert unrelated.exit_code == 0 and "not a duplicate" in unrelated.output


def test_probe_reads_a_folder_mixed_with_shards(repo, tmp_path):
    """The probe's records of a mixed scan: the folder's are its files, the shards' their members' bytes; the
    pixels are those of the same images' files."""
    from dupaudit.engine.pipeline import scan
    from dupaudit.probing.data import load_images, load_records
    from dupaudit.probing.experiment import _records

    _holdout_folder(repo)
    report = scan("shards", ["holdout"], cache_path=tmp_path / "c.sqlite", jobs=1)
    records, fetch = _records(report, "shards", "holdout", {}, tmp_path / "c.sqlite", True)
    assert fetch is not None and {r.root for r in records} == {"train", "test", "holdout"}
    pixels, _ = load_records(records, 24, jobs=1, fetch=fetch)
    files = repo / "manifests" / "files"
    for record, image in zip(records, pixels):
        stem = record.path.rsplit("/", 1)[-1].split(".")[0].removeprefix("h_")
        assert (image == load_images([str(files / f"{stem}.jpg")], 24)[0]).all(), record.path
