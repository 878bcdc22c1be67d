"""`dupaudit report`: render a saved scan report (and optionally a probe result) as a self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app
from .common import err_console, guarded


def _read(path: Path, what: str) -> str:
    from ..errors import InputError

    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the {what}: {exc}") from None


@app.command()
@guarded
def report(
    scan_json: Path = typer.Argument(
        ..., metavar="SCAN.json", help="A scan report written by `dupaudit scan --json FILE`."
    ),
    html_file: Path = typer.Option(..., "--html", metavar="FILE", help="Write the self-contained HTML report here."),
    probe_json: Optional[Path] = typer.Option(
        None, "--probe", metavar="PROBE.json", help="Also show a probe result (`dupaudit probe --json FILE`)."
    ),
) -> None:
    """Render a saved scan report as one HTML file: summary, class charts, every group as thumbnails."""
    from ..errors import InputError
    from ..formats import html as html_format
    from ..formats import json as json_format

    try:
        scan_report = json_format.loads(_read(scan_json, "scan report"))
    except InputError as exc:
        raise InputError(f"{scan_json}: {exc}") from None
    probe = None
    if probe_json is not None:
        from ..probing.results import read_json

        probe = read_json(probe_json)  # through the probe's own types: InputError (exit 2) if it is not one
    for root in scan_report.roots:
        if not Path(root.path).is_dir():  # thumbnails are read from the roots: say why they will be placeholders
            err_console.print(
                f"[yellow]warning:[/] root {root.name}: {root.path} is not a folder here; its "
                "thumbnails will be placeholders",
                highlight=False,
                soft_wrap=True,
            )
    page = html_format.render(scan_report, probe)
    html_file.parent.mkdir(parents=True, exist_ok=True)
    html_file.write_text(page, encoding="utf-8")
    err_console.print(
        f"wrote {html_file} ({len(page.encode('utf-8')) / 1e6:.1f} MB, {len(scan_report.groups):,} groups)",
        highlight=False,
        soft_wrap=True,
    )
