"""Acting on a scan without losing data: a dedup plan, apply (move to a quarantine, journalled), undo, link tree.

The rule: dupaudit never deletes a user's file. The only removal is moving a file into a quarantine folder,
and when that move cannot be an atomic rename (another filesystem) it is copy, fsync, verify, then remove.

Safety comes from a write-ahead journal (JSON lines, one fsync per line): before a file is touched, a `move`
record naming its source, its destination and its SHA-256 is on disk. After a crash or SIGKILL at any point,
the state of every journalled file is derived from the filesystem itself (source present? destination present?
same bytes?), never from what the journal claims happened, so `apply` resumes and `undo` restores from any
point, and running either twice does nothing the second time.

A plan is plain JSON a person can edit: move an entry from `drop` to `keep`, or delete a whole group.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import stat as stat_module
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import __version__
from .errors import InputError
from .model import KINDS, DuplicateGroup, GroupMember, Root, ScanReport
from .progress import NullProgress, ProgressSink

PLAN_FORMAT = "dupaudit-plan"
JOURNAL_FORMAT = "dupaudit-journal"
PLAN_VERSION = 1
JOURNAL_VERSION = 1
JOURNAL_NAME = "dupaudit-journal.jsonl"
PARTIAL_SUFFIX = ".dupaudit-partial"

KEEP_POLICIES = ("resolution", "largest", "oldest", "first")
CONFLICT_POLICIES = ("keep-one", "drop-all", "skip")
LEAKAGE_POLICIES = ("keep-one", "drop-from-train", "skip")

# Testing only: "apply:K:POINT" or "undo:K:POINT" makes the process SIGKILL itself at POINT of its K-th file
# (1-based), so tests can prove that a kill at any moment loses nothing. POINT: intent (journal record on disk,
# file untouched), copied (cross-filesystem copy verified, source not yet removed), moved (file moved, `done`
# record not yet written).
FAULT_ENV = "DUPAUDIT_FAULT"

_CHUNK = 1 << 20


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
        canonical = json.dumps([[(r.name, r.path) for r in self.roots],
                                sorted((f.root, f.path, f.sha256) for f in self.keeps),
                                sorted((f.root, f.path, f.sha256) for f in self.drops)], ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _plan_file(root: Root, member: GroupMember) -> PlanFile:
    path = os.path.join(root.path, *member.path.split("/"))
    try:
        info = os.stat(path)
        digest = file_sha256(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return PlanFile(member.root, member.path, info.st_size, info.st_mtime_ns, digest, member.label,
                    member.width, member.height)


def _keep_key(policy: str, position: dict[tuple[str, str], tuple]):
    def key(item: PlanFile) -> tuple:
        pos = position[item.key]
        resolution = (-(item.width * item.height), -item.size, pos)
        if policy == "resolution":
            return resolution
        if policy == "largest":
            return (-item.size, -(item.width * item.height), pos)
        if policy == "oldest":
            return (item.mtime_ns, *resolution)
        return pos  # "first"

    return key


def _pixel_digests(paths: list[str]) -> list[str]:
    from .fingerprint import fingerprint_paths

    # A file that no longer decodes matches nothing (its key is its own path).
    return [f"unreadable:{path}" if isinstance(f, str) else f.pixel_digest.hex()
            for path, f in zip(paths, fingerprint_paths(paths, ("phash",)))]


def _units(group: DuplicateGroup, files: list[PlanFile], kinds: frozenset[str], abspaths: list[str]
           ) -> list[tuple[str, list[PlanFile]]]:
    """The sets of interchangeable files in a group whose kind is among `kinds`.

    Kinds nest (exact ⊂ pixel ⊂ near). A group wider than the widest kind asked is split into its pixel-identical
    (or byte-identical) subsets, so `--kinds exact` still drops the exact copies inside a near group.
    """
    rank = {kind: i for i, kind in enumerate(KINDS)}
    widest = max(kinds, key=rank.__getitem__)
    if rank[group.kind] <= rank[widest]:
        return [(group.kind, files)] if group.kind in kinds else []
    keys = _pixel_digests(abspaths) if widest == "pixel" else [f.sha256 for f in files]
    by_key: dict[str, list[PlanFile]] = {}
    for item, key in zip(files, keys):
        by_key.setdefault(key, []).append(item)
    units = []
    for members in by_key.values():
        if len(members) < 2:
            continue
        kind = "exact" if len({m.sha256 for m in members}) == 1 else "pixel"
        if kind in kinds:
            units.append((kind, members))
    return units


def make_plan(report: ScanReport, *, keep: str = "resolution", kinds: Iterable[str] = KINDS,
              conflicts: str = "keep-one", leakage: str = "keep-one", dataset: str | os.PathLike | None = None,
              progress: ProgressSink | None = None) -> Plan:
    """Which files to drop so that one of each set of duplicates is left.

    keep: which copy stays (resolution: highest resolution, then largest file, then first path; largest: largest
    file first; oldest: oldest mtime first; first: first by root order and path). kinds: the duplicate kinds to act
    on. conflicts: for copies carrying different labels, keep-one, drop-all (no label can be trusted) or skip.
    leakage: for copies spanning splits, keep-one, drop-from-train (every train copy goes, evaluation splits keep
    one each) or skip. dataset: the folder the roots came from, so a link tree mirrors its layout.
    """
    kinds = frozenset(kinds)
    for name, value, allowed in (("keep", keep, KEEP_POLICIES), ("conflicts", conflicts, CONFLICT_POLICIES),
                                 ("leakage", leakage, LEAKAGE_POLICIES)):
        if value not in allowed:
            raise InputError(f"unknown --{name} {value!r}: choose one of {', '.join(allowed)}")
    if not kinds or not kinds <= set(KINDS):
        raise InputError(f"--kinds must be a comma-separated subset of {','.join(KINDS)}")
    progress = progress or NullProgress()
    roots = {r.name: r for r in report.roots}
    order = {r.name: i for i, r in enumerate(report.roots)}
    train = report.train_split or report.roots[0].name
    groups: list[PlanGroup] = []
    progress.start("plan", len(report.groups))
    for group in report.groups:
        progress.advance()
        files = [_plan_file(roots[m.root], m) for m in group.members]
        abspaths = [os.path.join(roots[m.root].path, *m.path.split("/")) for m in group.members]
        position = {f.key: (order[f.root], f.path) for f in files}
        choose = _keep_key(keep, position)
        for kind, unit in _units(group, files, kinds, abspaths):
            labels = {f.label for f in unit if f.label is not None}
            splits = {f.root for f in unit}
            reason = "duplicates"
            if len(labels) > 1:
                if conflicts == "skip":
                    continue
                if conflicts == "drop-all":
                    groups.append(PlanGroup(group.id, kind, "label conflict: every copy dropped", (),
                                            tuple(sorted(unit, key=lambda f: position[f.key]))))
                    continue
                reason = "label conflict: one copy kept"
            if len(splits) > 1:
                if leakage == "skip":
                    continue
                if leakage == "drop-from-train":
                    kept, dropped = [], [f for f in unit if f.root == train]
                    for split in sorted(splits - {train}, key=order.__getitem__):
                        copies = sorted((f for f in unit if f.root == split), key=choose)
                        kept.append(copies[0])
                        dropped.extend(copies[1:])
                    groups.append(PlanGroup(group.id, kind, "leak: train copies dropped",
                                            tuple(sorted(kept, key=lambda f: position[f.key])),
                                            tuple(sorted(dropped, key=lambda f: position[f.key]))))
                    continue
                reason = "leak: one copy kept" if reason == "duplicates" else reason + ", leak"
            winner = min(unit, key=choose)
            dropped = [f for f in unit if f is not winner]
            groups.append(PlanGroup(group.id, kind, reason, (winner,),
                                    tuple(sorted(dropped, key=lambda f: position[f.key]))))
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
    settings = {"method": report.settings.method, "threshold": report.settings.threshold,
                "flips": report.settings.flips, "keep": keep, "kinds": [k for k in KINDS if k in kinds],
                "conflicts": conflicts, "leakage": leakage}
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
            group = PlanGroup(group.id, group.kind, group.reason + " (link targets of kept files kept)",
                              group.keep + rescued, tuple(f for f in group.drop if f not in rescued))
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
    return {"root": item.root, "path": item.path, "label": item.label, "size": item.size,
            "mtime_ns": item.mtime_ns, "sha256": item.sha256, "width": item.width, "height": item.height}


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
        "summary": {"groups": len(plan.groups), "keep": len(plan.keeps), "drop": len(drops),
                    "drop_bytes": sum(f.size for f in drops)},
        "groups": [{"id": g.id, "kind": g.kind, "reason": g.reason, "keep": [_file_dict(f) for f in g.keep],
                    "drop": [_file_dict(f) for f in g.drop]} for g in plan.groups],
        "skipped": [{"root": r, "path": p, "reason": why} for r, p, why in plan.skipped],
    }


def render_plan(plan: Plan) -> str:
    return dumps(plan_to_dict(plan)) + "\n"


def write_plan(plan: Plan, path: str | os.PathLike) -> None:
    _atomic_write(Path(path), render_plan(plan).encode("utf-8"))


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
        item = PlanFile(str(data["root"]), _safe_relative(data["path"], where), int(data["size"]),
                        int(data["mtime_ns"]), str(data["sha256"]), data.get("label"), int(data.get("width", 0)),
                        int(data.get("height", 0)))
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
        raise InputError(f"{source}: not a dupaudit plan (no \"format\": \"{PLAN_FORMAT}\")")
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
    groups, seen = [], {}
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
                    raise InputError(f"{source}: {item.root}/{item.path} is listed twice "
                                     f"({seen[item.key]} and {role})")
                seen[item.key] = role
        groups.append(PlanGroup(int(raw.get("id", index)), str(raw.get("kind", "near")), str(raw.get("reason", "")),
                                keep, drop))
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


# ------------------------------------------------------------------------------------------ durable I/O


def _fsync_dir(path: str | os.PathLike) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + PARTIAL_SUFFIX)
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _fault(action: str, count: int, point: str) -> None:
    spec = os.environ.get(FAULT_ENV)
    if spec and spec == f"{action}:{count}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


class Journal:
    """An append-only JSON-lines file; every record is fsync'd before the call returns. Holds an exclusive lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        existed = path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "ab")
        try:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._handle.close()
            raise InputError(f"{path}: another dupaudit apply or undo is using this journal") from None
        if not existed:
            _fsync_dir(path.parent)

    def write(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n"
        self._handle.write(line.encode("ascii"))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_journal(path: str | os.PathLike) -> tuple[dict, dict[int, dict], list[dict]]:
    """The header, the intended moves by index (last record wins), and every record. A torn last line is ignored."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read journal: {exc.strerror or exc}") from None
    records = []
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if number == len(lines):  # the last line, torn by a crash mid-write: it was never acted on
                break
            raise InputError(f"{path}: line {number} is not a journal record") from None
    if not records or records[0].get("format") != JOURNAL_FORMAT:
        raise InputError(f"{path}: not a dupaudit journal")
    if records[0].get("version") != JOURNAL_VERSION:
        raise InputError(f"{path}: journal version {records[0].get('version')!r} is not supported")
    moves = {r["i"]: r for r in records if r.get("op") == "move"}
    return records[0], moves, records


# ------------------------------------------------------------------------------------------- file states


def _matches(path: str, entry: dict) -> bool:
    """True when `path` holds the journalled file (same link target, or same size and SHA-256)."""
    if entry.get("link") is not None:
        try:
            return os.readlink(path) == entry["link"]
        except OSError:
            return False
    try:
        info = os.stat(path)
        if not stat_module.S_ISREG(info.st_mode) or info.st_size != entry["size"]:
            return False
        return file_sha256(path) == entry["sha256"]
    except OSError:
        return False


def _state(entry: dict) -> str:
    """Where a journalled file is: pending, moved, copied (both ends), or a problem (missing, changed)."""
    src, dst = entry["src"], entry["dst"]
    src_here, dst_here = os.path.lexists(src), os.path.lexists(dst)
    if dst_here and not _matches(dst, entry):
        return "dst-changed"
    if src_here and not _matches(src, entry):
        return "src-changed"
    if src_here and dst_here:
        return "copied"
    if src_here:
        return "pending"
    if dst_here:
        return "moved"
    return "missing"


def _remove_partial(entry: dict) -> None:
    partial = entry["dst"] + PARTIAL_SUFFIX
    if os.path.lexists(partial):  # our own unfinished copy; the source is intact (checked by the caller)
        os.unlink(partial)


def _copy_verified(src: str, dst: str, entry: dict, action: str, count: int) -> None:
    """Copy src to dst durably and check the copy's bytes, without ever leaving a half-written dst."""
    partial = dst + PARTIAL_SUFFIX
    if os.path.lexists(partial):
        os.unlink(partial)
    try:
        if entry.get("link") is not None:
            os.symlink(entry["link"], partial)
        else:
            shutil.copyfile(src, partial)
            shutil.copystat(src, partial)
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
    except OSError:
        if os.path.lexists(partial):  # e.g. the disk filled up: leave no half copy behind
            os.unlink(partial)
        raise
    if not _matches(partial, entry):
        os.unlink(partial)
        raise InputError(f"{dst}: the copy does not match the original (disk full or failing?); original kept")
    os.rename(partial, dst)
    _fsync_dir(os.path.dirname(dst))
    _fault(action, count, "copied")


def _transfer(src: str, dst: str, entry: dict, action: str, count: int, force_copy: bool) -> None:
    """Move src to dst: an atomic rename, or across filesystems copy, verify, then remove the source."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.lexists(dst):
        raise InputError(f"{dst}: already exists; refusing to overwrite it")
    if not force_copy:
        try:
            os.rename(src, dst)
            _fsync_dir(os.path.dirname(dst))
            _fsync_dir(os.path.dirname(src))
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
    _copy_verified(src, dst, entry, action, count)
    os.unlink(src)  # the one removal dupaudit does: after a verified, durable copy
    _fsync_dir(os.path.dirname(src))


# ----------------------------------------------------------------------------------------------- apply


@dataclass(slots=True)
class ApplyResult:
    journal: Path
    quarantine: Path
    moved: int = 0  # moved by this run
    already: int = 0  # found already in the quarantine (a resumed apply)
    bytes: int = 0
    resumed: bool = False


@dataclass(slots=True)
class UndoResult:
    journal: Path
    restored: int = 0
    already: int = 0  # already back in place (undo run twice, or never moved)
    problems: list[str] = field(default_factory=list)


def _check(plan: Plan, item: PlanFile, path: str) -> str | None:
    """None when the file is as the plan saw it, else the change in a few words."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if info.st_size != item.size:
        return f"size {item.size} -> {info.st_size}"
    if info.st_mtime_ns != item.mtime_ns:
        return "modified (mtime changed)"
    try:
        if file_sha256(path) != item.sha256:
            return "content changed (sha256)"
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    return None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def apply_plan(plan: Plan, quarantine: str | os.PathLike, *, force_copy: bool = False,
               progress: ProgressSink | None = None) -> ApplyResult:
    """Move every dropped file into QUARANTINE/<root>/<path>, journalled; resumes an interrupted apply.

    Refuses (StalePlanError, nothing moved) when a file the plan keeps or drops changed since the plan was made.
    force_copy: copy-verify-remove even on one filesystem (what a move across filesystems does).
    """
    progress = progress or NullProgress()
    quarantine = Path(quarantine).expanduser().resolve()
    for root in plan.roots:
        base = Path(root.path)
        if _inside(quarantine, base) and not any(
                part.startswith(".") for part in quarantine.relative_to(base).parts):
            raise InputError(f"{quarantine}: the quarantine is inside root {root.name} ({base}); a rescan would "
                             "find the quarantined files: choose a folder outside it (or a hidden one, .name)")
        if _inside(base, quarantine):
            raise InputError(f"{quarantine}: the quarantine contains root {root.name}; choose another folder")
    journal_path = quarantine / JOURNAL_NAME
    identity = plan.identity()
    moves: dict[int, dict] = {}
    if journal_path.exists() and b"\n" not in journal_path.read_bytes():
        journal_path.unlink()  # killed while writing its first line: nothing was moved, start afresh
    fresh = not journal_path.exists()
    if not fresh:
        header, moves, _ = read_journal(journal_path)
        if header.get("plan") != identity:
            raise InputError(f"{quarantine}: holds the journal of another plan (or this plan was edited since); "
                             f"undo it (dupaudit undo {journal_path}) or choose an empty quarantine")
    elif quarantine.exists() and any(quarantine.iterdir()):
        raise InputError(f"{quarantine}: not empty; the quarantine must be a new or empty folder")

    result = ApplyResult(journal_path, quarantine, resumed=bool(moves))
    drops = plan.drops
    entries = []
    for index, item in enumerate(drops):
        src = plan.abspath(item)
        dst = str(quarantine.joinpath(item.root, *item.path.split("/")))
        entries.append((index, item, src, dst))

    # Every check before the first move: a stale plan moves nothing.
    problems = []
    for item in plan.keeps:
        change = _check(plan, item, plan.abspath(item))
        if change:
            problems.append(f"kept {item.root}/{item.path}: {change}")
    states: dict[int, str] = {}
    for index, item, src, dst in entries:
        if index in moves:
            states[index] = _state(moves[index])
            if states[index] in ("pending", "copied"):
                change = _check(plan, item, src)
                if change:
                    problems.append(f"{item.root}/{item.path}: {change}")
            elif states[index] != "moved":
                problems.append(f"{item.root}/{item.path}: {_describe(states[index], moves[index])}")
        else:
            change = _check(plan, item, src)
            if change:
                problems.append(f"{item.root}/{item.path}: {change}")
            elif os.path.lexists(dst) or os.path.lexists(dst + PARTIAL_SUFFIX):
                problems.append(f"{dst}: already exists in the quarantine")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise StalePlanError(f"the plan is stale, nothing was moved by this run: {shown}. Make a new plan.")

    quarantine.mkdir(parents=True, exist_ok=True)
    with Journal(journal_path) as journal:
        if fresh:
            journal.write({"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, "tool": __version__,
                           "plan": identity, "quarantine": str(quarantine),
                           "roots": {r.name: r.path for r in plan.roots}})
        journal.write({"op": "apply"})
        progress.start("quarantine", len(entries))
        count = 0
        for index, item, src, dst in entries:
            progress.advance()
            state = states.get(index, "pending")
            if state == "moved":
                result.already += 1
                continue
            count += 1
            entry = {"op": "move", "i": index, "src": src, "dst": dst, "size": item.size,
                     "mtime_ns": item.mtime_ns, "sha256": item.sha256,
                     "link": os.readlink(src) if os.path.islink(src) else None}
            journal.write(entry)  # write-ahead: the record is on disk before the file is touched
            _fault("apply", count, "intent")
            try:
                if state == "copied":  # killed between the verified copy and removing the source
                    os.unlink(src)
                    _fsync_dir(os.path.dirname(src))
                else:
                    _remove_partial(entry)
                    _transfer(src, dst, entry, "apply", count, force_copy)
            except OSError as exc:
                raise InputError(f"cannot move {src} to the quarantine: {exc.strerror or exc}. {result.moved} "
                                 f"file(s) moved by this run and every file is in one place or the other: fix the "
                                 f"cause and run the same command again to resume, or undo with: dupaudit undo "
                                 f"{journal_path}") from None
            _fault("apply", count, "moved")
            journal.write({"op": "done", "i": index})
            result.moved += 1
            result.bytes += item.size
        journal.write({"op": "complete"})
        progress.finish()
    return result


def _describe(state: str, entry: dict) -> str:
    return {
        "missing": f"neither at {entry['src']} nor in the quarantine",
        "src-changed": f"{entry['src']} was replaced by a different file",
        "dst-changed": f"the quarantined copy {entry['dst']} was changed",
    }.get(state, state)


# ------------------------------------------------------------------------------------------------ undo


def undo(journal_path: str | os.PathLike, *, force_copy: bool = False,
         progress: ProgressSink | None = None) -> UndoResult:
    """Put every file an apply moved back where it was, byte for byte. Safe to run again, and after a crash."""
    progress = progress or NullProgress()
    journal_path = Path(journal_path).expanduser().resolve()
    if journal_path.is_dir():
        journal_path = journal_path / JOURNAL_NAME
    _, moves, _ = read_journal(journal_path)
    result = UndoResult(journal_path)
    with Journal(journal_path) as journal:
        journal.write({"op": "undo"})
        progress.start("restore", len(moves))
        count = 0
        for index in sorted(moves, reverse=True):
            progress.advance()
            entry = moves[index]
            src, dst = entry["src"], entry["dst"]
            state = _state(entry)
            if state == "pending":
                _remove_partial(entry)
                result.already += 1
                continue
            if state == "copied":  # the source is intact; the quarantine copy is ours: drop it
                os.unlink(dst)
                _fsync_dir(os.path.dirname(dst))
                result.already += 1
                continue
            if state != "moved":
                result.problems.append(f"{src}: {_describe(state, entry)}; left as it is")
                continue
            count += 1
            journal.write({"op": "restore", "i": index})
            _fault("undo", count, "intent")
            back = dict(entry, src=dst, dst=src)
            try:
                _remove_partial(back)
                _transfer(dst, src, back, "undo", count, force_copy)
            except OSError as exc:
                raise InputError(f"cannot put {src} back: {exc.strerror or exc}. {result.restored} file(s) restored "
                                 "so far; fix the cause and run undo again (it carries on where it stopped)") from None
            _fault("undo", count, "moved")
            journal.write({"op": "restored", "i": index})
            result.restored += 1
        journal.write({"op": "undone", "problems": len(result.problems)})
        progress.finish()
    _prune_empty(journal_path.parent)
    return result


def _prune_empty(quarantine: Path) -> None:
    """Remove the folders apply created in the quarantine that are empty now (rmdir never removes a file)."""
    for folder, _, _ in sorted(os.walk(quarantine), key=lambda entry: -len(entry[0])):
        if Path(folder) != quarantine:
            try:
                os.rmdir(folder)
            except OSError:
                pass


# --------------------------------------------------------------------------------------- kept files


@dataclass(frozen=True, slots=True)
class KeptFile:
    root: str
    path: str  # relative to its root
    abspath: str
    tree_path: str  # where it goes in a link tree, relative to the tree


def kept_files(plan: Plan) -> list[KeptFile]:
    """Every image file under the plan's roots that the plan does not drop and the scan could read."""
    from .discover import discover

    roots = tuple(Root(r.name, r.path, False) for r in plan.roots)
    for root in roots:
        if not os.path.isdir(root.path):
            raise InputError(f"{root.path}: root {root.name} of the plan is not a folder")
    records, _ = discover(roots)
    excluded = {f.key for f in plan.drops} | {(root, path) for root, path, _ in plan.skipped}
    order = {r.name: i for i, r in enumerate(plan.roots)}
    trees = {r.name: r.tree for r in plan.roots}
    kept = [KeptFile(r.root, r.path, r.abspath, f"{trees[r.root]}/{r.path}" if trees[r.root] else r.path)
            for r in records if r.key not in excluded]
    kept.sort(key=lambda k: (order[k.root], k.path))
    return kept


def write_list(plan: Plan, out: str | os.PathLike, *, null: bool = False) -> int:
    """Write the kept files' absolute paths, one per line (NUL-separated with null=True); returns the count."""
    kept = kept_files(plan)
    separator = b"\0" if null else b"\n"
    if not null:
        awkward = [k for k in kept if "\n" in k.abspath]
        if awkward:
            raise InputError(f"{len(awkward)} kept path(s) contain a newline (e.g. {awkward[0].abspath!r}); "
                             "write a NUL-separated list instead (--null)")
    data = b"".join(os.fsencode(k.abspath) + separator for k in kept)
    _atomic_write(Path(out), data)
    return len(kept)


def link_tree(plan: Plan, out: str | os.PathLike, *, hardlinks: bool = False) -> int:
    """A deduplicated view of the dataset: OUT mirrors its layout with links to the kept files only."""
    out = Path(out).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty folder; choose a new folder for the link tree")
    kept = kept_files(plan)
    for root in plan.roots:
        if _inside(out.resolve() if out.exists() else out, Path(root.path)):
            raise InputError(f"{out}: the link tree would be inside root {root.name}; choose a folder outside it")
    out.mkdir(parents=True, exist_ok=True)
    for item in kept:
        target = out.joinpath(*item.tree_path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        if hardlinks:
            try:
                os.link(item.abspath, target)
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    raise InputError(f"{out}: hardlinks cannot cross filesystems; use symlinks or a folder on the "
                                     "dataset's filesystem") from None
                raise
        else:
            os.symlink(item.abspath, target)
    return len(kept)


def summarize(plan: Plan) -> dict[str, int]:
    drops = plan.drops
    return {"groups": len(plan.groups), "keep": len(plan.keeps), "drop": len(drops),
            "drop_bytes": sum(f.size for f in drops)}


__all__ = ["Plan", "PlanFile", "PlanGroup", "PlanRoot", "ApplyResult", "UndoResult", "StalePlanError", "KeptFile",
           "make_plan", "write_plan", "read_plan", "render_plan", "plan_to_dict", "plan_from_dict", "apply_plan",
           "undo", "kept_files", "write_list", "link_tree", "read_journal", "file_sha256", "summarize"]
