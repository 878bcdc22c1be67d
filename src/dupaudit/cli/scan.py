"""`dupaudit scan`: find duplicates, skew, label conflicts and leakage in a dataset folder."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..exitcodes import EXIT_FINDINGS
from . import app
from .common import ScanMethod, err_console, fail, guarded, progress_sink
from .render import print_summary


class Format(str, Enum):
    text = "text"
    json = "json"
    csv = "csv"


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", errors="surrogateescape")  # a non-UTF-8 file name keeps its bytes


@app.command()
@guarded
def scan(
    root: Optional[Path] = typer.Argument(
        None, help="Dataset folder: ROOT/<class>/..., ROOT/{train,val,test}/<class>/..., or a flat folder."
    ),
    against: list[Path] = typer.Option([], "--against", help="An evaluation folder to check for leakage (repeatable)."),
    method: ScanMethod = typer.Option(
        ScanMethod.phash,
        "--method",
        help="Perceptual hash (imagededup's definitions), or cnn: semantic near "
        "duplicates from CNN embeddings (needs --model or DUPAUDIT_CNN_MODEL; "
        "see README).",
    ),
    model: Optional[Path] = typer.Option(
        None,
        "--model",
        metavar="PATH",
        help="--method cnn: a local torchvision mobilenet_v3_small state_dict "
        "(.pth); else $DUPAUDIT_CNN_MODEL, else the torch hub cache. "
        "Nothing is downloaded.",
    ),
    threshold: Optional[int] = typer.Option(
        None, "--threshold", min=0, max=64, help="Hamming radius for near duplicates (default: see README)."
    ),
    flips: bool = typer.Option(False, "--flips", help="Also match horizontally mirrored copies."),
    verify: bool = typer.Option(
        True,
        "--verify/--no-verify",
        help="Verify near candidates on thumbnails (the cascade); --no-verify: pHash only.",
    ),
    min_similarity: Optional[float] = typer.Option(
        None,
        "--min-similarity",
        min=-1.0,
        max=1.0,
        help="Verification score a near pair must reach (default 0.84); "
        "with --method cnn, the cosine similarity of the "
        "embeddings (default 0.90).",
    ),
    neighbours: Optional[int] = typer.Option(
        None, "--neighbours", min=0, help="Nearest neighbours per image proposed as candidates (default 3)."
    ),
    explain_pair: Optional[tuple[Path, Path]] = typer.Option(
        None, "--explain", metavar="A B", help="Say why two files are or are not grouped."
    ),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Decoding processes (default: all cores)."),
    fast_decode: bool = typer.Option(
        False,
        "--fast-decode",
        help="Decode JPEGs at reduced scale (several times faster on photos; the "
        "hashes are then no longer imagededup's: see docs/performance.md).",
    ),
    cache: Optional[Path] = typer.Option(
        None,
        "--cache",
        envvar="DUPAUDIT_CACHE",
        help="Fingerprint cache (default ~/.cache/dupaudit/fingerprints.sqlite).",
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the fingerprint cache."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write the JSON report (schema_version 1)."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Write one CSV row per group member."),
    html_file: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML gallery of the groups."),
    output_format: Format = typer.Option(
        Format.text, "--format", "-f", help="What goes to stdout: the text summary, or the json/csv report."
    ),
    fail_on: Optional[str] = typer.Option(
        None, "--fail-on", help="Exit 1 on: exact, pixel, near, label-conflicts, leakage, skew>X (comma-separated)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Find exact, pixel and near duplicates; report class skew, label conflicts and train/test leakage."""
    from ..engine.pipeline import scan as run_scan
    from ..formats import csv as csv_format
    from ..formats import json as json_format
    from ..policy import failures, parse_rules

    rules = parse_rules(fail_on)  # a bad rule is a usage error before any work is done
    if explain_pair:
        if method is ScanMethod.cnn:
            raise fail("--explain does not support --method cnn yet: scan the folder with --method cnn instead")
        _print_explanation(explain_pair, method.value, threshold, flips, verify, min_similarity, neighbours)
        return
    if root is None:
        raise fail("missing ROOT: give a dataset folder (or --explain A B)")
    started = time.perf_counter()
    report = run_scan(
        root,
        against,
        method=method.value,
        threshold=threshold,
        flips=flips,
        jobs=jobs,
        cache_path=cache,
        use_cache=not no_cache,
        verify=verify,
        neighbours=neighbours,
        min_similarity=min_similarity,
        progress=progress_sink(quiet),
        fast_decode=fast_decode,
        model=model,
    )
    elapsed = time.perf_counter() - started
    if json_file:
        write_text(json_file, json_format.render(report))
    if csv_file:
        write_text(csv_file, csv_format.render(report))
    if html_file:
        from ..formats import html as html_format

        write_text(html_file, html_format.render(report))
    if output_format is Format.json:
        typer.echo(json_format.render(report), nl=False)
    elif output_format is Format.csv:
        typer.echo(csv_format.render(report), nl=False)
    if not quiet:
        console = Console() if output_format is Format.text else err_console
        print_summary(report, console)
        console.print(f"[dim]{elapsed:.1f} s · {report.decoded:,} decoded, {report.cache_hits:,} from cache[/]")
    broken = failures(report, rules)
    if broken:
        for line in broken:
            err_console.print(f"[red]fail:[/] {line}", highlight=False)
        raise typer.Exit(EXIT_FINDINGS)


def _print_explanation(pair, method, threshold, flips, verify, min_similarity, neighbours) -> None:
    from ..engine.explanation import explain
    from ..engine.model import Settings

    settings = Settings.resolve(
        method=method,
        threshold=threshold,
        flips=flips,
        verify=verify,
        neighbours=neighbours,
        min_similarity=min_similarity,
    )
    result = explain(str(pair[0]), str(pair[1]), settings)
    typer.echo(f"{result.first}\n{result.second}")
    for reason in result.reasons:
        typer.echo(f"  {reason}")
    typer.echo(f"verdict: {result.verdict}" + ("" if result.verdict == "not a duplicate" else " duplicate"))
