"""The files a plan keeps: as a list, or as a tree of links (the deduplicated dataset, with no file moved)."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from ..engine.model import Root
from ..errors import InputError
from ..wording import plural
from .files import atomic_write, inside
from .plan import Plan

# --------------------------------------------------------------------------------------- kept files


@dataclass(frozen=True, slots=True)
class KeptFile:
    root: str
    path: str  # relative to its root
    abspath: str
    tree_path: str  # where it goes in a link tree, relative to the tree


def kept_files(plan: Plan) -> list[KeptFile]:
    """Every image file under the plan's roots that the plan does not drop and the scan could read."""
    from ..engine.discover import discover

    # a root inside another is left out of the outer one, as in the scan (engine/layout.py)
    roots = tuple(
        Root(
            r.name,
            r.path,
            False,
            exclude=tuple(o.path for o in plan.roots if o.path.startswith(r.path.rstrip("/") + "/")),
        )
        for r in plan.roots
    )
    for root in roots:
        if not os.path.isdir(root.path):
            raise InputError(f"{root.path}: root {root.name} of the plan is not a folder")
    records, _ = discover(roots)
    excluded = {f.key for f in plan.drops} | {(root, path) for root, path, _ in plan.skipped}
    order = {r.name: i for i, r in enumerate(plan.roots)}
    trees = {r.name: r.tree for r in plan.roots}
    kept = [
        KeptFile(r.root, r.path, r.abspath, f"{trees[r.root]}/{r.path}" if trees[r.root] else r.path)
        for r in records
        if r.key not in excluded
    ]
    kept.sort(key=lambda k: (order[k.root], k.path))
    return kept


def write_list(plan: Plan, out: str | os.PathLike, *, null: bool = False) -> int:
    """Write the kept files' absolute paths, one per line (NUL-separated with null=True); returns the count."""
    data, count = list_bytes(plan, null=null)
    atomic_write(Path(out), data)
    return count


def list_bytes(plan: Plan, *, null: bool = False) -> tuple[bytes, int]:
    """The kept files' absolute paths as written by write_list (for stdout), and their count."""
    kept = kept_files(plan)
    separator = b"\0" if null else b"\n"
    if not null:
        awkward = [k for k in kept if "\n" in k.abspath]
        if awkward:
            raise InputError(
                f"{plural(len(awkward), 'kept path')} with a newline (e.g. {awkward[0].abspath!r}); "
                "write a NUL-separated list instead (--null)"
            )
    return b"".join(os.fsencode(k.abspath) + separator for k in kept), len(kept)


def link_tree(plan: Plan, out: str | os.PathLike, *, hardlinks: bool = False) -> int:
    """A deduplicated view of the dataset: OUT mirrors its layout with links to the kept files only."""
    out = Path(out).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty folder; choose a new folder for the link tree")
    kept = kept_files(plan)
    for root in plan.roots:
        if inside(out.resolve() if out.exists() else out, Path(root.path)):
            raise InputError(f"{out}: the link tree would be inside root {root.name}; choose a folder outside it")
    out.mkdir(parents=True, exist_ok=True)
    for item in kept:
        target = out.joinpath(*item.tree_path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        if hardlinks:
            try:
                os.link(item.abspath, target)
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    raise InputError(
                        f"{out}: hardlinks cannot cross filesystems; use symlinks or a folder on the "
                        "dataset's filesystem"
                    ) from None
                raise
        else:
            os.symlink(item.abspath, target)
    return len(kept)


def summarize(plan: Plan) -> dict[str, int]:
    drops = plan.drops
    return {
        "groups": len(plan.groups),
        "keep": len(plan.keeps),
        "drop": len(drops),
        "drop_bytes": sum(f.size for f in drops),
    }
