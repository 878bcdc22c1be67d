"""`dupaudit check` over a dataset that is not a folder (tar shards, Parquet, a manifest): which items the files
given to check name, and whether an accepted item is still there.

A staged tar shard or Parquet file names every item in it (findings about any of them count); an item id
(`train/shard-000003.tar/x.jpg`, `data/train-00000-of-00002.parquet#412`) or a path inside a shard names one
item; a file a manifest lists names that row's item; the manifest itself names the whole dataset (its rows say the
labels and splits). engine/sources/naming.py holds the rules.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from ..config import AuditConfig
from ..engine.model import ScanReport
from ..engine.sources import Source, holds_container, is_plain_folder, open_source
from ..engine.sources.detect import IMAGE_SUFFIXES
from ..engine.sources.naming import Selection, file_of, item, select
from .baseline import Finding

Selections = list[tuple[int, Selection]]  # (index of the source, the items it names)
FOLDER = -1  # the "source index" of a file inside a folder root among other sources: Selection.id is its path


def dataset_sources(config: AuditConfig) -> list[Source] | None:
    """The configured roots as sources, or None when every one is a folder of images (the folder check, with
    its incremental path)."""
    options = config.source_options()
    targets = [config.root, *config.against]
    if all(is_plain_folder(t, options) and (options.source_type or _image_folder(t)) for t in targets):
        return None
    return [open_source(target, options) for target in targets]


def _image_folder(folder: str) -> bool:
    """The scan's rule: a folder is read as shards or Parquet files only when it holds them and no image (a
    dataset of images with a stray metadata .parquet stays a folder)."""
    if not holds_container(folder):
        return True
    for _, _, names in os.walk(folder):  # stops at the first image; a folder of shards has few files
        if any(name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".") for name in names):
            return True
    return False


def selections(
    sources: Sequence[Source], files: Sequence[str] | None, cwd: str | os.PathLike
) -> tuple[Selections, list[str], bool]:
    """(what each passed name selects, the names that select nothing, True when one names the whole dataset)."""
    chosen: Selections = []
    outside: list[str] = []
    everything = False
    for name in files or ():
        found = [(i, s) for i, source in enumerate(sources) if (s := select(source, name, cwd)) is not None]
        located = os.path.abspath(os.path.join(cwd, name))
        if any(s.kind == "folder" and located.startswith(s.url.rstrip(os.sep) + os.sep) for s in sources):
            found.append((FOLDER, Selection(id=located)))  # matched against the folder roots after the scan
        if not found:
            outside.append(name)
        everything = everything or any(s.prefix == "" for _, s in found)
        chosen.extend(found)
    return chosen, outside, everything


def _source_of_root(report: ScanReport, sources: Sequence[Source]) -> dict[str, int]:
    by_place = {(s.kind, s.url): i for i, s in enumerate(sources)}
    return {r.name: by_place[(r.source, r.path)] for r in report.roots if (r.source, r.path) in by_place}


def changed_items(report: ScanReport, sources: Sequence[Source], chosen: Selections) -> set[str]:
    """The dataset paths (root/id) of the report's group members and skipped items that the selections name:
    the only items a finding can be about."""
    root_source = _source_of_root(report, sources)
    folders = {r.name: r.path for r in report.roots if r.source == "folder"}
    named = [(root, path) for g in report.groups for root, path in ((m.root, m.path) for m in g.members)]
    named += [(s.root, s.path) for s in report.skipped]
    changed = set()
    for root, path in named:
        if root in folders:
            file = os.path.join(folders[root], *path.split("/"))
            hit = any(index == FOLDER and selection.id == file for index, selection in chosen)
        else:
            hit = any(root_source.get(root) == index and selection.matches(path) for index, selection in chosen)
        if hit:
            changed.add(f"{root}/{path}")
    return changed


def still_there(report: ScanReport, sources: Sequence[Source], root: str, path: str) -> bool:
    """True when an accepted item's container is still part of the source (a manifest: a row still lists it)."""
    folder = next((r.path for r in report.roots if r.name == root and r.source == "folder"), None)
    if folder is not None:
        return os.path.lexists(os.path.join(folder, *path.split("/")))
    index = _source_of_root(report, sources).get(root)
    return index is not None and item(sources[index], path) is not None


def on_their_files(report: ScanReport, sources: Sequence[Source], findings: list[Finding]) -> list[Finding]:
    """Findings about items with `file` set to the shard, Parquet file or listed image that holds them (a CI
    annotation then lands on a file of the repository)."""
    root_source = _source_of_root(report, sources)
    placed = []
    for finding in findings:
        root, _, path = finding.path.partition("/")
        index = root_source.get(root)
        where = file_of(sources[index], path) if index is not None else None
        placed.append(replace(finding, file=where) if where is not None else finding)
    return placed
