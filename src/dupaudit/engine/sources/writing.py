"""A deduplicated copy of a source in its own format (dedup --write-filtered): the input is only read.

Each source kind writes its copy (WebDatasetSource/ParquetSource/ManifestSource.write_filtered); this module
holds what they share: where the copy may go, and the ids a plan drops from one source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ...errors import InputError
from .base import Filtered, SourceOptions
from .storage import filesystem, is_url


def fresh_output(out: str, storage_options=(), *, folder: bool, source_location: str = ""):
    """(fs, path) for a copy that must not overwrite anything: a new or empty folder, or a new file."""
    fs, path = filesystem(out, storage_options)
    if not is_url(out):
        here = os.path.realpath(path)
        origin = os.path.realpath(source_location) if source_location and not is_url(source_location) else ""
        if origin and (here == origin or here.startswith(origin.rstrip("/") + "/")):
            raise InputError(f"{out}: inside the dataset it filters; choose a place outside it")
    if fs.exists(path):
        if not folder or not fs.isdir(path) or fs.ls(path):
            what = "an empty folder" if folder else "a new file"
            raise InputError(f"{out}: exists; --write-filtered writes {what}, never over anything")
    return fs, path


def dropped_ids(plan, root_names: set[str]) -> set[str]:
    """The ids a dedup plan drops from the roots of one source."""
    return {f.path for f in plan.drops if f.root in root_names}


@dataclass(slots=True)
class ContainerOutputs:
    """What dedup wrote for sources that are not folders."""

    filtered: Filtered | None  # the copy of ROOT's source (--write-filtered)
    kept: int  # ids in --list
    dropped: int  # ids in --drop-list


def container_outputs(
    report,
    plan,
    targets: list[str],
    options: SourceOptions,
    *,
    write_filtered: str | None = None,
    keep_list: str | None = None,
    drop_list: str | None = None,
    null: bool = False,
) -> ContainerOutputs:
    """dedup's outputs for tar shards, Parquet and manifests, whose items cannot be moved out of their container:
    a filtered copy of ROOT's source, the kept ids and the dropped ids (one per line, or NUL-separated)."""
    from .detect import open_source

    sources = [open_source(target, options) for target in targets]
    skipped = {(root, path) for root, path, _ in plan.skipped}
    result = ContainerOutputs(None, 0, 0)
    kept: list[str] = []
    dropped: list[str] = []
    for index, source in enumerate(sources):
        names = {r.name for r in report.roots if r.source == source.kind and r.path == source.url}
        drop = dropped_ids(plan, names)
        dropped.extend(sorted(drop))
        if index == 0 and write_filtered is not None:
            if source.kind == "folder":
                raise InputError(
                    "--write-filtered is for tar shards, Parquet and manifests; for a folder use --link-tree"
                )
            result.filtered = source.write_filtered(write_filtered, drop)
            ids = result.filtered.kept
        elif keep_list is not None and source.kind != "folder":
            ids = [i.id for p in source.partitions() for i in source.read(p) if i.error is None and i.id not in drop]
        else:
            ids = []
        root_of = {r.name for r in report.roots if r.path == source.url}
        kept.extend(i for i in ids if not any((name, i) in skipped for name in root_of))
    separator = "\0" if null else "\n"
    for path, ids in ((keep_list, kept), (drop_list, dropped)):
        if path is not None:
            if not null and any("\n" in i for i in ids):
                raise InputError(f"{path}: an id contains a newline; write a NUL-separated list instead (--null)")
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
                handle.write("".join(i + separator for i in ids))
    result.kept, result.dropped = len(kept), len(dropped)
    return result
