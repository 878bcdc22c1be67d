"""The gate behind `dupaudit check`: scan the dataset (cached), subtract the baseline, keep what breaks a rule.

Pre-commit passes the staged images; they are checked against the whole dataset, and only findings about them
count. Without files the whole dataset is checked (CI). Members of baseline findings whose files are gone are
dropped from the baseline file, which then has to be re-staged (exit 3, as detect-secrets does).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import AuditConfig
from ..engine.model import ScanReport, Skipped
from ..engine.progress import ProgressSink
from ..errors import BaselineError
from ..exitcodes import EXIT_BASELINE_REWRITTEN, EXIT_FINDINGS, EXIT_OK
from ..policy import finding_breaks, parse_rules
from ..wording import plural
from . import baseline as baseline_file
from . import items
from .baseline import Baseline, Finding

log = logging.getLogger(__name__)

_SKEW_EPSILON = 1e-6  # skews are stored rounded to 6 decimals


@dataclass(frozen=True, slots=True)
class FailingFinding:
    finding: Finding
    rules: tuple[str, ...]  # the fail_on rules it breaks

    @property
    def message(self) -> str:
        return self.finding.message


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What a check found; `exit_code` is the verdict (0 pass, 1 findings, 3 baseline rewritten)."""

    config: AuditConfig
    report: ScanReport | None  # None when no passed file belongs to the dataset (nothing was scanned)
    failing: tuple[FailingFinding, ...]  # new findings that break a fail_on rule
    tolerated: tuple[Finding, ...]  # new findings that break no rule (reported, never fatal)
    dataset_failures: tuple[str, ...]  # dataset-wide rules broken (skew>X)
    accepted: int  # groups the baseline accepts
    baseline_path: str
    baseline_found: bool
    baseline_dropped: int  # members dropped from the baseline because their files are gone
    baseline_rewritten: bool
    files: tuple[str, ...] | None  # dataset paths of the passed files in the dataset; None: whole dataset
    outside: tuple[str, ...] = ()  # passed files that are not under any dataset root
    skipped_files: tuple[Skipped, ...] = field(default=())  # passed files that could not be decoded

    @property
    def exit_code(self) -> int:
        if self.failing or self.dataset_failures:
            return EXIT_FINDINGS
        if self.baseline_rewritten:
            return EXIT_BASELINE_REWRITTEN
        return EXIT_OK


def scan_dataset(
    config: AuditConfig,
    *,
    use_cache: bool = True,
    progress: ProgressSink | None = None,
    verify_content: bool = False,
    passed: Sequence[str] | None = None,
) -> ScanReport:
    """Scan the configured dataset with the configured settings (`verify_content`: read every file, so that an
    edit that kept the size and mtime is seen; `passed`: the absolute paths of a pre-commit check's files, whose
    folders are listed again while the others may come from the last listing; see docs/check.md)."""
    from ..engine.pipeline import scan

    return scan(
        config.root,
        list(config.against),
        jobs=config.jobs,
        cache_path=config.cache,
        use_cache=use_cache,
        progress=progress,
        incremental=True,  # a commit's few files update the stored search state (engine/incremental.py)
        source_options=config.source_options(),
        verify_content=verify_content,
        lazy_state=True,  # the state is written back once a few hundred files changed, not at every commit
        passed=passed,
        **config.scan_parameters(),
        **config.layout_parameters(),
    )


def run_check(
    config: AuditConfig,
    files: Sequence[str] | None = None,
    *,
    cwd: str | os.PathLike = ".",
    use_cache: bool = True,
    update_baseline: bool = True,
    progress: ProgressSink | None = None,
    verify_content: bool = False,
) -> CheckResult:
    """Check `files` (paths relative to `cwd`; None: the whole dataset) against the dataset and the baseline."""
    rules = parse_rules(config.fail_on)
    baseline_path = Path(config.baseline)
    found = baseline_path.is_file()
    if found and files is not None:
        problem = unstaged_problem(baseline_path)
        if problem:
            raise BaselineError(
                f"{_shown(baseline_path, cwd)} {problem}: stage it (git add "
                f"{_shown(baseline_path, cwd)}) or discard the change, then commit again"
            )
    accepted_baseline = baseline_file.load(baseline_path) if found else Baseline()

    from ..engine.discover import resolve_roots

    sources = items.dataset_sources(config)
    selections: items.Selections = []
    outside: list[str] = []
    everything = False  # a passed file (a manifest) names every item
    if sources is not None:  # tar shards, Parquet, a manifest: the files name items once the dataset is read
        roots: tuple = ()
        selections, outside, everything = items.selections(sources, files, cwd)
        if files is not None and not selections and not everything:
            log.info("none of the %s belongs to the dataset: nothing to check", plural(len(files), "file"))
            return CheckResult(config, None, (), (), (), 0, str(baseline_path), found, 0, False, (), tuple(outside))
    else:
        roots = resolve_roots(config.root, list(config.against), **config.layout_parameters())
    changed: set[str] | None = None
    passed: list[str] | None = None  # their absolute paths (the folders a pre-commit check lists again)
    if files is not None and sources is None:
        changed, passed = set(), []
        for name in files:
            located = locate(name, roots, cwd)
            if located is None:
                outside.append(name)
            else:
                changed.add(located)
                passed.append(os.path.join(Path(cwd, name).parent.resolve(), Path(name).name))
        if not changed:
            log.info("none of the %s belongs to the dataset: nothing to check", plural(len(files), "file"))
            return CheckResult(config, None, (), (), (), 0, str(baseline_path), found, 0, False, (), tuple(outside))

    report = scan_dataset(config, use_cache=use_cache, progress=progress, verify_content=verify_content, passed=passed)
    if sources is not None and files is not None and not everything:
        changed = items.changed_items(report, sources, selections)
    if found and accepted_baseline.settings is not None and accepted_baseline.settings != report.settings:
        s = accepted_baseline.settings
        log.warning(
            "%s was made with %s threshold %s%s, this check uses %s threshold %s%s: run `dupaudit "
            "baseline` again if the settings changed on purpose",
            _shown(baseline_path, cwd),
            s.method,
            s.threshold,
            " + flips" if s.flips else "",
            report.settings.method,
            report.settings.threshold,
            " + flips" if report.settings.flips else "",
        )

    dropped, rewritten = 0, False
    if found:
        root_paths = {r.name: r.path for r in report.roots}

        def exists(member: str) -> bool:
            root, _, path = member.partition("/")
            if sources is not None and root in root_paths:
                return items.still_there(report, sources, root, path)
            return root in root_paths and os.path.lexists(os.path.join(root_paths[root], *path.split("/")))

        pruned, dropped = baseline_file.prune(accepted_baseline, exists)
        if pruned != accepted_baseline:
            accepted_baseline = pruned
            if update_baseline:
                baseline_file.save(pruned, baseline_path)
                rewritten = True

    # The whole dataset (CI): a new finding is reported on the file the commit (or pull request) adds or changes,
    # so the annotation lands where the change is; without git, on the member the keep rule would drop.
    blame = changed_in_git(report.roots, config.root) if changed is None and sources is None else None
    new = baseline_file.subtract(report, accepted_baseline, changed, blame=blame)
    if sources is not None:
        new = items.on_their_files(report, sources, new)
    failing, tolerated = [], []
    for finding in new:
        broken = finding_breaks(rules, finding.kind, finding.label_conflict, finding.leakage)
        if broken:
            failing.append(FailingFinding(finding, broken))
        else:
            tolerated.append(finding)
    dataset_failures = []
    for rule in rules:
        skew = round(report.summary.skew, 6)
        if rule.name == "skew" and skew > rule.limit and skew > accepted_baseline.skew + _SKEW_EPSILON:
            accepted_note = f", the baseline accepts {accepted_baseline.skew:.4f}" if accepted_baseline.skew else ""
            dataset_failures.append(f"skew {skew:.4f} > {rule.limit}{accepted_note}")
    if changed is None:
        blamed_groups = {f.group_id for f in new}
        accepted = sum(1 for g in report.groups if g.id not in blamed_groups)
    else:  # the whole dataset's count, without its findings
        accepted = baseline_file.accepted_groups(report, accepted_baseline)
    skipped_files = tuple(s for s in report.skipped if changed is not None and f"{s.root}/{s.path}" in changed)
    return CheckResult(
        config,
        report,
        tuple(failing),
        tuple(tolerated),
        tuple(dataset_failures),
        accepted,
        str(baseline_path),
        found,
        dropped,
        rewritten,
        _checked(changed, files, outside, sources is not None),
        tuple(outside),
        skipped_files,
    )


def _checked(changed: set[str] | None, files, outside: list[str], by_item: bool) -> tuple[str, ...] | None:
    """What the check looked at: the dataset paths of the passed files (for a source read by item: the files and
    ids as given, since a shard names many items); None: the whole dataset."""
    if changed is None:
        return None
    if by_item:
        return tuple(sorted(set(files or ()) - set(outside)))
    return tuple(sorted(changed))


def locate(name: str, roots, cwd: str | os.PathLike = ".") -> str | None:
    """The dataset path (`train/cat/x.jpg`) of a file given relative to `cwd`, or None when outside every root."""
    path = Path(cwd, name)
    # Resolve the folder (roots are resolved) but not a symlinked file itself (discovery lists the link's name).
    absolute = path.parent.resolve() / path.name
    # the innermost root first: a folder inside another root is its own root (layout.py: overlapping roots)
    for root in sorted(roots, key=lambda r: -len(r.path)):
        try:
            relative = absolute.relative_to(root.path)
        except ValueError:
            continue
        if relative.parts:
            return f"{root.name}/{relative.as_posix()}"
    return None


def _git(args: list[str], cwd: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return os.fsdecode(result.stdout) if result.returncode == 0 else None


def changed_in_git(roots, folder: str | os.PathLike) -> set[str] | None:
    """Dataset paths of the files that are new or changed relative to HEAD, or in a pull request on GitHub
    Actions ($GITHUB_BASE_REF) relative to the merge base with the target branch; None without git."""
    top = _git(["rev-parse", "--show-toplevel"], str(folder))
    if top is None or _git(["rev-parse", "--verify", "--quiet", "HEAD"], str(folder)) is None:
        return None
    top = top.rstrip("\n")
    base = "HEAD"
    target = os.environ.get("GITHUB_BASE_REF")
    if target:
        for ref in (f"origin/{target}", target):
            merge_base = _git(["merge-base", "HEAD", ref], top)
            if merge_base:
                base = merge_base.strip()
                break
    changed = _git(["diff", "--name-only", "-z", "--no-renames", base, "--"], top)
    untracked = _git(["ls-files", "--others", "--exclude-standard", "-z"], top)
    if changed is None or untracked is None:
        return None
    found = set()
    for name in (changed + untracked).split("\0"):
        if name:
            located = locate(os.path.join(top, name), roots)
            if located is not None:
                found.add(located)
    return found


def unstaged_problem(path: Path) -> str | None:
    """Why a file's working copy differs from what git will commit ('is not staged', ...); None when it does not.

    Outside a git work tree (or without git) there is nothing to compare, and None is returned.
    """
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain=v1", "--untracked-files=all", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    for line in result.stdout.splitlines():
        if line.startswith("??"):
            return "is not staged (git does not track it yet)"
        if len(line) > 1 and line[1] not in (" ", "D"):
            return "has changes that are not staged"
    return None


def write_baseline(
    config: AuditConfig, *, use_cache: bool = True, progress: ProgressSink | None = None
) -> tuple[Baseline, ScanReport]:
    """Accept every current finding: scan, then write the baseline file."""
    report = scan_dataset(config, use_cache=use_cache, progress=progress)
    accepted = baseline_file.from_report(report)
    baseline_file.save(accepted, config.baseline)
    return accepted, report


def _shown(path: Path, cwd: str | os.PathLike) -> str:
    try:
        return Path(path).resolve().relative_to(Path(cwd).resolve()).as_posix()
    except ValueError:
        return str(path)
