"""One CSV row per group member: for spreadsheets and scripts."""

from __future__ import annotations

import csv
import io

from ..engine.model import ScanReport

COLUMNS = [
    "group",
    "kind",
    "max_distance",
    "label_conflict",
    "leakage",
    "root",
    "path",
    "label",
    "keep",
    "width",
    "height",
    "size",
    # the member's own link (empty for the kept member): its kind, the member it copies, distance, score
    "link",
    "copy_of",
    "link_distance",
    "link_score",
    "link_transform",
]


def render(report: ScanReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for group in report.groups:
        for m in group.members:
            link = m.link
            to = group.members[link.to] if link is not None else None
            writer.writerow(
                [
                    group.id,
                    group.kind,
                    group.max_distance,
                    int(group.is_label_conflict),
                    int(group.is_leak),
                    m.root,
                    m.path,
                    m.label or "",
                    int(m.keep),
                    m.width,
                    m.height,
                    m.size,
                    link.kind if link else "",
                    f"{to.root}/{to.path}" if to else "",
                    link.distance if link else "",
                    "" if link is None or link.score is None else round(link.score, 6),
                    (link.transform or "") if link else "",
                ]
            )
    return buffer.getvalue()
