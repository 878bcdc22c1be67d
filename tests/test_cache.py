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
    assert report.decoded == 0  # its new bytes are another cached file's: found by content, not decoded
    assert any(
        {("train", "stripes/0005.jpg"), ("train", "checker/0005.jpg")} <= {(m.root, m.path) for m in g.members}
        for g in report.groups
    )


def test_a_file_with_new_content_is_decoded_again(tmp_path, cache_file):
    plan = make_sample(tmp_path / "data")
    scan(plan.root, cache_path=cache_file)
    target = plan.root / "train" / "stripes" / "0005.jpg"
    target.write_bytes(target.read_bytes() + b"\0")  # bytes never seen: nothing to reuse
    report = scan(plan.root, cache_path=cache_file)
    assert report.decoded == 1
    assert render(report) == render(scan(plan.root, use_cache=False))


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


def test_a_fresh_copy_with_the_cache_decodes_nothing_and_gives_the_same_report(tmp_path, cache_file):
    import shutil

    plan = make_sample(tmp_path / "data")
    scan(plan.root, cache_path=cache_file)
    # A fresh checkout: another folder, every file with a new mtime (copy, not copy2).
    copy = tmp_path / "checkout" / "data"
    shutil.copytree(plan.root, copy, copy_function=shutil.copy)
    os.utime(copy / "train" / "circle" / "0001.jpg", ns=(5, 5))
    report = scan(copy, cache_path=cache_file)
    assert report.decoded == 0 and report.cache_hits == report.summary.images
    assert render(report) == render(scan(copy, use_cache=False))
    again = scan(copy, cache_path=cache_file)  # the rows were stored under the new keys: no reading by content
    assert again.decoded == 0


def test_a_renamed_file_is_found_by_its_content(tmp_path, cache_file):
    plan = make_sample(tmp_path / "data")
    scan(plan.root, cache_path=cache_file)
    old = plan.root / "train" / "stripes" / "0003.jpg"
    new = plan.root / "train" / "stripes" / "renamed.jpg"
    old.rename(new)
    report = scan(plan.root, cache_path=cache_file)
    assert report.decoded == 0
    assert render(report) == render(scan(plan.root, use_cache=False))


def _bmp(path, seed):
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="BMP")


def test_verify_content_sees_an_edit_that_kept_size_and_mtime(tmp_path, cache_file):
    root = tmp_path / "flat"
    root.mkdir()
    _bmp(root / "a.bmp", 1)
    _bmp(root / "b.bmp", 2)
    (root / "c.bmp").write_bytes((root / "a.bmp").read_bytes())
    first = scan(root, cache_path=cache_file)
    assert [[m.path for m in g.members] for g in first.groups] == [["a.bmp", "c.bmp"]]
    before = (root / "c.bmp").stat()
    _bmp(root / "c.bmp", 3)  # other pixels, same size (BMP), then the old mtime put back
    os.utime(root / "c.bmp", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (root / "c.bmp").stat().st_size == before.st_size
    stale = scan(root, cache_path=cache_file)  # the default trusts (path, size, mtime): the documented trade-off
    assert stale.decoded == 0 and len(stale.groups) == 1
    checked = scan(root, cache_path=cache_file, verify_content=True)
    assert checked.decoded == 1 and checked.groups == ()
    assert render(checked) == render(scan(root, use_cache=False))


def test_stored_result_types_read_back_equal_and_frozen():
    """The result types pickle as their fields and are rebuilt slot by slot (model._rebuilder): equal, hashed
    alike and still frozen once read back through the cache's unpickler; a pickle made by calling the class (the
    format before) reads back too."""
    import dataclasses
    import io
    import pickle

    import pytest

    from dupaudit.engine.cache import _ResultUnpickler
    from dupaudit.engine.model import DuplicateGroup, GroupMember, Link, Skipped

    link = Link("near", 0, 3, 0.93, "mirror")
    group = DuplicateGroup(
        4,
        "near",
        3,
        (GroupMember("train", "a.jpg", "cat", True), GroupMember("train", "b.jpg", None, False, 32, 32, 900, link)),
        True,
    )
    values = (group, Skipped("test", "c.jpg", "truncated"))
    back = _ResultUnpickler(io.BytesIO(pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL))).load()
    assert back == values and hash(back[0].members[1]) == hash(group.members[1])
    assert type(back[0].members[1].link) is Link
    with pytest.raises(dataclasses.FrozenInstanceError):
        back[0].id = 5  # type: ignore[misc]

    class ByClass(pickle.Pickler):
        def reducer_override(self, obj):  # the format before: the class called with the fields
            if isinstance(obj, (DuplicateGroup, GroupMember, Link)):
                return type(obj), tuple(getattr(obj, f) for f in type(obj).__slots__)
            return NotImplemented

    buffer = io.BytesIO()
    ByClass(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(group)
    assert _ResultUnpickler(io.BytesIO(buffer.getvalue())).load() == group


def test_read_ahead_asks_for_every_window_of_a_file(tmp_path, monkeypatch):
    """Linux reads one readahead window per WILLNEED call, so read_ahead asks for a file window by window: the
    whole file is covered (a 20 MB file: three windows), a missing file is passed over."""
    import os

    from dupaudit.engine import cache

    with open(tmp_path / "big.npy", "wb") as out:
        out.truncate(20 << 20)
    asked: list[tuple[int, int, int]] = []
    monkeypatch.setattr(
        cache.os, "posix_fadvise", lambda fd, start, length, advice: asked.append((start, length, advice))
    )
    cache.read_ahead(tmp_path, ["missing.npy", "big.npy"])
    window = cache._READ_AHEAD_CHUNK
    assert [start for start, _, _ in asked] == list(range(0, 20 << 20, window)) and len(asked) >= 3
    assert all(length == window and advice == os.POSIX_FADV_WILLNEED for _, length, advice in asked)
