"""--fail-on rules: which findings make a scan exit 1 (pure: report in, verdict out)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .engine.model import KINDS, DuplicateGroup, ScanReport
from .errors import ConfigError
from .wording import plural

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


# Kinds nest (exact ⊂ pixel ⊂ near): each kind rule names the copies it fails on.
_KIND_RULES = {"exact": ("exact",), "pixel": ("exact", "pixel"), "near": KINDS}


def finding_breaks(rules: tuple[Rule, ...], kind: str | None, label_conflict: bool, leakage: bool) -> tuple[str, ...]:
    """The names of the rules that one finding breaks: the one rule for scan, check and the CI formats.

    A finding is a duplicate group (scan) or one file of it (check). `kind` is the strictest copy kind it holds:
    for a group, the strictest link among its members; for a file, the strictest of its own link and the links
    of the members copying it. So a byte copy inside a group of near copies fails `exact` everywhere. Skew is
    dataset-wide: see `failures`."""
    broken = []
    for rule in rules:
        if rule.name in _KIND_RULES and kind in _KIND_RULES[rule.name]:
            broken.append(rule.name)
        elif rule.name == "label-conflicts" and label_conflict:
            broken.append(rule.name)
        elif rule.name == "leakage" and leakage:
            broken.append(rule.name)
    return tuple(dict.fromkeys(broken))


def strictest(kinds: Iterable[str]) -> str | None:
    """The strictest of some copy kinds (exact before pixel before near); None for none."""
    present = set(kinds)
    return next((k for k in KINDS if k in present), None)


def group_breaks(rules: tuple[Rule, ...], group: DuplicateGroup) -> tuple[str, ...]:
    """The rules one duplicate group breaks (a group saved without links counts as its own kind)."""
    links = [m.link.kind for m in group.members if m.link is not None]
    return finding_breaks(rules, strictest(links) or group.kind, group.is_label_conflict, group.is_leak)


def failures(report: ScanReport, rules: tuple[Rule, ...]) -> list[str]:
    """One line per rule that the report breaks (empty: the gate passes)."""
    counts = dict.fromkeys((r.name for r in rules), 0)
    for group in report.groups:
        for name in group_breaks(rules, group):
            counts[name] += 1
    broken = []
    for rule in rules:
        if rule.name in _KIND_RULES and counts[rule.name]:
            groups = plural(counts[rule.name], "duplicate group")
            broken.append(f"{rule.name}: {groups} holding {rule.name} copies or closer")
        elif rule.name == "label-conflicts" and counts[rule.name]:
            broken.append(f"label-conflicts: {plural(counts[rule.name], 'group')} with more than one label")
        elif rule.name == "leakage" and counts[rule.name]:
            broken.append(
                f"leakage: {plural(counts[rule.name], 'group')} spanning splits "
                f"({plural(report.summary.leaked, 'evaluation image')} with a copy in train)"
            )
        elif rule.name == "skew" and report.summary.skew > rule.limit:
            broken.append(f"skew: {report.summary.skew:.4f} > {rule.limit}")
    return broken
