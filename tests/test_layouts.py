"""Discovery understands the usual dataset layouts and recognises files by content."""

from __future__ import annotations

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
