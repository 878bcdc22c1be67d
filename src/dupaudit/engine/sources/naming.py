"""Which items of a source a name given by the user names: a container file (a tar shard, a Parquet file: all its
items), a path inside one (`shards/train/shard-000003.tar/x.jpg`), an item id (`train/shard-000003.tar/x.jpg`,
`data/train-00000-of-00002.parquet#412`, a manifest's path), a file a manifest lists, or the manifest itself (all
its items: its rows say the labels and splits).

Used by `dupaudit check FILES` (the files a commit changed), by the baseline's pruning (is an accepted item still
there?) and by `scan --explain A B` (two items of a container).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .base import Source
from .storage import is_url, relative_to

_SEPARATOR = {"webdataset": "/", "parquet": "#"}  # between a container's id and an item's place in it


@dataclass(frozen=True, slots=True)
class Selection:
    """Items of one source: those whose id starts with `prefix` (every item of a container), or one `id`."""

    prefix: str | None = None
    id: str | None = None

    def matches(self, item_id: str) -> bool:
        if self.id is not None:
            return item_id == self.id
        return self.prefix is not None and item_id.startswith(self.prefix)


def containers(source: Source) -> dict[str, str]:
    """{container id (relative to the source, as item ids begin): its location} for tar shards and Parquet
    files; the manifest itself for a manifest (id "")."""
    kind = source.kind
    if kind == "webdataset":
        return {relative_to(source.base, path): path for path, _ in source.shards}  # type: ignore[attr-defined]
    if kind == "parquet":
        return {relative_to(source.base, path): path for path, _, _ in source.files}  # type: ignore[attr-defined]
    if kind == "manifest":
        return {"": source.location}  # type: ignore[attr-defined]
    return {}


def select(source: Source, name: str, cwd: str | os.PathLike = ".") -> Selection | None:
    """The items of `source` that `name` (a path relative to `cwd`, a URL, or an item id) names; None: none."""
    if source.kind == "folder":
        return None
    located = _absolute(name, cwd)
    owned = containers(source)
    if source.kind == "manifest":
        if located == source.location:  # type: ignore[attr-defined]
            return Selection(prefix="")
        ids = manifest_ids(source)
        if name in ids:
            return Selection(id=name)
        return next((Selection(id=i) for i, where in ids.items() if where == located), None)
    separator = _SEPARATOR[source.kind]
    for container, location in owned.items():
        if located == location:
            return Selection(prefix=container + separator)
        if located.startswith(location + separator):  # a path inside a container: shards/x.tar/member.jpg
            return Selection(id=container + located[len(location) :])
    return item(source, name)


def item(source: Source, item_id: str) -> Selection | None:
    """The item an id names when its container is (still) part of the source (a manifest: when a row lists it);
    an id may carry its root's name in front (`train/<id>`, as findings and baselines write it)."""
    if source.kind == "folder":
        return None
    candidates = [item_id] + ([item_id.split("/", 1)[1]] if "/" in item_id else [])
    if source.kind == "manifest":
        ids = manifest_ids(source)
        return next((Selection(id=c) for c in candidates if c in ids), None)
    separator = _SEPARATOR[source.kind]
    owned = containers(source)
    for candidate in candidates:
        container, found, place = candidate.rpartition(separator)
        while found and container:
            if container in owned and place:
                return Selection(id=candidate)
            if separator == "#":
                break
            container, found, _ = container.rpartition(separator)  # a member may sit in folders inside the shard
            place = candidate[len(container) + 1 :]
    return None


def manifest_ids(source: Source) -> dict[str, str]:
    """{item id (the path as the manifest writes it): where the bytes are (an absolute path or a URL)}."""
    from .manifest import _table

    manifest = source
    _, rows = _table(manifest.target, manifest.location, manifest.version, manifest.storage_options)  # type: ignore[attr-defined]
    folder = manifest.url.rsplit("/", 1)[0] if "/" in manifest.url else "."
    found = {}
    for row in rows:
        written = row.get(manifest.path_column)  # type: ignore[attr-defined]
        written = "" if written is None else str(written).strip()
        if written:
            where = written if is_url(written) or written.startswith("/") else f"{folder}/{written}"
            found[written] = where if is_url(where) else os.path.normpath(where)
    return found


def _absolute(name: str, cwd: str | os.PathLike) -> str:
    if is_url(name):
        return name
    return os.path.normpath(os.path.join(os.path.abspath(cwd), os.path.expanduser(name)))


def file_of(source: Source, item_id: str) -> str | None:
    """The file a change to an item shows up in (where a CI annotation belongs): its tar shard or Parquet file, a
    manifest row's image file (else the manifest); None when the source no longer holds it."""
    chosen = item(source, item_id)
    if chosen is None or chosen.id is None:
        return None
    if source.kind == "manifest":
        where = manifest_ids(source).get(chosen.id, "")
        return where if where and not is_url(where) else source.location  # type: ignore[attr-defined]
    separator = _SEPARATOR[source.kind]
    return next(
        (location for container, location in containers(source).items() if chosen.id.startswith(container + separator)),
        None,
    )
