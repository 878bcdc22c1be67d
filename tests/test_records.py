"""discover.RecordTable: a listing's records as columns, made into ImageRecords only when asked for, in the order
and with the labels of the records a full walk gives."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dupaudit.engine.analysis import analyse
from dupaudit.engine.discover import record_table
from dupaudit.engine.layout import detect_layout
from dupaudit.engine.listing import list_files
from dupaudit.engine.model import DuplicateGroup
from dupaudit.engine.pipeline import scan
from dupaudit.sample import make_sample


def _table(root):
    roots = detect_layout(root, []).roots
    return roots, record_table(list_files(roots))


def test_records_sorted_by_root_then_path_across_folders(tmp_path):
    root = tmp_path / "data"
    # "b-c/" sorts before "b/" as a path ("-" < "/"), though the folder "b" is listed first by name
    for folder, name in [("train/b", "z.jpg"), ("train/b-c", "a.jpg"), ("train/b", "a.png"), ("test/b", "q.jpg")]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (len(name), 0, 0)).save(root / folder / name)
    (root / "train" / "b" / "notes.txt").write_text("not an image")
    roots, table = _table(root)
    records = list(table)
    assert [(r.root, r.path, r.label) for r in records] == [
        ("train", "b-c/a.jpg", "b-c"),
        ("train", "b/a.png", "b"),
        ("train", "b/z.jpg", "b"),
        ("test", "b/q.jpg", "b"),
    ]
    assert [r.name for r in roots] == ["train", "test"]
    for i, record in enumerate(records):  # one item at a time, as the whole
        assert table[i] == record
        assert record.abspath == str(root / record.root / record.path)
        assert (record.size, record.mtime_ns) == (table.sizes[i], table.mtimes[i])


def test_take_rows_of_and_classes_agree_with_the_records(tmp_path):
    _, table = _table(make_sample(tmp_path / "data", per_class=6).root)
    records = list(table)
    rows = np.array([0, 3, 4, len(records) - 1])
    assert list(table.take(rows)) == [records[i] for i in rows.tolist()]
    wanted = [(records[i].root, records[i].path) for i in (5, 0, len(records) - 1)] + [("train", "absent.jpg")]
    assert table.rows_of(wanted).tolist() == [5, 0, len(records) - 1, -1]
    codes, keys = table.classes()
    assert [keys[c] for c in codes.tolist()] == [(r.root, r.label) for r in records]


def test_class_statistics_from_the_columns_equal_those_from_records(tmp_path):
    root = make_sample(tmp_path / "data", per_class=8).root
    report = scan(root, use_cache=False)
    roots, table = _table(root)
    groups: list[DuplicateGroup] = list(report.groups)
    assert groups
    from_columns = analyse(roots, "train", table, groups, 0)
    from_records = analyse(roots, "train", list(table), groups, 0)
    assert from_columns == from_records
    assert from_columns[1] == report.classes  # and the scan's own
