"""The walk behind every scan and warm rescan: what it lists, and the two-process stat gives the same."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dupaudit.engine import listing
from dupaudit.engine.discover import resolve_roots


def _tree(base: Path) -> Path:
    """A few hundred files in nested folders, with the awkward entries a walk must survive."""
    for index in range(300):
        folder = base / f"class{index % 3}" / ("deep/er" if index % 7 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index:04d}.jpg").write_bytes(b"x" * index)
    (base / "class0" / ".hidden.jpg").write_bytes(b"h")
    (base / ".git").mkdir()
    (base / ".git" / "object.jpg").write_bytes(b"g")
    os.symlink("..", base / "class1" / "loop")  # back to the root: walked once only
    os.symlink("nowhere.jpg", base / "class2" / "broken.jpg")
    os.mkfifo(base / "class2" / "pipe.jpg")
    return base


def _reference(base: Path) -> set[tuple[str, int, int]]:
    """Every visible regular file, by os.walk (no symlinks followed: this tree's only link to a folder loops)."""
    found = set()
    for folder, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(folder) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            stat = path.stat()
            found.add((path.relative_to(base).as_posix(), stat.st_size, stat.st_mtime_ns))
    return found


def _flatten(result: listing.Listing) -> set[tuple[str, int, int]]:
    (files,) = result.files
    assert len(files.paths) == len(files.sizes) == len(files.mtimes)
    return set(zip(files.paths, files.sizes, files.mtimes))


@pytest.mark.parametrize("parallel_from", [1, 10**9])  # a forked child stats half / one process stats all
def test_listing_finds_every_visible_file_once(tmp_path, monkeypatch, parallel_from):
    monkeypatch.setattr(listing, "_PARALLEL_FROM", parallel_from)
    base = _tree(tmp_path / "data")
    result = listing.list_files(resolve_roots(base))
    assert _flatten(result) == _reference(base)
    assert len(result) == 300
    assert result.problems == [(base.name, "class2/broken.jpg", "broken or looping symlink")]


def test_a_file_removed_between_listing_and_stat_is_a_problem_in_either_half(tmp_path, monkeypatch):
    base = tmp_path / "data"
    for folder in ("a", "b"):
        (base / folder).mkdir(parents=True)
        for index in range(5):
            (base / folder / f"{index}.jpg").write_bytes(b"x")
    folders = [(str(base / f), sorted(os.listdir(base / f))) for f in ("a", "b")]
    for gone in ("a/2.jpg", "b/3.jpg"):  # one in the parent's half, one in the child's
        (base / gone).unlink()
    for parallel_from in (1, 10**9):
        monkeypatch.setattr(listing, "_PARALLEL_FROM", parallel_from)
        sizes, mtimes, failed = listing._stat_all([listing.Folder(p, "", n) for p, n in folders])
        assert sorted(failed) == [2, 8] and all(r.startswith("cannot stat") for r in failed.values())
        assert len(sizes) == len(mtimes) == 10 and sizes[3] == 1


@pytest.mark.parametrize("parallel_from", [1, 10**9])
def test_list_files_drops_an_unstatable_file_and_reports_it(tmp_path, monkeypatch, parallel_from):
    base = tmp_path / "data"
    (base / "a").mkdir(parents=True)
    for index in range(6):
        (base / "a" / f"{index}.jpg").write_bytes(b"x" * index)
    walk = listing._walk

    def walk_then_remove(*args):
        found = walk(*args)
        (base / "a" / "4.jpg").unlink()  # removed after it was listed, before it is stat-ed
        return found

    monkeypatch.setattr(listing, "_walk", walk_then_remove)
    monkeypatch.setattr(listing, "_PARALLEL_FROM", parallel_from)
    result = listing.list_files(resolve_roots(base))
    assert sorted(_flatten(result)) == sorted(_reference(base))
    assert [(p[1], p[2][:12]) for p in result.problems] == [("a/4.jpg", "cannot stat:")]


def test_an_interrupted_parallel_stat_leaves_no_child_behind(tmp_path, monkeypatch):
    base = tmp_path / "data"
    base.mkdir()
    for index in range(2000):  # the child's half is far more than a pipe holds: it blocks until read
        (base / f"{index:05d}.jpg").write_bytes(b"x")
    folder = listing.Folder(str(base), "", os.listdir(base))
    stat_range = listing._stat_range

    def parent_interrupted(work, offset):
        if offset == 0:  # the parent's half (the child, forked with this patch, has offset > 0)
            raise KeyboardInterrupt
        return stat_range(work, offset)

    children = []
    fork = os.fork

    def recorded_fork():
        pid = fork()
        if pid:
            children.append(pid)
        return pid

    monkeypatch.setattr(listing, "_stat_range", parent_interrupted)
    monkeypatch.setattr(listing, "_PARALLEL_FROM", 1)
    monkeypatch.setattr(os, "fork", recorded_fork)
    # other tests in this process may leave daemon threads behind (Dask's event loop after tests/test_cluster.py),
    # which would make the listing skip its fork; this test is about the fork's interrupt path
    monkeypatch.setattr(listing.threading, "active_count", lambda: 1)
    with pytest.raises(KeyboardInterrupt):
        listing._stat_all([folder])
    assert len(children) == 1
    with pytest.raises(ChildProcessError):  # the child ended and was waited for
        os.waitpid(children[0], os.WNOHANG)


def test_the_two_halves_cut_inside_a_folder_and_lose_nothing():
    work = [("a", ["1", "2", "3"]), ("b", ["4", "5"]), ("c", ["6"])]
    for half in range(7):
        first, second, at = listing._split(work, half)
        names = [n for _, ns in first for n in ns]
        assert len(names) == at == half and names + [n for _, ns in second for n in ns] == list("123456")


def _age(base: Path, seconds: int = 3600) -> None:
    """Date every folder back (a snapshot never trusts a folder changed seconds before it was taken)."""
    past = os.stat(base).st_mtime_ns - seconds * 10**9
    for folder, dirs, _ in os.walk(base):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        os.utime(folder, ns=(past, past))


def _stat_calls(monkeypatch) -> list[str]:
    """The folders whose files are stat-ed, in order."""
    calls: list[str] = []
    stat_folder = listing._stat_folder

    def recorded(path, names, first, failed):
        calls.append(Path(path).name)
        return stat_folder(path, names, first, failed)

    monkeypatch.setattr(listing, "_stat_folder", recorded)
    return calls


def _same(a: listing.Listing, b: listing.Listing) -> bool:
    """Equal as a listing: folders, names, sizes, mtimes and problems, in order."""
    shape = [[(f.path, f.prefix, f.names) for f in files.folders] for files in a.files]
    other = [[(f.path, f.prefix, f.names) for f in files.folders] for files in b.files]
    arrays = [(list(f.sizes), list(f.mtimes)) for f in a.files] == [(list(f.sizes), list(f.mtimes)) for f in b.files]
    return shape == other and arrays and a.problems == b.problems


def test_a_listing_from_a_snapshot_equals_a_fresh_one_and_stats_only_changed_folders(tmp_path, monkeypatch):
    base = _tree(tmp_path / "data")
    _age(base)
    roots = resolve_roots(base)
    taken = listing.load_snapshot(listing.snapshot(listing.list_files(roots)))
    assert taken is not None
    calls = _stat_calls(monkeypatch)
    unchanged = listing.list_files(roots, taken)
    assert calls == [] and unchanged.reused == 300  # nothing changed: no file is stat-ed
    assert _same(unchanged, listing.list_files(roots))

    # added, removed and renamed files, a new folder: the folders they are in change their mtime
    (base / "class0" / "added.jpg").write_bytes(b"new")
    (base / "class1" / "0001.jpg").unlink()
    (base / "class2" / "0002.jpg").rename(base / "class2" / "renamed.jpg")
    (base / "class0" / "deep" / "er" / "more").mkdir()
    (base / "class0" / "deep" / "er" / "more" / "x.jpg").write_bytes(b"x")
    calls.clear()
    replayed = listing.list_files(roots, taken)
    # stat-ed now: the new names (class0, class2) and the new folder; the names the moved folders held before
    # (class0, class1, class2, er: not class0/deep, class1/loop) are confirmed afterwards
    assert sorted(calls) == ["class0", "class2", "more"]
    calls.clear()
    assert replayed.confirmation().moved() == []
    assert sorted(calls) == ["class0", "class1", "class2", "er"]
    assert _same(replayed, listing.list_files(roots))
    trusted = [n for f in replayed.files for d in f.folders if d.known for n in d.names]
    assert replayed.reused == len(trusted) - 2  # the two new names were stat-ed


def test_a_file_replaced_in_a_moved_folder_is_not_confirmed(tmp_path, monkeypatch):
    base = _tree(tmp_path / "data")
    _age(base)
    roots = resolve_roots(base)
    taken = listing.load_snapshot(listing.snapshot(listing.list_files(roots)))
    (base / "class1" / "0004.jpg").unlink()  # git checkout: a changed file written anew (its folder's mtime moves)
    (base / "class1" / "0004.jpg").write_bytes(b"another picture")
    (base / "class1" / "added.jpg").write_bytes(b"new")
    replayed = listing.list_files(roots, taken)
    assert not _same(replayed, listing.list_files(roots))  # 0004.jpg was taken on trust...
    assert replayed.confirmation().moved() == [str(base / "class1" / "0004.jpg")]  # ...and is not confirmed
    again = listing.list_files(roots, taken, trust_moved=False)
    assert again.to_confirm == [] and _same(again, listing.list_files(roots))


def test_a_snapshot_does_not_trust_a_recent_folder_nor_one_asked_for(tmp_path, monkeypatch):
    base = _tree(tmp_path / "data")
    roots = resolve_roots(base)
    fresh = listing.load_snapshot(listing.snapshot(listing.list_files(roots)))
    calls = _stat_calls(monkeypatch)
    recent = listing.list_files(roots, fresh)  # every folder was changed seconds ago: all read again, their
    assert calls == []  # files taken on trust, and every one stat-ed when confirmed
    assert recent.confirmation().moved() == [] and sorted(calls) == ["class0", "class1", "class2", "er", "er", "er"]

    _age(base)
    aged = listing.load_snapshot(listing.snapshot(listing.list_files(roots)))
    target = base / "class1" / "0004.jpg"
    info = target.stat()
    target.write_bytes(b"y" * info.st_size)  # edited in place: the folder's mtime does not move
    folder = os.stat(base / "class1")
    calls.clear()
    trusted = listing.list_files(roots, aged)
    assert calls == []  # the trade-off: an edit in place, in a folder not asked for, is not seen
    asked = listing.list_files(roots, aged, {(folder.st_dev, folder.st_ino): frozenset({"0004.jpg"})})
    assert calls == ["class1"] and _same(asked, listing.list_files(roots))  # only the passed file: stat-ed
    assert not _same(trusted, asked)


def test_a_passed_file_in_a_moved_folder_is_stat_ed_at_once_not_taken_on_trust(tmp_path):
    base = _tree(tmp_path / "data")
    _age(base)
    roots = resolve_roots(base)
    taken = listing.load_snapshot(listing.snapshot(listing.list_files(roots)))
    (base / "class1" / "added.jpg").write_bytes(b"new")  # the folder's mtime moves
    target = base / "class1" / "0004.jpg"
    target.write_bytes(b"y" * (target.stat().st_size + 5))  # edited in place, and passed
    folder = os.stat(base / "class1")
    passed = {(folder.st_dev, folder.st_ino): frozenset({"0004.jpg", "0003.jpg", "absent.jpg", "added.jpg"})}
    replayed = listing.list_files(roots, taken, passed)
    assert _same(replayed, listing.list_files(roots))  # the edit is seen without the confirmation
    confirmed = [name for path, names, _, _ in replayed.to_confirm if path.endswith("class1") for name in names]
    assert confirmed and not {"0004.jpg", "0003.jpg", "added.jpg"} & set(confirmed)
    assert replayed.confirmation().moved() == []


@pytest.mark.parametrize("parallel_from", [1, 10**9])  # the snapshot's files stat-ed in a child, or here
def test_the_stat_started_before_the_walk_confirms_only_the_names_taken_on_trust(tmp_path, monkeypatch, parallel_from):
    """The folders whose mtime moved have their snapshot's files stat-ed from before the walk (Listing.ahead): a
    file replaced under its name is found; a removed file and a passed, edited one (both stat-ed anew, or gone)
    are not reported as moved."""
    monkeypatch.setattr(listing, "_PARALLEL_FROM", parallel_from)
    base = _tree(tmp_path / "data")
    _age(base)
    roots = resolve_roots(base)
    taken = listing.load_snapshot(listing.snapshot(listing.list_files(roots)))
    (base / "class1" / "0001.jpg").unlink()
    (base / "class1" / "0004.jpg").unlink()  # written anew under its name, not passed
    (base / "class1" / "0004.jpg").write_bytes(b"another picture")
    (base / "class2" / "added.jpg").write_bytes(b"new")
    edited = base / "class2" / "0002.jpg"
    edited.write_bytes(b"z" * (edited.stat().st_size + 3))  # edited and passed
    folder = os.stat(base / "class2")
    replayed = listing.list_files(roots, taken, {(folder.st_dev, folder.st_ino): frozenset({"0002.jpg"})})
    assert replayed.ahead is not None and {Path(p).name for p in replayed.ahead_folders} == {"class1", "class2"}
    assert replayed.confirmation().moved() == [str(base / "class1" / "0004.jpg")]


def test_a_folder_that_moves_after_the_early_stat_began_is_confirmed_all_the_same(tmp_path, monkeypatch):
    """A folder whose mtime moves between the stat started before the walk and the walk's reading of it is not
    covered by that stat: its files taken on trust are stat-ed when the confirmation is asked for."""
    base = _tree(tmp_path / "data")
    _age(base)
    roots = resolve_roots(base)
    taken = listing.load_snapshot(listing.snapshot(listing.list_files(roots)))
    (base / "class0" / "added.jpg").write_bytes(b"new")  # class0 moved before the listing began
    moved_since = listing._moved_since

    def then_class1_moves(previous):
        entries = moved_since(previous)
        (base / "class1" / "0004.jpg").unlink()  # ...class1 only after the early stat was started
        (base / "class1" / "0004.jpg").write_bytes(b"another picture")
        return entries

    monkeypatch.setattr(listing, "_moved_since", then_class1_moves)
    replayed = listing.list_files(roots, taken)
    assert {Path(p).name for p in replayed.ahead_folders} == {"class0"}
    assert replayed.confirmation().moved() == [str(base / "class1" / "0004.jpg")]


def test_a_moved_folder_read_by_name_types_its_new_entries_as_a_fresh_walk_does(tmp_path, monkeypatch):
    """A folder whose mtime moved is read by name (_listed_by_name): the names the snapshot held as files are
    taken as files, every other entry is typed by a stat: a new folder is walked, a new broken link is a problem,
    a fifo and a hidden file are left out, a passed name that became a folder is walked; the listing equals a
    fresh one, problems and order included. Past _TYPED_BY_STAT new names, os.scandir reads the folder."""
    base = _tree(tmp_path / "data")
    _age(base)
    roots = resolve_roots(base)
    taken = listing.load_snapshot(listing.snapshot(listing.list_files(roots)))
    (base / "class2" / "new.jpg").write_bytes(b"new")
    (base / "class2" / "sub").mkdir()
    (base / "class2" / "sub" / "inner.jpg").write_bytes(b"in")
    os.symlink("gone.jpg", base / "class2" / "dangling.jpg")
    os.mkfifo(base / "class2" / "pipe2.jpg")
    (base / "class2" / ".secret.jpg").write_bytes(b"s")
    (base / "class1" / "0004.jpg").unlink()
    (base / "class1" / "0004.jpg").mkdir()  # a passed name that is a folder now
    (base / "class1" / "0004.jpg" / "x.jpg").write_bytes(b"x")
    folder = os.stat(base / "class1")
    passed = {(folder.st_dev, folder.st_ino): frozenset({"0004.jpg"})}
    read = listing._listed_by_name
    for typed_by_stat in (1024, 1):
        monkeypatch.setattr(listing, "_TYPED_BY_STAT", typed_by_stat)
        calls: list[str] = []
        monkeypatch.setattr(listing, "_listed_by_name", lambda *a: calls.append(a[0]) or read(*a))
        replayed = listing.list_files(roots, taken, passed)
        assert {Path(p).name for p in calls} == {"class1", "class2"}
        assert _same(replayed, listing.list_files(roots))
        assert ("data", "class2/dangling.jpg", "broken or looping symlink") in replayed.problems
        assert replayed.confirmation().moved() == []
        assert listing.snapshot(replayed).keys() and _flatten(replayed) == _reference(base)


def test_common_runs_match_names_as_a_dict_would():
    import random

    rng = random.Random(5)
    old = [f"{rng.getrandbits(40):010x}.jpg" for _ in range(20_000)]
    for case in range(20):
        new = list(old)
        for _ in range(rng.choice([0, 1, 5, 50, 400])):  # removals, additions, a name written anew elsewhere
            kind = rng.random()
            if kind < 0.4 and new:
                del new[rng.randrange(len(new))]
            elif kind < 0.8:
                new.insert(rng.randrange(len(new) + 1), f"new{case}-{rng.getrandbits(30)}.jpg")
            elif new:
                new.insert(rng.randrange(len(new) + 1), new.pop(rng.randrange(len(new))))
        runs = listing._common_runs(old, new)
        if runs is None:
            continue  # too different: the caller uses a dict
        where = {name: row for row, name in enumerate(old)}
        matched = {i + k: j + k for i, j, width in runs for k in range(width)}
        assert all(new[i] == old[j] for i, j in matched.items())
        assert all(where.get(new[i]) == j for i, j in matched.items())
        assert [i for i, _, _ in runs] == sorted(i for i, _, _ in runs)
        unmatched = [i for i in range(len(new)) if i not in matched and new[i] in where]
        assert len(unmatched) <= 2 * 400  # only names that moved are left to a stat
