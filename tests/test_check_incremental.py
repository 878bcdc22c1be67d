"""`dupaudit check FILES` through the incremental index gives the findings of a full check, over a sequence of
commits that add, modify, rename and delete images against a baseline."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from dupaudit.check.runner import run_check, write_baseline
from dupaudit.config import load_config
from dupaudit.sample import make_sample, procedural_image


@pytest.fixture
def repo(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    make_sample(root / "data", per_class=20)
    (root / "pyproject.toml").write_text(
        f'[tool.dupaudit]\nroot = "data"\ncache = "{(tmp_path / "cache.sqlite").as_posix()}"\njobs = 1\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(root)
    for name in list(os.environ):
        if name.startswith("DUPAUDIT_"):
            monkeypatch.delenv(name)
    return root


def _findings(result) -> list[str]:
    return sorted([f.message for f in result.failing] + [f"note {f.message}" for f in result.tolerated])


def _both(files: list[str], full_searches: list) -> list[str]:
    """The incremental check (cached: updates the index) and a full check without the cache agree."""
    config = load_config(environ={})
    before = len(full_searches)
    incremental = run_check(config, files, update_baseline=False)
    assert len(full_searches) == before, "the incremental check searched the whole dataset"
    full = run_check(config, files, use_cache=False, update_baseline=False)
    assert _findings(incremental) == _findings(full)
    assert incremental.exit_code == full.exit_code
    return _findings(incremental)


def test_incremental_and_full_checks_agree_over_a_sequence_of_commits(repo, full_searches):
    config = load_config(environ={})
    write_baseline(config)  # accepts the planted groups
    assert run_check(config).exit_code == 0
    train = repo / "data" / "train"

    # A near copy joins an accepted group; a new distinct picture; a copy across classes (a label conflict).
    circle = Image.open(train / "circle" / "0000.jpg").convert("RGB")
    ImageEnhance.Brightness(circle).enhance(1.05).save(train / "circle" / "joins.jpg", quality=85)
    procedural_image(777_001).save(train / "blobs" / "fresh.jpg", quality=90)
    Image.open(train / "stripes" / "0005.jpg").convert("RGB").save(train / "checker" / "conflict.jpg", quality=70)
    files = ["data/train/circle/joins.jpg", "data/train/blobs/fresh.jpg", "data/train/checker/conflict.jpg"]
    found = _both(files, full_searches)
    assert any("joins.jpg" in line for line in found) and any("conflict.jpg" in line for line in found)
    assert not any("fresh.jpg" in line for line in found)

    # The conflicting copy is modified into another picture: it stops being a duplicate.
    procedural_image(777_002).save(train / "checker" / "conflict.jpg", quality=90)
    found = _both(["data/train/checker/conflict.jpg"], full_searches)
    assert found == []

    # Renamed: the near copy moves to another class (a label conflict with the accepted group now).
    (train / "circle" / "joins.jpg").rename(train / "stripes" / "joins.jpg")
    found = _both(["data/train/stripes/joins.jpg"], full_searches)
    assert any("stripes/joins.jpg" in line and "label conflict" in line for line in found)

    # Deleted: an accepted original and the renamed copy, with an unrelated new file in the commit.
    (train / "circle" / "0000.jpg").unlink()
    (train / "stripes" / "joins.jpg").unlink()
    procedural_image(777_003).save(train / "blobs" / "fresh2.jpg", quality=90)
    assert _both(["data/train/blobs/fresh2.jpg"], full_searches) == []

    # A test image copied into train: leakage.
    (train / "blobs" / "leak.jpg").write_bytes((repo / "data" / "test" / "stripes" / "0001.jpg").read_bytes())
    found = _both(["data/train/blobs/leak.jpg"], full_searches)
    assert any("leak.jpg" in line and "leakage" in line for line in found)


def test_verify_content_sees_an_edit_that_kept_size_and_mtime(repo, full_searches):
    config = load_config(environ={})
    write_baseline(config)
    train = repo / "data" / "train"
    target = train / "checker" / "sneaky.jpg"
    procedural_image(777_001).save(target, quality=90)
    assert not _both(["data/train/checker/sneaky.jpg"], full_searches)  # a new distinct picture: no finding

    # Same size and mtime, other bytes: a copy of a stripes image padded to the old size (JPEG ignores the tail).
    stat = target.stat()
    copy = (train / "stripes" / "0007.jpg").read_bytes()
    assert len(copy) <= stat.st_size
    target.write_bytes(copy + b"\0" * (stat.st_size - len(copy)))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    files = ["data/train/checker/sneaky.jpg"]
    trusting = run_check(config, files, update_baseline=False)
    assert not trusting.failing  # the default trusts (path, size, mtime): the edit is not seen
    before = len(full_searches)
    verified = run_check(config, files, update_baseline=False, verify_content=True)
    assert len(full_searches) == before, "the verified check searched the whole dataset"
    full = run_check(config, files, use_cache=False, update_baseline=False)
    assert _findings(verified) == _findings(full) and full.failing


def test_a_small_commit_does_not_rewrite_the_stored_state(repo, full_searches, monkeypatch):
    from dupaudit.engine.cache import FingerprintCache

    config = load_config(environ={})
    write_baseline(config)  # a full search: its state is stored
    writes = []
    original = FingerprintCache.store_arrays

    def counting(self, key, arrays):
        if "desc" in arrays:  # a search state (a listing snapshot is kept the same way: that one is written)
            writes.append(len(arrays))
        return original(self, key, arrays)

    monkeypatch.setattr(FingerprintCache, "store_arrays", counting)
    train = repo / "data" / "train"
    for step in range(3):  # three commits, each updated from the one stored state
        procedural_image(880_000 + step).save(train / "blobs" / f"step{step}.jpg", quality=90)
        Image.open(train / "stripes" / f"000{step}.jpg").convert("RGB").save(
            train / "checker" / f"copy{step}.jpg", quality=75
        )
        _both([f"data/train/blobs/step{step}.jpg", f"data/train/checker/copy{step}.jpg"], full_searches)
    assert writes == []


def test_a_check_of_passed_files_lists_only_the_folders_that_changed(repo, full_searches, monkeypatch):
    """The folders whose mtime did not move since the last listing are taken from its snapshot; a file added
    beside the commit (not passed) is still seen through its folder's mtime, with a full check's findings."""
    from dupaudit.engine import listing

    config = load_config(environ={})
    write_baseline(config)
    data, train = repo / "data", repo / "data" / "train"
    past = time.time_ns() - 3600 * 10**9
    for folder, _, _ in os.walk(data):
        os.utime(folder, ns=(past, past))  # a snapshot trusts no folder changed seconds before it
    assert run_check(config).exit_code == 0  # the whole dataset: its listing is the next check's snapshot
    listed: list[str] = []
    stat_folder = listing._stat_folder

    def recorded(path, names, first, failed):
        listed.append(Path(path).relative_to(data).as_posix())
        return stat_folder(path, names, first, failed)

    monkeypatch.setattr(listing, "_stat_folder", recorded)
    procedural_image(990_001).save(train / "blobs" / "new.jpg", quality=90)
    Image.open(train / "stripes" / "0003.jpg").convert("RGB").save(train / "checker" / "copy.jpg", quality=75)
    (train / "circle" / "unpassed.jpg").write_bytes((train / "blobs" / "new.jpg").read_bytes())  # not staged
    files = ["data/train/blobs/new.jpg", "data/train/checker/copy.jpg"]
    incremental = run_check(config, files, update_baseline=False)
    assert sorted(set(listed)) == ["train/blobs", "train/checker", "train/circle"]
    full = run_check(config, files, use_cache=False, update_baseline=False)
    assert _findings(incremental) == _findings(full)
    assert any("new.jpg" in line and "unpassed.jpg" in line for line in _findings(incremental))


def test_a_file_written_anew_beside_the_commit_is_confirmed_and_seen(repo, full_searches, monkeypatch):
    """A folder whose mtime moved keeps its other files' stats on trust until a stat confirms them: a file
    there written anew (git checkout of another version; not passed) fails the confirmation, and the check
    lists again, with a full check's findings."""
    from dupaudit.engine import listing

    config = load_config(environ={})
    write_baseline(config)
    data, train = repo / "data", repo / "data" / "train"
    past = time.time_ns() - 3600 * 10**9
    for folder, _, _ in os.walk(data):
        os.utime(folder, ns=(past, past))
    assert run_check(config).exit_code == 0  # the snapshot
    moved: list[str] = []
    confirm = listing.Confirmation.confirm

    def recorded(self):
        moved.extend(self.moved())
        return confirm(self)

    monkeypatch.setattr(listing.Confirmation, "confirm", recorded)
    procedural_image(990_002).save(train / "blobs" / "new.jpg", quality=90)
    replaced = train / "circle" / "0001.jpg"
    replaced.unlink()
    replaced.write_bytes((train / "blobs" / "new.jpg").read_bytes())  # not passed
    files = ["data/train/blobs/new.jpg"]
    incremental = run_check(config, files, update_baseline=False)
    assert str(replaced) in moved  # taken on trust, not confirmed: listed again
    full = run_check(config, files, use_cache=False, update_baseline=False)
    assert _findings(incremental) == _findings(full)
    assert any("new.jpg" in line and "circle/0001.jpg" in line for line in _findings(incremental))


def test_the_hooks_accepted_count_is_the_whole_dataset_subtracts(repo):
    """A check of files counts the accepted groups without making every group's findings: the same count."""
    from dupaudit.check import baseline as baseline_file

    config = load_config(environ={})
    accepted, _ = write_baseline(config)
    train = repo / "data" / "train"
    Image.open(train / "stripes" / "0005.jpg").convert("RGB").save(train / "checker" / "conflict.jpg", quality=70)
    (train / "blobs" / "again.jpg").write_bytes((train / "circle" / "0000.jpg").read_bytes())  # joins a group
    result = run_check(config, ["data/train/checker/conflict.jpg"], update_baseline=False)
    report = result.report
    assert report is not None
    reported = {f.group_id for f in baseline_file.subtract(report, accepted)}
    expected = sum(1 for g in report.groups if g.id not in reported)
    assert result.accepted == baseline_file.accepted_groups(report, accepted) == expected
    assert 0 < expected < len(report.groups)


def test_a_warm_check_of_an_unchanged_tree_writes_no_snapshot(repo, monkeypatch):
    from dupaudit.engine.cache import FingerprintCache

    config = load_config(environ={})
    write_baseline(config)
    assert run_check(config).exit_code == 0
    writes = []
    original = FingerprintCache.store_arrays

    def counting(self, key, arrays):
        writes.append(sorted(arrays))
        return original(self, key, arrays)

    monkeypatch.setattr(FingerprintCache, "store_arrays", counting)
    assert run_check(config).exit_code == 0
    assert writes == []  # the same listing as the snapshot kept: not written again
    procedural_image(990_003).save(repo / "data" / "train" / "blobs" / "another.jpg", quality=90)
    run_check(config, ["data/train/blobs/another.jpg"], update_baseline=False)
    assert any("snapshot_version" in names for names in writes)  # a changed listing is


def test_a_check_of_passed_files_reads_its_index_state_ahead(repo, monkeypatch):
    """Before the listing, a pre-commit check asks the kernel to read ahead the stored state it will update
    (FingerprintCache.prefetch_arrays): the key is the state's, and the arrays an update reads whole are there."""
    from dupaudit.engine import incremental
    from dupaudit.engine.cache import FingerprintCache

    config = load_config(environ={})
    write_baseline(config)  # a full search: its state is stored
    asked: list[tuple[bytes, tuple[str, ...]]] = []
    original = FingerprintCache.prefetch_arrays

    def recorded(self, key, names):
        asked.append((key, tuple(names)))
        return original(self, key, names)

    monkeypatch.setattr(FingerprintCache, "prefetch_arrays", recorded)
    train = repo / "data" / "train"
    procedural_image(770_001).save(train / "blobs" / "ahead.jpg", quality=90)
    run_check(config, ["data/train/blobs/ahead.jpg"], update_baseline=False)
    assert len(asked) == 1 and asked[0][1] == incremental.READ_WHOLE
    with FingerprintCache(config.cache) as cache:
        loaded = cache.load_arrays(asked[0][0])
    assert loaded is not None and set(incremental.READ_WHOLE) <= set(loaded[0])
