"""Walk dataset folders into sorted ImageRecords: splits, classes, files recognised by content."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError
from .model import ImageRecord, Root

SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .bmp .dib .gif .tif .tiff .webp .ppm .pgm .pbm .pnm .ico .tga .jp2 .j2k".split()
)
# Leading bytes of the formats Pillow reads; used for files whose extension is not an image one.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"P1", b"P2", b"P3", b"P4", b"P5",
          b"P6", b"\x00\x00\x01\x00", b"\x00\x00\x00\x0cjP")


def looks_like_image(path: str) -> bool:
    """True when the file's first bytes are those of an image format (used when its extension says nothing)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return True
    return any(head.startswith(magic) for magic in _MAGIC)


def _visible_children(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        visible = [e for e in entries if e.name[:1] != "."]
    visible.sort(key=_entry_name)
    return visible


def _entry_name(entry: os.DirEntry) -> str:
    return entry.name


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def resolve_roots(root: str | os.PathLike, against: list[str | os.PathLike] | tuple = ()) -> tuple[Root, ...]:
    """Turn the user's folders into named roots: split folders become one root each."""
    roots: list[Root] = []
    for index, folder in enumerate([root, *against]):
        path = Path(folder).expanduser()
        if not path.exists():
            raise InputError(f"{folder}: no such folder")
        if not path.is_dir():
            raise InputError(f"{folder}: not a folder")
        path = path.resolve()
        children = _visible_children(path)
        dirs = [e for e in children if _is_dir(e)]
        splits = [e for e in dirs if e.name.lower() in SPLIT_NAMES]
        if splits:
            # A dataset with splits: train first, then the evaluation splits in a fixed order.
            order = {name: i for i, name in enumerate(SPLIT_NAMES)}
            for entry in sorted(splits, key=lambda e: order[e.name.lower()]):
                split_path = Path(entry.path).resolve()
                roots.append(Root(_unique(entry.name, roots, path.name), str(split_path), _has_only_dirs(split_path)))
        else:
            default = path.name or "root"
            roots.append(Root(_unique(default if index else default, roots, "root"), str(path),
                              bool(dirs) and len(dirs) == len(children)))
    return tuple(roots)


def _has_only_dirs(path: Path) -> bool:
    children = _visible_children(path)
    return bool(children) and all(_is_dir(e) for e in children)


def _unique(name: str, roots: list[Root], prefix: str) -> str:
    taken = {r.name for r in roots}
    if name not in taken:
        return name
    candidate = f"{prefix}-{name}"
    counter = 2
    while candidate in taken:
        candidate = f"{prefix}-{name}-{counter}"
        counter += 1
    return candidate


def discover(roots: tuple[Root, ...]) -> tuple[list[ImageRecord], list[tuple[str, str, str]]]:
    """All image files under the roots, sorted by (root order, path); also files that could not be listed."""
    records: list[ImageRecord] = []
    problems: list[tuple[str, str, str]] = []
    for root in roots:
        base = Path(root.path)
        seen_dirs: set[tuple[int, int]] = set()
        append = records.append  # this loop runs once per file: a warm rescan is mostly this loop
        for entry, relpath in _walk(base, seen_dirs, problems, root.name):
            abspath = entry.path
            try:
                stat = entry.stat()  # follows symlinks, like os.stat
            except OSError as exc:
                problems.append((root.name, relpath, f"cannot stat: {exc.strerror or exc}"))
                continue
            dot = relpath.rfind(".")
            suffix = relpath[dot:].lower() if dot > relpath.rfind("/") + 1 else ""  # as os.path.splitext
            if suffix not in IMAGE_EXTENSIONS and not looks_like_image(abspath):
                continue  # not an image by name or by content: not ours to report
            slash = relpath.find("/")
            label = relpath[:slash] if root.labelled and slash >= 0 else None
            append(ImageRecord(root.name, relpath, label, stat.st_size, stat.st_mtime_ns, abspath))
    return records, problems


def _walk(base: Path, seen_dirs: set, problems: list, root_name: str):
    """Yield (DirEntry, relative POSIX path) of files, sorted, following symlinks once (no loops)."""
    stack = [(base, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            stat = os.stat(folder)
        except OSError as exc:
            problems.append((root_name, prefix.rstrip("/") or ".", f"cannot read folder: {exc.strerror or exc}"))
            continue
        ident = (stat.st_dev, stat.st_ino)
        if ident in seen_dirs:
            continue  # a symlink loop or a second link to a folder already walked
        seen_dirs.add(ident)
        try:
            children = _visible_children(folder)
        except OSError as exc:
            problems.append((root_name, prefix.rstrip("/") or ".", f"cannot read folder: {exc.strerror or exc}"))
            continue
        subdirs = []
        for entry in children:
            rel = prefix + entry.name
            if _is_dir(entry):
                subdirs.append((Path(entry.path), rel + "/"))
            else:
                try:
                    is_file = entry.is_file()
                except OSError:
                    is_file = False
                if is_file:
                    yield entry, rel
                elif entry.is_symlink():
                    problems.append((root_name, rel, "broken or looping symlink"))
        stack.extend(reversed(subdirs))
