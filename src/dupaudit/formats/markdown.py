"""A Markdown summary of a check, for $GITHUB_STEP_SUMMARY or a pull-request comment."""

from __future__ import annotations

from ..check.runner import CheckResult
from ..wording import plural


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{_cell(text)}`"


def render_check(result: CheckResult) -> str:
    """A heading, the verdict, then one table row per new finding."""
    lines = ["## dupaudit check", ""]
    report = result.report
    scope = "the whole dataset" if result.files is None else plural(len(result.files), "changed file")
    if result.failing or result.dataset_failures:
        count = len(result.failing)
        verb = "breaks" if count == 1 else "break"
        lines.append(
            f"**Failed:** {plural(count, 'new finding')} in {scope} {verb} the gate (`{result.config.fail_on}`)."
        )
    elif result.baseline_rewritten:
        lines.append(
            f"**Baseline rewritten:** {plural(result.baseline_dropped, 'accepted file')} gone; commit "
            f"the new {_code(result.baseline_path.rsplit('/', 1)[-1])}."
        )
    else:
        lines.append(f"**Passed:** no new finding in {scope} breaks the gate (`{result.config.fail_on}`).")
    lines.append("")
    if report is not None:
        s = report.summary
        lines += [
            "| images | duplicate groups | accepted by the baseline | label conflicts | leaked | skew |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {s.images:,} | {s.groups:,} | {result.accepted:,} | {s.label_conflicts:,} | {s.leaked:,} "
            f"| {s.skew:.4f} |",
            "",
        ]
    for message in result.dataset_failures:
        lines += [f"- {_cell(message)}"]
    if result.dataset_failures:
        lines.append("")
    rows = [(f.finding, ", ".join(f.rules)) for f in result.failing] + [(f, "") for f in result.tolerated]
    if rows:
        lines += [
            "| file | finding | duplicate of | distance | label conflict | leakage | fails |",
            "|---|---|---|---:|:-:|:-:|---|",
        ]
        relation = {"exact": "exact copy", "pixel": "same pixels", "near": "near duplicate"}
        for finding, rules in rows:
            partners = ", ".join(_code(p) for p in finding.partners[:3])
            if len(finding.partners) > 3:
                partners += f" and {len(finding.partners) - 3} more"
            lines.append(
                f"| {_code(finding.path)} | {relation[finding.kind]} | {partners} | {finding.distance} "
                f"| {'yes' if finding.label_conflict else ''} "
                f"| {'/'.join(finding.splits) if finding.leakage else ''} | {rules} |"
            )
        lines.append("")
    if result.failing:
        lines.append("Accept findings that are intended with `dupaudit baseline` and commit the baseline file.")
        lines.append("")
    return "\n".join(lines)
