"""Apply a plan (move the dropped files to a quarantine, journalled) and undo it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .._version import __version__
from ..engine.progress import NullProgress, ProgressSink
from ..errors import InputError
from ..wording import plural
from .files import PARTIAL_SUFFIX, file_sha256, fsync_dir, inside
from .journal import (
    JOURNAL_FORMAT,
    JOURNAL_NAME,
    JOURNAL_VERSION,
    Journal,
    _fault,
    _remove_partial,
    _state,
    _transfer,
    read_journal,
)
from .plan import Plan, PlanFile, StalePlanError

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


def _check(item: PlanFile, path: str) -> str | None:
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


def apply_plan(
    plan: Plan, quarantine: str | os.PathLike, *, force_copy: bool = False, progress: ProgressSink | None = None
) -> ApplyResult:
    """Move every dropped file into QUARANTINE/<root>/<path>, journalled; resumes an interrupted apply.

    Refuses (StalePlanError, nothing moved) when a file the plan keeps or drops changed since the plan was made.
    force_copy: copy-verify-remove even on one filesystem (what a move across filesystems does).
    """
    progress = progress or NullProgress()
    quarantine = Path(quarantine).expanduser().resolve()
    for root in plan.roots:
        base = Path(root.path)
        if inside(quarantine, base) and not any(part.startswith(".") for part in quarantine.relative_to(base).parts):
            raise InputError(
                f"{quarantine}: the quarantine is inside root {root.name} ({base}); a rescan would "
                "find the quarantined files: choose a folder outside it (or a hidden one, .name)"
            )
        if inside(base, quarantine):
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
            raise InputError(
                f"{quarantine}: holds the journal of another plan (or this plan was edited since); "
                f"undo it (dupaudit undo {journal_path}) or choose an empty quarantine"
            )
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
        change = _check(item, plan.abspath(item))
        if change:
            problems.append(f"kept {item.root}/{item.path}: {change}")
    states: dict[int, str] = {}
    for index, item, src, dst in entries:
        if index in moves:
            states[index] = _state(moves[index])
            if states[index] in ("pending", "copied"):
                change = _check(item, src)
                if change:
                    problems.append(f"{item.root}/{item.path}: {change}")
            elif states[index] != "moved":
                problems.append(f"{item.root}/{item.path}: {_describe(states[index], moves[index])}")
        else:
            change = _check(item, src)
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
            journal.write(
                {
                    "format": JOURNAL_FORMAT,
                    "version": JOURNAL_VERSION,
                    "tool": __version__,
                    "plan": identity,
                    "quarantine": str(quarantine),
                    "roots": {r.name: r.path for r in plan.roots},
                }
            )
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
            entry = {
                "op": "move",
                "i": index,
                "src": src,
                "dst": dst,
                "size": item.size,
                "mtime_ns": item.mtime_ns,
                "sha256": item.sha256,
                "link": os.readlink(src) if os.path.islink(src) else None,
            }
            journal.write(entry)  # write-ahead: the record is on disk before the file is touched
            _fault("apply", count, "intent")
            try:
                if state == "copied":  # killed between the verified copy and removing the source
                    os.unlink(src)
                    fsync_dir(os.path.dirname(src))
                else:
                    _remove_partial(entry)
                    _transfer(src, dst, entry, "apply", count, force_copy)
            except OSError as exc:
                raise InputError(
                    f"cannot move {src} to the quarantine: {exc.strerror or exc}. {plural(result.moved, 'file')} "
                    f"moved by this run and every file is in one place or the other: fix the "
                    f"cause and run the same command again to resume, or undo with: dupaudit undo "
                    f"{journal_path}"
                ) from None
            _fault("apply", count, "moved")
            journal.write({"op": "done", "i": index})
            result.moved += 1
            result.bytes += item.size
        journal.write({"op": "complete"})
        progress.finish()
    return result


def _describe(state: str, entry: dict) -> str:
    # the callers put the file's path first: say it once, then what happened
    return {
        "missing": f"is gone, and not in the quarantine either ({entry['dst']})",
        "src-changed": f"was replaced by a different file (the quarantined copy stays at {entry['dst']})",
        "dst-changed": f"its quarantined copy {entry['dst']} was changed",
    }.get(state, state)


# ------------------------------------------------------------------------------------------------ undo


def undo(
    journal_path: str | os.PathLike, *, force_copy: bool = False, progress: ProgressSink | None = None
) -> UndoResult:
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
                fsync_dir(os.path.dirname(dst))
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
                raise InputError(
                    f"cannot put {src} back: {exc.strerror or exc}. {plural(result.restored, 'file')} restored "
                    "so far; fix the cause and run undo again (it carries on where it stopped)"
                ) from None
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
