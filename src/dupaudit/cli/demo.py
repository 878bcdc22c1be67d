"""`dupaudit demo`: write a small sample dataset with planted duplicates (no network needed)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import fail, guarded
from .outputs import check_folder


@app.command()
@guarded
def demo(out: Path = typer.Argument(Path("dupaudit-demo"), help="Folder to create the sample dataset in.")) -> None:
    """Create a sample dataset (train/test, 4 classes, planted duplicates, a leak, a label conflict)."""
    from ..sample import make_sample

    check_folder(out, "demo")  # the output rule of every command: the parent folder must exist, OUT not be a file
    if out.exists() and any(out.iterdir()):
        raise fail(f"demo {out}: the folder is not empty; choose a new folder")
    plan = make_sample(out)
    typer.echo(f"wrote a sample dataset to {plan.root}; now run: dupaudit scan {plan.root}")
