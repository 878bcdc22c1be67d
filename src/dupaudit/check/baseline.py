"""Accepted findings (the baseline file) and the subtraction that leaves the new ones.

A baseline lists today's duplicate groups by their members' dataset paths (`train/cat/x.jpg`: root name, then
the path inside it), sorted, with the kind of finding; no group ids (they shift when files are added) and no
timestamps, so the file diffs cleanly in git. A current group is accepted when all its members sit in one
accepted group (a shrunken group is still accepted). Otherwise the members outside the largest accepted part are
new findings, each reported against the others (`train/cat/x.jpg: near duplicate of train/dog/y.jpg`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..engine.model import KINDS, DuplicateGroup, ScanReport, Settings
from ..errors import BaselineError

SCHEMA_VERSION = 1


def dataset_path(root: str, path: str) -> str:
    """How a file is named in messages and baselines: its root (split) name, then its path inside it."""
    return f"{root}/{path}"


@dataclass(frozen=True, slots=True)
class AcceptedFinding:
    """One accepted duplicate group."""

    members: tuple[str, ...]  # sorted dataset paths
    kind: str  # exact, pixel or near
    label_conflict: bool = False
    leakage: bool = False

    @property
    def key(self) -> tuple:
        """A stable identity: the kind of finding and the sorted member paths."""
        return (self.kind, self.label_conflict, self.leakage, self.members)


@dataclass(frozen=True, slots=True)
class Baseline:
    findings: tuple[AcceptedFinding, ...] = ()
    settings: Settings | None = None  # the scan settings the findings were made with
    skew: float = 0.0  # the skew accepted with them (a skew>X rule fails only when it grows past this)

    def __len__(self) -> int:
        return len(self.findings)


@dataclass(frozen=True, slots=True)
class Finding:
    """A new finding about one file: it duplicates `partners` and no accepted finding covers that."""

    path: str  # dataset path of the file, e.g. train/cat/x.jpg
    file: str  # its absolute path on disk
    kind: str  # the strictest link touching the file (its own, or a member's copying it): exact, pixel or near
    partners: tuple[str, ...]  # dataset paths of the files it duplicates; the other end of that link first
    distance: int  # that link's Hamming distance (a group saved without links: the group's largest)
    label_conflict: bool  # it and a partner carry different labels
    leakage: bool  # it and a partner are in different splits
    splits: tuple[str, ...]  # the splits of the file and its partners (for the leakage message)
    group_id: int
    score: float | None = None  # that link's verification score, where one decided

    @property
    def message(self) -> str:
        """One line: `train/cat/x.jpg: near duplicate of train/dog/y.jpg (distance 3, label conflict)`."""
        relation = {"exact": "exact copy of", "pixel": "same pixels as", "near": "near duplicate of"}[self.kind]
        shown = ", ".join(self.partners[:3])
        if len(self.partners) > 3:
            shown += f" and {len(self.partners) - 3} more"
        details = []
        if self.kind == "near":
            details.append(f"distance {self.distance}")
            if self.score is not None:
                details.append(f"score {self.score:.2f}")
        if self.label_conflict:
            details.append("label conflict")
        if self.leakage:
            details.append(f"leakage {'/'.join(self.splits)}")
        return f"{self.path}: {relation} {shown}" + (f" ({', '.join(details)})" if details else "")


def from_report(report: ScanReport) -> Baseline:
    """Accept every duplicate group of a scan."""
    findings = sorted(
        (
            AcceptedFinding(
                tuple(sorted(dataset_path(m.root, m.path) for m in g.members)), g.kind, g.is_label_conflict, g.is_leak
            )
            for g in report.groups
        ),
        key=lambda f: f.members,
    )
    return Baseline(tuple(findings), report.settings, round(report.summary.skew, 6))


def to_dict(baseline: Baseline) -> dict:
    data: dict = {"schema_version": SCHEMA_VERSION, "tool": "dupaudit"}
    if baseline.settings is not None:
        s = baseline.settings
        data["settings"] = {"method": s.method, "threshold": s.threshold, "flips": s.flips}
        # the other settings only where they differ from the default, so that default baselines keep their bytes
        defaults = Settings()
        data["settings"].update(
            (name, getattr(s, name))
            for name in ("verify", "neighbours", "min_similarity", "fast_decode")
            if getattr(s, name) != getattr(defaults, name)
        )
    data["skew"] = round(baseline.skew, 6)
    data["findings"] = [
        {"kind": f.kind, "label_conflict": f.label_conflict, "leakage": f.leakage, "members": list(f.members)}
        for f in sorted(baseline.findings, key=lambda f: f.members)
    ]
    return data


def dumps(baseline: Baseline) -> str:
    return json.dumps(to_dict(baseline), indent=2, ensure_ascii=False) + "\n"


def save(baseline: Baseline, path: str | os.PathLike) -> None:
    """Write the baseline atomically (a half-written baseline would accept nothing, or everything)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(dumps(baseline), encoding="utf-8")
    os.replace(temporary, path)


def from_dict(data: object, where: str = "baseline") -> Baseline:
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise BaselineError(f"{where}: not a dupaudit baseline of schema_version {SCHEMA_VERSION}")
    try:
        settings = Settings(**data["settings"]) if "settings" in data else None
        findings = []
        for entry in data.get("findings", []):
            members = entry["members"]
            if (
                entry["kind"] not in KINDS
                or not isinstance(members, list)
                or len(members) < 2
                or not all(isinstance(m, str) and "/" in m for m in members)
            ):
                raise BaselineError(f"{where}: malformed finding {entry!r}")
            findings.append(
                AcceptedFinding(
                    tuple(sorted(members)),
                    entry["kind"],
                    bool(entry.get("label_conflict", False)),
                    bool(entry.get("leakage", False)),
                )
            )
        return Baseline(tuple(sorted(findings, key=lambda f: f.members)), settings, float(data.get("skew", 0.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise BaselineError(f"{where}: malformed baseline: {exc}") from None


def load(path: str | os.PathLike) -> Baseline:
    """Read a baseline file; BaselineError when it is not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read the baseline: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}: the baseline is not JSON ({exc})") from None
    return from_dict(data, str(path))


def prune(baseline: Baseline, exists: Callable[[str], bool]) -> tuple[Baseline, int]:
    """Drop members whose files are gone (and findings left with one member); returns how many were dropped."""
    kept, dropped = [], 0
    for finding in baseline.findings:
        members = tuple(m for m in finding.members if exists(m))
        dropped += len(finding.members) - len(members)
        if len(members) >= 2:  # a lone survivor is no longer a finding
            kept.append(AcceptedFinding(members, finding.kind, finding.label_conflict, finding.leakage))
    return Baseline(tuple(kept), baseline.settings, baseline.skew), dropped


def subtract(
    report: ScanReport,
    baseline: Baseline,
    changed: Collection[str] | None = None,
    blame: Collection[str] | None = None,
) -> list[Finding]:
    """The findings of `report` that `baseline` does not accept; with `changed`, only those about changed files.

    `changed` holds dataset paths (the files a commit adds or modifies): a group that no accepted finding covers
    is reported on its changed members, against the rest; a group without a changed member is left out.
    `blame` (whole-dataset checks): dataset paths that are new or changed in git; a group nobody accepted is
    reported on those of its members (when some, not all, are), else on the members the keep rule drops.
    """
    owner = _owners(baseline)
    root_paths = {r.name: r.path for r in report.roots}
    groups = report.groups if changed is None else _touching(report.groups, changed, root_paths)
    new: list[Finding] = []
    for group in groups:
        new.extend(_group_findings(group, owner, root_paths, changed, blame or ()))
    return new


def _touching(groups: Iterable[DuplicateGroup], changed: Collection[str], roots: Iterable[str]) -> list:
    """The groups with a member whose dataset path is `changed` (the others have no finding about a commit), found
    by the members' paths alone (a hook checks a few files against a million-image index's groups)."""
    paths = {name[len(root) + 1 :] for root in roots for name in changed if name.startswith(root + "/")}
    return [g for g in groups if any(m.path in paths for m in g.members)]


def accepted_groups(report: ScanReport, baseline: Baseline) -> int:
    """How many of the report's groups `baseline` accepts: those a whole-dataset subtract() reports nothing about
    (the same rule), without making the others' findings (a hook's summary line, at a million images)."""
    owner = _owners(baseline)
    if not owner:  # nothing accepted: only a group without a keeper has nobody to report (_accepted)
        return sum(1 for g in report.groups if all(m.keep for m in g.members))
    return sum(1 for g in report.groups if _accepted(g, owner))


def _accepted(group: DuplicateGroup, owner: dict[str, int]) -> bool:
    """Whether a whole-dataset _blamed finds nobody to report in `group` (without a `blame`): every member in one
    accepted finding, or none in any and every member kept (a group saved without a keeper)."""
    found = [owner.get(dataset_path(m.root, m.path)) for m in group.members]
    if found[0] is not None:
        return found.count(found[0]) == len(found)
    return found.count(None) == len(found) and all(m.keep for m in group.members)


def _owners(baseline: Baseline) -> dict[str, int]:
    """Each accepted file's accepted finding (the first that lists it)."""
    owner: dict[str, int] = {}
    for index, accepted in enumerate(baseline.findings):
        for member in accepted.members:
            owner.setdefault(member, index)
    return owner


def _blamed(
    group: DuplicateGroup,
    names: list[str],
    owner: dict[str, int],
    changed: Collection[str] | None,
    blame: Collection[str] = (),
) -> tuple[list[int], set[int]]:
    """The members a group's findings are about (none: nothing to report) and its accepted anchor."""
    parts: dict[int, list[int]] = {}
    for position, name in enumerate(names):
        if name in owner:
            parts.setdefault(owner[name], []).append(position)
    if len(parts) == 1 and sum(len(p) for p in parts.values()) == len(names):
        return [], set()  # every member inside one accepted group
    # The largest accepted part is the established group; ties go to the first in report order.
    anchor = set(max(parts.values(), key=len) if parts else ())
    if changed is not None:
        touched = [i for i, name in enumerate(names) if name in changed]
        if not touched:
            return [], anchor  # not about this commit: the whole-dataset check (CI) reports it
        return [i for i in touched if i not in anchor] or touched, anchor
    if anchor:
        return [i for i in range(len(names)) if i not in anchor], anchor
    # A group nobody accepted: report the files git calls new or changed, else the copies the keep rule drops.
    blamed = [i for i, name in enumerate(names) if name in blame]
    if not blamed or len(blamed) == len(names):
        blamed = [i for i, m in enumerate(group.members) if not m.keep]
    return blamed, anchor


def _group_findings(
    group: DuplicateGroup,
    owner: dict[str, int],
    root_paths: dict[str, str],
    changed: Collection[str] | None,
    blame: Collection[str] = (),
) -> Iterable[Finding]:
    names = [dataset_path(m.root, m.path) for m in group.members]
    blamed, anchor = _blamed(group, names, owner, changed, blame)
    blamed_set = set(blamed)
    for i in blamed:
        member = group.members[i]
        others = [j for j in range(len(names)) if j not in blamed_set] or [j for j in range(len(names)) if j != i]
        if anchor and any(j in anchor for j in others):
            others = [j for j in others if j in anchor] + [j for j in others if j not in anchor]
        everyone_else = [p for p in group.members if p is not member]
        kind, partner, distance, score = _relation(group, i)
        if partner is not None:  # the files it copies in that way (not every member of a group of near copies)
            others = _related(group, i, kind)
        yield Finding(
            path=names[i],
            file=os.path.join(root_paths.get(member.root, ""), *member.path.split("/")),
            kind=kind,
            partners=tuple(names[j] for j in others),
            distance=distance,
            label_conflict=any(p.label != member.label for p in everyone_else),
            leakage=any(p.root != member.root for p in everyone_else),
            splits=tuple(_split_order(member.root, [p.root for p in everyone_else])),
            group_id=group.id,
            score=score,
        )


def _relation(group: DuplicateGroup, index: int) -> tuple[str, int | None, int, float | None]:
    """The strictest link touching member `index`: its kind, the member at its other end, distance and score.

    Its own link (to the keeper or to a twin) and the links of the members that copy it all count, so a byte copy
    is an 'exact copy of X' even in a group of near copies. A group without links (saved by an older version)
    answers with its own kind and largest distance."""
    rank = {kind: i for i, kind in enumerate(KINDS)}
    options = []
    own = group.members[index].link
    if own is not None:
        options.append((rank[own.kind], 0, own.to, own))
    for j, member in enumerate(group.members):
        if member.link is not None and member.link.to == index:
            options.append((rank[member.link.kind], 1, j, member.link))
    if not options:
        return group.kind, None, group.max_distance, None
    _, _, partner, link = min(options, key=lambda option: option[:3])
    return link.kind, partner, link.distance, link.score


def _related(group: DuplicateGroup, index: int, kind: str) -> list[int]:
    """The members that member `index` copies in the way `kind` says: its byte twins (exact), its pixel twins
    (pixel), or the members at the other end of its near links (near); the nearest link first."""
    if kind == "near":
        own = group.members[index].link
        ends = [own.to] if own is not None and own.kind == "near" else []
        return ends + [
            j for j, m in enumerate(group.members) if m.link and m.link.kind == "near" and m.link.to == index
        ]
    joined = ("exact",) if kind == "exact" else ("exact", "pixel")
    twin_of = list(range(len(group.members)))  # links point to an earlier twin: follow them to the first

    def first(j: int) -> int:
        while twin_of[j] != j:
            j = twin_of[j]
        return j

    for j, member in enumerate(group.members):
        if member.link is not None and member.link.kind in joined:
            twin_of[first(j)] = first(member.link.to)
    mine = first(index)
    twins = [j for j in range(len(group.members)) if j != index and first(j) == mine]
    own = group.members[index].link
    return sorted(twins, key=lambda j: (own is None or own.to != j, j))


def _split_order(own: str, others: list[str]) -> list[str]:
    seen = [own]
    for name in others:
        if name not in seen:
            seen.append(name)
    return seen
