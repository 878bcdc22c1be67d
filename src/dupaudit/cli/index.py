"""`dupaudit index build|update`: a dataset's fingerprints and search state in one file, for queries of new
images (`dupaudit scan NEW --against-index INDEX`) that never open the indexed images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from . import app
from .common import Method, err_console, guarded, progress_sink

index_app = typer.Typer(
    help="Keep a dataset's fingerprints and search state in an index file; query it with scan --against-index.",
    no_args_is_help=True,
)
app.add_typer(index_app, name="index")


@index_app.command("build")
@guarded
def build(
    root: Path = typer.Argument(..., help="Dataset folder (its train/, val/, test/ children are splits)."),
    output: Path = typer.Option(..., "--output", "-o", help="The index file to write (SQLite)."),
    against: list[Path] = typer.Option([], "--against", help="An evaluation folder to index too (repeatable)."),
    method: Method = typer.Option(Method.phash, "--method", help="Perceptual hash."),
    threshold: Optional[int] = typer.Option(None, "--threshold", min=0, max=64, help="Hamming radius (default 10)."),
    neighbours: Optional[int] = typer.Option(None, "--neighbours", min=0, help="Neighbours per image (default 3)."),
    min_similarity: Optional[float] = typer.Option(
        None, "--min-similarity", min=-1.0, max=1.0, help="Verification score a near pair must reach (default 0.84)."
    ),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Decoding processes (default: all cores)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Fingerprint and search a dataset into an index file (an existing one is updated: unchanged files are reused)."""
    from ..engine import index

    started = time.perf_counter()
    report = index.build(
        root,
        output,
        against,
        jobs=jobs,
        progress=progress_sink(quiet),
        method=method.value,
        threshold=threshold,
        neighbours=neighbours,
        min_similarity=min_similarity,
    )
    _done(output, report, time.perf_counter() - started, quiet)


@index_app.command("update")
@guarded
def update(
    index_file: Path = typer.Argument(..., help="An index file made by `dupaudit index build`."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Decoding processes (default: all cores)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Bring an index up to date with its folders: only added or changed files are decoded and searched."""
    from ..engine import index

    started = time.perf_counter()
    report = index.update(index_file, jobs=jobs, progress=progress_sink(quiet))
    _done(index_file, report, time.perf_counter() - started, quiet)


def _done(path: Path, report, elapsed: float, quiet: bool) -> None:
    if quiet:
        return
    size = path.stat().st_size / 1e6 if path.exists() else 0.0
    err_console.print(
        f"{path}: {report.summary.images:,} images indexed ({report.decoded:,} decoded, {report.cache_hits:,} from "
        f"the index), {report.summary.groups:,} duplicate groups · {size:,.1f} MB · {elapsed:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
