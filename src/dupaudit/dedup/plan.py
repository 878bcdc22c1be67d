"""A dedup plan: which member of each group to keep, which to move aside; plain JSON a person can edit."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .._version import __version__
from ..engine.keep import Candidate, choose_keeper, keep_name
from ..engine.model import KINDS, DuplicateGroup, GroupMember, Root, ScanReport
from ..engine.progress import NullProgress, ProgressSink
from ..errors import InputError, ParameterError
from .files import atomic_write, file_sha256

PLAN_FORMAT = "dupaudit-plan"
PLAN_VERSION = 1

KEEP_POLICIES = ("resolution", "largest", "oldest", "first")
CONFLICT_POLICIES = ("keep-one", "drop-all", "skip")
LEAKAGE_POLICIES = ("drop-from-train", "keep-one", "skip")


class StalePlanError(InputError):
    """The files a plan names changed since it was made; applying it could quarantine the wrong file."""


# --------------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True, slots=True)
class PlanFile:
    """A file the plan keeps or drops, with what it was when the plan was made."""

    root: str
    path: str  # POSIX, relative to its root
    size: int
    mtime_ns: int
    sha256: str
    label: str | None = None
    width: int = 0
    height: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.root, self.path)


@dataclass(frozen=True, slots=True)
class PlanGroup:
    id: int  # the scan report's group id
    kind: str
    reason: str
    keep: tuple[PlanFile, ...]
    drop: tuple[PlanFile, ...]


@dataclass(frozen=True, slots=True)
class PlanRoot:
    name: str
    path: str  # absolute
    tree: str  # where its files go in a link tree: "" (the tree itself), "train", ...


@dataclass(frozen=True, slots=True)
class Plan:
    roots: tuple[PlanRoot, ...]
    settings: dict
    groups: tuple[PlanGroup, ...]
    skipped: tuple[tuple[str, str, str], ...] = ()  # (root, path, reason): files the scan could not read

    @property
    def drops(self) -> list[PlanFile]:
        return [f for g in self.groups for f in g.drop]

    @property
    def keeps(self) -> list[PlanFile]:
        return [f for g in self.groups for f in g.keep]

    def root(self, name: str) -> PlanRoot:
        for root in self.roots:
            if root.name == name:
                return root
        raise InputError(f"plan names root {name!r}, which is not among its roots")

    def abspath(self, item: PlanFile) -> str:
        return os.path.join(self.root(item.root).path, *item.path.split("/"))

    def identity(self) -> str:
        """A digest of what the plan does (roots, keeps, drops), independent of JSON whitespace."""
        canonical = json.dumps(
            [
                [(r.name, r.path) for r in self.roots],
                sorted((f.root, f.path, f.sha256) for f in self.keeps),
                sorted((f.root, f.path, f.sha256) for f in self.drops),
            ],
            ensure_ascii=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def _plan_file(root: Root, member: GroupMember) -> PlanFile:
    if root.source != "folder":  # an item inside a tar shard, a Parquet file or a manifest: no file of its own
        # its digest is unknown here: a unique stand-in, so no item is taken for a byte-copy of another
        placeholder = f"item:{member.root}/{member.path}"
        return PlanFile(
            member.root, member.path, member.size, 0, placeholder, member.label, member.width, member.height
        )
    path = os.path.join(root.path, *member.path.split("/"))
    try:
        info = os.stat(path)
        digest = file_sha256(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return PlanFile(
        member.root, member.path, info.st_size, info.st_mtime_ns, digest, member.label, member.width, member.height
    )


def _keep_key(policy: str, position: dict[tuple[str, str], tuple]):
    def key(item: PlanFile) -> tuple:
        pos = position[item.key]
        resolution = (-(item.width * item.height), -item.size, pos)
        if policy == "largest":
            return (-item.size, -(item.width * item.height), pos)
        if policy == "oldest":
            return (item.mtime_ns, *resolution)
        return pos  # "first"

    return key


def _winner(
    policy: str, files: list[PlanFile], position: dict, roots: dict[str, Root], names: dict[tuple[str, str], str | None]
) -> PlanFile:
    """The copy a unit keeps: the scan's keep rule (engine/keep.py) for "resolution", else the policy's order.
    `names`: the members' own names (GroupMember.name), read by the rule as the scan reads them."""
    if policy != "resolution":
        return min(files, key=_keep_key(policy, position))
    named = {f.key: keep_name(f.path, names.get(f.key)) for f in files}
    ordered = sorted(files, key=lambda f: (position[f.key][0], named[f.key], f.path))  # the scan's (root, name, path)
    candidates = [
        Candidate(named[f.key], os.path.join(roots[f.root].path, *f.path.split("/")), f.width, f.height, f.size)
        for f in ordered
    ]
    return ordered[choose_keeper(candidates)]


def evaluation_splits(report: ScanReport) -> frozenset[str]:
    """The splits dedup protects: those the scan calls evaluation (test, val, --against folders)."""
    if report.splits:
        return frozenset(s.split for s in report.splits if s.role == "eval")
    train = report.train_split or report.roots[0].name
    return frozenset(r.name for r in report.roots if r.name != train)


def drops_by_split(plan: Plan) -> dict[str, int]:
    """Files the plan removes from each root (every root listed, in root order)."""
    counts = {r.name: 0 for r in plan.roots}
    for item in plan.drops:
        counts[item.root] = counts.get(item.root, 0) + 1
    return counts


def _units(group: DuplicateGroup, files: list[PlanFile], kinds: frozenset[str]) -> list[tuple[str, list[PlanFile]]]:
    """The sets of interchangeable files in a group whose kind is among `kinds`.

    Kinds nest (exact ⊂ pixel ⊂ near). A group wider than the widest kind asked is split by its members' links
    (the scan's own decision, README "Each copy's own link"): the members joined by exact links (same bytes), or by
    exact and pixel links (same pixels), so `--kinds exact` still drops the exact copies inside a near group. A
    report saved before links existed has none: only its whole groups are acted on.
    """
    rank = {kind: i for i, kind in enumerate(KINDS)}
    widest = max(kinds, key=rank.__getitem__)
    if rank[group.kind] <= rank[widest]:
        return [(group.kind, files)] if group.kind in kinds else []
    owner = list(range(len(files)))  # each member's unit, through the links of the kinds asked (a forest: no cycles)

    def find(i: int) -> int:
        while owner[i] != i:
            i = owner[i]
        return i

    loose: dict[int, bool] = {}  # unit -> holds a pixel link (not byte-identical throughout)
    for i, member in enumerate(group.members):
        link = member.link
        if link is not None and rank[link.kind] <= rank[widest]:
            owner[find(i)] = find(link.to)
    for i, member in enumerate(group.members):
        if member.link is not None and member.link.kind == "pixel" and rank["pixel"] <= rank[widest]:
            loose[find(i)] = True
    by_unit: dict[int, list[PlanFile]] = {}
    for i, item in enumerate(files):
        by_unit.setdefault(find(i), []).append(item)
    units = []
    for unit, members in by_unit.items():
        kind = "pixel" if loose.get(unit) else "exact"
        if len(members) >= 2 and kind in kinds:
            units.append((kind, members))
    return units


def make_plan(
    report: ScanReport,
    *,
    keep: str = "resolution",
    kinds: Iterable[str] = KINDS,
    conflicts: str = "keep-one",
    leakage: str = "drop-from-train",
    dataset: str | os.PathLike | None = None,
    progress: ProgressSink | None = None,
    protect_eval: bool = True,
) -> Plan:
    """Which files to drop so that one of each set of duplicates is left.

    keep: which copy stays (resolution: the scan's keep rule, engine/keep.py: not an upscale, highest resolution,
    largest file, plainest name; largest: largest file first; oldest: oldest mtime first; first: first by root
    order and path). kinds: the duplicate kinds to act on. conflicts: for copies carrying different labels,
    keep-one, drop-all (no label can be trusted) or skip. leakage: for copies spanning splits, drop-from-train
    (every training copy goes, evaluation splits keep theirs), keep-one or skip. protect_eval: never drop a file
    of an evaluation split (evaluation_splits); False lets the rules above remove them too. dataset: the folder
    the roots came from, so a link tree mirrors its layout.
    """
    kinds = frozenset(kinds)
    for name, value, allowed in (
        ("keep", keep, KEEP_POLICIES),
        ("conflicts", conflicts, CONFLICT_POLICIES),
        ("leakage", leakage, LEAKAGE_POLICIES),
    ):
        if value not in allowed:
            raise ParameterError(f"unknown {{{name}}} {value!r}: choose one of {', '.join(allowed)}")
    if not kinds or not kinds <= set(KINDS):
        raise ParameterError(f"{{kinds}} must be a comma-separated subset of {','.join(KINDS)}")
    progress = progress or NullProgress()
    roots = {r.name: r for r in report.roots}
    order = {r.name: i for i, r in enumerate(report.roots)}
    evaluation = evaluation_splits(report)
    protected = evaluation if protect_eval else frozenset()
    groups: list[PlanGroup] = []
    progress.start("plan", len(report.groups))
    for group in report.groups:
        progress.advance()
        files = [_plan_file(roots[m.root], m) for m in group.members]
        position = {f.key: (order[f.root], f.path) for f in files}
        names = {(m.root, m.path): m.name for m in group.members}
        for kind, unit in _units(group, files, kinds):
            labels = {f.label for f in unit if f.label is not None}
            splits = {f.root for f in unit}
            guarded = [f for f in unit if f.root in protected]  # evaluation copies: never dropped
            reason = "duplicates"
            if len(labels) > 1:
                if conflicts == "skip":
                    continue
                if conflicts == "drop-all":
                    dropped = [f for f in unit if f not in guarded]
                    if dropped:
                        note = ", evaluation copies kept" if guarded else ""
                        groups.append(
                            PlanGroup(
                                group.id,
                                kind,
                                f"label conflict: every copy dropped{note}",
                                tuple(sorted(guarded, key=lambda f: position[f.key])),
                                tuple(sorted(dropped, key=lambda f: position[f.key])),
                            )
                        )
                    continue
                reason = "label conflict: one copy kept"
            leak = bool(splits & evaluation) and len(splits) > 1
            if leak:
                if leakage == "skip":
                    continue
                reason = "leak: one copy kept" if reason == "duplicates" else reason + ", leak"
            if guarded or (leak and leakage == "drop-from-train"):
                # the evaluation copies stay (all of them when protected, else one per split); the rest go
                kept = list(guarded)
                for split in sorted(splits & evaluation - protected, key=order.__getitem__):
                    kept.append(_winner(keep, [f for f in unit if f.root == split], position, roots, names))
                if not kept:  # no evaluation copy (a pool and train): one copy stays, as for plain duplicates
                    kept = [_winner(keep, unit, position, roots, names)]
                dropped = [f for f in unit if f not in kept]
                if not dropped:
                    continue  # every copy is in a protected evaluation split
                if leak:
                    reason = reason.replace("leak: one copy kept", "leak") + ": training copies dropped"
                groups.append(
                    PlanGroup(
                        group.id,
                        kind,
                        reason,
                        tuple(sorted(kept, key=lambda f: position[f.key])),
                        tuple(sorted(dropped, key=lambda f: position[f.key])),
                    )
                )
                continue
            winner = _winner(keep, unit, position, roots, names)
            dropped = [f for f in unit if f is not winner]
            groups.append(
                PlanGroup(group.id, kind, reason, (winner,), tuple(sorted(dropped, key=lambda f: position[f.key])))
            )
    progress.finish()
    groups = _protect_links(groups, roots)
    base = Path(dataset).expanduser().resolve() if dataset is not None else None
    plan_roots = []
    for root in report.roots:
        tree = root.name
        if base is not None:
            try:
                relative = Path(root.path).relative_to(base)
                tree = "" if str(relative) == "." else relative.as_posix()
            except ValueError:
                pass
        plan_roots.append(PlanRoot(root.name, root.path, tree))
    settings = {
        "method": report.settings.method,
        "threshold": report.settings.threshold,
        "flips": report.settings.flips,
        "keep": keep,
        "kinds": [k for k in KINDS if k in kinds],
        "conflicts": conflicts,
        "leakage": leakage,
        "protected_splits": sorted(protected, key=order.__getitem__),
    }
    return Plan(tuple(plan_roots), settings, tuple(groups), tuple((s.root, s.path, s.reason) for s in report.skipped))


def _hops(path: str) -> list[str]:
    """The paths a name resolves through: itself, then each symlink's target in turn (parent folders resolved)."""
    hops: list[str] = []
    for _ in range(40):  # the kernel's own limit on symlink chains
        here = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        if here in hops:
            break
        hops.append(here)
        if not os.path.islink(here):
            break
        path = os.path.join(os.path.dirname(here), os.readlink(here))
    return hops


def _protect_links(groups: list[PlanGroup], roots: dict[str, Root]) -> list[PlanGroup]:
    """Never drop a file that a kept path reaches through a symlink (moving it would break the kept copy)."""

    def hops(item: PlanFile) -> list[str]:
        return _hops(os.path.join(roots[item.root].path, *item.path.split("/")))

    needed = {hop for g in groups for f in g.keep for hop in hops(f)[1:]}
    result = []
    for group in groups:
        rescued = tuple(f for f in group.drop if hops(f)[0] in needed)
        if rescued:
            group = PlanGroup(
                group.id,
                group.kind,
                group.reason + " (link targets of kept files kept)",
                group.keep + rescued,
                tuple(f for f in group.drop if f not in rescued),
            )
        if group.drop:
            result.append(group)
    return result


# ------------------------------------------------------------------------------------------- plan as JSON

_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(data) -> str:
    """JSON that keeps names readable, and escapes what UTF-8 cannot hold (a non-UTF-8 file name's bytes)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _file_dict(item: PlanFile) -> dict:
    return {
        "root": item.root,
        "path": item.path,
        "label": item.label,
        "size": item.size,
        "mtime_ns": item.mtime_ns,
        "sha256": item.sha256,
        "width": item.width,
        "height": item.height,
    }


def plan_to_dict(plan: Plan) -> dict:
    drops = plan.drops
    return {
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "tool": {"name": "dupaudit", "version": __version__},
        "help": "Files under 'drop' are moved to the quarantine by `dupaudit dedup --apply`; files under 'keep' "
        "must be unchanged when it runs. Edit freely: move an entry from drop to keep, or delete a group.",
        "roots": [{"name": r.name, "path": r.path, "tree": r.tree} for r in plan.roots],
        "settings": plan.settings,
        "summary": {
            "groups": len(plan.groups),
            "keep": len(plan.keeps),
            "drop": len(drops),
            "drop_bytes": sum(f.size for f in drops),
            "drop_by_split": drops_by_split(plan),
        },
        "groups": [
            {
                "id": g.id,
                "kind": g.kind,
                "reason": g.reason,
                "keep": [_file_dict(f) for f in g.keep],
                "drop": [_file_dict(f) for f in g.drop],
            }
            for g in plan.groups
        ],
        "skipped": [{"root": r, "path": p, "reason": why} for r, p, why in plan.skipped],
    }


def render_plan(plan: Plan) -> str:
    return dumps(plan_to_dict(plan)) + "\n"


def write_plan(plan: Plan, path: str | os.PathLike) -> None:
    atomic_write(Path(path), render_plan(plan).encode("utf-8"))


def _safe_relative(path: object, where: str) -> str:
    if not isinstance(path, str) or not path:
        raise InputError(f"{where}: 'path' must be a non-empty string")
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("..", ".", "") for part in path.split("/")):
        raise InputError(f"{where}: path {path!r} must be relative to its root, without '.' or '..'")
    return path


def _file_from(data: object, where: str) -> PlanFile:
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected an object")
    try:
        item = PlanFile(
            str(data["root"]),
            _safe_relative(data["path"], where),
            int(data["size"]),
            int(data["mtime_ns"]),
            str(data["sha256"]),
            data.get("label"),
            int(data.get("width", 0)),
            int(data.get("height", 0)),
        )
    except KeyError as exc:
        raise InputError(f"{where}: missing field {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {exc}") from None
    if not re.fullmatch(r"[0-9a-f]{64}", item.sha256):
        raise InputError(f"{where}: sha256 must be 64 lowercase hex digits")
    return item


def plan_from_dict(data: object, source: str = "plan") -> Plan:
    """Read a plan (possibly edited by hand), checking everything apply relies on."""
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise InputError(f'{source}: not a dupaudit plan (no "format": "{PLAN_FORMAT}")')
    if data.get("version") != PLAN_VERSION:
        raise InputError(f"{source}: plan version {data.get('version')!r} is not supported (expected {PLAN_VERSION})")
    try:
        roots = tuple(PlanRoot(str(r["name"]), str(r["path"]), str(r.get("tree", r["name"]))) for r in data["roots"])
        raw_groups = data["groups"]
        skipped = tuple((str(s["root"]), str(s["path"]), str(s["reason"])) for s in data.get("skipped", []))
    except (KeyError, TypeError) as exc:
        raise InputError(f"{source}: malformed roots or groups ({exc})") from None
    if not roots or len({r.name for r in roots}) != len(roots):
        raise InputError(f"{source}: roots must be present and uniquely named")
    for root in roots:
        if not os.path.isabs(root.path):
            raise InputError(f"{source}: root {root.name!r} path must be absolute")
        if root.tree.startswith("/") or ".." in root.tree.split("/"):
            raise InputError(f"{source}: root {root.name!r} tree must be a relative folder")
    names = {r.name for r in roots}
    groups: list[PlanGroup] = []
    seen: dict[tuple[str, str], str] = {}
    if not isinstance(raw_groups, list):
        raise InputError(f"{source}: 'groups' must be a list")
    for index, raw in enumerate(raw_groups):
        where = f"{source}: group #{index}"
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected an object")
        keep = tuple(_file_from(f, f"{where} keep") for f in raw.get("keep", []))
        drop = tuple(_file_from(f, f"{where} drop") for f in raw.get("drop", []))
        for role, items in (("keep", keep), ("drop", drop)):
            for item in items:
                if item.root not in names:
                    raise InputError(f"{where}: unknown root {item.root!r}")
                if item.key in seen:
                    raise InputError(f"{source}: {item.root}/{item.path} is listed twice ({seen[item.key]} and {role})")
                seen[item.key] = role
        groups.append(
            PlanGroup(int(raw.get("id", index)), str(raw.get("kind", "near")), str(raw.get("reason", "")), keep, drop)
        )
    return Plan(roots, dict(data.get("settings", {})), tuple(groups), skipped)


def read_plan(path: str | os.PathLike) -> Plan:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read plan: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a dupaudit plan (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON: {exc}") from None
    return plan_from_dict(data, str(path))
