"""Walk dataset folders into sorted ImageRecords: splits, classes, files recognised by content."""

from __future__ import annotations

import os
import re
from bisect import bisect_left, bisect_right
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


class FolderPaths(Sequence[str]):
    """Paths folder by folder, each a prefix and its names (sorted): a path string is made only for an item
    asked for, all of them only when iterated or sliced (a pre-commit check reads a few of a million)."""

    def __init__(self, roots: list[int], prefixes: list[str], names: list[list[str]]) -> None:
        self.roots, self.prefixes, self.names = roots, prefixes, names  # per folder: its root number, ...
        self.starts = np.cumsum([0] + [len(n) for n in names]).tolist()  # each folder's first item
        self._all: list[str] | None = None
        self._folder: dict[tuple[int, str], int] | None = None

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - Sequence's overloads: an int or a slice
        if isinstance(index, slice):
            return self.tolist()[index]
        if self._all is not None:
            return self._all[index]
        index = range(len(self))[index]  # negative indices, IndexError
        k = bisect_right(self.starts, index) - 1
        return self.prefixes[k] + self.names[k][index - self.starts[k]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def tolist(self) -> list[str]:
        if self._all is None:
            self._all = []
            for prefix, names in zip(self.prefixes, self.names):
                self._all.extend(map(prefix.__add__, names))
        return self._all

    def with_prefixes(self, prefixes: list[str]) -> FolderPaths:
        """The same names under other prefixes (the absolute paths of the relative ones)."""
        return FolderPaths(self.roots, prefixes, self.names)

    def find_all(self, items: Sequence[tuple[int, str]]) -> list[int]:
        """The item of each (root number, path), -1 when absent: its folder by its prefix, then a binary search
        in the folder's names (one loop, no call per item: a million-image check asks for ~65,000)."""
        if self._folder is None:
            self._folder = {(r, prefix): k for k, (r, prefix) in enumerate(zip(self.roots, self.prefixes))}
        folder_of, names_of, starts = self._folder, self.names, self.starts
        found = []
        for root, path in items:
            slash = path.rfind("/") + 1
            k = folder_of.get((root, path[:slash]), -1)
            if k < 0:
                found.append(-1)
                continue
            names, name = names_of[k], path[slash:]
            at = bisect_left(names, name)
            found.append(starts[k] + at if at < len(names) and names[at] == name else -1)
        return found


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
        paths: list[str] | FolderPaths,
        abspaths: list[str] | FolderPaths,
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
        many = len(listed) > 64  # then all the strings once, not a search each
        paths = self.paths.tolist() if many and isinstance(self.paths, FolderPaths) else self.paths
        abspaths = self.abspaths.tolist() if many and isinstance(self.abspaths, FolderPaths) else self.abspaths
        return RecordTable(
            self.root_names,
            self.roots[rows],
            self.label_names,
            self.labels[rows],
            [paths[i] for i in listed],
            [abspaths[i] for i in listed],
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
        if isinstance(self.paths, FolderPaths):
            number = {name: k for k, name in enumerate(self.root_names)}
            found = self.paths.find_all([(number.get(root, -1), path) for root, path in members])
            return np.array(found, dtype=np.int64).reshape(len(members))
        for i, (root, path) in enumerate(members):
            lo, hi = position.get(root, (0, 0))
            row = bisect_left(self.paths, path, lo, hi)
            if row < hi and self.paths[row] == path:
                rows[i] = row
        return rows


def record_table(listing: Listing) -> RecordTable:
    """The image files of a listing (by extension, or by content), sorted by (root order, path), as columns.

    Folder by folder: a folder's files share their label and path prefix, and the per-file work is C calls. A
    listing's folders hold their names sorted, so the folders in the order of their paths give the records in
    order, and the paths stay folder by folder (FolderPaths: no string per file) unless a folder's files and a
    subfolder's interleave ("a/b.jpg" < "a/b/c.jpg" < "a/b0.jpg"): then they are strings, sorted."""
    root_names = tuple(files.root.name for files in listing.files)
    label_code: dict[str | None, int] = {}
    folders = []  # per root: its image folders in path order, as (prefix, names, label code, rows in the listing)
    for files in listing.files:
        root = files.root
        base = root.path.rstrip("/") + "/"  # "/" itself is a root path too
        starts = np.cumsum([0] + [len(folder.names) for folder in files.folders]).tolist()  # in the stat arrays
        label_of = _label_of(root)
        here = []
        for k in sorted(range(len(files.folders)), key=lambda k: files.folders[k].prefix):
            folder = files.folders[k]
            code = label_code.setdefault(label_of(folder.prefix), len(label_code))
            if _all_images(folder.names):
                names, keep = folder.names, np.arange(len(folder.names), dtype=np.int64)
            else:
                where = base + folder.prefix
                by_name = list(map(_IMAGE_NAME, map(str.lower, folder.names)))
                chosen = [i for i, ok in enumerate(by_name) if ok or looks_like_image(where + folder.names[i])]
                names, keep = [folder.names[i] for i in chosen], np.array(chosen, dtype=np.int64)
            if names:
                here.append((folder.prefix, names, code, starts[k] + keep))
        folders.append((base, here))

    def in_order(here: list) -> bool:
        return all(p + n[-1] < q + m[0] for (p, n, _, _), (q, m, _, _) in zip(here, here[1:]))

    roots: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    sizes: list[np.ndarray] = []
    mtimes: list[np.ndarray] = []
    by_folder = all(in_order(here) for _, here in folders)
    paths: list[str] = []
    abspaths: list[str] = []
    for number, ((base, here), files) in enumerate(zip(folders, listing.files)):
        at = np.concatenate([keep for _, _, _, keep in here]) if here else np.empty(0, dtype=np.int64)
        codes = np.concatenate([np.full(len(n), c, dtype=np.int32) for _, n, c, _ in here] or [np.empty(0, np.int32)])
        if not by_folder:  # strings, sorted
            here_paths = [path for prefix, names, _, _ in here for path in map(prefix.__add__, names)]
            order = sorted(range(len(here_paths)), key=here_paths.__getitem__)
            paths.extend(map(here_paths.__getitem__, order))
            abspaths.extend(base + here_paths[i] for i in order)
            at, codes = at[order], codes[order]
        roots.append(np.full(len(at), number, dtype=np.int32))
        labels.append(codes)
        sizes.append(np.frombuffer(files.sizes, dtype=np.int64)[at] if len(at) else np.empty(0, np.int64))
        mtimes.append(np.frombuffer(files.mtimes, dtype=np.int64)[at] if len(at) else np.empty(0, np.int64))
    if by_folder:
        flat = [
            (number, base, prefix, names) for number, (base, here) in enumerate(folders) for prefix, names, _, _ in here
        ]
        relative = FolderPaths([f[0] for f in flat], [f[2] for f in flat], [f[3] for f in flat])
        paths_column: list[str] | FolderPaths = relative
        abspaths_column: list[str] | FolderPaths = relative.with_prefixes([f[1] + f[2] for f in flat])
    else:
        paths_column, abspaths_column = paths, abspaths

    def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

    return RecordTable(
        root_names,
        joined(roots, np.int32),
        tuple(label_code),
        joined(labels, np.int32),
        paths_column,
        abspaths_column,
        joined(sizes, np.int64),
        joined(mtimes, np.int64),
    )


def _all_images(names: list[str]) -> bool:
    """Every name has an image extension: the usual folder holds one extension, so the first name's ending is
    counted in the names joined (one C-level search) before each name is tested."""
    first = names[0].lower() if names else ""
    ending = first[first.rfind(".") :] + "\0"
    if names and ending[:-1] in IMAGE_EXTENSIONS:
        if ("\0".join(names) + "\0").lower().count(ending) == len(names):  # a name ends once, before its NUL
            return True
    return all(map(_IMAGE_NAME, map(str.lower, names)))


def discover(roots: tuple[Root, ...]) -> tuple[list[ImageRecord], list[tuple[str, str, str]]]:
    """All image files under the roots, sorted by (root order, path); also files that could not be listed."""
    listing = list_files(roots)
    return image_records(listing), listing.problems
