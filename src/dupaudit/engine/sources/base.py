"""What every source shares: the options a user gives, the unit of work (a partition), the item, the protocol.

A source is a dataset kept in some form (a folder, WebDataset tar shards, Parquet files, a manifest), local or
behind an fsspec URL. It lists its partitions cheaply (one tar shard, one Parquet row group, one slice of manifest
rows), and reads one partition into items. A partition is what a worker process, or a distributed task, is handed:
everything it needs to read its share travels with it (it pickles), so the same function runs anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import xxhash

SOURCE_TYPES = ("folder", "webdataset", "parquet", "manifest")
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")  # the order roots are listed in (as discover's)


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """What the user may say about a source; None means "detect it"."""

    source_type: str | None = None  # one of SOURCE_TYPES
    image_column: str | None = None  # Parquet: the column holding the image bytes
    label_column: str | None = None  # Parquet and manifests
    split_column: str | None = None  # Parquet and manifests
    path_column: str | None = None  # manifests: the column holding a path or URL
    storage_options: tuple[tuple[str, str], ...] = ()  # fsspec keyword arguments (--storage-option KEY=VALUE)


@dataclass(frozen=True, slots=True)
class Partition:
    """One unit of reading: a tar shard, a Parquet row group, or a slice of manifest rows.

    `version` tells whether the container changed (size and mtime_ns of a file, an object's ETag); `split` is the
    split the container's place names (None when its items say it themselves)."""

    location: str  # the shard, file or manifest, as its filesystem names it
    index: int  # row group or slice number (0 for a tar shard)
    version: str
    split: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One image of a source: where it lives, what it is labelled, and its bytes (or why they cannot be had)."""

    id: str  # stable, relative to the source: "train/shard-000003.tar/x.jpg", "data/train-0-of-1.parquet#412"
    split: str | None
    label: str | None
    data: bytes | None  # None when `error` says why there is nothing to decode
    error: str | None = None
    # the item's own name where its id does not hold it (a Parquet row's image path, "" when it records none),
    # for the keep rule's name step (keep.py); None: the id is its name (a tar member, a manifest's path)
    name: str | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else 0

    @property
    def version(self) -> int:
        """A content version for the fingerprint cache: items in a container have no trustworthy mtime, so an
        item is keyed by its bytes (XXH3-64, as a signed 64-bit integer: SQLite's INTEGER)."""
        if self.data is None:
            return 0
        value = xxhash.xxh3_64_intdigest(self.data)
        return value - (1 << 64) if value >= 1 << 63 else value


class Source(Protocol):
    """A dataset in one form. `url` is where it lives (an absolute local path or a URL); `name` names its roots
    when its items carry no split."""

    kind: str
    url: str
    name: str

    def partitions(self) -> list[Partition]:
        """Every unit of reading, in a fixed order (cheap: listings and footers, no image bytes)."""
        ...

    def read(self, partition: Partition) -> Iterator[Item]:
        """The items of one partition, in a fixed order; a bad item is yielded with its error, never raised."""
        ...


def split_order(name: str) -> tuple:
    """Roots are listed train first, then the other known splits in SPLIT_NAMES order, then the rest by name."""
    lowered = name.lower()
    return (SPLIT_NAMES.index(lowered), "") if lowered in SPLIT_NAMES else (len(SPLIT_NAMES), name)


def split_of(text: str) -> str | None:
    """The split a folder name or a file-name prefix names ("train", "train-000000.tar", "test_3.parquet")."""
    lowered = text.lower()
    for split in SPLIT_NAMES:
        if lowered == split or (lowered.startswith(split) and lowered[len(split) : len(split) + 1] in ("-", "_", ".")):
            return text[: len(split)]
    return None


@dataclass(slots=True)
class Filtered:
    """What a filtered copy holds: the ids kept (in source order), how many were dropped, the files written."""

    kept: list[str]
    dropped: int
    written: list[str]
