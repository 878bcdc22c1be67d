"""`dupaudit demo`: write a small sample dataset with planted duplicates (no network needed)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import fail, guarded


@app.command()
@guarded
def demo(out: Path = typer.Argument(Path("dupaudit-demo"), help="Folder to create the sample dataset in.")) -> None:
    """Create a sample dataset (train/test, 4 classes, planted duplicates, a leak, a label conflict)."""
    from ..sample import make_sample

    if out.exists() and any(out.iterdir()):
        raise fail(f"{out} exists and is not empty; choose a new folder")
    plan = make_sample(out)
    typer.echo(f"wrote a sample dataset to {plan.root}; now run: dupaudit scan {plan.root}")
