"""`dupaudit dedup` (plan, apply to a quarantine, link tree, list) and `dupaudit undo`."""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..errors import DupauditError
from ..exitcodes import EXIT_USAGE
from ..wording import plural
from . import app, options, outputs
from .common import ScanMethod, err_console, fail, guarded, needs, progress_sink
from .outputs import check_distinct, check_file, check_folder, check_not_input, is_stdout
from .sources import SOURCE_OPTIONS, source_options


class Keep(str, Enum):
    resolution = "resolution"
    largest = "largest"
    oldest = "oldest"
    first = "first"


class Conflicts(str, Enum):
    keep_one = "keep-one"
    drop_all = "drop-all"
    skip = "skip"


class Leakage(str, Enum):
    drop_from_train = "drop-from-train"
    keep_one = "keep-one"
    skip = "skip"


def _say(message: str) -> None:
    err_console.print(message, highlight=False, markup=False, soft_wrap=True)


@app.command()
@guarded
def dedup(
    root: Optional[str] = typer.Argument(
        None, help="Dataset to plan for, in any form scan takes (omit with --apply, or to read an existing --plan)."
    ),
    against: list[str] = typer.Option([], "--against", help="An evaluation dataset, as in scan (repeatable)."),
    plan_file: Optional[Path] = typer.Option(
        None, "--plan", help="With ROOT: write the plan here ('-': stdout). Without ROOT: read this plan."
    ),
    apply: Optional[Path] = typer.Option(
        None,
        "--apply",
        help="Apply this plan: move its dropped files into --quarantine (resumes an interrupted apply).",
    ),
    quarantine: Optional[Path] = typer.Option(
        None, "--quarantine", help="Folder the dropped files are moved into (new or empty, or the one to resume)."
    ),
    link_tree_dir: Optional[Path] = typer.Option(
        None, "--link-tree", help="Make a deduplicated view: a new folder of links to the kept files."
    ),
    hardlinks: bool = typer.Option(False, "--hardlinks", help="Link tree of hardlinks instead of symlinks."),
    list_file: Optional[Path] = typer.Option(
        None,
        "--keep-list",
        "--list",  # the first name it had; kept working
        help="Write the kept files' paths (items' ids for tar shards, Parquet, manifests), one per line ('-': stdout).",
    ),
    null: bool = typer.Option(False, "--null", "-0", help="--keep-list separates paths with NUL, not newline."),
    keep: Keep = typer.Option(
        Keep.resolution,
        "--keep",
        help="Which copy stays: the keep rule (not an upscale, highest resolution; README), largest file, oldest "
        "file, first path.",
    ),
    kinds: str = typer.Option("exact,pixel,near", "--kinds", help="Duplicate kinds to act on (comma-separated)."),
    conflicts: Conflicts = typer.Option(
        Conflicts.keep_one, "--conflicts", help="Copies with different labels: keep one, drop all, or leave them."
    ),
    leakage: Leakage = typer.Option(
        Leakage.drop_from_train,
        "--leakage",
        help="Copies spanning splits: drop the training copies (default), keep one, or leave them.",
    ),
    dedup_eval: bool = typer.Option(
        False,
        "--dedup-eval",
        help="Also remove copies from evaluation splits (test, val, --against); by default they are never touched.",
    ),
    from_scan: Optional[Path] = typer.Option(
        None,
        "--from-scan",
        metavar="SCAN.json",
        help="Plan from a saved scan (`dupaudit scan --json`) instead of scanning ROOT again.",
    ),
    split: list[str] = options.SPLIT,
    label_depth: Optional[int] = options.LABEL_DEPTH,
    label_from: Optional[str] = options.LABEL_FROM,
    method: Optional[ScanMethod] = options.METHOD,
    model: Optional[Path] = options.MODEL,
    threshold: Optional[int] = options.THRESHOLD,
    flips: Optional[bool] = options.FLIPS,
    verify: Optional[bool] = options.VERIFY,
    min_similarity: Optional[float] = options.MIN_SIMILARITY,
    neighbours: Optional[int] = options.NEIGHBOURS,
    fast_decode: Optional[bool] = options.FAST_DECODE,
    jobs: Optional[int] = options.JOBS,
    cache: Optional[Path] = options.CACHE,
    no_cache: bool = options.NO_CACHE,
    config_file: Optional[Path] = options.CONFIG,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
    write_filtered: Optional[str] = typer.Option(
        None,
        "--write-filtered",
        metavar="OUT",
        help="Tar shards, Parquet or a manifest: write a deduplicated copy in the same format to OUT (a new "
        "folder; a new file for a manifest). The input is only read.",
    ),
    drop_list: Optional[Path] = typer.Option(
        None, "--drop-list", help="Write the dropped items' ids (or paths), one per line."
    ),
    source_type: Optional[str] = SOURCE_OPTIONS["source_type"],
    image_column: Optional[str] = SOURCE_OPTIONS["image_column"],
    label_column: Optional[str] = SOURCE_OPTIONS["label_column"],
    split_column: Optional[str] = SOURCE_OPTIONS["split_column"],
    path_column: Optional[str] = SOURCE_OPTIONS["path_column"],
    storage_option: list[str] = SOURCE_OPTIONS["storage_option"],
) -> None:
    """Plan which copies to drop, move them to a quarantine (journalled, undoable), or build a deduplicated view."""
    from .. import dedup as actions

    progress = progress_sink(quiet)
    if null and list_file is None:
        raise needs("--null", "--list FILE", "it only changes the separator of the list")
    if hardlinks and link_tree_dir is None:
        raise needs("--hardlinks", "--link-tree DIR", "it only changes how the link tree links")
    # every output checked before the scan (the output rule of every command: see cli/outputs.py)
    check_folder(quarantine, "--quarantine")
    check_folder(link_tree_dir, "--link-tree")
    if link_tree_dir is not None and link_tree_dir.is_dir() and any(link_tree_dir.iterdir()):
        raise fail(f"--link-tree {link_tree_dir}: the folder is not empty; choose a new or empty folder")
    check_file(list_file, "--list")
    if root is not None or from_scan is not None:  # --plan is written (without them it is read)
        check_file(plan_file, "--plan")
        check_distinct({"--plan": plan_file, "--list": list_file})
        check_not_input(plan_file, "--plan", {"--from-scan": from_scan})
    if apply is not None:
        if root is not None or plan_file is not None or link_tree_dir or list_file:
            raise fail("--apply takes only a plan and --quarantine (make the plan first: dupaudit dedup ROOT --plan)")
        if quarantine is None:
            raise fail("--apply needs --quarantine DIR: the folder the dropped files are moved into")
        plan = actions.read_plan(apply)
        result = actions.apply_plan(plan, quarantine, progress=progress)
        if not quiet:
            if result.resumed and not result.moved:
                are = "is" if result.already == 1 else "are"
                _say(f"already applied: the {plural(result.already, 'dropped file')} {are} in {result.quarantine}")
            else:
                verb = "resumed: " if result.resumed else ""
                _say(
                    f"{verb}moved {plural(result.moved, 'file')} ({plural(result.bytes, 'byte')}) into "
                    f"{result.quarantine}"
                    + (f"; {plural(result.already, 'was', 'were')} already there" if result.already else "")
                )
            _say(f"journal: {result.journal}  (undo with: dupaudit undo {result.journal})")
        return
    if quarantine is not None:
        raise fail("--quarantine goes with --apply PLAN")

    if from_scan is not None and (root is not None or against):
        raise fail("--from-scan takes the folders from the saved scan: give no ROOT or --against with it")
    scan_flags = (method, model, threshold, flips, verify, min_similarity, neighbours, fast_decode, jobs, cache)
    if from_scan is not None and (no_cache or any(flag is not None for flag in scan_flags)):
        raise fail("--from-scan plans from the saved scan as it is: its settings decide, so give no scan options")
    if root is None and from_scan is None:
        if plan_file is None or str(plan_file) == "-":
            raise fail(
                "give a dataset folder (dupaudit dedup ROOT --plan plan.json), a saved scan (--from-scan "
                "SCAN.json), or --apply PLAN --quarantine DIR, or --plan PLAN with --link-tree/--list",
                EXIT_USAGE,
            )
        if not (link_tree_dir or list_file):
            raise fail("reading a plan is for --link-tree OUT or --list FILE; to move files use --apply")
        plan = actions.read_plan(plan_file)
    else:
        kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
        if from_scan is not None:
            from ..engine.model import ScanReport

            report = ScanReport.from_json(from_scan)
            dataset: str | Path = _dataset_of(report)
        else:
            from ..engine.pipeline import scan as run_scan

            assert root is not None  # no --from-scan here, so a ROOT was given (checked above)
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
                jobs=jobs,
                cache=cache,
                config_file=config_file,
                split=split,
                label_depth=label_depth,
                label_from=label_from,
            )
            report = run_scan(
                root,
                against or config.against,
                jobs=config.jobs,
                cache_path=config.cache,
                use_cache=not no_cache,
                progress=progress,
                source_options=source_options(
                    source_type, image_column, label_column, split_column, path_column, storage_option
                ),
                **options.scan_parameters(config, model),
                **config.layout_parameters(),
            )
            dataset = root
        plan = actions.make_plan(
            report,
            keep=keep.value,
            kinds=kind_list,
            conflicts=conflicts.value,
            leakage=leakage.value,
            dataset=dataset,
            protect_eval=not dedup_eval,
        )
        if plan_file is not None:
            if str(plan_file) == "-":
                typer.echo(actions.render_plan(plan), nl=False)
            else:
                actions.write_plan(plan, plan_file)
        if not quiet:
            counts = actions.summarize(plan)
            _say(
                f"plan: drop {plural(counts['drop'], 'file')} ({plural(counts['drop_bytes'], 'byte')}) from "
                f"{plural(counts['groups'], 'group')}, keeping {plural(counts['keep'], 'copy')}"
                + (f"; {plural(len(report.skipped), 'unreadable file')} left out" if report.skipped else "")
            )
            protected = set(plan.settings.get("protected_splits", []))
            _say(
                "per split: "
                + ", ".join(
                    f"{name} drops {count:,}" + (" (evaluation: protected)" if name in protected else "")
                    for name, count in actions.drops_by_split(plan).items()
                )
            )
            if plan_file is not None and str(plan_file) != "-":
                _say(f"wrote {plan_file}; review or edit it, then: dupaudit dedup --apply {plan_file} --quarantine DIR")
            elif plan_file is None and not (link_tree_dir or list_file or write_filtered or drop_list):
                _say("nothing written: add --plan FILE to save the plan")
        if any(r.source != "folder" for r in report.roots):
            if link_tree_dir is not None:
                raise fail("--link-tree links files: for tar shards, Parquet or manifests use --write-filtered OUT")
            if write_filtered is None and list_file is None and drop_list is None:
                return
            options_given = source_options(
                source_type, image_column, label_column, split_column, path_column, storage_option
            )
            targets = [root, *against] if root is not None else _saved_sources(report)
            if root is None and options_given.source_type is None:  # the kind the saved scan recorded
                options_given = dataclasses.replace(options_given, source_type=report.roots[0].source)
            _container_outputs(report, plan, targets, options_given, write_filtered, list_file, drop_list, null)
            return
    if write_filtered is not None or drop_list is not None:
        raise fail("--write-filtered and --drop-list go with a dataset of tar shards, Parquet or a manifest (ROOT)")
    if link_tree_dir is not None:
        count = actions.link_tree(plan, link_tree_dir, hardlinks=hardlinks)
        if not quiet:
            _say(f"link tree: {count:,} {'hardlinks' if hardlinks else 'symlinks'} in {link_tree_dir}")
    if list_file is not None:
        if is_stdout(list_file):
            data, count = actions.list_bytes(plan, null=null)
            outputs.binary_stdout().write(data)
        else:
            count = actions.write_list(plan, list_file, null=null)
        if not quiet:
            _say(f"list: {plural(count, 'kept path')} in {'stdout' if is_stdout(list_file) else list_file}")


def _container_outputs(report, plan, targets, given, write_filtered, list_file, drop_list, null) -> None:
    """dedup's outputs for sources whose items cannot be moved out of their container (engine/sources)."""
    from ..engine.sources.writing import container_outputs

    done = container_outputs(
        report,
        plan,
        targets,
        given,
        write_filtered=write_filtered,
        keep_list=None if list_file is None else str(list_file),
        drop_list=None if drop_list is None else str(drop_list),
        null=null,
    )
    if done.filtered is not None:
        _say(
            f"filtered copy: {plural(len(done.filtered.kept), 'item')} kept, {done.filtered.dropped:,} dropped, in "
            f"{plural(len(done.filtered.written), 'file')} under {write_filtered}"
        )
    if list_file is not None:
        _say(f"list: {plural(done.kept, 'kept id')} in {list_file}")
    if drop_list is not None:
        _say(f"drop list: {plural(done.dropped, 'dropped id')} in {drop_list}")


def _saved_sources(report) -> list[str]:
    """The datasets a saved scan of tar shards, Parquet or manifests read (its roots' `path`), in order."""
    kinds = {r.source for r in report.roots}
    if len(kinds) > 1:
        raise fail(
            "--write-filtered, --keep-list and --drop-list from a saved scan of several kinds of dataset need ROOT "
            "(and --against): give them"
        )
    return list(dict.fromkeys(r.path for r in report.roots))


def _dataset_of(report) -> str:
    """The folder a saved scan was started on, so that a link tree mirrors its layout as a fresh scan's would:
    the parent of its first roots when those are that folder's splits, else the first root."""
    from ..engine.discover import resolve_roots

    first = Path(report.roots[0].path)
    try:
        splits = resolve_roots(first.parent)
    except DupauditError:
        return str(first)
    paths = [r.path for r in report.roots]
    return str(first.parent) if [r.path for r in splits] == paths[: len(splits)] else str(first)


@app.command()
@guarded
def undo(
    journal: Path = typer.Argument(
        ..., help="The journal an apply wrote (QUARANTINE/dupaudit-journal.jsonl), or the quarantine folder."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Put every file a dedup --apply moved back where it was, byte for byte (safe to run again)."""
    from ..dedup import undo as run_undo

    if not journal.exists():
        raise fail(f"{journal}: no such file or folder; give the journal an apply wrote, or its quarantine folder")
    result = run_undo(journal, progress=progress_sink(quiet))
    if not quiet:
        _say(
            f"restored {plural(result.restored, 'file')}"
            + (f"; {result.already:,} already in place" if result.already else "")
        )
    if result.problems:
        for line in result.problems[:20]:
            _say(f"problem: {line}")
        raise fail(f"{plural(len(result.problems), 'file')} could not be restored (see above); nothing was overwritten")
