"""What every command shares: the stderr console, error-to-exit-code mapping, the rich progress bar."""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Callable
from enum import Enum
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from ..errors import DupauditError, NamesParameters
from ..exitcodes import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE

err_console = Console(stderr=True)


class Method(str, Enum):
    """The perceptual hashes (imagededup's definitions), as every command that scans offers them."""

    phash = "phash"
    dhash = "dhash"
    ahash = "ahash"
    whash = "whash"


class ScanMethod(str, Enum):
    """scan's methods: the hashes, or cnn (semantic near duplicates from CNN embeddings, needs local weights)."""

    phash = "phash"
    dhash = "dhash"
    ahash = "ahash"
    whash = "whash"
    cnn = "cnn"


F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print a one-line error on stderr and return the Exit to raise."""
    # escape: a message is plain text (e.g. "pip install 'dupaudit[probe]'" must not lose "[probe]" as markup)
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


# Parameters whose flag is not their name with dashes (probing.ProbeSettings' fields)
_FLAGS = {"rates": "--rate/--sweep", "inject_classes": "--classes", "tta_level": "--tta", "budget_seconds": "--budget"}


def as_flag(name: str, value: str | None) -> str:
    """A parameter as its command-line flag: model -> --model, verify=False -> --no-verify, method='cnn' ->
    --method cnn (the core's errors name parameters; see errors.NamesParameters)."""
    flag = _FLAGS.get(name) or "--" + name.replace("_", "-")
    if value is None:
        return flag
    literal = ast.literal_eval(value)
    if isinstance(literal, bool):
        return flag if literal else f"--no-{name.replace('_', '-')}"
    return f"{flag} {literal}"


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed this option (not a default, and not an environment variable such as DUPAUDIT_CACHE)."""
    source = ctx.get_parameter_source(name)  # click's ParameterSource (typer vendors click: compare by name)
    return source is not None and source.name == "COMMANDLINE"


def contradiction(first: str, second: str, why: str) -> DupauditError:
    """The error for two options that cannot both hold (exit 2, naming the pair)."""
    return DupauditError(f"{first} and {second} contradict each other: {why}; drop one of them")


def needs(option: str, partner: str, why: str) -> DupauditError:
    """The error for an option given without the one it modifies (exit 2, naming both)."""
    return DupauditError(f"{option} needs {partner}: {why}")


def guarded(command: F) -> F:
    """Run a command body with dupaudit's exit codes: 2 for user errors, 130 for Ctrl-C, 123 for a bug."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DupauditError as exc:
            raise fail(exc.spelled(as_flag) if isinstance(exc, NamesParameters) else str(exc)) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except typer.BadParameter as exc:  # a usage error found inside a command body
            raise fail(exc.format_message()) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: say so, and never exit 1 (that means "findings")
            raise fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


class RichProgress:
    """A ProgressSink that draws a rich bar on stderr (only used on a terminal, without --quiet)."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, stage: str, total: int) -> None:
        if total <= 0:
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(stage, total=total, rate="", status="")

    def advance(self, count: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, count)
            speed = self._progress.tasks[0].speed  # items per second, over rich's recent window
            self._progress.update(self._task, rate=f"{speed:,.0f}/s" if speed else "")

    def status(self, text: str) -> None:
        """A detail beside the count (engine.progress.status): the cluster's tasks done / total."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, status=text)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def progress_sink(quiet: bool):
    """A rich bar when stderr is a terminal and the user did not ask for quiet; else nothing."""
    from ..engine.progress import NullProgress

    if quiet or not sys.stderr.isatty():
        return NullProgress()
    return RichProgress()
