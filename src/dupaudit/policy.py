"""--fail-on rules: which findings make a scan exit 1 (pure: report in, verdict out)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .engine.model import ScanReport
from .errors import ConfigError

RULE_NAMES = ("exact", "pixel", "near", "label-conflicts", "leakage", "skew")
_SKEW = re.compile(r"^skew\s*>\s*([0-9]*\.?[0-9]+)$")


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    limit: float = 0.0  # for skew: fail when skew > limit


def parse_rules(text: str | None) -> tuple[Rule, ...]:
    """'leakage,label-conflicts,skew>0.05' -> rules; unknown rules are a ConfigError."""
    rules = []
    for part in (text or "").split(","):
        part = part.strip().lower().replace("_", "-")
        if not part:
            continue
        match = _SKEW.match(part)
        if match:
            rules.append(Rule("skew", float(match.group(1))))
        elif part in ("label-conflict", "conflicts"):
            rules.append(Rule("label-conflicts"))
        elif part in RULE_NAMES and part != "skew":
            rules.append(Rule(part))
        else:
            raise ConfigError(f"unknown --fail-on rule {part!r}: use {', '.join(RULE_NAMES[:-1])} or skew>X")
    return tuple(rules)


def failures(report: ScanReport, rules: tuple[Rule, ...]) -> list[str]:
    """One line per rule that the report breaks (empty: the gate passes)."""
    broken = []
    # A group fails a kind rule when it holds a copy of that kind or a stricter one, even inside a
    # looser group: an exact copy merged into a near group still fails 'exact'.
    counts = {
        "exact": sum(1 for g in report.groups if g.kind == "exact" or g.exact_copies),
        "pixel": sum(1 for g in report.groups if g.kind in ("exact", "pixel") or g.pixel_copies),
        "near": len(report.groups),
    }
    for rule in rules:
        if rule.name in counts:
            if counts[rule.name]:
                broken.append(f"{rule.name}: {counts[rule.name]} duplicate group(s)")
        elif rule.name == "label-conflicts" and report.summary.label_conflicts:
            broken.append(f"label-conflicts: {report.summary.label_conflicts} group(s) with more than one label")
        elif rule.name == "leakage" and report.summary.leaked:
            broken.append(f"leakage: {report.summary.leaked} evaluation image(s) with a copy in train")
        elif rule.name == "skew" and report.summary.skew > rule.limit:
            broken.append(f"skew: {report.summary.skew:.4f} > {rule.limit}")
    return broken


def finding_breaks(rules: tuple[Rule, ...], kind: str, label_conflict: bool, leakage: bool) -> tuple[str, ...]:
    """The names of the rules that one duplicate finding breaks (skew is dataset-wide: see `failures`)."""
    covered = {"exact": ("exact",), "pixel": ("exact", "pixel"), "near": ("exact", "pixel", "near")}
    broken = []
    for rule in rules:
        if rule.name in covered and kind in covered[rule.name]:
            broken.append(rule.name)
        elif rule.name == "label-conflicts" and label_conflict:
            broken.append(rule.name)
        elif rule.name == "leakage" and leakage:
            broken.append(rule.name)
    return tuple(dict.fromkeys(broken))
