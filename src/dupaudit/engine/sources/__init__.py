"""The source layer: datasets where they live (a folder, WebDataset shards, Parquet, a manifest; local or behind an
fsspec URL), listed as partitions and read into items. See docs/sources.md."""

from .base import SOURCE_TYPES, Item, Partition, Source, SourceOptions
from .detect import holds_container, is_plain_folder, open_source

__all__ = [
    "SOURCE_TYPES",
    "Item",
    "Partition",
    "Source",
    "SourceOptions",
    "holds_container",
    "is_plain_folder",
    "open_source",
]
