"""Walk dataset folders into sorted ImageRecords: splits, classes, files recognised by content."""

from __future__ import annotations

import os
from itertools import repeat
from operator import attrgetter
from pathlib import Path

from ..errors import InputError
from .listing import Listing, list_files
from .model import ImageRecord, Root

SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .bmp .dib .gif .tif .tiff .webp .ppm .pgm .pbm .pnm .ico .tga .jp2 .j2k".split()
)
# Leading bytes of the formats Pillow reads; used for files whose extension is not an image one.
_MAGIC = (
    b"\xff\xd8\xff",
    b"\x89PNG",
    b"GIF8",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"P1",
    b"P2",
    b"P3",
    b"P4",
    b"P5",
    b"P6",
    b"\x00\x00\x01\x00",
    b"\x00\x00\x00\x0cjP",
)


_EXTENSIONS = tuple(IMAGE_EXTENSIONS)  # for str.endswith
_NAME = attrgetter("name")
_PATH = attrgetter("path")


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


def _visible_children(folder: str | Path) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        visible = [e for e in entries if e.name[:1] != "."]
    visible.sort(key=_NAME)
    return visible


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def resolve_roots(root: str | os.PathLike, against: list[str | os.PathLike] | tuple = ()) -> tuple[Root, ...]:
    """Turn the user's folders into named roots: split folders become one root each."""
    roots: list[Root] = []
    for folder in [root, *against]:
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
            roots.append(
                Root(
                    _unique(default, roots, "root"),
                    str(path),
                    bool(dirs) and len(dirs) == len(children),
                )
            )
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


def image_records(listing: Listing) -> list[ImageRecord]:
    """The image files of a listing (by extension, or by content), sorted by (root order, path).

    Folder by folder: a folder's files share their label and path prefix, and the per-file work is C calls."""
    records: list[ImageRecord] = []
    for files in listing.files:
        root = files.root
        base = root.path.rstrip("/") + "/"  # "/" itself is a root path too
        found: list[ImageRecord] = []
        position = 0
        for folder in files.folders:
            count = len(folder.names)
            slash = folder.prefix.find("/")
            label = folder.prefix[:slash] if root.labelled and slash >= 0 else None
            where = base + folder.prefix
            # visible names never start with ".", so this suffix test is os.path.splitext's
            keep = [
                i
                for i, name in enumerate(folder.names)
                if name.lower().endswith(_EXTENSIONS) or looks_like_image(where + name)
            ]
            names = [folder.names[i] for i in keep]
            found.extend(
                map(
                    ImageRecord,
                    repeat(root.name),
                    map(folder.prefix.__add__, names),
                    repeat(label),
                    [files.sizes[position + i] for i in keep],
                    [files.mtimes[position + i] for i in keep],
                    map(where.__add__, names),
                )
            )
            position += count
        found.sort(key=_PATH)
        records.extend(found)
    return records


def discover(roots: tuple[Root, ...]) -> tuple[list[ImageRecord], list[tuple[str, str, str]]]:
    """All image files under the roots, sorted by (root order, path); also files that could not be listed."""
    listing = list_files(roots)
    return image_records(listing), listing.problems
