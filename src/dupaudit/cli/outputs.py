"""Output paths: one rule for every option that writes a file or a folder, checked before any work.

The rule: `-` means stdout; otherwise the folder that will hold the output must already exist (nothing is created
silently: a typo in a folder name is an error, not a new tree), the path must not be a folder when a file is
expected, and it must be writable. A bad path is a one-line error (exit 2) before minutes of scanning.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import typer

from ..errors import InputError

STDOUT = "-"


def is_stdout(path: Path | str | None) -> bool:
    return path is not None and str(path) == STDOUT


def _problem(option: str, path: Path | str, what: str, fix: str) -> InputError:
    # path once, then what happened, then what to do
    return InputError(f"{option} {path}: {what}; {fix}")


def _writable_folder(option: str, path: Path | str, folder: Path) -> None:
    shown = folder.as_posix() if str(folder) else "."
    if not folder.exists():
        raise _problem(option, path, f"the folder {shown} does not exist", "create it first or choose another path")
    if not folder.is_dir():
        raise _problem(option, path, f"{shown} is not a folder", "choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _problem(option, path, f"the folder {shown} is not writable", "choose another path")


def check_file(path: Path | None, option: str) -> None:
    """Refuse an output file that cannot be written, before any work: `-` (stdout) always passes."""
    if path is None or is_stdout(path):
        return
    text = str(path)
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise _problem(option, path, "is a folder", "give the name of a file, in it or elsewhere")
    _writable_folder(option, path, path.parent)
    # Try it for real: permissions, read-only mounts and pseudo file systems (/proc) only show on opening.
    existed = path.exists()
    try:
        if existed:
            with open(path, "ab"):  # appending nothing changes nothing
                pass
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.unlink(path)  # the empty file this check made, not a user's file
    except OSError as exc:
        reason = "is not writable" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else "cannot be written"
        raise _problem(option, path, f"{reason} ({exc.strerror})", "choose another path") from None


def check_folder(path: Path | None, option: str) -> None:
    """Refuse an output folder whose parent is missing or read-only, or that is a file."""
    if path is None:
        return
    if is_stdout(path):
        raise _problem(option, path, "is a folder option, so it cannot be stdout", "give a folder")
    if path.exists() and not path.is_dir():
        raise _problem(option, path, "is a file, not a folder", "give a new or empty folder")
    if not path.exists():
        _writable_folder(option, path, path.parent)


def check_distinct(outputs: dict[str, Path | None]) -> None:
    """Two options must not write the same file, and at most one may write to stdout."""
    seen: dict[str, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        key = STDOUT if is_stdout(path) else os.path.realpath(path)
        if key in seen:
            where = "stdout" if key == STDOUT else str(path)
            raise InputError(f"{seen[key]} and {option} both write to {where}; give them different paths")
        seen[key] = option


def check_not_input(path: Path | None, option: str, inputs: dict[str, Path | None]) -> None:
    """An output must not be one of the command's input files: writing it would replace the user's file."""
    if path is None or is_stdout(path):
        return
    for name, source in inputs.items():
        if source is not None and os.path.realpath(source) == os.path.realpath(path):
            raise _problem(option, path, f"is the input {name}, which this would replace", "give another path")


def write_text(path: Path, text: str) -> None:
    """Write an output: `-` goes to stdout; a non-UTF-8 file name in the text keeps its bytes."""
    if is_stdout(path):
        typer.echo(text, nl=False)
        return
    path.write_text(text, encoding="utf-8", errors="surrogateescape")


def binary_stdout():
    """stdout for a binary output (`--plot -`)."""
    return sys.stdout.buffer
