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
]


def render(report: ScanReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for group in report.groups:
        for m in group.members:
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
                ]
            )
    return buffer.getvalue()
