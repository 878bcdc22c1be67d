"""Which kind of source the user gave: from the URL or path, the file's extension, or a folder's contents.

`--source-type` overrides the guess. A local folder that holds no shards, Parquet files or manifest is a folder of
images: the scan's fast path, decided from at most three levels of folder names (no file is opened).
"""

from __future__ import annotations

import os

from ...errors import InputError
from .base import SOURCE_TYPES, SourceOptions
from .folder import FolderSource
from .manifest import MANIFEST_EXTENSIONS, ManifestSource
from .parquet import PARQUET_EXTENSIONS, ParquetSource
from .storage import expand_braces, filesystem, has_glob, is_url
from .webdataset import IMAGE_EXTENSIONS, SHARD_EXTENSIONS, WebDatasetSource

OPENERS = {
    "folder": FolderSource.open,
    "webdataset": WebDatasetSource.open,
    "parquet": ParquetSource.open,
    "manifest": ManifestSource.open,
}
TABLE_EXTENSIONS = tuple(e for e in MANIFEST_EXTENSIONS if e not in PARQUET_EXTENSIONS)
IMAGE_SUFFIXES = tuple(f".{e}" for e in IMAGE_EXTENSIONS)
_LOOK_BREADTH = 256  # folders looked into per level
_LOOK_DEPTH = 3  # folder levels looked at for shards or Parquet files (shards/, data/, <config>/<split>/)


def open_source(target: str, options: SourceOptions = SourceOptions()):
    """The source a target names (a path, glob, brace range or URL), its type detected or as `options` says."""
    target = str(target)
    kind = options.source_type
    if kind is not None and kind not in SOURCE_TYPES:
        raise InputError(f"unknown --source-type {kind!r}: choose one of {', '.join(SOURCE_TYPES)}")
    if kind is None:
        kind = detect(target, options)
    if kind == "parquet" and options.image_column is None and options.source_type is None:
        try:
            return ParquetSource.open(target, options)
        except InputError as exc:  # a Parquet table of paths is a manifest
            if "no image column" not in str(exc) or not _single_file(target):
                raise
            return ManifestSource.open(target, options)
    return OPENERS[kind](target, options)


def is_plain_folder(target: str, options: SourceOptions) -> bool:
    """True when the target is a local folder that the scan walks as a folder of images (its fast path: decided
    without reading the folder). A folder in which the walk finds no image may still hold shards or Parquet
    files: holds_container says."""
    if options.source_type is not None:
        return options.source_type == "folder" and not is_url(str(target))
    return not is_url(str(target)) and os.path.isdir(os.path.expanduser(str(target)))


def holds_container(folder: str) -> bool:
    """True when a local folder keeps .tar shards or .parquet files in its first levels."""
    return _folder_kind(folder) is not None


def detect(target: str, options: SourceOptions) -> str:
    by_name = _kind_by_extension(target)
    if by_name is not None:
        return by_name
    if has_glob(target) or expand_braces(target) != [target]:
        raise InputError(f"{target}: a glob or brace range must name .tar shards or .parquet files")
    if not is_url(target):
        path = os.path.expanduser(target)
        if not os.path.exists(path):
            raise InputError(f"{target}: no such folder or file")
        if os.path.isdir(path):
            return _folder_kind(path) or "folder"
        raise InputError(
            f"{target}: not a dataset (tried: a folder of images, .tar shards, .parquet files, "
            "a .csv/.tsv/.jsonl/.ndjson manifest); say which with --source-type"
        )
    fs, path = filesystem(target, options.storage_options)
    try:
        names = [p for p in fs.find(path) if not any(part.startswith(".") for part in p.split("/"))]
    except FileNotFoundError:
        raise InputError(f"{target}: not found") from None
    except PermissionError:
        raise InputError(f"{target}: access denied (check the credentials)") from None
    except Exception as exc:  # noqa: BLE001
        from .storage import read_reason

        raise InputError(f"{target}: cannot list: {read_reason(exc)}") from None
    kinds = [k for k in (_kind_by_extension(n) for n in names) if k]
    for kind in ("parquet", "webdataset"):
        if kind in kinds:
            return kind
    if kinds.count("manifest") == 1:
        raise InputError(
            f"{target}: holds one manifest: give its URL ({[n for n in names if _kind_by_extension(n)][0]})"
        )
    raise InputError(
        f"{target}: no .tar shards or .parquet files found (for image files, list them in a manifest); "
        "say which with --source-type"
    )


def _kind_by_extension(name: str) -> str | None:
    lowered = name.lower().rstrip("/")
    if lowered.endswith(SHARD_EXTENSIONS):
        return "webdataset"
    if lowered.endswith(PARQUET_EXTENSIONS):
        return "parquet"
    if lowered.endswith(TABLE_EXTENSIONS):
        return "manifest"
    return None


def _folder_kind(path: str) -> str | None:
    """'parquet' or 'webdataset' when the folder keeps such files in its first levels; None for images.

    A folder is left at its first image file (class folders hold thousands): a few directory reads in all."""
    level = [path]
    for _ in range(_LOOK_DEPTH):
        deeper = []
        for folder in level:
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.name.startswith("."):
                            continue
                        lowered = entry.name.lower()
                        if lowered.endswith(IMAGE_SUFFIXES):
                            break
                        kind = _kind_by_extension(lowered)
                        if kind in ("parquet", "webdataset") and entry.is_file():
                            return kind
                        if entry.is_dir():
                            deeper.append(entry.path)
            except OSError:
                continue
        level = deeper[:_LOOK_BREADTH]
    return None


def _single_file(target: str) -> bool:
    return not has_glob(target) and expand_braces(target) == [target] and target.lower().endswith(PARQUET_EXTENSIONS)
