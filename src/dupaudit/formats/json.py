"""The schema_version 1 JSON report (docs/architecture.md, "The report"): render a ScanReport, and read one back."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..engine.model import (
    DECIMALS,
    ClassStats,
    DuplicateGroup,
    GroupMember,
    Layout,
    Link,
    Root,
    ScanReport,
    Settings,
    Skipped,
    SplitStats,
    Summary,
)
from ..errors import InputError

SCHEMA_VERSION = 1
SCHEMA_FILE = "report.schema.json"  # the JSON Schema of this format, shipped beside this module (docs/report-json.md)


def schema() -> dict:
    """The JSON Schema (draft 2020-12) that every report of this schema_version satisfies."""
    from importlib.resources import files

    return json.loads(files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


def _round(value: float) -> float:
    return round(value, DECIMALS)


def to_dict(report: ScanReport) -> dict:
    """The report as plain JSON-ready data; keys and order fixed so two runs give the same file."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "dupaudit", "version": report.tool_version},
        "roots": [_root(r) for r in report.roots],
        "settings": {
            "method": report.settings.method,
            "threshold": report.settings.threshold,
            "flips": report.settings.flips,
            "verify": report.settings.verify,
            "neighbours": report.settings.neighbours,
            "min_similarity": report.settings.min_similarity,
            # written only when on, so that reports of default scans keep their bytes (schema_version 1)
            **({"fast_decode": True} if report.settings.fast_decode else {}),
            **({"rotations": True} if report.settings.rotations else {}),
        },
        # how the folders were read and what was not scanned as it looks (README "Layouts")
        "layout": None if report.layout is None else {"kind": report.layout.kind, "reason": report.layout.reason},
        "warnings": list(report.warnings),
        "summary": {
            "images": report.summary.images,
            "skipped": report.summary.skipped,
            "groups": report.summary.groups,
            "redundant": report.summary.redundant,
            "label_conflicts": report.summary.label_conflicts,
            "leaked": report.summary.leaked,
            "skew": _round(report.summary.skew),
            "wasted_fraction": _round(report.summary.wasted_fraction),
            "exact_copies": report.summary.exact_copies,
            "pixel_copies": report.summary.pixel_copies,
            "near_copies": report.summary.near_copies,
        },
        "classes": [
            {
                "split": c.split,
                "label": c.label,
                "images": c.images,
                "distinct": c.distinct,
                "redundant": c.redundant,
                "duplication_rate": _round(c.duplication_rate),
                "prior": _round(c.prior),
                "prior_without_duplicates": _round(c.prior_without_duplicates),
                "inflation": _round(c.inflation),
            }
            for c in report.classes
        ],
        "splits": [
            {
                "split": s.split,
                "role": s.role,
                "images": s.images,
                "distinct": s.distinct,
                "redundant": s.redundant,
                "skew": _round(s.skew),
                "wasted_fraction": _round(s.wasted_fraction),
                "leaked": s.leaked,
                "leaked_fraction": _round(s.leaked_fraction),
            }
            for s in report.splits
        ],
        "groups": [
            {
                "id": g.id,
                "kind": g.kind,
                "max_distance": g.max_distance,
                "label_conflict": g.is_label_conflict,
                "leakage": g.is_leak,
                "exact_copies": g.exact_copies,
                "pixel_copies": g.pixel_copies,
                "members": [
                    {
                        "root": m.root,
                        "path": m.path,
                        "label": m.label,
                        "keep": m.keep,
                        "width": m.width,
                        "height": m.height,
                        "size": m.size,
                        "link": _link(g, m.link),
                        **({"name": m.name} if m.name is not None else {}),  # a Parquet row's own name
                    }
                    for m in g.members
                ],
            }
            for g in report.groups
        ],
        "skipped": [{"root": s.root, "path": s.path, "reason": s.reason} for s in report.skipped],
    }


def _root(root: Root) -> dict:
    """A root; one read from another source than a folder also names its source type and URL (folder roots
    stay as they were, so their reports do not change)."""
    if root.source == "folder":
        return {"name": root.name, "path": root.path}
    url = root.path if "://" in root.path else Path(root.path).as_uri()
    return {"name": root.name, "path": root.path, "source": root.source, "url": url}


def _link(group: DuplicateGroup, link: Link | None) -> dict | None:
    """A member's own link (None for the kept member): to which member, of what kind, how far."""
    if link is None:
        return None
    to = group.members[link.to]
    return {
        "kind": link.kind,
        "to": {"root": to.root, "path": to.path},
        "distance": link.distance,
        "score": None if link.score is None else _round(link.score),
        "transform": link.transform,
    }


def _read_link(data: dict | None, members: list[dict]) -> Link | None:
    if data is None:
        return None
    slot = {(m["root"], m["path"]): i for i, m in enumerate(members)}
    return Link(
        data["kind"],
        slot[(data["to"]["root"], data["to"]["path"])],
        data["distance"],
        data.get("score"),
        data.get("transform"),
    )


_SURROGATE = re.compile("[\ud800-\udfff]")


def render(report: ScanReport) -> str:
    # A file name that is not UTF-8 reaches us with its bytes as lone surrogates (os.fsdecode); escape them
    # (\udcXX) so the report stays valid UTF-8 JSON and json.loads gives back the exact name.
    text = json.dumps(to_dict(report), indent=2, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def from_dict(data: dict) -> ScanReport:
    """Rebuild a ScanReport from a saved report (the fields of schema_version 1)."""
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"not a dupaudit scan report of schema_version {SCHEMA_VERSION}")
    try:
        # a root is labelled when its images carry labels (the JSON does not store the flag itself)
        labelled = {c["split"] for c in data["classes"] if c.get("label") is not None}
        roles = {s.get("split"): s.get("role", "") for s in data.get("splits", [])}
        roots = tuple(
            Root(
                r["name"], r["path"], r["name"] in labelled, roles.get(r["name"], ""), source=r.get("source", "folder")
            )
            for r in data["roots"]
        )
        train = next(
            (s["split"] for s in data.get("splits", []) if s.get("role") == "train"), roots[0].name if roots else ""
        )
        return ScanReport(
            tool_version=data["tool"]["version"],
            roots=roots,
            settings=Settings(**data["settings"]),
            summary=Summary(**data["summary"]),
            classes=tuple(ClassStats(**c) for c in data["classes"]),
            splits=tuple(SplitStats(**s) for s in data.get("splits", [])),
            groups=tuple(
                DuplicateGroup(
                    g["id"],
                    g["kind"],
                    g["max_distance"],
                    tuple(
                        GroupMember(
                            m["root"],
                            m["path"],
                            m.get("label"),
                            m["keep"],
                            m.get("width", 0),
                            m.get("height", 0),
                            m.get("size", 0),
                            _read_link(m.get("link"), g["members"]),
                            m.get("name"),
                        )
                        for m in g["members"]
                    ),
                    leak=_leak(g),
                )
                for g in data["groups"]
            ),
            skipped=tuple(Skipped(**s) for s in data["skipped"]),
            train_split=train,
            layout=Layout(**data["layout"]) if data.get("layout") else None,
            warnings=tuple(str(w) for w in data.get("warnings", [])),
        )
    except (KeyError, TypeError, IndexError) as exc:
        raise InputError(f"malformed scan report: {exc}") from None


def _leak(group: dict) -> bool | None:
    """A group's leak flag when it is not the default (spans splits): a copy in an unlabelled pool is no leak."""
    saved = group.get("leakage")
    spans = len({m["root"] for m in group["members"]}) > 1
    return None if saved is None or saved == spans else bool(saved)


def loads(text: str) -> ScanReport:
    try:
        return from_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc}") from None


def write(path: str | os.PathLike, text: str) -> None:
    """Write a rendered report to `path` (its folder created), as `dupaudit scan --json` does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", errors="surrogateescape")  # a non-UTF-8 file name keeps its bytes


def read(path: str | os.PathLike) -> ScanReport:
    """A report from a file that `write` (or `dupaudit scan --json`) made; InputError naming the file if not."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: scan report not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the scan report: {exc}") from None
    try:
        return loads(text)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
