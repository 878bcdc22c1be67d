"""Discovery understands the usual dataset layouts and recognises files by content."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dupaudit import InputError, scan
from dupaudit.engine.discover import discover, resolve_roots
from dupaudit.sample import procedural_image


def _img(path: Path, seed: int, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    procedural_image(seed, size=48).save(path, fmt)


def test_labelled_single_split(tmp_path):
    _img(tmp_path / "cat" / "a.jpg", 1)
    _img(tmp_path / "dog" / "nested" / "b.jpg", 2)
    (roots,) = resolve_roots(tmp_path)
    assert roots.labelled and roots.name == tmp_path.name
    records, _ = discover((roots,))
    assert [(r.path, r.label) for r in records] == [("cat/a.jpg", "cat"), ("dog/nested/b.jpg", "dog")]


def test_dataset_with_splits_orders_train_first(tmp_path):
    for split in ("test", "valid", "train"):
        _img(tmp_path / split / "cat" / "a.jpg", hash(split) % 1000)
    roots = resolve_roots(tmp_path)
    assert [r.name for r in roots] == ["train", "valid", "test"]
    assert all(r.labelled for r in roots)


def test_flat_folder_is_unlabelled(tmp_path):
    _img(tmp_path / "a.jpg", 1)
    _img(tmp_path / "sub" / "b.png", 2, "PNG")
    (root,) = resolve_roots(tmp_path)
    assert not root.labelled
    records, _ = discover((root,))
    assert [(r.path, r.label) for r in records] == [("a.jpg", None), ("sub/b.png", None)]


def test_against_adds_evaluation_roots_and_leakage(tmp_path, cache_file):
    _img(tmp_path / "data" / "cat" / "a.jpg", 1)
    _img(tmp_path / "data" / "cat" / "b.jpg", 2)
    (tmp_path / "holdout" / "cat").mkdir(parents=True)
    (tmp_path / "holdout" / "cat" / "a_copy.jpg").write_bytes((tmp_path / "data" / "cat" / "a.jpg").read_bytes())
    report = scan(tmp_path / "data", [tmp_path / "holdout"], cache_path=cache_file)
    assert [r.name for r in report.roots] == ["data", "holdout"]
    assert report.train_split == "data"
    assert report.summary.leaked == 1
    holdout = next(s for s in report.splits if s.split == "holdout")
    assert holdout.role == "eval" and holdout.leaked_fraction == 1.0


def test_content_not_extension(tmp_path, cache_file):
    _img(tmp_path / "real.jpg", 1)
    _img(tmp_path / "lies.svg", 2)  # a JPEG named .svg
    _img(tmp_path / "noext", 3, "PNG")  # a PNG without extension
    (tmp_path / "text.jpg").write_text("hello, I am not an image")
    (tmp_path / "notes.txt").write_text("ignored: neither named nor shaped like an image")
    report = scan(tmp_path, cache_path=cache_file)
    assert report.summary.images == 3
    assert [(s.path, s.reason) for s in report.skipped] == [("text.jpg", "not an image (content not recognised)")]


def test_missing_or_empty_root_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        scan(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        scan(tmp_path / "empty", use_cache=False)


# ------------------------------------------------------------------ real repositories (issue 20), one per case


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())


def _labelled(root: Path, classes=("cat", "dog", "ship", "truck"), per_class: int = 2, seed: int = 0) -> Path:
    for c, label in enumerate(classes):
        for i in range(per_class):
            _img(root / label / f"{i:04d}.jpg", seed + 10 * c + i)
    return root


def _classes(report) -> dict[tuple[str, str | None], int]:
    return {(c.split, c.label): c.images for c in report.classes}


def test_readme_license_and_a_loose_image_keep_the_labels(tmp_path, cache_file):
    data = _labelled(tmp_path / "data")
    for name in ("README.md", "LICENSE", "labels.csv", "Thumbs.db"):
        (data / name).write_text("not an image\n")
    _copy(data / "ship" / "0000.jpg", data / "truck" / "from_ship.jpg")  # a real label conflict
    _img(data / "loose.jpg", 99)
    report = scan(data, cache_path=cache_file)
    assert report.layout.kind == "labelled"
    assert _classes(report) == {
        ("data", "cat"): 2,
        ("data", "dog"): 2,
        ("data", "ship"): 2,
        ("data", "truck"): 3,
        ("data", None): 1,  # the loose image: scanned, in its own pseudo-class
    }
    assert report.summary.label_conflicts == 1
    assert report.warnings == (
        "data: 1 image beside the class folders scanned as unlabelled (its own class, '(unlabelled)'): move them "
        "into a class folder to label them",
    )


def test_readme_and_a_loose_image_inside_a_split(tmp_path, cache_file):
    data = tmp_path / "data"
    _labelled(data / "train")
    _labelled(data / "test", seed=50, per_class=1)
    (data / "README.md").write_text("# my data\n")
    (data / "train" / "README.md").write_text("# the training split\n")
    _img(data / "train" / "stray.png", 98, "PNG")
    _copy(data / "test" / "cat" / "0000.jpg", data / "train" / "cat" / "leaked.jpg")
    report = scan(data, cache_path=cache_file)
    assert report.layout.kind == "splits"
    assert [(r.name, r.labelled) for r in report.roots] == [("train", True), ("test", True)]
    assert _classes(report)[("train", "cat")] == 3 and _classes(report)[("train", None)] == 1
    assert report.summary.leaked == 1 and report.summary.label_conflicts == 0
    assert len(report.warnings) == 1 and report.warnings[0].startswith("train: 1 image beside the class folders")


def test_stl10_layout_scans_the_unlabelled_pool_and_names_what_it_skips(tmp_path, cache_file):
    data = tmp_path / "stl"
    _labelled(data / "train")
    _labelled(data / "test", seed=50, per_class=1)
    for i in range(11):
        _img(data / "unlabeled" / f"{i:05d}.png", 200 + i, "PNG")
    _copy(data / "train" / "dog" / "0001.jpg", data / "unlabeled" / "dup_of_train.jpg")  # no leak: a pool
    _copy(data / "test" / "ship" / "0000.jpg", data / "unlabeled" / "dup_of_test.jpg")
    _img(data / "stray_a.jpg", 300)
    _img(data / "stray_b.jpg", 301)
    _img(data / "docs" / "figure.png", 302, "PNG")
    (data / "README.txt").write_text("STL-10\n")
    report = scan(data, cache_path=cache_file)
    assert [(r.name, r.role, r.labelled) for r in report.roots] == [
        ("train", "train", True),
        ("test", "eval", True),
        ("unlabeled", "unlabelled", False),
    ]
    assert _classes(report)[("unlabeled", None)] == 13
    roles = {s.split: s.role for s in report.splits}
    assert roles == {"train": "train", "test": "eval", "unlabeled": "unlabelled"}
    assert report.summary.leaked == 0  # nothing of test is in train
    leaks = [sorted(g.splits) for g in report.groups if g.is_leak]
    assert leaks == [["test", "unlabeled"]]  # the pool copy of a test image; train<->pool is a duplicate only
    assert any(g.splits == ("train", "unlabeled") and not g.is_leak for g in report.groups)
    from dupaudit.formats import json as json_format

    saved = json_format.loads(json_format.render(report))  # a saved report keeps the roles and the leak flags
    assert [g.is_leak for g in saved.groups] == [g.is_leak for g in report.groups]
    assert saved.warnings == report.warnings and saved.layout == report.layout
    joined = "\n".join(report.warnings)
    assert "docs/: 1 image not scanned: the folder is not a split" in joined
    assert "2 loose images beside the split folders not scanned" in joined


def test_training_and_testing_are_splits(tmp_path, cache_file):
    data = tmp_path / "data"
    _labelled(data / "training")
    _labelled(data / "testing", seed=50, per_class=1)
    _copy(data / "testing" / "cat" / "0000.jpg", data / "training" / "cat" / "from_test.jpg")  # a leak
    _copy(data / "training" / "ship" / "0000.jpg", data / "training" / "truck" / "ship.jpg")  # a conflict
    report = scan(data, cache_path=cache_file)
    assert [(r.name, r.role) for r in report.roots] == [("training", "train"), ("testing", "eval")]
    assert report.train_split == "training"
    assert report.summary.leaked == 1
    conflicts = [g.labels for g in report.label_conflict_groups]
    assert conflicts == [("ship", "truck")]


@pytest.mark.parametrize(
    "options",
    [{"label_depth": 2}, {"label_from": "{_}/{label}/*"}],
    ids=["label-depth", "label-from"],
)
def test_nested_labels(tmp_path, cache_file, options):
    data = tmp_path / "zoo"
    for group, labels in (("animals", ("cat", "dog")), ("vehicles", ("ship", "truck"))):
        for c, label in enumerate(labels):
            for i in range(2):
                _img(data / group / label / f"{i}.jpg", 400 + 10 * c + i + (100 if group == "vehicles" else 0))
    _copy(data / "animals" / "cat" / "0.jpg", data / "animals" / "dog" / "cat_filed_as_dog.jpg")
    assert scan(data, cache_path=cache_file).summary.label_conflicts == 0  # first level: animals/vehicles
    report = scan(data, cache_path=cache_file, **options)
    assert {c.label for c in report.classes} == {"cat", "dog", "ship", "truck"}
    assert [g.labels for g in report.label_conflict_groups] == [("cat", "dog")]


def test_label_pattern_with_splits(tmp_path, cache_file):
    data = tmp_path / "data"
    for split, seed in (("train", 0), ("test", 50)):
        for c, label in enumerate(("cat", "dog")):
            _img(data / split / "images" / label / "0.jpg", seed + c)
    report = scan(data, cache_path=cache_file, label_from="{split}/{_}/{label}/*")
    assert set(_classes(report)) == {("train", "cat"), ("train", "dog"), ("test", "cat"), ("test", "dog")}
    with pytest.raises(InputError, match="label"):
        scan(data, cache_path=cache_file, label_from="{split}/images/*")


def test_label_patterns_name_one_folder_level():
    import re

    from dupaudit.engine.layout import label_pattern

    def label(pattern: str, prefix: str) -> str | None:
        found = re.match(label_pattern(label_from=pattern)[1], prefix)
        return found.group("label") if found else None

    assert label("{label}/*", "cat/nested/") == "cat"
    assert label("{_}/{label}/*", "animals/cat/") == "cat" and label("{_}/{label}/*", "animals/") is None
    assert label("**/{label}/*", "a/b/cat/") == "cat"
    assert label("photos_*/{label}/*", "photos_2024/cat/") == "cat" and label("photos_*/{label}/*", "x/cat/") is None
    assert label_pattern(label_from="{split}/{label}/*")[0] and not label_pattern(label_depth=2)[0]
    for bad in ("{label}", "{_}/*", "{label}/{label}/*", "{oops}/{label}/*"):
        with pytest.raises(InputError):
            label_pattern(label_from=bad)
    with pytest.raises(InputError):
        label_pattern(label_depth=2, label_from="{label}/*")


def test_overlapping_roots_are_scanned_once(tmp_path, cache_file):
    data = tmp_path / "sp"
    _labelled(data / "train")
    _labelled(data / "test", seed=50, per_class=1)
    alone = scan(data, cache_path=cache_file)
    twice = scan(data, [data / "test"], cache_path=cache_file)
    assert twice.summary.images == alone.summary.images == 12
    assert twice.summary.groups == alone.summary.groups == 0
    assert any("is the same folder as test" in w for w in twice.warnings)

    kinds = _labelled(tmp_path / "kinds", per_class=3)
    report = scan(kinds, [kinds], cache_path=cache_file)
    assert report.summary.images == 12 and report.summary.leaked == 0 and len(report.roots) == 1

    # a folder inside the dataset given as an evaluation folder: left out of the dataset, scanned as itself
    holdout = _labelled(tmp_path / "outer" / "kept_aside", classes=("cat",), per_class=2, seed=700)
    _labelled(tmp_path / "outer", per_class=2)
    report = scan(tmp_path / "outer", [holdout], cache_path=cache_file)
    assert report.summary.images == 10
    assert {c.label for c in report.classes if c.split == "outer"} == {"cat", "dog", "ship", "truck"}
    assert any("is inside" in w for w in report.warnings)


def test_symlink_loop_is_reported(tmp_path, cache_file):
    data = _labelled(tmp_path / "data")
    os.symlink("..", data / "cat" / "loop")
    report = scan(data, cache_path=cache_file)
    assert report.summary.images == 8
    assert report.warnings == ("data/cat/loop: not followed: a symlink loop (it leads back to a folder above it)",)


def test_named_splits(tmp_path, cache_file):
    data = tmp_path / "data"
    _labelled(data / "tr")
    _labelled(data / "te", seed=50, per_class=1)
    _img(data / "other" / "x" / "a.jpg", 900)
    report = scan(data, cache_path=cache_file, splits={"train": "tr", "test": "te"})
    assert [(r.name, r.role) for r in report.roots] == [("train", "train"), ("test", "eval")]
    assert report.layout.kind == "named splits"
    assert any("1 image under" in w and "not scanned" in w for w in report.warnings)
    with pytest.raises(InputError, match="NAME=FOLDER"):
        scan(data, cache_path=cache_file, splits=["train"])


def test_layout_and_warnings_reach_the_json_and_the_terminal(tmp_path):
    from typer.testing import CliRunner

    from dupaudit.cli import app

    data = _labelled(tmp_path / "data")
    (data / "README.md").write_text("hello\n")
    _img(data / "loose.jpg", 99)
    result = CliRunner().invoke(app, ["scan", str(data), "--no-cache", "-f", "json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["layout"]["kind"] == "labelled"
    assert "4 class folders hold images" in report["layout"]["reason"]
    assert len(report["warnings"]) == 1 and "1 image beside the class folders" in report["warnings"][0]
    assert "warning: data: 1 image beside the class folders" in result.stderr


def test_layout_options_from_the_config_file(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dupaudit.cli import app

    data = tmp_path / "repo"
    _labelled(data / "tr")
    _labelled(data / "te", seed=50, per_class=1)
    _copy(data / "te" / "cat" / "0000.jpg", data / "tr" / "cat" / "leaked.jpg")
    (data / "pyproject.toml").write_text(
        f'[tool.dupaudit]\ncache = "{(tmp_path / "c.sqlite").as_posix()}"\njobs = 1\n'
        '[tool.dupaudit.splits]\ntrain = "tr"\ntest = "te"\n'
    )
    monkeypatch.chdir(data)
    for name in list(os.environ):
        if name.startswith("DUPAUDIT_"):
            monkeypatch.delenv(name)
    result = CliRunner().invoke(app, ["scan", "-f", "json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["name"] for r in report["roots"]] == ["train", "test"]
    assert report["summary"]["leaked"] == 1
    check = CliRunner().invoke(app, ["check", "--format", "github"])
    assert check.exit_code == 1
    assert check.stdout.startswith("::error file=tr/cat/leaked.jpg,")  # the config's splits, in check too
    flag = CliRunner().invoke(app, ["scan", "--label-depth", "0", "-q"])
    assert flag.exit_code == 2
