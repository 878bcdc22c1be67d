"""The rich terminal summary of a scan report."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..engine.analysis import kind_counts, top_duplicated_classes
from ..engine.model import DuplicateGroup, ScanReport
from ..wording import plural


def _shown(name: str) -> str:
    """A file name as printable text: control characters escaped (a newline stays on one row), no rich markup."""
    return escape("".join(c if c.isprintable() else repr(c)[1:-1] for c in name))


def _member_text(group: DuplicateGroup, limit: int = 3) -> str:
    parts = [_shown(f"{m.root}/{m.path}") + (" (keep)" if m.keep else "") for m in group.members[:limit]]
    if len(group.members) > limit:
        parts.append(f"… +{len(group.members) - limit}")
    return ", ".join(parts)


def print_summary(report: ScanReport, console: Console, top: int = 10) -> None:
    s = report.summary
    kinds = kind_counts(report.groups)
    roots = ", ".join(f"{r.name} ({r.path})" for r in report.roots)
    console.print(f"[bold]dupaudit scan[/] of {roots}", highlight=False)
    if report.settings.method == "cnn":
        method = f"cnn embeddings, cosine similarity >= {report.settings.min_similarity:g}"
    else:
        method = f"{report.settings.method} threshold {report.settings.threshold}"
    console.print(
        f"{s.images:,} images, {s.skipped:,} skipped · {method}{' + flips' if report.settings.flips else ''}",
        highlight=False,
    )
    console.print(
        f"[bold]{s.groups:,}[/] duplicate groups ({kinds.get('exact', 0):,} exact, {kinds.get('pixel', 0):,} pixel, "
        f"{kinds.get('near', 0):,} near) · [bold]{s.redundant:,}[/] redundant copies · "
        f"{s.wasted_fraction:.2%} of a {report.train_split} epoch spent on copies",
        highlight=False,
    )
    exact = sum(g.exact_copies for g in report.groups)
    pixel = sum(g.pixel_copies for g in report.groups)
    if exact or pixel:
        console.print(
            f"  of the copies, {exact:,} are byte-identical and {pixel:,} pixel-identical to another member",
            highlight=False,
        )
    skew_style = "red" if s.skew > 0.05 else "yellow" if s.skew > 0.01 else "green"
    console.print(
        f"Skew (prior shift, total variation): [{skew_style}]{s.skew:.4f}[/]  (0 = duplication uniform across classes)",
        highlight=False,
    )

    classes = top_duplicated_classes(report.classes, top)
    if classes:
        table = Table(title="Most duplicated classes", title_justify="left")
        for column in (
            "split",
            "class",
            "images",
            "distinct",
            "redundant",
            "rate",
            "prior",
            "prior w/o dups",
            "inflation",
        ):
            table.add_column(column, justify="left" if column in ("split", "class") else "right")
        for c in classes:
            table.add_row(
                c.split,
                c.label or "(unlabelled)",
                f"{c.images:,}",
                f"{c.distinct:,}",
                f"{c.redundant:,}",
                f"{c.duplication_rate:.2%}",
                f"{c.prior:.4f}",
                f"{c.prior_without_duplicates:.4f}",
                f"{c.inflation:.3f}",
            )
        console.print(table)

    for split in report.splits:
        if split.role == "eval":
            style = "red" if split.leaked else "green"
            console.print(
                f"Leakage: [{style}]{split.leaked:,} of {split.images:,} {split.split} images "
                f"({split.leaked_fraction:.2%})[/] have a copy in {report.train_split}",
                highlight=False,
            )
    conflicts = report.label_conflict_groups
    console.print(
        f"Label conflicts: {'[red]' if conflicts else '[green]'}{len(conflicts):,}[/] groups whose members "
        "carry different labels",
        highlight=False,
    )
    for group in conflicts[:3]:
        console.print(f"  · {' / '.join(group.labels)}: {_member_text(group)}", highlight=False)

    largest = sorted(report.groups, key=lambda g: (-len(g.members), g.id))[:5]
    if largest:
        table = Table(title="Largest groups", title_justify="left")
        for column in ("id", "kind", "size", "max dist", "members"):
            table.add_column(column, justify="right" if column in ("id", "size", "max dist") else "left")
        for g in largest:
            table.add_row(str(g.id), g.kind, str(len(g.members)), str(g.max_distance), _member_text(g))
        console.print(table)
    if report.skipped:
        console.print(f"[yellow]Skipped {plural(len(report.skipped), 'file')}:[/]")
        for item in report.skipped[:10]:
            console.print(f"  {item.root}/{item.path}: {item.reason}", highlight=False, markup=False)
        if len(report.skipped) > 10:
            console.print(f"  … and {len(report.skipped) - 10:,} more (see --json)")
