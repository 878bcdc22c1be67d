"""The fingerprint cache: a warm scan decodes nothing, a changed file is re-fingerprinted, results never change."""

from __future__ import annotations

import os

from dupaudit import scan
from dupaudit.formats.json import render
from dupaudit.sample import make_sample


def test_warm_scan_decodes_nothing_and_gives_the_same_report(tmp_path, cache_file):
    make_sample(tmp_path / "data")
    cold = scan(tmp_path / "data", cache_path=cache_file)
    warm = scan(tmp_path / "data", cache_path=cache_file)
    assert cold.decoded == cold.summary.images and cold.cache_hits == 0
    assert warm.decoded == 0 and warm.cache_hits == cold.summary.images
    uncached = scan(tmp_path / "data", use_cache=False)
    assert render(cold) == render(warm) == render(uncached)


def test_changed_file_is_fingerprinted_again(tmp_path, cache_file):
    plan = make_sample(tmp_path / "data")
    scan(plan.root, cache_path=cache_file)
    target = plan.root / "train" / "stripes" / "0005.jpg"
    # Replace the picture by an exact copy of another one: the scan must see the new content.
    target.write_bytes((plan.root / "train" / "checker" / "0005.jpg").read_bytes())
    os.utime(target, ns=(1, 1))
    report = scan(plan.root, cache_path=cache_file)
    assert report.decoded == 1
    assert any(
        {("train", "stripes/0005.jpg"), ("train", "checker/0005.jpg")} <= {(m.root, m.path) for m in g.members}
        for g in report.groups
    )


def test_no_cache_writes_no_file(tmp_path, cache_file):
    make_sample(tmp_path / "data")
    scan(tmp_path / "data", use_cache=False)
    assert not cache_file.exists()


def test_bad_files_are_cached_with_their_reason(tmp_path, cache_file):
    root = tmp_path / "flat"
    make_sample(tmp_path / "data")
    root.mkdir()
    (root / "good.jpg").write_bytes((tmp_path / "data" / "train" / "circle" / "0001.jpg").read_bytes())
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    first = scan(root, cache_path=cache_file)
    second = scan(root, cache_path=cache_file)
    assert [s.path for s in first.skipped] == [s.path for s in second.skipped] == ["broken.jpg"]
    assert second.decoded == 0
