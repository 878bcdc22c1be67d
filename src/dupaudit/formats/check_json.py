"""`dupaudit check -f json`: the verdict of a check as one JSON object, for CI tools (docs/check.md)."""

from __future__ import annotations

import json

from ..check.baseline import Finding
from ..check.runner import EXIT_BASELINE_REWRITTEN, EXIT_FINDINGS, CheckResult

CHECK_SCHEMA_VERSION = 1
SCHEMA_FILE = "check.schema.json"  # its JSON Schema, shipped beside this module


def schema() -> dict:
    """The JSON Schema (draft 2020-12) of this output."""
    from importlib.resources import files

    return json.loads(files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


_VERDICTS = {0: "pass", EXIT_FINDINGS: "findings", EXIT_BASELINE_REWRITTEN: "baseline-rewritten"}


def _finding(finding: Finding, rules: tuple[str, ...] = ()) -> dict:
    return {
        "path": finding.path,
        "file": finding.file,
        "kind": finding.kind,
        "partners": list(finding.partners),
        "distance": finding.distance,
        "label_conflict": finding.label_conflict,
        "leakage": finding.leakage,
        "splits": list(finding.splits),
        "group_id": finding.group_id,
        "rules": list(rules),
        "message": finding.message,
    }


def to_dict(result: CheckResult) -> dict:
    from .._version import __version__

    report = result.report
    return {
        "schema": "dupaudit-check",
        "schema_version": CHECK_SCHEMA_VERSION,
        "tool": {"name": "dupaudit", "version": report.tool_version if report else __version__},
        "exit_code": result.exit_code,
        "verdict": _VERDICTS[result.exit_code],
        "files": list(result.files) if result.files is not None else None,  # null: the whole dataset was checked
        "outside": list(result.outside),
        "failing": [_finding(f.finding, f.rules) for f in result.failing],
        "tolerated": [_finding(f) for f in result.tolerated],
        "dataset_failures": list(result.dataset_failures),
        "baseline": {
            "path": result.baseline_path,
            "found": result.baseline_found,
            "accepted": result.accepted,
            "dropped": result.baseline_dropped,
            "rewritten": result.baseline_rewritten,
        },
        "skipped": [{"root": s.root, "path": s.path, "reason": s.reason} for s in result.skipped_files],
        "summary": (
            None
            if report is None
            else {
                "images": report.summary.images,
                "groups": report.summary.groups,
                "label_conflicts": report.summary.label_conflicts,
                "leaked": report.summary.leaked,
                "skew": round(report.summary.skew, 6),
            }
        ),
    }


def render_check(result: CheckResult) -> str:
    return json.dumps(to_dict(result), indent=2, ensure_ascii=False) + "\n"
