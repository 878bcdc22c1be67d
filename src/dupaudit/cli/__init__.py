"""The command layer: the only package that imports typer and rich.

Each command lives in its own module and registers itself on `app`; errors become the exit codes of
dupaudit/exitcodes.py (cli/common.py: guarded).
"""

from __future__ import annotations

import gc
import logging
import sys

import typer

app = typer.Typer(
    name="dupaudit",
    help="Find duplicated images in a training set: what is duplicated, how uneven it is, and what it costs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
)

# Command modules register themselves on import (one module per command).
from . import check as _check  # noqa: E402,F401
from . import dedup as _dedup  # noqa: E402,F401
from . import demo as _demo  # noqa: E402,F401
from . import index as _index  # noqa: E402,F401
from . import probe as _probe  # noqa: E402,F401
from . import report as _report  # noqa: E402,F401
from . import scan as _scan  # noqa: E402,F401


def _print_version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"dupaudit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    # eager: `dupaudit --version` answers before click asks for a command
    pass


_GC_THRESHOLDS = (50_000, 20, 20)  # Python's default: (700, 10, 10)


def main() -> None:
    """Entry point of the `dupaudit` command."""
    # A run builds an object or two per file (60,000 for a hook's check of CIFAR-10, a million at scale) and
    # almost no cyclic garbage: the collector's full passes over them were ~10% of a hook's time. The modules
    # imported so far stay for the whole run (frozen out of the passes), and young passes come less often.
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)
    logging.basicConfig(level=logging.WARNING, format="dupaudit: %(message)s", stream=sys.stderr)
    app()
