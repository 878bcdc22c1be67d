"""GitHub Actions workflow commands for a check: one `::error file=...::` annotation per failing finding."""

from __future__ import annotations

import os
from pathlib import Path

from ..check.runner import CheckResult
from ..wording import plural


def escape_data(text: str) -> str:
    """Escape a workflow command's message (GitHub's toolkit rules)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command's property value (file=, title=)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _workspace_path(file: str, cwd: str | os.PathLike) -> str:
    """The path GitHub attaches an annotation to: relative to the workspace (the current folder) when inside it."""
    try:
        return Path(file).relative_to(Path(cwd).resolve()).as_posix()
    except ValueError:
        return Path(file).as_posix()


def render_check(result: CheckResult, cwd: str | os.PathLike = ".") -> str:
    """Annotations for failing findings and broken dataset rules; warnings for the rest and for the baseline."""
    lines = []
    for failing in result.failing:
        finding = failing.finding
        title = f"dupaudit: {finding.kind} duplicate ({', '.join(failing.rules)})"
        lines.append(
            f"::error file={escape_property(_workspace_path(finding.file, cwd))},"
            f"title={escape_property(title)}::{escape_data(finding.message)}"
        )
    for finding in result.tolerated:
        lines.append(
            f"::notice file={escape_property(_workspace_path(finding.file, cwd))},"
            f"title={escape_property('dupaudit: ' + finding.kind + ' duplicate')}::"
            f"{escape_data(finding.message)}"
        )
    for message in result.dataset_failures:
        lines.append(f"::error title={escape_property('dupaudit: skew')}::{escape_data(message)}")
    if result.baseline_rewritten:
        baseline = _workspace_path(result.baseline_path, cwd)
        lines.append(
            f"::error file={escape_property(baseline)},title={escape_property('dupaudit: baseline')}::"
            + escape_data(
                f"{plural(result.baseline_dropped, 'accepted file')} gone and dropped from "
                f"{baseline}: commit the rewritten baseline"
            )
        )
    return "".join(line + "\n" for line in lines)
