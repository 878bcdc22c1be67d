"""`dupaudit report`: render a saved scan report (and optionally a probe result) as a self-contained HTML page."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from . import app
from .common import err_console, guarded
from .outputs import check_file, check_not_input, is_stdout, write_text

SCAN_REPORT = "a scan report written by dupaudit scan --json FILE"


def _read(path: Path, what: str) -> str:
    """The text of an input file; `what` names it and the command that writes it ("a scan report (dupaudit ...)")."""
    from ..errors import InputError

    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; give {what}") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; give {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({exc}); give {what}") from None


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def probe_mismatch(scan_report, probe) -> str | None:
    """Why a probe result (probing.results.ProbeReport) seems to be of another dataset than the scan (None when
    nothing says so): its root is not one of the scan's folders (or above them), or its classes differ."""
    root = probe.data.root
    if root:
        probed = os.path.abspath(root)
        roots = [os.path.abspath(r.path) for r in scan_report.roots]
        if not any(_inside(r, probed) or _inside(probed, r) for r in roots):
            return f"it probed {root}, and this scan is of {', '.join(roots)}"
    classes = set(map(str, probe.data.classes))
    scanned = {c.label for c in scan_report.classes if c.split == scan_report.train_split and c.label is not None}
    if classes and scanned and classes != scanned:
        return f"its classes ({', '.join(sorted(classes))}) are not this scan's ({', '.join(sorted(scanned))})"
    return None


@app.command()
@guarded
def report(
    scan_json: Path = typer.Argument(
        ..., metavar="SCAN.json", help="A scan report written by `dupaudit scan --json FILE`."
    ),
    html_file: Path = typer.Option(
        ..., "--html", metavar="FILE", help="Write the self-contained HTML report here; '-': stdout."
    ),
    probe_json: Optional[Path] = typer.Option(
        None, "--probe", metavar="PROBE.json", help="Also show a probe result (`dupaudit probe --json FILE`)."
    ),
) -> None:
    """Render a saved scan report as one HTML file: summary, class charts, every group as thumbnails."""
    from ..errors import InputError
    from ..formats import html as html_format
    from ..formats import json as json_format
    from ..wording import plural

    check_file(html_file, "--html")  # before reading anything
    check_not_input(html_file, "--html", {"SCAN.json": scan_json, "--probe": probe_json})
    text = _read(scan_json, SCAN_REPORT)
    try:
        scan_report = json_format.loads(text)
    except InputError as exc:  # the path once, then what is wrong with the file
        raise InputError(f"{scan_json}: {exc}; give {SCAN_REPORT}") from None
    probe = None
    if probe_json is not None:
        from ..probing.results import read_json

        probe = read_json(probe_json)  # through the probe's own types: InputError (exit 2) if it is not one
        mismatch = probe_mismatch(scan_report, probe)
        if mismatch:
            err_console.print(
                f"[yellow]warning:[/] {escape(str(probe_json))}: this probe seems to be of another dataset: "
                f"{escape(mismatch)}; its figures are shown as they are",
                highlight=False,
                soft_wrap=True,
            )
    for root in scan_report.roots:
        if not Path(root.path).is_dir():  # thumbnails are read from the roots: say why they will be placeholders
            err_console.print(
                f"[yellow]warning:[/] root {root.name}: {root.path} is not a folder here; its "
                "thumbnails will be placeholders",
                highlight=False,
                soft_wrap=True,
            )
    page = html_format.render(scan_report, probe)
    write_text(html_file, page)
    where = "stdout" if is_stdout(html_file) else html_file
    err_console.print(
        f"wrote {where} ({len(page.encode('utf-8')) / 1e6:.1f} MB, {plural(len(scan_report.groups), 'group')})",
        highlight=False,
        soft_wrap=True,
    )
