"""The walk: every visible file under the roots with its size and mtime_ns, as cheaply as the OS allows.

A Listing identifies the state of the folders: a warm rescan compares it with the last scan's
(cache.answer_key) before anything else is done, so this walk is most of a warm scan's time. One stat per
file is the least a rescan can do to notice a changed file, and the stat system call is what costs (even from
C: GNU find takes as long; docs/performance.md). So the folders are listed first, then the
files are stat-ed folder by folder, in directory order, relative to an open folder (a one-name path lookup),
and in two processes when there are many.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
from array import array
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter

from .model import Root

_NAME = attrgetter("name")
_SIZE = attrgetter("st_size")
_MTIME = attrgetter("st_mtime_ns")
_PARALLEL_FROM = 20_000  # files: below this a second process costs more than it saves


@dataclass(slots=True)
class Folder:
    """One folder's visible regular files, in directory order."""

    path: str  # absolute (through symlinks as walked)
    prefix: str  # its path relative to the root, "" or ending in "/"
    names: list[str]


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


def list_files(roots: tuple[Root, ...]) -> Listing:
    """Walk the roots, following symlinks once (no loops); hidden files and folders are skipped."""
    listing = Listing([], [])
    for root in roots:
        listing.files.append(RootFiles(root, _walk(root, listing.problems, listing.links), array("q"), array("q")))
    folders = [folder for files in listing.files for folder in files.folders]
    sizes, mtimes, failed = _stat_all(folders)
    start = 0
    for files in listing.files:
        end = start + sum(len(folder.names) for folder in files.folders)
        files.sizes, files.mtimes = sizes[start:end], mtimes[start:end]
        start = end
    if failed:  # removed since listed, or no permission: a problem instead of a file
        _drop_failed(listing, failed)
    return listing


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
            folder.names = kept
        files.sizes, files.mtimes = kept_sizes, kept_mtimes


def _walk(root: Root, problems: list, links: list) -> list[Folder]:
    """The folders of one root that hold regular files (depth first), noting the problems met."""
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
                if names:
                    folders.append(Folder(path, prefix, names))
                continue
            dirs = list(map(os.DirEntry.is_dir, children))
        except OSError:
            dirs, regular = [_safely(e.is_dir) for e in children], [_safely(e.is_file) for e in children]
        files = []
        for entry, name, is_dir, is_file in zip(children, names, dirs, regular):
            if is_dir:
                stack.append((entry.path, prefix + name + "/"))
            elif is_file:
                files.append(name)
            elif entry.is_symlink():
                problems.append((root.name, prefix + name, "broken or looping symlink"))
            # else a fifo, socket or device: not an image, not a problem
        if files:
            folders.append(Folder(path, prefix, files))
    return folders


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
