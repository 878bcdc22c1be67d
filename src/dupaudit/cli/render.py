"""The rich terminal summary of a scan report, readable at 80 columns (every CI log) and unbroken at 40.

Tables drop their least needed columns until they fit the terminal instead of cutting headers, class names wrap
instead of ending in "…", and member paths are shortened in the middle (root and file name stay) but never so far
that two of them read the same.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..engine.analysis import top_duplicated_classes
from ..engine.model import DuplicateGroup, GroupMember, ScanReport
from ..wording import plural

ELLIPSIS = "…"
MEMBERS_SHOWN = 3  # members listed per group; the rest are counted
GROUPS_SHOWN = 5  # largest groups listed
NARROW = 60  # below this width the groups table keeps only the id, the size and the members

# The class table's columns: (header, optional). Optional ones are dropped, in this order, until the table fits.
CLASS_COLUMNS = ("split", "class", "images", "distinct", "redundant", "rate", "prior", "dedup prior", "inflation")
CLASS_DROP_ORDER = (("prior", "dedup prior"), ("distinct",), ("inflation",), ("split",))  # inflation = their ratio


def _printable(name: str) -> str:
    """A file name as printable text: control characters escaped (a newline stays on one row)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def _shown(name: str) -> str:
    """Printable and free of rich markup."""
    return escape(_printable(name))


def _role(member: GroupMember) -> str:
    """What a member is in its group: kept, or a copy of its own kind (with the score that decided a near one)."""
    if member.keep:
        return " (keep)"
    link = member.link
    if link is None:
        return ""
    return f" ({link.kind}" + (f" {link.score:.2f}" if link.score is not None else "") + ")"


def shorten_middle(path: str, width: int) -> str:
    """`root/class/a/b/c/file.jpg` in at most `width` characters: the root (and the class folder when there is
    room), the last folders that fit and the file name kept, the folders between replaced by `…`; when even that
    is too long, `…/file.jpg`, and only a file name too long on its own loses the middle of its characters."""
    if len(path) <= width:
        return path
    parts = path.split("/")
    for heads in (2, 1):
        if len(parts) <= heads + 1:
            continue
        head, tail = parts[:heads], [parts[-1]]
        for part in reversed(parts[heads:-1]):  # keep as many trailing folders as fit
            if len("/".join([*head, ELLIPSIS, part, *tail])) > width:
                break
            tail.insert(0, part)
        short = "/".join([*head, ELLIPSIS, *tail])
        if len(tail) < len(parts) - heads and len(short) <= width:
            return short
    if len(parts) > 1 and len(parts[-1]) + 2 <= width:
        return f"{ELLIPSIS}/{parts[-1]}"  # the file name whole is worth more than its root
    keep = max(width - 1, 2)
    front = keep // 2
    return path[:front] + ELLIPSIS + path[len(path) - (keep - front) :]


def _keep_differences(paths: list[str]) -> list[str] | None:
    """Paths of one depth that would read the same: keep the root and the class folder, the folders where they
    differ and the file name; each run of shared folders becomes `…`. None when the depths differ."""
    split = [p.split("/") for p in paths]
    if len({len(parts) for parts in split}) != 1:
        return None
    depth = len(split[0])
    keep = [i <= 1 or i == depth - 1 or len({parts[i] for parts in split}) > 1 for i in range(depth)]
    result = []
    for parts in split:
        shown: list[str] = []
        for part, kept in zip(parts, keep):
            if kept:
                shown.append(part)
            elif not shown or shown[-1] != ELLIPSIS:
                shown.append(ELLIPSIS)
        result.append("/".join(shown))
    return result


def shorten_unambiguously(paths: list[str], width: int) -> list[str]:
    """Each path shortened in the middle, never so that two different paths read the same: those keep the
    folders where they differ (or stay whole)."""
    short = [shorten_middle(p, width) for p in paths]
    clashes: dict[str, list[int]] = {}
    for index, cut in enumerate(short):
        clashes.setdefault(cut, []).append(index)
    for indices in clashes.values():
        fulls = [paths[i] for i in indices]
        if len(set(fulls)) == 1:
            continue
        told = list(fulls)
        by_depth: dict[int, list[int]] = {}
        for j, full in enumerate(fulls):
            by_depth.setdefault(full.count("/"), []).append(j)
        for same_depth in by_depth.values():
            if len(same_depth) > 1:
                for j, text in zip(same_depth, _keep_differences([fulls[j] for j in same_depth]) or ()):
                    told[j] = text
        if len(set(told)) != len(told):
            told = fulls
        for i, text in zip(indices, told):
            short[i] = text
    return short


def _member_lines(group: DuplicateGroup, width: int, limit: int = MEMBERS_SHOWN) -> list[str]:
    shown = group.members[:limit]
    marks = [_role(m) for m in shown]  # (keep), or the member's own copy kind and score
    paths = [_printable(f"{m.root}/{m.path}") for m in shown]
    cut = shorten_unambiguously(paths, max(width - max(map(len, marks)), 12))
    lines = [escape(c) + mark for c, mark in zip(cut, marks)]
    if len(group.members) > limit:
        lines.append(f"{ELLIPSIS} {len(group.members) - limit} more")
    return lines


def _member_text(group: DuplicateGroup, width: int, limit: int = MEMBERS_SHOWN) -> str:
    return ", ".join(_member_lines(group, width, limit))


def _fits(console: Console, table: Table) -> bool:
    # measured without the terminal's limit (a measurement is clamped to the width it is given)
    return console.measure(table, options=console.options.update_width(10_000)).maximum <= console.width


def _class_table(report: ScanReport, console: Console, top: int) -> Table | None:
    classes = top_duplicated_classes(report.classes, top)
    if not classes:
        return None
    rows = [
        {
            "split": _shown(c.split),
            "class": _shown(c.label) if c.label is not None else "(no label)",
            "images": f"{c.images:,}",
            "distinct": f"{c.distinct:,}",
            "redundant": f"{c.redundant:,}",
            "rate": f"{c.duplication_rate:.2%}",
            "prior": f"{c.prior:.4f}",
            "dedup prior": f"{c.prior_without_duplicates:.4f}",
            "inflation": f"{c.inflation:.3f}",
        }
        for c in classes
    ]
    columns = list(CLASS_COLUMNS)
    if len({c.split for c in classes}) == 1 and "split" in columns:
        columns.remove("split")  # one split: the title says which

    def build(names: list[str]) -> Table:
        split = classes[0].split if "split" not in names else None
        title = "Most duplicated classes" + (f" ({_shown(split)})" if split else "")
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for name in names:
            left = name in ("split", "class")
            table.add_column(name, justify="left" if left else "right", no_wrap=not left, overflow="fold")
        for row in rows:
            table.add_row(*(row[name] for name in names))
        return table

    table = build(columns)
    for names in CLASS_DROP_ORDER:
        if _fits(console, table):
            break
        columns = [c for c in columns if c not in names]
        table = build(columns)
    return table


def _groups_table(report: ScanReport, console: Console) -> Table | None:
    largest = sorted(report.groups, key=lambda g: (-len(g.members), g.id))[:GROUPS_SHOWN]
    if not largest:
        return None
    narrow = console.width < NARROW
    columns = ("id", "size", "members") if narrow else ("id", "kind", "size", "dist", "members")
    fixed = {
        "id": max(len("id"), *(len(str(g.id)) for g in largest)),
        "kind": max(len("kind"), *(len(g.kind) for g in largest)),
        "size": max(len("size"), *(len(str(len(g.members))) for g in largest)),
        "dist": max(len("dist"), *(len(str(g.max_distance)) for g in largest)),
    }
    # SIMPLE_HEAD: one space of padding on each side of every column, and a blank edge on either side
    used = sum(fixed[c] + 2 for c in columns if c != "members")
    members_width = max(console.width - used - 4, 12)
    table = Table(title="Largest groups", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in columns:
        table.add_column(
            name,
            justify="left" if name in ("kind", "members") else "right",
            no_wrap=name != "members",
            overflow="fold",
        )
    for g in largest:
        cells = {
            "id": str(g.id),
            "kind": g.kind,
            "size": str(len(g.members)),
            "dist": str(g.max_distance),
            "members": "\n".join(_member_lines(g, members_width)),
        }
        table.add_row(*(cells[c] for c in columns))
    return table


def print_summary(report: ScanReport, console: Console, top: int = 10) -> None:
    s = report.summary
    labelled = any(c.label is not None for c in report.classes)
    roots = ", ".join(f"{_shown(r.name)} ({_shown(r.path)})" for r in report.roots)
    console.print(f"[bold]dupaudit scan[/] of {roots}", highlight=False)
    if report.settings.method == "cnn":
        method = f"cnn embeddings, cosine similarity >= {report.settings.min_similarity:g}"
    elif report.settings.verify:  # the radius only proposes candidates: the verification score decides
        method = (
            f"{report.settings.method} candidates within {report.settings.threshold}, verified at score >= "
            f"{report.settings.min_similarity:g}"
        )
    else:
        method = f"{report.settings.method} radius {report.settings.threshold}, unverified"
    options = (" + flips" if report.settings.flips else "") + (" + rotations" if report.settings.rotations else "")
    console.print(f"{plural(s.images, 'image')}, {s.skipped:,} skipped · {method}{options}", highlight=False)
    epoch = f"a {_shown(report.train_split)} epoch" if labelled else "an epoch"
    # copies by the kind of their own link: a byte copy inside a group of near copies counts as exact
    console.print(
        f"[bold]{plural(s.redundant, 'redundant copy')}[/]: exact copies {s.exact_copies:,}, pixel copies "
        f"{s.pixel_copies:,}, near copies {s.near_copies:,} · in [bold]{plural(s.groups, 'duplicate group')}[/] · "
        f"{s.wasted_fraction:.2%} of {epoch} spent on copies",
        highlight=False,
    )
    if labelled:
        skew_style = "red" if s.skew > 0.05 else "yellow" if s.skew > 0.01 else "green"
        console.print(
            f"Skew (prior shift): [{skew_style}]{s.skew:.4f}[/]  (0: duplication uniform across classes)",
            highlight=False,
        )
        table = _class_table(report, console, top)
        if table is not None:
            console.print(table)
    else:
        console.print(
            "No class folders, so no labels: class skew and label conflicts do not apply "
            "(put images in ROOT/<class>/ to measure them)",
            highlight=False,
        )

    for split in report.splits:
        if split.role == "eval":
            style = "red" if split.leaked else "green"
            console.print(
                f"Leakage: [{style}]{split.leaked:,} of {plural(split.images, _shown(split.split) + ' image')} "
                f"({split.leaked_fraction:.2%})[/] {'has' if split.leaked == 1 else 'have'} a copy in "
                f"{_shown(report.train_split)}",
                highlight=False,
            )
    if labelled:
        conflicts = report.label_conflict_groups
        console.print(
            f"Label conflicts: {'[red]' if conflicts else '[green]'}{len(conflicts):,}[/] "
            f"{'group whose members carry' if len(conflicts) == 1 else 'groups whose members carry'} different labels",
            highlight=False,
        )
        for group in conflicts[:3]:
            width = max(console.width - 4, 20)
            console.print(f"  · {_shown(' / '.join(group.labels))}: {_member_text(group, width)}", highlight=False)

    table = _groups_table(report, console)
    if table is not None:
        console.print(table)
    if report.skipped:
        console.print(f"[yellow]Skipped {plural(len(report.skipped), 'file')}:[/]")
        for item in report.skipped[:10]:
            name = shorten_middle(_printable(f"{item.root}/{item.path}"), max(console.width // 2, 20))
            console.print(f"  {name}: {item.reason}", highlight=False, markup=False)
        if len(report.skipped) > 10:
            console.print(f"  {ELLIPSIS} and {len(report.skipped) - 10:,} more (see --json)")
