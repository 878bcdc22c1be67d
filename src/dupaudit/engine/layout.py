"""Layout detection: which folders are splits, which are classes, and what is left out (README "Layouts").

Only images count: a folder's layout is decided by where its image files are (recognised by content, as in a
scan) and never by other files (README.md, labels.csv, Thumbs.db). What is scanned otherwise than it looks, or
not scanned at all, becomes a one-line warning in the report; the core never prints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from ..errors import InputError
from .discover import is_image_file
from .model import Layout, Root

# Folder names read as splits (lower case), and their roles. Unlabelled pools (STL-10's unlabeled/) are scanned
# for duplicates but are neither training classes nor evaluation data.
TRAIN_SPLITS = ("train", "training")
EVAL_SPLITS = ("val", "valid", "validation", "dev", "test", "testing", "eval", "holdout")
UNLABELLED_SPLITS = ("unlabeled", "unlabelled", "extra")
_SPLIT_ORDER = {name: i for i, name in enumerate(TRAIN_SPLITS + EVAL_SPLITS + UNLABELLED_SPLITS)}
_NAME = attrgetter("name")


def split_role(name: str) -> str | None:
    """'train', 'eval' or 'unlabelled' for a folder named like a split; None otherwise."""
    lowered = name.lower()
    if lowered in TRAIN_SPLITS:
        return "train"
    if lowered in EVAL_SPLITS:
        return "eval"
    if lowered in UNLABELLED_SPLITS:
        return "unlabelled"
    return None


@dataclass(frozen=True, slots=True)
class DetectedLayout:
    roots: tuple[Root, ...]
    layout: Layout
    warnings: tuple[str, ...]


# ------------------------------------------------------------------------------------------- options


def parse_split_option(text: str) -> tuple[str, str]:
    """`--split NAME=FOLDER` -> (NAME, FOLDER)."""
    name, sep, folder = text.partition("=")
    name, folder = name.strip(), folder.strip()
    if not sep or not name or not folder or "/" in name:
        raise InputError(f"--split {text!r}: expected NAME=FOLDER, e.g. --split test=holdout")
    return name, folder


def label_pattern(label_depth: int | None = None, label_from: str | None = None) -> tuple[bool, str] | None:
    """(the pattern starts with {split}, a regex over folder paths with group 'label'); None: detect labels.

    `--label-depth N`: the N-th folder level below a split (or the dataset) is the label.
    `--label-from PATTERN`: `/`-separated parts: `{split}` (first part only), `{label}` (once), `{_}` or `*`
    (any one folder), `**` (any number of folders), or a folder name; it ends in `*`: the files below."""
    if label_depth is not None and label_from is not None:
        raise InputError("give --label-depth or --label-from, not both")
    if label_depth is not None:
        if label_depth < 1:
            raise InputError(f"--label-depth must be 1 or more, not {label_depth}")
        return False, "^" + "[^/]+/" * (label_depth - 1) + "(?P<label>[^/]+)/"
    if label_from is None:
        return None
    parts = label_from.strip().strip("/").split("/")
    has_split = parts[0] == "{split}"
    if has_split:
        parts = parts[1:]
    if len(parts) < 2 or parts[-1] not in ("*", "**"):
        raise InputError(f"--label-from {label_from!r}: the pattern must name folders and end in /*, e.g. {{label}}/*")
    if parts[:-1].count("{label}") != 1:
        raise InputError(f"--label-from {label_from!r}: the pattern must contain {{label}} once")
    regex = "^"
    for part in parts[:-1]:
        if part == "{label}":
            regex += "(?P<label>[^/]+)/"
        elif part in ("{_}", "*"):
            regex += "[^/]+/"
        elif part == "**":
            regex += "(?:[^/]+/)*"  # greedy: {label} after ** is the innermost folder
        elif "{" in part or "}" in part or not part:
            raise InputError(f"--label-from {label_from!r}: unknown part {part!r} (use {{split}}, {{label}}, {{_}})")
        else:
            regex += re.escape(part).replace(r"\*", "[^/]*").replace(r"\?", "[^/]") + "/"
    return has_split, regex


# ------------------------------------------------------------------------------------------- folders


def _children(folder: str, exclude: Sequence[str] = ()) -> tuple[list[os.DirEntry], list[os.DirEntry]]:
    """The visible sub-folders and regular files of a folder, sorted by name (excluded folders left out)."""
    dirs, files = [], []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name[:1] == ".":
                    continue
                try:
                    if entry.is_dir():
                        if os.path.realpath(entry.path) not in exclude:
                            dirs.append(entry)
                    elif entry.is_file():
                        files.append(entry)
                except OSError:  # a broken link: the listing reports it
                    continue
    except OSError:
        pass  # an unreadable folder: the listing reports it
    dirs.sort(key=_NAME)
    files.sort(key=_NAME)
    return dirs, files


def _loose_images(files: list[os.DirEntry]) -> int:
    return sum(1 for f in files if is_image_file(f.path, f.name))


def count_images(folder: str, exclude: Sequence[str] = (), limit: int | None = None) -> int:
    """Images under a folder (following links once), stopping as soon as `limit` are found (entries are read
    lazily, so asking whether a class folder of 5,000 images holds one reads one entry)."""
    found, seen, stack = 0, set(), [folder]
    while stack:
        path = stack.pop()
        try:
            info = os.stat(path)
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.name[:1] == ".":
                        continue
                    try:
                        if entry.is_file():
                            if is_image_file(entry.path, entry.name):
                                found += 1
                                if limit is not None and found >= limit:
                                    return found
                        elif entry.is_dir() and os.path.realpath(entry.path) not in exclude:
                            stack.append(entry.path)
                    except OSError:  # a broken link: the listing reports it
                        continue
        except OSError:  # an unreadable folder: the listing reports it
            continue
    return found


def _shown(names: Sequence[str], limit: int = 4) -> str:
    text = ", ".join(names[:limit])
    return text + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _classes(path: str, exclude: Sequence[str]) -> tuple[bool, str]:
    """Are the sub-folders of `path` classes? (yes/no, why): only folders that hold images count, and loose
    images beside them are scanned unlabelled (a warning) unless they outnumber the images in sub-folders."""
    dirs, files = _children(path, exclude)
    holding = [d.name for d in dirs if count_images(d.path, exclude, limit=1)]
    if not holding:
        return False, "no sub-folder holds images"
    loose = _loose_images(files)
    if loose:
        inside = sum(count_images(os.path.join(path, name), exclude, limit=loose + 1) for name in holding)
        if inside <= loose:
            return (
                False,
                f"{_plural(loose, 'image')} lie loose beside {_plural(len(holding), 'sub-folder')} with fewer images",
            )
    return True, f"{_plural(len(holding), 'class folder')} hold images ({_shown(holding)})"


# ------------------------------------------------------------------------------------------- detection


@dataclass(slots=True)
class _Candidate:
    name: str
    path: str  # resolved
    role: str  # train, eval, unlabelled
    given: str  # how the user named it, for messages
    exclude: list[str]


def detect_layout(
    root: str | os.PathLike,
    against: Sequence[str | os.PathLike] = (),
    *,
    splits: Mapping[str, str] | Sequence[str] | None = None,
    label_depth: int | None = None,
    label_from: str | None = None,
) -> DetectedLayout:
    """Named roots for the dataset folder and the evaluation folders, with the layout and the warnings.

    splits: {NAME: FOLDER} (or "NAME=FOLDER" strings): these folders (relative to `root`) are the splits and
    no others; NAME's role follows its spelling (train/training is training, unlabeled/extra a pool, any other
    an evaluation split)."""
    named = _named_splits(splits)
    pattern = label_pattern(label_depth, label_from)
    warnings: list[str] = []
    candidates: list[_Candidate] = []
    kind, reason = "", ""
    for index, folder in enumerate([root, *against]):
        path = _folder(folder)
        if index == 0 and named:
            found = _explicit_splits(path, named, warnings)
            kind, reason = "named splits", "splits named with --split: " + ", ".join(f"{n}={f}" for n, f in named)
        elif pattern is not None and not pattern[0]:  # a label pattern without {split}: one labelled root
            found = [_Candidate(path.name or "root", str(path), "train", str(folder), [])]
            kind, reason = (kind, reason) if index else ("labelled", "")
        else:
            found = _split_folders(path, str(folder), warnings)
            if pattern is not None and not found:
                raise InputError(f"{folder}: --label-from starts with {{split}}, but no split folder holds images")
            if index == 0:
                if found:
                    roles = ", ".join(f"{c.name} ({c.role})" for c in found)
                    kind, reason = "splits", f"split folders found by name: {roles}"
            if not found:
                found = [_Candidate(path.name or "root", str(path), "train", str(folder), [])]
        if index:  # --against folders are evaluation data, whatever their inner names
            for candidate in found:
                candidate.role = "eval"
        candidates.extend(found)
    candidates = _without_overlaps(candidates, warnings)

    roots: list[Root] = []
    described: list[str] = []
    for candidate in candidates:
        exclude = tuple(sorted(candidate.exclude))
        if candidate.role == "unlabelled":
            labelled, rule, why = False, "", "an unlabelled pool"
        elif pattern is not None:
            labelled, rule = True, "" if pattern[1] == "^(?P<label>[^/]+)/" else pattern[1]
            why = f"labels from --label-depth {label_depth}" if label_depth else f"labels from {label_from!r}"
        else:
            (labelled, why), rule = _classes(candidate.path, exclude), ""
        name = _unique(candidate.name, roots)
        roots.append(Root(name, candidate.path, labelled, candidate.role, rule, exclude))
        described.append(f"{name}: {why}")
    if not kind:  # one folder, no splits
        kind = "labelled" if roots[0].labelled else "unlabelled"
        reason = described[0].partition(": ")[2]
        described = described[1:]
    reason = "; ".join(part for part in (reason, *described) if part)
    return DetectedLayout(tuple(roots), Layout(kind, reason), tuple(warnings))


def _named_splits(splits: Mapping[str, str] | Sequence[str] | None) -> list[tuple[str, str]]:
    if not splits:
        return []
    items = list(splits.items()) if isinstance(splits, Mapping) else [parse_split_option(s) for s in splits]
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise InputError(f"--split names a split twice: {', '.join(names)}")
    return items


def _folder(folder: str | os.PathLike) -> Path:
    path = Path(folder).expanduser()
    if not path.exists():
        raise InputError(f"{folder}: no such folder")
    if not path.is_dir():
        raise InputError(f"{folder}: not a folder")
    return path.resolve()


def _role_of_name(name: str) -> str:
    return split_role(name) or "eval"


def _explicit_splits(path: Path, named: list[tuple[str, str]], warnings: list[str]) -> list[_Candidate]:
    found = []
    for name, folder in named:
        split_path = _folder(path / folder)
        found.append(_Candidate(name, str(split_path), _role_of_name(name), f"--split {name}={folder}", []))
    inside = [c.path for c in found]
    left = count_images(str(path), exclude=inside) if str(path) not in inside else 0
    if left:
        warnings.append(f"{_plural(left, 'image')} under {path} outside the --split folders are not scanned")
    return found


def _split_folders(path: Path, given: str, warnings: list[str]) -> list[_Candidate]:
    """The split folders of a dataset folder (by name, holding images), train first; warns about the rest."""
    dirs, files = _children(str(path))
    splits = [d for d in dirs if split_role(d.name) and count_images(d.path, limit=1)]
    if not splits:
        return []
    splits.sort(key=lambda d: (_SPLIT_ORDER[d.name.lower()], d.name))
    for entry in dirs:
        if entry in splits:
            continue
        count = count_images(entry.path)
        if count:
            warnings.append(
                f"{given.rstrip('/')}/{entry.name}/: {_plural(count, 'image')} not scanned: the folder is not a split "
                f"(name it with --split NAME={entry.name})"
            )
    loose = _loose_images(files)
    if loose:
        warnings.append(
            f"{given.rstrip('/')}/: {_plural(loose, 'loose image')} beside the split folders not scanned: "
            "they belong to no split"
        )
    return [_Candidate(d.name, str(Path(d.path).resolve()), split_role(d.name) or "eval", d.name, []) for d in splits]


def _without_overlaps(candidates: list[_Candidate], warnings: list[str]) -> list[_Candidate]:
    """A folder given twice is scanned once; a folder inside another is scanned as itself, and left out of the
    outer one, so that no image is counted twice."""
    kept: list[_Candidate] = []
    for candidate in candidates:
        same = next((k for k in kept if k.path == candidate.path), None)
        if same is not None:
            warnings.append(
                f"{candidate.given} is the same folder as {same.name} ({same.role}): scanned once, as {same.name}"
            )
            continue
        for other in kept:
            for outer, inner in ((other, candidate), (candidate, other)):
                if Path(inner.path).is_relative_to(outer.path):
                    outer.exclude.append(inner.path)
                    warnings.append(
                        f"{inner.given} is inside {outer.given}: its images are scanned once, as {inner.role} "
                        f"split {inner.name}, and left out of {outer.name}"
                    )
        kept.append(candidate)
    return kept


def _unique(name: str, roots: list[Root]) -> str:
    taken = {r.name for r in roots}
    candidate, counter = name, 2
    while candidate in taken:
        candidate = f"{name}-{counter}"
        counter += 1
    return candidate
