"""The walk: every visible file under the roots with its size and mtime_ns, as cheaply as the OS allows.

A Listing identifies the state of the folders: a warm rescan compares it with the last scan's
(cache.answer_key) before anything else is done, so this walk is most of a warm scan's time. One stat per
file is the least a rescan can do to notice a changed file, and the stat system call is what costs (about
3-5 us per file on the 2-core VM, even from C: GNU find takes as long), so the files are listed first and
stat-ed afterwards in directory order, in two processes when there are many.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
from array import array
from dataclasses import dataclass
from operator import attrgetter

from .model import Root

_NAME = attrgetter("name")
_PARALLEL_FROM = 20_000  # files: below this a second process costs more than it saves


@dataclass(slots=True)
class RootFiles:
    """The visible regular files of one root in walk order: relative POSIX paths, sizes and mtime_ns."""

    root: Root
    paths: list[str]
    sizes: array  # 'q'
    mtimes: array  # 'q'


@dataclass(slots=True)
class Listing:
    files: list[RootFiles]
    problems: list[tuple[str, str, str]]  # (root name, relative path, reason)

    def __len__(self) -> int:
        return sum(len(f.paths) for f in self.files)


def list_files(roots: tuple[Root, ...]) -> Listing:
    """Walk the roots, following symlinks once (no loops); hidden files and folders are skipped."""
    problems: list[tuple[str, str, str]] = []
    found: list[tuple[Root, list[str], list[os.DirEntry]]] = []
    for root in roots:
        paths: list[str] = []
        entries: list[os.DirEntry] = []
        _walk(root, paths, entries, problems)
        found.append((root, paths, entries))
    everything = [entry for _, _, entries in found for entry in entries]
    sizes, mtimes, failed = _stat_all(everything)
    listing = Listing([], problems)
    start = 0
    for root, paths, entries in found:
        end = start + len(entries)
        files = RootFiles(root, paths, sizes[start:end], mtimes[start:end])
        bad = [i - start for i in failed if start <= i < end]
        for offset in sorted(bad, reverse=True):  # could not be stat-ed (removed meanwhile, no permission): a problem
            problems.append((root.name, paths[offset], failed[offset + start]))
            del files.paths[offset], files.sizes[offset], files.mtimes[offset]
        listing.files.append(files)
        start = end
    return listing


def _walk(root: Root, paths: list[str], entries: list[os.DirEntry], problems: list) -> None:
    """Collect the regular files of one root (paths and DirEntries, directory order) and note problems."""
    seen_dirs: set[tuple[int, int]] = set()
    stack = [(root.path, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            stat = os.stat(folder)
            ident = (stat.st_dev, stat.st_ino)
            if ident in seen_dirs:
                continue  # a symlink loop or a second link to a folder already walked
            seen_dirs.add(ident)
            with os.scandir(folder) as iterator:
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
                entries.extend(children)
                paths.extend(map(prefix.__add__, names))
                continue
            dirs = list(map(os.DirEntry.is_dir, children))
        except OSError:
            dirs, regular = [_safely(e.is_dir) for e in children], [_safely(e.is_file) for e in children]
        for entry, name, is_dir, is_file in zip(children, names, dirs, regular):
            if is_dir:
                stack.append((entry.path, prefix + name + "/"))
            elif is_file:
                entries.append(entry)
                paths.append(prefix + name)
            elif entry.is_symlink():
                problems.append((root.name, prefix + name, "broken or looping symlink"))
            # else a fifo, socket or device: not an image, not a problem


def _safely(check) -> bool:
    try:
        return check()
    except OSError:
        return False


def _stat_all(entries: list[os.DirEntry]) -> tuple[array, array, dict[int, str]]:
    """Sizes and mtime_ns of the entries (following symlinks), and {index: reason} for those that failed.

    Many files: a forked child stats the second half meanwhile (threads do not help: measured no faster;
    a process does: 35 % less wall time on 60,000 files). Only on Linux (fork without exec is unsafe on
    macOS), and only when this process runs no other thread (forking a threaded process can deadlock the
    child; the child here only stats, pickles and exits)."""
    half = len(entries) // 2
    if len(entries) < _PARALLEL_FROM or not sys.platform.startswith("linux") or threading.active_count() > 1:
        return _stat_range(entries, 0)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: stat the second half, send it back, exit without running anything else
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(pickle.dumps(_stat_range(entries[half:], half), protocol=pickle.HIGHEST_PROTOCOL))
        finally:
            os._exit(0)
    os.close(write_end)
    pipe = os.fdopen(read_end, "rb")
    try:
        sizes, mtimes, failed = _stat_range(entries[:half], 0)
        sent = pipe.read()
    finally:  # also when interrupted: a closed pipe ends the child's write, so the wait cannot hang
        pipe.close()
        os.waitpid(pid, 0)
    try:
        second = pickle.loads(sent)
    except Exception:  # the child failed: do its half here
        second = _stat_range(entries[half:], half)
    sizes.extend(second[0])
    mtimes.extend(second[1])
    failed.update(second[2])
    return sizes, mtimes, failed


def _stat_range(entries: list[os.DirEntry], offset: int) -> tuple[array, array, dict[int, str]]:
    try:
        stats = list(map(os.DirEntry.stat, entries))  # map(): C speed, the per-file cost is the system call
        failed: dict[int, str] = {}
    except OSError:
        stats, failed = [], {}
        for index, entry in enumerate(entries):
            try:
                stats.append(entry.stat())
            except OSError as exc:
                stats.append(None)
                failed[offset + index] = f"cannot stat: {exc.strerror or exc}"
    sizes = array("q", [s.st_size if s is not None else -1 for s in stats] if failed else map(_SIZE, stats))
    mtimes = array("q", [s.st_mtime_ns if s is not None else -1 for s in stats] if failed else map(_MTIME, stats))
    return sizes, mtimes, failed


_SIZE = attrgetter("st_size")
_MTIME = attrgetter("st_mtime_ns")
