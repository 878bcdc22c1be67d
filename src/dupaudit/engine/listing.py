"""The walk: every visible file under the roots with its size and mtime_ns, as cheaply as the OS allows.

A Listing identifies the state of the folders: a warm rescan compares it with the last scan's
(cache.answer_key) before anything else is done, so this walk is most of a warm scan's time. One stat per
file is the least a rescan can do to notice a changed file, and the stat system call is what costs (even from
C: GNU find takes as long; docs/performance.md). So the folders are listed first, then the
files are stat-ed folder by folder, in name order, relative to an open folder (a one-name path lookup),
and in two processes when there are many.

A pre-commit check of a few files need not stat the others: a listing keeps, per folder, its mtime and what it
held (a snapshot, stored in the cache), and `list_files(roots, previous, passed)` takes a folder whose mtime is
unchanged from the snapshot, stat-ing only the passed files in it. Adding, removing or renaming a file (git
checkout, pull and stash do that too) changes its folder's mtime; only a file edited in place, not passed,
keeps its folder's: the trade-off of `dupaudit check FILES` (docs/check.md). A folder changed within a few
seconds of its listing is never taken from a snapshot (its mtime may not move again within one clock tick).

A folder whose mtime moved is read again (its names: _listed_by_name), and its new and passed files are
stat-ed at once; the names it held before are taken from the snapshot on trust and stat-ed in a forked child
while the scan goes on (`Listing.confirmation`; the child starts before the walk reads those folders): a name
cannot be trusted by its inode (git checkout recreates a changed file under the same inode number on ext4), so
every one is stat-ed, but off the scan's path. The scan confirms before it writes anything or answers, and lists
again without trust when a file differs (ListingMoved).
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import sys
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from operator import attrgetter
from stat import S_ISDIR, S_ISREG
from typing import Any

from .alignment import Run, agreeing_runs
from .model import Root

_NAME = attrgetter("name")
_SIZE = attrgetter("st_size")
_MTIME = attrgetter("st_mtime_ns")
_PARALLEL_FROM = 20_000  # files: below this a second process costs more than it saves
_RACY_NS = 2_000_000_000  # a folder modified this close to its listing is not taken from a snapshot later
_SNAPSHOT_VERSION = 2  # 2: each folder's names sorted


@dataclass(slots=True)
class Folder:
    """One folder's visible regular files, sorted by name (so a listing's records need no sort of their own,
    discover.record_table, and two readings of a folder align, _common_runs)."""

    path: str  # absolute (through symlinks as walked)
    prefix: str  # its path relative to the root, "" or ending in "/"
    names: list[str]
    known: tuple[array, array] | None = None  # sizes and mtimes from a snapshot: not stat-ed again, except...
    restat: list[int] = field(default_factory=list)  # ...the names at these positions (passed, or new)
    # the folder's mtime moved: the names taken on trust, and their sizes and mtimes (Listing.confirmation)
    unconfirmed: tuple[list[str], array, array] | None = None


@dataclass(slots=True)
class Seen:
    """What the walk found in one folder (a snapshot's entry): its mtime_ns (-1: not to be trusted later), its
    child folders, regular files (sorted) and broken symlinks, and the files' sizes and mtimes."""

    stamp: int
    dirs: list[str]
    files: list[str]
    broken: list[str]
    sizes: array | None = None
    mtimes: array | None = None


@dataclass(slots=True)
class RootFiles:
    """The visible regular files of one root: folder by folder, with sizes and mtime_ns in the same order."""

    root: Root
    folders: list[Folder]
    sizes: array  # 'q'
    mtimes: array  # 'q'

    @property
    def paths(self) -> list[str]:
        """Relative POSIX paths, in the order of sizes and mtimes (built on demand: a warm rescan needs none)."""
        return [path for folder in self.folders for path in map(folder.prefix.__add__, folder.names)]


@dataclass(slots=True)
class Listing:
    files: list[RootFiles]
    problems: list[tuple[str, str, str]]  # (root name, relative path, reason)
    # folders reached a second time through a symlink, not walked again: (root name, path, first path)
    links: list[tuple[str, str, str]] = field(default_factory=list)
    seen: dict[str, Seen] = field(default_factory=dict)  # every folder walked, by path: what a snapshot keeps
    reused: int = 0  # files taken from a snapshot (not stat-ed)
    # files taken on trust from folders whose mtime moved: (folder, names, the sizes and mtimes taken)
    to_confirm: list[tuple[str, list[str], array, array]] = field(default_factory=list)
    # the stat of a snapshot's files in the folders whose mtime had moved, started before the walk read them
    # (list_files), and those folders
    ahead: Confirmation | None = None
    ahead_folders: frozenset[str] = frozenset()

    def confirmation(self) -> Confirmation:
        """The stat of the files taken on trust from folders whose mtime moved (see the module's docstring),
        started before the walk for the folders seen moved then, now for the others; Confirmation.moved() says
        which differ."""
        if self.ahead is None:
            return Confirmation(self.to_confirm)
        covered = {path: names for path, names, _, _ in self.to_confirm if path in self.ahead_folders}
        rest = [entry for entry in self.to_confirm if entry[0] not in self.ahead_folders]
        ahead, self.ahead = self.ahead, None  # the Confirmation owns it now (and closes it)
        return Confirmation(rest, ahead=(ahead, covered))

    def link_warnings(self) -> list[str]:
        """One line per folder not walked twice: a symlink loop, or a second link to a folder."""
        lines = []
        for root, path, first in self.links:
            if (path + "/").startswith(first + "/") or not first:
                why = "a symlink loop (it leads back to a folder above it)"
            else:
                why = f"another link to {root}/{first}, scanned there"
            lines.append(f"{root}/{path}: not followed: {why}")
        return lines

    def __len__(self) -> int:
        return sum(len(f.sizes) for f in self.files)


def list_files(
    roots: tuple[Root, ...],
    previous: dict[str, Seen] | None = None,
    passed: Mapping[tuple[int, int], frozenset[str]] | None = None,
    *,
    trust_moved: bool = True,
) -> Listing:
    """Walk the roots, following symlinks once (no loops); hidden files and folders are skipped.

    `previous`: a snapshot (load_snapshot): a folder whose mtime it holds is taken from it without reading or
    stat-ing its files, except the names `passed` gives for its identity (st_dev, st_ino); from a folder whose
    mtime moved, the names it held (and that are not passed) keep their sizes and mtimes, to be confirmed
    (Listing.confirmation) unless `trust_moved` is False."""
    started = time.time_ns()
    listing = Listing([], [])
    if previous and trust_moved:  # their files' stat starts now, in a child, while the walk reads the folders
        entries = _moved_since(previous)
        if entries:
            listing.ahead = Confirmation(entries)
            listing.ahead_folders = frozenset(path for path, _, _, _ in entries)
    try:
        for root in roots:
            walked = _walk(root, listing.problems, listing.links, listing.seen, previous, passed, started, trust_moved)
            listing.files.append(RootFiles(root, walked, array("q"), array("q")))
    except BaseException:
        if listing.ahead is not None:
            listing.ahead.close()
        raise
    folders = [folder for files in listing.files for folder in files.folders]
    if any(folder.known is not None for folder in folders):
        sizes, mtimes, failed = _stat_some(folders)
        listing.reused = sum(len(folder.names) - len(folder.restat) for folder in folders if folder.known is not None)
        listing.to_confirm = [(folder.path, *folder.unconfirmed) for folder in folders if folder.unconfirmed]
    else:
        sizes, mtimes, failed = _stat_all(folders)
    start = 0
    for files in listing.files:
        end = start + sum(len(folder.names) for folder in files.folders)
        files.sizes, files.mtimes = sizes[start:end], mtimes[start:end]
        start = end
    if failed:  # removed since listed, or no permission: a problem instead of a file
        _drop_failed(listing, failed)
    return listing


def _moved_since(previous: dict[str, Seen]) -> list[tuple[str, list[str], array, array]]:
    """The snapshot's files (and their sizes and mtimes) of each folder whose mtime is not the snapshot's: the
    walk reads those again and takes the names it finds among these on trust (_walk's test, made early)."""
    entries = []
    for path, old in previous.items():
        if not old.files or old.sizes is None or old.mtimes is None:
            continue
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            continue
        if not _unchanged(old, mtime):
            entries.append((path, old.files, old.sizes, old.mtimes))
    return entries


def _unchanged(old: Seen, mtime: int) -> bool:
    """Whether a folder whose mtime is `mtime` holds what the snapshot `old` saw (a racy stamp is never trusted)."""
    return old.stamp >= 0 and old.stamp == mtime


def _positions(names: list[str], wanted: frozenset[str]) -> list[int]:
    """The places of `wanted` names among `names` (sorted), in order; absent ones left out."""
    return sorted(at for name in wanted if (at := bisect_left(names, name)) < len(names) and names[at] == name)


def _stat_some(folders: list[Folder]) -> tuple[array, array, dict[int, str]]:
    """_stat_all for the folders not known from a snapshot and the names to stat again in the others; the rest
    as the snapshot has them."""
    todo = [
        folder if folder.known is None else Folder(folder.path, folder.prefix, [folder.names[i] for i in folder.restat])
        for folder in folders
        if folder.known is None or folder.restat
    ]
    fresh_sizes, fresh_mtimes, fresh_failed = _stat_all(todo)
    sizes, mtimes, failed = array("q"), array("q"), {}
    position, taken = 0, 0
    for folder in folders:
        count = len(folder.names)
        if folder.known is not None:
            known_sizes, known_mtimes = array("q", folder.known[0]), array("q", folder.known[1])
            for k, i in enumerate(folder.restat):
                known_sizes[i], known_mtimes[i] = fresh_sizes[taken + k], fresh_mtimes[taken + k]
                if taken + k in fresh_failed:
                    failed[position + i] = fresh_failed[taken + k]
            sizes.extend(known_sizes)
            mtimes.extend(known_mtimes)
            taken += len(folder.restat)
        else:
            sizes.extend(fresh_sizes[taken : taken + count])
            mtimes.extend(fresh_mtimes[taken : taken + count])
            failed.update((position + i - taken, why) for i, why in fresh_failed.items() if taken <= i < taken + count)
            taken += count
        position += count
    return sizes, mtimes, failed


def _drop_failed(listing: Listing, failed: dict[int, str]) -> None:
    index = 0
    for files in listing.files:
        kept_sizes, kept_mtimes = array("q"), array("q")
        position = 0
        for folder in files.folders:
            kept = []
            for name in folder.names:
                reason = failed.get(index)
                if reason is None:
                    kept.append(name)
                    kept_sizes.append(files.sizes[position])
                    kept_mtimes.append(files.mtimes[position])
                else:
                    listing.problems.append((files.root.name, folder.prefix + name, reason))
                index += 1
                position += 1
            if len(kept) != len(folder.names) and folder.path in listing.seen:
                listing.seen[folder.path].stamp = -1  # it changed while listed: never taken from this snapshot
                listing.seen[folder.path].files = kept
            folder.names = kept
        files.sizes, files.mtimes = kept_sizes, kept_mtimes


def _walk(
    root: Root,
    problems: list,
    links: list,
    seen: dict[str, Seen] | None = None,
    previous: dict[str, Seen] | None = None,
    passed: Mapping[tuple[int, int], frozenset[str]] | None = None,
    started: int = 0,
    trust_moved: bool = True,
) -> list[Folder]:
    """The folders of one root that hold regular files (depth first), noting the problems met; each folder
    walked goes into `seen`, and one unchanged since `previous` (see list_files) is taken from it."""
    passed = passed or {}
    seen = {} if seen is None else seen
    previous = previous or {}
    folders: list[Folder] = []
    seen_dirs: dict[tuple[int, int], str] = {}  # folder identity -> its path relative to the root
    skipped = set()  # folders that belong to another root (layout.py: overlapping roots)
    for other in root.exclude:
        try:
            info = os.stat(other)
            skipped.add((info.st_dev, info.st_ino))
        except OSError:
            pass
    stack = [(root.path, "")]
    while stack:
        path, prefix = stack.pop()
        try:
            stat = os.stat(path)
            ident = (stat.st_dev, stat.st_ino)
            if ident in skipped:
                continue
            if ident in seen_dirs:  # a symlink loop or a second link to a folder already walked
                links.append((root.name, prefix.rstrip("/"), seen_dirs[ident].rstrip("/")))
                continue
            seen_dirs[ident] = prefix
            stamp = stat.st_mtime_ns if stat.st_mtime_ns < started - _RACY_NS else -1
            old = previous.get(path)
            asked = passed.get(ident, frozenset())
            if old is not None and _unchanged(old, stat.st_mtime_ns):
                seen[path] = old  # the same names as when the snapshot was taken: replay that walk's steps
                stack.extend((os.path.join(path, name), prefix + name + "/") for name in old.dirs)
                problems.extend((root.name, prefix + name, "broken or looping symlink") for name in old.broken)
                if old.files:
                    assert old.sizes is not None and old.mtimes is not None
                    restat = [i for i, name in enumerate(old.files) if name in asked] if asked else []
                    folders.append(Folder(path, prefix, list(old.files), (old.sizes, old.mtimes), restat))
                continue
            typed = None
            if trust_moved and old is not None and old.files and old.sizes is not None:
                typed = _listed_by_name(path, old.files, asked)
            if typed is not None:
                files, dirs, broken, runs = typed
                seen[path] = Seen(stamp, dirs, files, broken)
                stack.extend((os.path.join(path, name), prefix + name + "/") for name in dirs)
                problems.extend((root.name, prefix + name, "broken or looping symlink") for name in broken)
                if files:
                    folders.append(_read_again(path, prefix, files, old, asked, runs))
                continue
            with os.scandir(path) as iterator:
                children = list(iterator)
        except OSError as exc:
            problems.append((root.name, prefix.rstrip("/") or ".", f"cannot read folder: {exc.strerror or exc}"))
            continue
        names = list(map(_NAME, children))
        if "\0." in "\0" + "\0".join(names):  # (a C-speed test) some are hidden: skip them
            children = [e for e in children if e.name[:1] != "."]
            names = list(map(_NAME, children))
        try:  # the type comes from the directory itself; only symlinks need a stat (which may fail)
            regular = list(map(os.DirEntry.is_file, children))
            if all(regular):  # the usual folder of images: no per-file Python below
                names.sort()
                seen[path] = Seen(stamp, [], names, [])
                if names:
                    folders.append(_read_again(path, prefix, names, previous.get(path) if trust_moved else None, asked))
                continue
            dirs = list(map(os.DirEntry.is_dir, children))
        except OSError:
            dirs, regular = [_safely(e.is_dir) for e in children], [_safely(e.is_file) for e in children]
        files = []
        entry_of = Seen(stamp, [], files, [])
        for entry, name, is_dir, is_file in zip(children, names, dirs, regular):
            if is_dir:
                stack.append((entry.path, prefix + name + "/"))
                entry_of.dirs.append(name)
            elif is_file:
                files.append(name)
            elif entry.is_symlink():
                problems.append((root.name, prefix + name, "broken or looping symlink"))
                entry_of.broken.append(name)
            # else a fifo, socket or device: not an image, not a problem
        files.sort()
        seen[path] = entry_of
        if files:
            folders.append(_read_again(path, prefix, files, previous.get(path) if trust_moved else None, asked))
    return folders


def _listed_by_name(
    path: str, old_files: list[str], asked: frozenset[str]
) -> tuple[list[str], list[str], list[str], list[Run] | None] | None:
    """A folder whose mtime moved, read again by name alone (os.listdir: no DirEntry per file, 2x faster at
    100,000 files): (files sorted, folders and broken symlinks in directory order, and the files' runs in common
    with `old_files` when known: every name is a file). A name the snapshot held as a
    regular file is taken as one still (the confirmation stats it: a folder or link put in its place differs);
    the others, and the passed ones, are typed by a stat. None when too many are new (os.scandir types them
    cheaper) or the names differ too much from the snapshot's (_walk then reads the folder with os.scandir)."""
    names = os.listdir(path)
    if "\0." in "\0" + "\0".join(names):  # (a C-speed test) some are hidden: skip them
        names = [name for name in names if name[:1] != "."]
    ordered = sorted(names)
    runs = _common_runs(old_files, ordered)
    if runs is None:
        return None
    unknown, covered = [], 0
    for i, _, width in runs:
        unknown.extend(range(covered, i))
        covered = i + width
    unknown.extend(range(covered, len(ordered)))
    unknown.extend(_positions(ordered, asked))
    if len(unknown) > _TYPED_BY_STAT:
        return None
    dirs, broken, other = set(), set(), set()
    for at in sorted(set(unknown)):
        name = ordered[at]
        full = os.path.join(path, name)
        try:
            mode = os.stat(full).st_mode  # follows symlinks, as DirEntry.is_file and is_dir do
        except OSError:
            if os.path.islink(full):
                broken.add(name)
            other.add(name)  # a broken link, or gone since listed
            continue
        if S_ISDIR(mode):
            dirs.add(name)
        elif not S_ISREG(mode):
            other.add(name)  # a fifo, socket or device: not an image, not a problem
    if dirs or other:
        files, runs = [name for name in ordered if name not in dirs and name not in other], None
    else:
        files = ordered
    in_order = [name for name in names if name in dirs or name in broken] if dirs or broken else []  # as scandir
    return files, [name for name in in_order if name in dirs], [name for name in in_order if name in broken], runs


_TYPED_BY_STAT = 1024  # _listed_by_name's most names typed by a stat each


def _read_again(
    path: str, prefix: str, names: list[str], old: Seen | None, asked: frozenset[str], runs: list[Run] | None = None
) -> Folder:
    """A folder just read: without a snapshot of it, every file is to be stat-ed; with one, the names it held
    (and that are not passed) keep its sizes and mtimes on trust, and only the others are stat-ed now. `runs`:
    _common_runs(old.files, names), when found already."""
    if old is None or not old.files or old.sizes is None or old.mtimes is None:
        return Folder(path, prefix, names)
    if runs is None:
        runs = _common_runs(old.files, names)
    if runs is None:  # too different to walk side by side: a dict of the old names
        where = dict(zip(old.files, range(len(old.files))))
        rows = list(map(where.get, names, repeat(-1)))
        runs = [(i, row, 1) for i, row in enumerate(rows) if row >= 0]
    sizes, mtimes = array("q", bytes(8 * len(names))), array("q", bytes(8 * len(names)))
    trusted_names, trusted_sizes, trusted_mtimes = [], array("q"), array("q")
    # a passed file is stat-ed now, not taken on trust: its place among the (sorted) names
    passed_at = _positions(names, asked)
    covered = 0
    restat: list[int] = []
    for i, j, width in runs:  # names[i:i + width] == old.files[j:j + width]
        restat.extend(range(covered, i))
        covered = i + width
        sizes[i:covered], mtimes[i:covered] = old.sizes[j : j + width], old.mtimes[j : j + width]
        start = i
        for at in passed_at[bisect_left(passed_at, i) : bisect_left(passed_at, covered)] + [covered]:
            trusted_names.extend(names[start:at])
            trusted_sizes.extend(old.sizes[j + start - i : j + at - i])
            trusted_mtimes.extend(old.mtimes[j + start - i : j + at - i])
            if at < covered:
                restat.append(at)
            start = at + 1
    restat.extend(range(covered, len(names)))
    if not trusted_names:  # nothing held before, or only passed files: every name is stat-ed now
        return Folder(path, prefix, names)
    return Folder(path, prefix, names, (sizes, mtimes), restat, (trusted_names, trusted_sizes, trusted_mtimes))


_RUN_STEP = 4096  # names compared at once while two listings of a folder agree
_RUN_LOOKAHEAD = 64  # how far a difference is looked past for the name where they agree again
_RUN_DIFFERENCES = 256  # differences walked before a dict of the old names is cheaper


def _common_runs(old: list[str], new: list[str]) -> list[Run] | None:
    """The runs (i, j, width) where new[i:i + width] == old[j:j + width], in order, for two readings of a folder
    (a directory keeps its entries' order when a few are added or removed). None when they differ in too many
    places."""
    return agreeing_runs(old, new, step=_RUN_STEP, lookahead=(_RUN_LOOKAHEAD,), differences=_RUN_DIFFERENCES)


def snapshot(listing: Listing) -> dict[str, Any]:
    """The listing's folders as a snapshot: named arrays (the cache keeps them as files it maps,
    FingerprintCache.store_snapshot; load_snapshot reads them back), for list_files' `previous`."""
    import numpy as np  # here only: a listing itself needs no numpy

    where: dict[str, tuple[array, array, int]] = {}
    for files in listing.files:
        position = 0
        for folder in files.folders:
            where[folder.path] = (files.sizes, files.mtimes, position)
            position += len(folder.names)
    paths, stamps, counts, names = [], [], [], []
    sizes, mtimes = array("q"), array("q")
    for path, seen in listing.seen.items():
        files = seen.files
        stamp = seen.stamp
        if files and path not in where:
            stamp = -1  # (not expected) files without their sizes: never trusted
            files = []
        if files:
            all_sizes, all_mtimes, start = where[path]
            sizes.extend(all_sizes[start : start + len(files)])
            mtimes.extend(all_mtimes[start : start + len(files)])
        paths.append(path)
        stamps.append(stamp)
        counts.append((len(seen.dirs), len(files), len(seen.broken)))
        names.extend(seen.dirs)
        names.extend(files)
        names.extend(seen.broken)
    return {
        "snapshot_version": np.array([_SNAPSHOT_VERSION]),  # not "version": a state's arrays have that
        "paths": np.frombuffer("\0".join(paths).encode("utf-8", "surrogateescape"), dtype=np.uint8),
        "names": np.frombuffer("\0".join(names).encode("utf-8", "surrogateescape"), dtype=np.uint8),
        "stamps": np.array(stamps, dtype=np.int64),
        "counts": np.array(counts, dtype=np.int64).reshape(-1, 3),
        "sizes": np.frombuffer(sizes, dtype=np.int64),
        "mtimes": np.frombuffer(mtimes, dtype=np.int64),
    }


def load_snapshot(data: Mapping[str, Any]) -> dict[str, Seen] | None:
    """A snapshot's folders by path (from snapshot's arrays), or None when it cannot be read back (then every
    folder is listed)."""
    try:
        if int(data["snapshot_version"][0]) != _SNAPSHOT_VERSION:
            return None
        paths = data["paths"].tobytes().decode("utf-8", "surrogateescape").split("\0")
        text = data["names"].tobytes().decode("utf-8", "surrogateescape")
        names = text.split("\0") if text else []
        stamps, counts = data["stamps"].tolist(), data["counts"].tolist()
        sizes, mtimes = array("q", data["sizes"].tobytes()), array("q", data["mtimes"].tobytes())
    except Exception:  # a damaged snapshot is only a missed shortcut
        return None
    if len(paths) != len(stamps) or sum(d + f + b for d, f, b in counts) != len(names):
        return None
    found: dict[str, Seen] = {}
    at = kept = 0
    for path, stamp, (dirs, files, broken) in zip(paths, stamps, counts):
        found[path] = Seen(
            stamp,
            names[at : at + dirs],
            names[at + dirs : at + dirs + files],
            names[at + dirs + files : at + dirs + files + broken],
            sizes[kept : kept + files],
            mtimes[kept : kept + files],
        )
        at += dirs + files + broken
        kept += files
    return found


def _safely(check) -> bool:
    try:
        return check()
    except OSError:
        return False


def _stat_all(folders: list[Folder]) -> tuple[array, array, dict[int, str]]:
    """Sizes and mtime_ns of every file (following symlinks), and {index: reason} for those that failed.

    Many files: a forked child stats the second half meanwhile (threads do not help, a process does:
    docs/performance.md). Only on Linux (fork without exec is unsafe on
    macOS), and only when this process runs no other thread (forking a threaded process can deadlock the
    child; the child here only stats, pickles and exits)."""
    work = [(folder.path, folder.names) for folder in folders]
    total = sum(len(names) for _, names in work)
    if total < _PARALLEL_FROM or not sys.platform.startswith("linux") or threading.active_count() > 1:
        return _stat_range(work, 0)
    first, second, half = _split(work, total // 2)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: stat the second half, send it back, exit without running anything else
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(pickle.dumps(_stat_range(second, half), protocol=pickle.HIGHEST_PROTOCOL))
        finally:
            os._exit(0)
    os.close(write_end)
    pipe = os.fdopen(read_end, "rb")
    try:
        sizes, mtimes, failed = _stat_range(first, 0)
        sent = pipe.read()
    finally:  # also when interrupted: a closed pipe ends the child's write, so the wait cannot hang
        pipe.close()
        os.waitpid(pid, 0)
    try:
        theirs = pickle.loads(sent)
    except Exception:  # the child failed: do its half here
        theirs = _stat_range(second, half)
    sizes.extend(theirs[0])
    mtimes.extend(theirs[1])
    failed.update(theirs[2])
    return sizes, mtimes, failed


def _split(work: list[tuple[str, list[str]]], half: int):
    """Cut the (folder, names) list after `half` files (inside a folder if need be)."""
    first, count = [], 0
    for index, (path, names) in enumerate(work):
        if count + len(names) >= half:
            cut = half - count
            return first + [(path, names[:cut])], [(path, names[cut:])] + work[index + 1 :], half
        first.append((path, names))
        count += len(names)
    return first, [], count


def _stat_range(work: list[tuple[str, list[str]]], offset: int) -> tuple[array, array, dict[int, str]]:
    """Stat the names of each folder relative to the open folder; `offset`: index of the first file."""
    sizes, mtimes, failed = array("q"), array("q"), {}
    index = offset
    for path, names in work:
        stats = _stat_folder(path, names, index, failed)
        sizes.extend(map(_SIZE, stats))
        mtimes.extend(map(_MTIME, stats))
        index += len(names)
    return sizes, mtimes, failed


_RELATIVE_STAT = os.stat in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")


class _Missing:
    st_size = st_mtime_ns = -1


def _stat_folder(path: str, names: list[str], first: int, failed: dict[int, str]) -> list:
    handle = None  # without one (no dir_fd support, or the folder became unreadable): full paths
    if _RELATIVE_STAT:
        try:
            handle = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            pass
    if handle is not None:
        stat = partial(os.stat, dir_fd=handle)
    else:
        base = path.rstrip("/") + "/"

        def stat(name: str) -> os.stat_result:
            return os.stat(base + name)

    try:
        try:
            return list(map(stat, names))  # map(): C speed, the per-file cost is the system call
        except OSError:
            pass
        stats = []
        for offset, name in enumerate(names):  # the slow path: find which failed
            try:
                stats.append(stat(name))
            except OSError as exc:
                stats.append(_Missing)
                failed[first + offset] = f"cannot stat: {exc.strerror or exc}"
        return stats
    finally:
        if handle is not None:
            os.close(handle)


class ListingMoved(Exception):
    """A file a listing took on trust differs from the snapshot (Confirmation): list again without trust."""


class Confirmation:
    """The stat of the files a listing took on trust (Listing.to_confirm): in a forked child while the scan goes on
    (on Linux, with many files and no other thread: see _stat_all), else here when first asked.

    `ahead`: a Confirmation of a snapshot's files started before the walk, and per folder it covers the names
    taken on trust there (sorted): of what it finds moved, only those count (the others were removed, or passed
    and stat-ed anew)."""

    def __init__(
        self,
        entries: list[tuple[str, list[str], array, array]],
        ahead: tuple[Confirmation, dict[str, list[str]]] | None = None,
    ) -> None:
        self._entries = entries
        self._ahead = ahead
        self._moved: list[str] | None = None if entries or ahead else []
        self._child: tuple[int, io.BufferedReader] | None = None
        total = sum(len(names) for _, names, _, _ in entries)
        if total < _PARALLEL_FROM or not sys.platform.startswith("linux") or threading.active_count() > 1:
            return
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: stat, send the answer back, exit without running anything else
            try:
                os.close(read_end)
                with os.fdopen(write_end, "wb") as pipe:
                    pipe.write(pickle.dumps(_moved(entries), protocol=pickle.HIGHEST_PROTOCOL))
            finally:
                os._exit(0)
        os.close(write_end)
        self._child = (pid, os.fdopen(read_end, "rb"))

    @property
    def pending(self) -> bool:
        """Whether a child stats the files (or has, and not been asked yet): it takes one core meanwhile."""
        return self._child is not None or (self._ahead is not None and self._ahead[0].pending)

    def moved(self) -> list[str]:
        """The absolute paths of the files taken on trust whose size or mtime differs, or that are gone."""
        if self._moved is None:
            sent = b""
            if self._child is not None:
                pid, pipe = self._child
                self._child = None
                try:
                    sent = pipe.read()
                finally:
                    pipe.close()
                    os.waitpid(pid, 0)
            try:
                self._moved = pickle.loads(sent)
            except Exception:  # no child, or it failed: stat here
                self._moved = _moved(self._entries)
            if self._ahead is not None:
                ahead, trusted = self._ahead
                self._moved += [path for path in ahead.moved() if _taken(trusted, path)]
        return self._moved

    def confirm(self) -> None:
        """Raise ListingMoved when a file taken on trust differs."""
        moved = self.moved()
        if moved:
            raise ListingMoved(f"{len(moved)} file(s) changed in folders listed again, first {moved[0]}")

    def close(self) -> None:
        """End the child (at once when its answer is no longer wanted)."""
        if self._ahead is not None:
            self._ahead[0].close()
        if self._child is None:
            return
        pid, pipe = self._child
        self._child = None
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        pipe.close()
        os.waitpid(pid, 0)


def _taken(trusted: dict[str, list[str]], path: str) -> bool:
    """Whether `path` (as _moved gives it) is one of the names `trusted` holds for its folder (sorted names)."""
    folder, _, name = path.rpartition("/")
    names = trusted.get(folder) or trusted.get(folder + "/") or []
    at = bisect_left(names, name)
    return at < len(names) and names[at] == name


def _moved(entries: list[tuple[str, list[str], array, array]]) -> list[str]:
    moved = []
    for path, names, sizes, mtimes in entries:
        failed: dict[int, str] = {}
        stats = _stat_folder(path, names, 0, failed)
        now_sizes, now_mtimes = array("q", map(_SIZE, stats)), array("q", map(_MTIME, stats))
        if now_sizes == sizes and now_mtimes == mtimes and not failed:
            continue
        base = path.rstrip("/") + "/"
        moved.extend(
            base + name
            for i, name in enumerate(names)
            if i in failed or now_sizes[i] != sizes[i] or now_mtimes[i] != mtimes[i]
        )
    return moved
