"""`dupaudit scan`: find duplicates, skew, label conflicts and leakage in a dataset folder."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..exitcodes import EXIT_FINDINGS
from . import app, options
from .common import ScanMethod, contradiction, err_console, fail, given, guarded, progress_sink
from .outputs import check_distinct, check_file, is_stdout, write_text
from .render import print_summary
from .sources import SOURCE_OPTIONS, source_options


class Format(str, Enum):
    text = "text"
    json = "json"
    csv = "csv"


@app.command()
@guarded
def scan(
    ctx: typer.Context,
    root: Optional[str] = typer.Argument(
        None,
        help="Dataset: a folder (ROOT/<class>/..., ROOT/{train,val,test}/<class>/..., or flat), WebDataset "
        ".tar shards, Parquet (Hugging Face layout too), a CSV/TSV/JSONL manifest; a path, glob or URL "
        "(s3://, gs://, az://, http(s)://, hf://). See docs/sources.md.",
    ),
    against: list[str] = options.AGAINST,
    split: list[str] = options.SPLIT,
    label_depth: Optional[int] = options.LABEL_DEPTH,
    label_from: Optional[str] = options.LABEL_FROM,
    method: Optional[ScanMethod] = options.METHOD,
    model: Optional[Path] = options.MODEL,
    threshold: Optional[int] = options.THRESHOLD,
    flips: Optional[bool] = options.FLIPS,
    rotations: Optional[bool] = options.ROTATIONS,
    verify: Optional[bool] = options.VERIFY,
    min_similarity: Optional[float] = options.MIN_SIMILARITY,
    neighbours: Optional[int] = options.NEIGHBOURS,
    against_index: Optional[Path] = typer.Option(
        None,
        "--against-index",
        metavar="INDEX",
        help="Report only what ROOT's images duplicate in an index file (dupaudit index build) or among themselves; "
        "the indexed images are not opened.",
    ),
    explain_pair: Optional[tuple[str, str]] = typer.Option(
        None,
        "--explain",
        metavar="A B",
        help="Say why two files of ROOT (items of tar shards, Parquet, a manifest: their ids) are or are not in one "
        "group: the scan's own steps in that dataset.",
    ),
    jobs: Optional[int] = options.JOBS,
    fast_decode: Optional[bool] = options.FAST_DECODE,
    cache: Optional[Path] = options.CACHE,
    no_cache: bool = options.NO_CACHE,
    config_file: Optional[Path] = options.CONFIG,
    verify_content: bool = typer.Option(
        False,
        "--verify-content",
        help="Read every file and compare its bytes with the cache (finds edits that kept size and mtime).",
    ),
    json_file: Optional[Path] = typer.Option(
        None, "--json", help="Write the JSON report (schema_version 1); '-': stdout."
    ),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Write one CSV row per group member; '-': stdout."),
    html_file: Optional[Path] = typer.Option(
        None, "--html", help="Write a self-contained HTML gallery of the groups; '-': stdout."
    ),
    output_format: Format = typer.Option(
        Format.text, "--format", "-f", help="What goes to stdout: the text summary, or the json/csv report."
    ),
    fail_on: Optional[str] = typer.Option(
        None, "--fail-on", help="Exit 1 on: exact, pixel, near, label-conflicts, leakage, skew>X (comma-separated)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
    cluster: Optional[str] = typer.Option(
        None,
        "--cluster",
        envvar="DUPAUDIT_CLUSTER",
        metavar="SPEC",
        help="Run on Dask: local:N (N worker processes here) or a scheduler address tcp://HOST:8786 "
        "(the dask extra; see docs/scale.md).",
    ),
    workdir: Optional[str] = typer.Option(
        None,
        "--workdir",
        envvar="DUPAUDIT_WORKDIR",
        metavar="PATH|URL",
        help="With --cluster: where the workers write the fingerprint table (a shared path or s3://...).",
    ),
    source_type: Optional[str] = SOURCE_OPTIONS["source_type"],
    image_column: Optional[str] = SOURCE_OPTIONS["image_column"],
    label_column: Optional[str] = SOURCE_OPTIONS["label_column"],
    split_column: Optional[str] = SOURCE_OPTIONS["split_column"],
    path_column: Optional[str] = SOURCE_OPTIONS["path_column"],
    storage_option: list[str] = SOURCE_OPTIONS["storage_option"],
) -> None:
    """Find exact, pixel and near duplicates; report class skew, label conflicts and train/test leakage."""
    from ..engine.pipeline import scan as run_scan
    from ..formats import csv as csv_format
    from ..formats import json as json_format
    from ..policy import failures, parse_rules

    rules = parse_rules(fail_on)  # a bad rule is a usage error before any work is done
    config = options.scan_config(
        root=root,
        against=against,
        method=method,
        model=model,
        threshold=threshold,
        flips=flips,
        verify=verify,
        min_similarity=min_similarity,
        neighbours=neighbours,
        fast_decode=fast_decode,
        rotations=rotations,
        jobs=jobs,
        cache=cache,
        config_file=config_file,
        split=split,
        label_depth=label_depth,
        label_from=label_from,
    )
    if no_cache and given(ctx, "cache"):
        raise contradiction("--no-cache", f"--cache {cache}", "--no-cache neither reads nor writes a cache")
    if config.verify is False and config.method != "cnn":
        for name, option in (("min_similarity", "--min-similarity"), ("neighbours", "--neighbours")):
            if given(ctx, name):
                raise contradiction("--no-verify", option, f"{option} is a setting of the verification step")
    if explain_pair:
        if config.method == "cnn":
            raise fail("--explain does not support --method cnn yet: scan the folder with --method cnn instead")
        if not options.root_given(config, root):
            raise fail("--explain needs the dataset: dupaudit scan ROOT --explain A B (the scan's rule in ROOT)")
        _refuse_with_explain(ctx, output_format)
        _print_explanation(
            root if root is not None else config.root,
            against or config.against,
            explain_pair,
            output_format,
            jobs=config.jobs,
            cache_path=config.cache,
            use_cache=not no_cache,
            progress=progress_sink(quiet),
            source_options=source_options(
                source_type, image_column, label_column, split_column, path_column, storage_option
            ),
            **options.scan_parameters(config, model),
        )
        return
    if not options.root_given(config, root):
        raise fail("missing ROOT: give a dataset folder (or ROOT --explain A B)")
    cluster, workdir = cluster or config.cluster, workdir or config.workdir  # flag or env, then the file
    if workdir and not cluster:
        raise fail("--workdir goes with --cluster: the single-process scan keeps its fingerprints in the cache")
    outputs = {"--json": json_file, "--csv": csv_file, "--html": html_file}
    if output_format is not Format.text:
        outputs = {f"--format {output_format.value}": Path("-"), **outputs}
    check_distinct(outputs)
    for option, path in outputs.items():
        check_file(path, option)  # before any work: a bad path is said now, not after the scan
    report_on_stdout = any(is_stdout(path) for path in outputs.values())
    started = time.perf_counter()
    with ExitStack() as stack:
        runner = None
        if cluster:
            from ..cluster import DaskRunner, open_cluster

            runner = DaskRunner(stack.enter_context(open_cluster(cluster)), workdir)
            if not quiet and runner.dashboard:  # the cluster's own view of its tasks and workers, on stderr
                err_console.print(f"Dask dashboard: {runner.dashboard}", highlight=False, soft_wrap=True)
        if against_index is not None:  # the same outputs, from a query of the index instead of a scan
            run_scan = _index_query(against_index, against, method, threshold, flips, verify)
        report = run_scan(
            root if root is not None else config.root,  # as typed, so that messages name it so
            against or config.against,
            jobs=config.jobs,
            cache_path=config.cache,
            use_cache=not no_cache,
            progress=progress_sink(quiet),
            runner=runner,
            source_options=source_options(
                source_type, image_column, label_column, split_column, path_column, storage_option
            ),
            verify_content=verify_content,
            **options.scan_parameters(config, model),
            **config.layout_parameters(),
        )
    elapsed = time.perf_counter() - started
    if json_file:
        write_text(json_file, json_format.render(report))
    if csv_file:
        write_text(csv_file, csv_format.render(report))
    if html_file:
        from ..formats import html as html_format

        read = source_options(source_type, image_column, label_column, split_column, path_column, storage_option)
        write_text(html_file, html_format.render(report, source_options=read))
    if output_format is Format.json:
        typer.echo(json_format.render(report), nl=False)
    elif output_format is Format.csv:
        typer.echo(csv_format.render(report), nl=False)
    for line in report.warnings:  # also with --quiet: what was not scanned as it looks must never pass unsaid
        err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if not quiet:
        console = err_console if report_on_stdout else Console()  # stdout holds the report when one goes there
        print_summary(report, console)
        if report.layout is not None:
            console.print(f"layout: {escape(report.layout.kind)} ({escape(report.layout.reason)})", highlight=False)
        console.print(f"[dim]{elapsed:.1f} s · {report.decoded:,} decoded, {report.cache_hits:,} from cache[/]")
    broken = failures(report, rules)
    if broken:
        for line in broken:
            err_console.print(f"[red]fail:[/] {line}", highlight=False)
        raise typer.Exit(EXIT_FINDINGS)


def _index_query(index_file: Path, against, method, threshold, flips, verify):  # noqa: ANN001, ANN202
    """A stand-in for the scan under --against-index: the index's settings apply, so scan's are refused."""
    if against or method is not None or threshold is not None or flips or verify is False:
        raise fail(
            "--against-index uses the index's own settings: drop --against, --method, --threshold, --flips and "
            "--no-verify (rebuild the index to change them)"
        )
    from ..engine.index import query

    def run(root, _against, *, jobs, cache_path, use_cache, progress, source_options, **_settings):  # noqa: ANN001, ANN202
        return query(
            root,
            index_file,
            jobs=jobs,
            cache_path=cache_path,
            use_cache=use_cache,
            progress=progress,
            source_options=source_options,
        )

    return run


def _refuse_with_explain(ctx: typer.Context, output_format: Format) -> None:
    """--explain judges two files: options about a folder's scan or its report files contradict it."""
    if output_format is Format.csv:
        raise contradiction("--explain", "--format csv", "an explanation is text or JSON (-f json)")
    for name, option in (
        ("json_file", "--json"),
        ("csv_file", "--csv"),
        ("html_file", "--html"),
        ("fail_on", "--fail-on"),
    ):
        if given(ctx, name):
            raise contradiction("--explain", option, "--explain judges two files of ROOT; it writes no report")


def _print_explanation(root, against, pair, output_format: Format, **options) -> None:
    from ..engine.explanation import explain

    result = explain(root, pair[0], pair[1], against=list(against), **options)
    if output_format is Format.json:
        typer.echo(json.dumps(asdict(result), indent=2, ensure_ascii=False))
        return
    typer.echo(f"{result.first}\n{result.second}")
    for reason in result.reasons:
        typer.echo(f"  {reason}")
    typer.echo(f"verdict: {result.verdict}" + (" duplicate" if result.verdict in ("exact", "pixel", "near") else ""))
