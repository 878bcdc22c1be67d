"""Walk dataset folders into sorted ImageRecords: splits, classes, files recognised by content."""

from __future__ import annotations

import os
import re
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from operator import attrgetter, methodcaller

import numpy as np

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
_IMAGE_NAME = methodcaller("endswith", _EXTENSIONS)  # of a lower-cased name


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
    """The image files of a listing (by extension, or by content), sorted by (root order, path)."""
    return list(record_table(listing))


class RecordTable(Sequence[ImageRecord]):
    """A listing's image records as columns, sorted by (root order, path): an ImageRecord is made only for an
    item asked for. A pre-commit check of a few files reads the columns of all the others (their paths, sizes,
    mtimes, classes), and one object per file was most of its time (60,000 of them for CIFAR-10)."""

    def __init__(
        self,
        root_names: tuple[str, ...],
        roots: np.ndarray,  # int32 per item: its root in root_names (items of a root are contiguous)
        label_names: tuple[str | None, ...],
        labels: np.ndarray,  # int32 per item: its label in label_names
        paths: list[str],
        abspaths: list[str],
        sizes: np.ndarray,  # int64
        mtimes: np.ndarray,  # int64
    ) -> None:
        self.root_names, self.roots, self.label_names, self.labels = root_names, roots, label_names, labels
        self.paths, self.abspaths, self.sizes, self.mtimes = paths, abspaths, sizes, mtimes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - Sequence's overloads: an int or a slice
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        return ImageRecord(
            self.root_names[self.roots[index]],
            self.paths[index],
            self.label_names[self.labels[index]],
            int(self.sizes[index]),
            int(self.mtimes[index]),
            self.abspaths[index],
        )

    def __iter__(self) -> Iterator[ImageRecord]:
        return map(
            ImageRecord,
            map(self.root_names.__getitem__, self.roots.tolist()),
            self.paths,
            map(self.label_names.__getitem__, self.labels.tolist()),
            self.sizes.tolist(),
            self.mtimes.tolist(),
            self.abspaths,
        )

    def take(self, rows: np.ndarray) -> RecordTable:
        """The items at `rows` (ascending: the order stays sorted)."""
        listed = rows.tolist()
        return RecordTable(
            self.root_names,
            self.roots[rows],
            self.label_names,
            self.labels[rows],
            [self.paths[i] for i in listed],
            [self.abspaths[i] for i in listed],
            self.sizes[rows],
            self.mtimes[rows],
        )

    def classes(self) -> tuple[np.ndarray, list[tuple[str, str | None]]]:
        """Each item's class code and the classes (root name, label) by code."""
        combined = self.roots.astype(np.int64) * len(self.label_names) + self.labels
        present, codes = np.unique(combined, return_inverse=True)
        keys = [
            (self.root_names[c // len(self.label_names)], self.label_names[c % len(self.label_names)])
            for c in present.tolist()
        ]
        return codes.reshape(-1).astype(np.int64), keys

    def rows_of(self, members: Sequence[tuple[str, str]]) -> np.ndarray:
        """The row of each (root name, path), -1 when absent: a binary search in its root's run of paths."""
        starts = np.searchsorted(self.roots, np.arange(len(self.root_names) + 1), side="left").tolist()
        position = {name: (starts[k], starts[k + 1]) for k, name in enumerate(self.root_names)}
        rows = np.full(len(members), -1, dtype=np.int64)
        for i, (root, path) in enumerate(members):
            lo, hi = position.get(root, (0, 0))
            row = bisect_left(self.paths, path, lo, hi)
            if row < hi and self.paths[row] == path:
                rows[i] = row
        return rows


def record_table(listing: Listing) -> RecordTable:
    """The image files of a listing (by extension, or by content), sorted by (root order, path), as columns.

    Folder by folder: a folder's files share their label and path prefix, and the per-file work is C calls."""
    root_names = tuple(files.root.name for files in listing.files)
    label_code: dict[str | None, int] = {}
    roots: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    paths: list[str] = []
    abspaths: list[str] = []
    sizes: list[np.ndarray] = []
    mtimes: list[np.ndarray] = []
    for number, files in enumerate(listing.files):
        root = files.root
        base = root.path.rstrip("/") + "/"  # "/" itself is a root path too
        here_paths: list[str] = []
        here_abspaths: list[str] = []
        here_labels: list[np.ndarray] = []
        kept: list[np.ndarray] = []  # each kept file's place in the listing's sizes and mtimes
        position = 0
        label_of = _label_of(root)
        for folder in files.folders:
            count = len(folder.names)
            code = label_code.setdefault(label_of(folder.prefix), len(label_code))
            where = base + folder.prefix
            # visible names never start with ".", so this suffix test is os.path.splitext's (C-level maps)
            by_name = list(map(_IMAGE_NAME, map(str.lower, folder.names)))
            if all(by_name):
                names, keep = folder.names, np.arange(count, dtype=np.int64)
            else:
                chosen = [i for i, ok in enumerate(by_name) if ok or looks_like_image(where + folder.names[i])]
                names, keep = [folder.names[i] for i in chosen], np.array(chosen, dtype=np.int64)
            here_paths.extend(map(folder.prefix.__add__, names))
            here_abspaths.extend(map(where.__add__, names))
            here_labels.append(np.full(len(names), code, dtype=np.int32))
            kept.append(position + keep)
            position += count
        order = sorted(range(len(here_paths)), key=here_paths.__getitem__)
        paths.extend(map(here_paths.__getitem__, order))
        abspaths.extend(map(here_abspaths.__getitem__, order))
        rows = np.array(order, dtype=np.int64)
        at = np.concatenate(kept)[rows] if kept else rows
        labels.append(np.concatenate(here_labels)[rows] if here_labels else np.empty(0, np.int32))
        roots.append(np.full(len(order), number, dtype=np.int32))
        sizes.append(np.frombuffer(files.sizes, dtype=np.int64)[at] if len(at) else np.empty(0, np.int64))
        mtimes.append(np.frombuffer(files.mtimes, dtype=np.int64)[at] if len(at) else np.empty(0, np.int64))

    def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

    return RecordTable(
        root_names,
        joined(roots, np.int32),
        tuple(label_code),
        joined(labels, np.int32),
        paths,
        abspaths,
        joined(sizes, np.int64),
        joined(mtimes, np.int64),
    )


def discover(roots: tuple[Root, ...]) -> tuple[list[ImageRecord], list[tuple[str, str, str]]]:
    """All image files under the roots, sorted by (root order, path); also files that could not be listed."""
    listing = list_files(roots)
    return image_records(listing), listing.problems
