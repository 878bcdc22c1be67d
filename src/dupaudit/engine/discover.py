"""Walk dataset folders into sorted ImageRecords: splits, classes, files recognised by content."""

from __future__ import annotations

import os
import re
from itertools import repeat
from operator import attrgetter

from .listing import Listing, list_files
from .model import ImageRecord, Root

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


def is_image_file(path: str, name: str) -> bool:
    """Recognised as an image: an image extension, or the first bytes of an image format."""
    return name.lower().endswith(_EXTENSIONS) or looks_like_image(path)


def resolve_roots(
    root: str | os.PathLike, against: list[str | os.PathLike] | tuple = (), **options
) -> tuple[Root, ...]:
    """The user's folders as named roots (splits become one root each); layout.detect_layout says why."""
    from .layout import detect_layout

    return detect_layout(root, against, **options).roots


def _label_of(root: Root):
    """The function giving a folder's label (from its path relative to the root, "" or ending in "/")."""
    if not root.labelled:
        return lambda prefix: None
    if not root.label_pattern:  # the usual case: the first folder level

        def first_level(prefix: str) -> str | None:
            slash = prefix.find("/")
            return prefix[:slash] if slash >= 0 else None

        return first_level
    pattern = re.compile(root.label_pattern)

    def matched(prefix: str) -> str | None:
        found = pattern.match(prefix)
        return found.group("label") if found else None

    return matched


def image_records(listing: Listing) -> list[ImageRecord]:
    """The image files of a listing (by extension, or by content), sorted by (root order, path).

    Folder by folder: a folder's files share their label and path prefix, and the per-file work is C calls."""
    records: list[ImageRecord] = []
    for files in listing.files:
        root = files.root
        base = root.path.rstrip("/") + "/"  # "/" itself is a root path too
        found: list[ImageRecord] = []
        position = 0
        label_of = _label_of(root)
        for folder in files.folders:
            count = len(folder.names)
            label = label_of(folder.prefix)
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
