"""`dupaudit check` (the pre-commit / CI gate) and `dupaudit baseline` (accept today's findings)."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..wording import plural
from . import app
from .common import Method, contradiction, err_console, fail, given, guarded, progress_sink
from .outputs import check_distinct, check_file, is_stdout
from .sources import SOURCE_OPTIONS, source_options


class CheckFormat(str, Enum):
    text = "text"
    github = "github"
    markdown = "markdown"
    json = "json"


_CONFIG_HELP = "Config file (default: the nearest .dupaudit.toml, or pyproject.toml with \\[tool.dupaudit])."


def _overrides(root, against, method, threshold, flips, fail_on, baseline, cache, jobs, read) -> dict:
    """The settings given as flags (None: not given, so the environment, the file or the default decides);
    `read`: the source options (--source-type ... --storage-option) as given."""
    source_type, image_column, label_column, split_column, path_column, storage_option = read
    source_options(*read)  # a bad --source-type or --storage-option is said as the scan says it
    return {
        "source_type": source_type,
        "image_column": image_column,
        "label_column": label_column,
        "split_column": split_column,
        "path_column": path_column,
        "storage_options": tuple(storage_option) if storage_option else None,
        "root": str(root) if root is not None else None,
        "against": tuple(str(a) for a in against) if against else None,
        "method": method.value if method is not None else None,
        "threshold": threshold,
        "flips": flips,
        "fail_on": fail_on,
        "baseline": str(baseline) if baseline is not None else None,
        "cache": str(cache) if cache is not None else None,
        "jobs": jobs,
    }


def _refuse_cache_pair(ctx: typer.Context, no_cache: bool, cache: Optional[Path]) -> None:
    if no_cache and given(ctx, "cache"):
        raise contradiction("--no-cache", f"--cache {cache}", "--no-cache neither reads nor writes a cache")


def _shown(path: str) -> str:
    try:
        return Path(path).relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path


# Options shared by both commands (typer has no option groups; these keep the two in step).
ROOT = typer.Option(
    None,
    "--root",
    help="Dataset folder (its train/, val/, test/ children are splits), or tar shards, Parquet, a manifest, a URL "
    "(docs/sources.md). (config: root)",
)
AGAINST = typer.Option([], "--against", help="An evaluation dataset outside the root (repeatable). (config: against)")
METHOD = typer.Option(None, "--method", help="Perceptual hash. (config: method; default phash)")
THRESHOLD = typer.Option(
    None, "--threshold", min=0, max=64, help="Hamming radius for near duplicates. (config: threshold)"
)
FLIPS = typer.Option(None, "--flips/--no-flips", help="Also match mirrored copies. (config: flips)")
BASELINE = typer.Option(
    None, "--baseline", help="Baseline file. (config: baseline; default .dupaudit-baseline.json beside the config file)"
)
CACHE = typer.Option(None, "--cache", help="Fingerprint cache file. (config: cache)")
NO_CACHE = typer.Option(False, "--no-cache", help="Neither read nor write the fingerprint cache.")
JOBS = typer.Option(None, "--jobs", "-j", min=1, help="Decoding processes (default: all cores). (config: jobs)")
CONFIG = typer.Option(None, "--config", help=_CONFIG_HELP)
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary on stderr.")


@app.command()
@guarded
def check(
    ctx: typer.Context,
    files: Optional[list[Path]] = typer.Argument(
        None, help="Changed images to check (pre-commit passes the staged ones); none: check the whole dataset."
    ),
    root: Optional[str] = ROOT,
    against: list[str] = AGAINST,
    method: Optional[Method] = METHOD,
    threshold: Optional[int] = THRESHOLD,
    flips: Optional[bool] = FLIPS,
    fail_on: Optional[str] = typer.Option(
        None,
        "--fail-on",
        help="Rules that fail: exact, pixel, near, "
        "label-conflicts, leakage, skew>X. "
        "(config: fail_on; default "
        "near,label-conflicts,leakage)",
    ),
    baseline: Optional[Path] = BASELINE,
    cache: Optional[Path] = CACHE,
    no_cache: bool = NO_CACHE,
    jobs: Optional[int] = JOBS,
    config_file: Optional[Path] = CONFIG,
    source_type: Optional[str] = SOURCE_OPTIONS["source_type"],
    image_column: Optional[str] = SOURCE_OPTIONS["image_column"],
    label_column: Optional[str] = SOURCE_OPTIONS["label_column"],
    split_column: Optional[str] = SOURCE_OPTIONS["split_column"],
    path_column: Optional[str] = SOURCE_OPTIONS["path_column"],
    storage_option: list[str] = SOURCE_OPTIONS["storage_option"],
    output_format: CheckFormat = typer.Option(
        CheckFormat.text,
        "--format",
        "-f",
        help="text: one line per finding; github: Actions annotations; markdown: a summary table; json: one object.",
    ),
    append_summary: Optional[Path] = typer.Option(
        None,
        "--append-summary",
        help="Also append the Markdown summary to FILE (e.g. $GITHUB_STEP_SUMMARY); '-': stdout.",
    ),
    quiet: bool = QUIET,
    verify_content: bool = typer.Option(
        False,
        "--verify-content",
        help="Read every file and compare its bytes with the cache (finds edits that kept size and mtime; slower).",
    ),
) -> None:
    """Fail (exit 1) when changed images add duplicates, label conflicts or leakage that the baseline does not accept.

    Exit codes: 0 pass, 1 new findings, 2 bad usage/config/baseline, 3 the baseline was rewritten (stage it).
    """
    from ..check.runner import run_check
    from ..config import load_config
    from ..formats import github as github_format
    from ..formats import markdown as markdown_format

    _refuse_cache_pair(ctx, no_cache, cache)
    if no_cache and verify_content:
        raise contradiction("--no-cache", "--verify-content", "--verify-content compares files with the cache")
    check_file(append_summary, "--append-summary")
    if output_format is not CheckFormat.text:  # a machine-read stdout takes nothing else
        check_distinct({f"--format {output_format.value}": Path("-"), "--append-summary": append_summary})
    read = (source_type, image_column, label_column, split_column, path_column, storage_option)
    config = load_config(
        _overrides(root, against, method, threshold, flips, fail_on, baseline, cache, jobs, read),
        config_file=config_file,
    )
    started = time.perf_counter()
    result = run_check(
        config,
        [str(f) for f in files] if files else None,
        use_cache=not no_cache,
        progress=progress_sink(quiet),
        verify_content=verify_content,
    )
    elapsed = time.perf_counter() - started

    if output_format is CheckFormat.github:
        typer.echo(github_format.render_check(result), nl=False)
    elif output_format is CheckFormat.markdown:
        typer.echo(markdown_format.render_check(result), nl=False)
    elif output_format is CheckFormat.json:
        from ..formats import check_json

        typer.echo(check_json.render_check(result), nl=False)
    else:
        for failing in result.failing:
            typer.echo(failing.message)
    if is_stdout(append_summary):
        typer.echo(markdown_format.render_check(result), nl=False)
    elif append_summary is not None:
        with open(append_summary, "a", encoding="utf-8") as handle:
            handle.write(markdown_format.render_check(result))

    baseline_name = _shown(result.baseline_path)
    for message in result.dataset_failures:
        err_console.print(f"[red]fail:[/] {message}", highlight=False, soft_wrap=True)
    if not quiet:
        for finding in result.tolerated:
            err_console.print(
                f"note: {finding.message} (no fail_on rule covers it)", highlight=False, markup=False, soft_wrap=True
            )
        for skipped in result.skipped_files:
            err_console.print(
                f"warning: {skipped.root}/{skipped.path}: not checked: {skipped.reason}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    if result.baseline_rewritten:
        err_console.print(
            f"[yellow]baseline:[/] {baseline_name}: dropped {plural(result.baseline_dropped, 'accepted file')} "
            f"that {'is' if result.baseline_dropped == 1 else 'are'} gone; stage it (git add {baseline_name}) "
            "and commit again",
            highlight=False,
            soft_wrap=True,
        )
    if not quiet:
        _print_summary(result, baseline_name, elapsed)
    raise typer.Exit(result.exit_code)


def _none_of(count: int) -> str:
    return "the file is not" if count == 1 else f"none of the {count:,} files is"


def _print_summary(result, baseline_name: str, elapsed: float) -> None:
    report = result.report
    if report is None:
        err_console.print(
            f"dupaudit check: {_none_of(len(result.outside))} in the dataset "
            f"({_shown(result.config.root)}): nothing to check",
            highlight=False,
            soft_wrap=True,
        )
        return
    scope = "whole dataset" if result.files is None else plural(len(result.files), "changed file")
    baseline_note = (
        f"{plural(result.accepted, 'group')} accepted by {baseline_name}" if result.baseline_found else "no baseline"
    )
    verdict = f"[red]{plural(len(result.failing), 'new finding')}[/]" if result.failing else "[green]no new findings[/]"
    err_console.print(
        f"dupaudit check ({scope}): {verdict} · {baseline_note} · {report.summary.images:,} images, "
        f"{report.decoded:,} decoded, {report.cache_hits:,} from cache · {elapsed:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    if result.failing:
        err_console.print(
            f"Intended? Accept them with `dupaudit baseline` and commit {baseline_name}.",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


@app.command("baseline")
@guarded
def baseline_command(
    ctx: typer.Context,
    root: Optional[str] = ROOT,
    against: list[str] = AGAINST,
    method: Optional[Method] = METHOD,
    threshold: Optional[int] = THRESHOLD,
    flips: Optional[bool] = FLIPS,
    baseline: Optional[Path] = BASELINE,
    cache: Optional[Path] = CACHE,
    no_cache: bool = NO_CACHE,
    jobs: Optional[int] = JOBS,
    config_file: Optional[Path] = CONFIG,
    source_type: Optional[str] = SOURCE_OPTIONS["source_type"],
    image_column: Optional[str] = SOURCE_OPTIONS["image_column"],
    label_column: Optional[str] = SOURCE_OPTIONS["label_column"],
    split_column: Optional[str] = SOURCE_OPTIONS["split_column"],
    path_column: Optional[str] = SOURCE_OPTIONS["path_column"],
    storage_option: list[str] = SOURCE_OPTIONS["storage_option"],
    quiet: bool = QUIET,
) -> None:
    """Accept today's findings: write every current duplicate group to the baseline file that `check` subtracts."""
    from ..check.runner import write_baseline
    from ..config import load_config

    _refuse_cache_pair(ctx, no_cache, cache)
    if is_stdout(baseline):
        raise fail("--baseline -: a baseline is a file that check reads back; give its path")
    check_file(baseline, "--baseline")  # the file this command writes
    read = (source_type, image_column, label_column, split_column, path_column, storage_option)
    config = load_config(
        _overrides(root, against, method, threshold, flips, None, baseline, cache, jobs, read),
        config_file=config_file,
    )
    accepted, report = write_baseline(config, use_cache=not no_cache, progress=progress_sink(quiet))
    name = _shown(config.baseline)
    if not quiet:
        err_console.print(
            f"wrote {name}: {plural(len(accepted), 'finding')} accepted ({plural(report.summary.images, 'image')}, "
            f"{report.decoded:,} decoded); stage it: git add {name}",
            highlight=False,
            soft_wrap=True,
        )
