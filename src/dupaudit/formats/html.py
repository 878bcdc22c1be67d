"""A self-contained HTML report: summary, per-class charts, a filterable gallery of every group, the probe.

One file, no network: CSS, JavaScript, SVG charts and base64 thumbnails are all inline. File names, labels
and reasons are untrusted text. The static parts are escaped here with `html.escape`; the gallery is built
in the browser from a JSON block (with `<`, `>` and `&` written as \\u escapes, so nothing in it can close
the block) using `textContent` only. A Content-Security-Policy that allows only this page's own script (by
hash) and `data:` images backs this up: an injected tag could neither run a script nor load anything.

The gallery renders one page of groups at a time, so a report with 10,000 groups stays responsive.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path, PurePosixPath

from .. import palette
from ..engine.model import KINDS, ClassStats, DuplicateGroup, ScanReport
from ..engine.sources.base import SourceOptions
from ..probing.config import ARMS
from ..probing.results import Condition, ProbeReport
from ..probing.results import render_json as render_probe_json
from ..probing.stats import Interval


def _asset(name: str) -> str:
    """A text file of formats/assets: the report's style sheet and gallery script, package data inlined at render
    time so that the page stays one self-contained file (the CSS is a %-template filled with the palette)."""
    return (resources.files(__package__) / "assets" / name).read_text(encoding="utf-8")


THUMBNAIL_PX = 96  # longest side of a thumbnail; smaller images are kept at their size (and scaled up by CSS)
RAW_EMBED_BYTES = 6_000  # a small JPEG/PNG that already fits is embedded as it is (no re-encoding)
MAX_PREVIEW_PIXELS = 64_000_000  # larger images get a placeholder instead of a full decode
PAGE_SIZE = 50  # groups per page of the gallery
MEMBERS_SHOWN = 24  # members drawn per group before a "show all" button
MAX_CHART_CLASSES = 40  # per split; the classes that contribute most to the skew are kept


# ---------------------------------------------------------------------------------------------- text helpers


def _clean(value: object) -> str:
    """Text that can be written as UTF-8: undecodable bytes of a file name (surrogate escapes) become U+FFFD."""
    text = "" if value is None else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates that were not escapes
    return text


def _e(value: object) -> str:
    """Escape for HTML/SVG text and attribute values (quotes included)."""
    return html.escape(_clean(value), quote=True)


def _script_json(data: object) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>', '&' can end the block."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _pct(value: float, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f}%"


def _num(value: float) -> str:
    return f"{value:,}"


# ------------------------------------------------------------------------------------------------ thumbnails


def _member_file(root_path: str | None, relative: str) -> Path | None:
    """The file of a group member, or None when the relative path would leave its root."""
    if not root_path:
        return None
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        return None
    return Path(root_path, *parts)


# Pillow modes of more than 8 bits a channel (16-bit PNG and TIFF grayscale, float TIFF): convert("RGB") clips
# them, so a 16-bit image would show as a blank white thumbnail.
WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def _eight_bit(image):
    """A 16-bit or float grayscale image as 8-bit grayscale: 0..65535 onto 0..255, floats by their own range."""
    import numpy as np
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        values = (values - low) * (255 / (high - low or 1))
    else:
        values = values / 257
    return Image.fromarray(np.clip(np.nan_to_num(values), 0, 255).astype(np.uint8), "L")


def thumbnail(path: Path | bytes | str | None, size: int = THUMBNAIL_PX) -> tuple[str | None, str]:
    """A `data:` URI of a small JPEG/PNG preview of an image (a file, or the bytes of an item of a tar shard,
    Parquet file or manifest), or (None, reason) when there is none (a str `path`: the reason already known)."""
    if path is None:
        return None, "path outside its root"
    if isinstance(path, str):
        return None, path
    try:
        from PIL import Image, ImageOps

        if isinstance(path, Path) and not path.is_file():  # a saved report may name anything: never open a FIFO
            return None, "file not found" if not path.exists() else "not a regular file"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path if isinstance(path, Path) else io.BytesIO(path)) as image:
                width, height = image.size
                if width * height > MAX_PREVIEW_PIXELS:
                    return None, f"too large for a preview ({width}x{height})"
                raw = path if isinstance(path, bytes) else None
                if (
                    image.format in ("JPEG", "PNG")
                    and max(width, height) <= size
                    and (len(raw) if raw is not None else path.stat().st_size) <= RAW_EMBED_BYTES  # type: ignore[union-attr]
                ):
                    mime = "image/jpeg" if image.format == "JPEG" else "image/png"
                    data = raw if raw is not None else path.read_bytes()  # type: ignore[union-attr]
                    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", ""
                if image.format == "JPEG":
                    image.draft("RGB", (size, size))  # decode at 1/2, 1/4 or 1/8 scale when that is enough
                image = ImageOps.exif_transpose(image)
                if image.mode in WIDE_MODES:
                    image = _eight_bit(image)
                alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
                image = image.convert("RGBA" if alpha else "RGB")
                image.thumbnail((size, size), Image.BILINEAR)
                buffer = io.BytesIO()
                if alpha:
                    image.save(buffer, "PNG", optimize=True)
                    mime = "image/png"
                else:
                    image.save(buffer, "JPEG", quality=75, optimize=True)
                    mime = "image/jpeg"
        return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}", ""
    except FileNotFoundError:
        return None, "file not found"
    except PermissionError:
        return None, "permission denied"
    except Exception as exc:  # any unreadable file gets a placeholder; the report must still be written
        return None, f"no preview: {type(exc).__name__}"


# ---------------------------------------------------------------------------------------------------- charts


def _nice_step(span: float, target: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _ticks(low: float, high: float, target: int = 5) -> list[float]:
    """Round tick values from at or below `low` to at or above `high`."""
    step = _nice_step(high - low, target)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(first, max(last, first + 1) + 1)]


def _count_ticks(high: float, target: int = 5) -> list[float]:
    """Whole-number ticks from 0 to at or above `high`, for counts: never 0, 0.25, 0.5 read as 0, 0, 0."""
    step = max(1.0, _nice_step(high, target))
    if step % 1:  # 2.5, 0.25 x 10: the next nice step that is whole
        step *= 2
    return [float(i * step) for i in range(0, max(math.ceil(high / step - 1e-9), 1) + 1)]


def _fmt_tick(value: float, step: float) -> str:
    decimals = 0
    while decimals < 6 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-9:
        decimals += 1
    return f"{value:.{decimals}f}"


def skew_drivers(classes: Sequence[ClassStats]) -> set[str | None]:
    """Labels whose share of the skew, |p_c - q_c|, is above the average share (none when there is no skew)."""
    shifts = [abs(c.prior - c.prior_without_duplicates) for c in classes]
    total = sum(shifts)
    if not classes or total <= 1e-9:
        return set()
    mean = total / len(classes)
    return {c.label for c, shift in zip(classes, shifts) if shift > mean + 1e-12}


def _class_chart(split: str, classes: Sequence[ClassStats], skew: float | None) -> str:
    """Two aligned bar panels per class: duplication rate (%) and prior inflation p/q (x)."""
    drivers = skew_drivers(classes)
    rows = list(classes)
    note = ""
    if len(rows) > MAX_CHART_CLASSES:
        rows.sort(key=lambda c: (-abs(c.prior - c.prior_without_duplicates), str(c.label)))
        rows = rows[:MAX_CHART_CLASSES]
        note = (
            f"<p class='note'>Showing the {MAX_CHART_CLASSES} classes whose prior shifts most, of {len(classes):,}.</p>"
        )
    rows.sort(key=lambda c: (-c.inflation, str(c.label)))
    label_w, gap, panel_w, row_h, top = 150, 40, 300, 20, 34
    a_x = label_w + 10
    b_x = a_x + panel_w + gap
    width = b_x + panel_w + 70
    height = top + row_h * len(rows) + 52
    rate_max = max([c.duplication_rate for c in rows] + [0.0])
    rate_ticks = _ticks(0, max(rate_max * 100, 1.0))
    rate_hi = rate_ticks[-1]
    spread = max([abs(c.inflation - 1) for c in rows] + [0.0])
    spread = max(spread * 1.1, 0.02)
    inf_ticks = _ticks(1 - spread, 1 + spread, 4)
    inf_lo, inf_hi = min(inf_ticks[0], 1 - spread), max(inf_ticks[-1], 1 + spread)

    def ax(value: float) -> float:
        return a_x + panel_w * value / rate_hi

    def bx(value: float) -> float:
        return b_x + panel_w * (value - inf_lo) / (inf_hi - inf_lo)

    grid, text, muted = palette.NEUTRAL["grid"], palette.NEUTRAL["text"], palette.NEUTRAL["muted"]
    bottom = top + row_h * len(rows)
    parts = [
        f"<svg class='chart' role='img' viewBox='0 0 {width} {height}' width='{width}' height='{height}' "
        f"xmlns='http://www.w3.org/2000/svg' aria-label='{_e(f'classes of split {split}')}'>",
        f"<text x='{a_x}' y='14' class='ptitle'>duplication rate</text>",
        f"<text x='{b_x}' y='14' class='ptitle'>prior inflation p/q</text>",
    ]
    # the same gridlines and labels for both panels: rate ticks on ax, inflation ticks on bx
    for ticks, to_x, default_step in ((rate_ticks, ax, 1.0), (inf_ticks, bx, 0.1)):
        step = ticks[1] - ticks[0] if len(ticks) > 1 else default_step
        for tick in ticks:
            x = to_x(tick)
            parts.append(
                f"<line x1='{x:.1f}' y1='{top - 4}' x2='{x:.1f}' y2='{bottom}' stroke='{grid}'/>"
                f"<text x='{x:.1f}' y='{bottom + 14}' text-anchor='middle' class='tick'>"
                f"{_fmt_tick(tick, step)}</text>"
            )
    for index, c in enumerate(rows):
        y = top + index * row_h
        driver = c.label in drivers
        fill = palette.HIGHLIGHT["skew_driver"] if driver else palette.NEUTRAL["bar"]
        label = "(unlabelled)" if c.label is None else c.label
        tip = _e(
            f"{label}: {c.redundant:,} of {c.images:,} images are redundant copies "
            f"({_pct(c.duplication_rate)}); prior {c.prior:.4f} -> {c.prior_without_duplicates:.4f} "
            f"without duplicates (x{c.inflation:.3f})" + ("; drives the skew" if driver else "")
        )
        weight = " font-weight='bold'" if driver else ""
        short = label if len(label) <= 22 else label[:21] + "…"
        parts.append(
            f"<g class='crow{' driver' if driver else ''}'><title>{tip}</title>"
            f"<text x='{label_w}' y='{y + 14}' text-anchor='end' fill='{text}'{weight}>{_e(short)}</text>"
        )
        rate_w = ax(c.duplication_rate * 100) - a_x
        parts.append(
            f"<rect x='{a_x}' y='{y + 3}' width='{rate_w:.1f}' height='{row_h - 6}' fill='{fill}'/>"
            f"<text x='{a_x + rate_w + 4:.1f}' y='{y + 14}' class='val'>{_pct(c.duplication_rate)}</text>"
        )
        one, end = bx(1.0), bx(min(max(c.inflation, inf_lo), inf_hi))
        left, bar_w = min(one, end), abs(end - one)
        anchor_x = max(one, end) + 4
        parts.append(
            f"<rect x='{left:.1f}' y='{y + 3}' width='{max(bar_w, 0.5):.1f}' height='{row_h - 6}' "
            f"fill='{fill}'/><text x='{anchor_x:.1f}' y='{y + 14}' class='val'>×{c.inflation:.3f}</text>"
            "</g>"
        )
    parts.append(f"<line x1='{bx(1.0):.1f}' y1='{top - 4}' x2='{bx(1.0):.1f}' y2='{bottom}' stroke='{muted}'/>")
    parts.append(
        f"<text x='{a_x + panel_w / 2}' y='{bottom + 34}' text-anchor='middle' class='axis'>"
        "redundant copies / images in the class (%)</text>"
        f"<text x='{b_x + panel_w / 2}' y='{bottom + 34}' text-anchor='middle' class='axis'>"
        "class prior with / without duplicates (×, 1 = unchanged)</text></svg>"
    )
    skew_text = f" · skew {skew:.4f}" if skew is not None else ""
    legend = ""
    if drivers:
        legend = (
            f"<span class='key' style='background:{palette.HIGHLIGHT['skew_driver']}'></span> drives the skew "
            "(an above-average share of |p − q|) "
            f"<span class='key' style='background:{palette.NEUTRAL['bar']}'></span> other classes"
        )
    return (
        f"<figure class='classchart'><figcaption><b>{_e(split)}</b>: {len(classes):,} classes{skew_text}"
        f"<span class='legend'>{legend}</span></figcaption>{''.join(parts)}{note}</figure>"
    )


def _distance_chart(groups: Sequence[DuplicateGroup], threshold: int) -> str:
    """Stacked bars: groups per largest internal distance, by kind, with the threshold marked."""
    if not groups:
        return ""
    top_d = max([g.max_distance for g in groups] + [threshold])
    counts = {kind: [0] * (top_d + 1) for kind in KINDS}
    other = [0] * (top_d + 1)
    for g in groups:
        (counts[g.kind] if g.kind in counts else other)[g.max_distance] += 1
    totals = [sum(counts[k][d] for k in KINDS) + other[d] for d in range(top_d + 1)]
    y_ticks = _count_ticks(max(max(totals), 1), 4)
    y_hi = max(y_ticks[-1], max(totals), 1)
    left, width, plot_h, top = 60, 700, 150, 26  # the top margin holds the threshold label, clear of the bars
    slot = width / (top_d + 1)
    parts = [
        f"<svg class='chart' role='img' viewBox='0 0 {left + width + 20} {top + plot_h + 46}' "
        f"width='{left + width + 20}' height='{top + plot_h + 46}' xmlns='http://www.w3.org/2000/svg' "
        "aria-label='groups per distance'>"
    ]
    for tick in y_ticks:
        y = top + plot_h - plot_h * tick / y_hi
        parts.append(
            f"<line x1='{left}' y1='{y:.1f}' x2='{left + width}' y2='{y:.1f}' "
            f"stroke='{palette.NEUTRAL['grid']}'/><text x='{left - 6}' y='{y + 4:.1f}' "
            f"text-anchor='end' class='tick'>{int(tick):,}</text>"
        )
    for d in range(top_d + 1):
        base = top + plot_h
        x = left + d * slot
        for kind in KINDS:
            n = counts[kind][d]
            if n:
                h = plot_h * n / y_hi
                base -= h
                parts.append(
                    f"<rect x='{x + 1:.1f}' y='{base:.1f}' width='{max(slot - 2, 1):.1f}' "
                    f"height='{h:.1f}' fill='{palette.kind_color(kind)}'>"
                    f"<title>{n:,} {kind} groups at distance {d}</title></rect>"
                )
        if other[d]:
            h = plot_h * other[d] / y_hi
            base -= h
            parts.append(
                f"<rect x='{x + 1:.1f}' y='{base:.1f}' width='{max(slot - 2, 1):.1f}' height='{h:.1f}' "
                f"fill='{palette.UNKNOWN}'/>"
            )
        if top_d <= 32 or d % 2 == 0:
            parts.append(
                f"<text x='{x + slot / 2:.1f}' y='{top + plot_h + 14}' text-anchor='middle' class='tick'>{d}</text>"
            )
    tx = left + (threshold + 1) * slot
    # the label sits above the plot (no bar reaches there), on the side of the line with room for it
    anchor, label_x = ("end", tx - 4) if tx > left + width * 0.75 else ("start", tx + 4)
    parts.append(
        f"<line x1='{tx:.1f}' y1='{top - 12}' x2='{tx:.1f}' y2='{top + plot_h}' "
        f"stroke='{palette.NEUTRAL['text']}' stroke-dasharray='4 3'/>"
        f"<text x='{label_x:.1f}' y='{top - 4}' text-anchor='{anchor}' "
        f"class='tick threshold'>scan threshold {threshold}</text>"
    )
    parts.append(
        f"<text x='{left + width / 2}' y='{top + plot_h + 34}' text-anchor='middle' class='axis'>"
        "largest Hamming distance between two members of the group (bits)</text>"
        f"<text transform='translate(14 {top + plot_h / 2}) rotate(-90)' text-anchor='middle' "
        "class='axis'>groups</text></svg>"
    )
    legend = " ".join(f"<span class='key' style='background:{palette.kind_color(k)}'></span> {k}" for k in KINDS)
    return (
        f"<figure><figcaption>Groups per distance <span class='legend'>{legend}</span></figcaption>"
        f"{''.join(parts)}</figure>"
    )


# ----------------------------------------------------------------------------------------------------- probe

Row = tuple[str, float, tuple[float, float] | None]  # a chart row: name, mean, 95% interval


def _row(name: str, interval: Interval) -> Row:
    ci = None if interval.low is None or interval.high is None else (interval.low, interval.high)
    return (name, interval.mean, ci)


def probe_arms(condition: Condition, metric: str = "accuracy") -> list[Row]:
    """Each arm's clean (or robust_accuracy) test accuracy as (arm, mean, 95% interval), in the probe's arm order."""
    rows = [_row(a.arm, getattr(a, metric)) for a in condition.arms if getattr(a, metric) is not None]
    order = {name: i for i, name in enumerate(ARMS)}
    return sorted(rows, key=lambda a: (order.get(a[0], len(order)), a[0]))


def probe_class_differences(condition: Condition) -> list[Row]:
    """Per-class accuracy differences (deduplicated − as-is, mean over seeds) next to the duplication rate."""
    return [
        (f"{d.label} ({_pct(d.duplication_rate)} dup.)", d.difference, None)
        for d in condition.class_deltas
        if d.difference is not None
    ]


def probe_conditions(probe: ProbeReport) -> list[tuple[str, Condition]]:
    """(title, condition) for each condition of a probe: the data as they are, or one injection rate."""
    return [
        ("the data as they are" if c.rate is None else f"duplicates injected at rate {c.rate:g}", c)
        for c in probe.conditions
    ]


def _as_percent(values: Iterable[float]) -> float:
    """100 when the numbers look like fractions (all within [-1, 1]), else 1."""
    return 100.0 if all(-1.0 <= v <= 1.0 for v in values) else 1.0


def _interval_chart(
    rows: Sequence[tuple[str, float, tuple[float, float] | None]],
    colors: Sequence[str],
    axis: str,
    scale: float,
    zero_line: bool,
    unit: str,
    bounds: tuple[float, float] | None = None,
) -> str:
    """Dots with 95% whiskers, one row each; `bounds` (in axis units) clips the axis, e.g. 0-100 % accuracy."""
    values = [v * scale for _, mean, ci in rows for v in ((mean,) + (ci or ()))]
    if bounds:  # a t-interval over two seeds can reach below 0 %; the axis need not
        values = [min(max(v, bounds[0]), bounds[1]) for v in values]
    low, high = min(values), max(values)
    if zero_line:
        low, high = min(low, 0.0), max(high, 0.0)
    pad = max((high - low) * 0.08, 0.5 if scale == 100 else 0.005)
    ticks = _ticks(low - pad, high + pad, 5)
    lo, hi = min(ticks[0], low - pad), max(ticks[-1], high + pad)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    label_w, plot_w, row_h, top = 170, 460, 24, 8
    width, height = label_w + plot_w + 170, top + row_h * len(rows) + 44

    if bounds:
        ticks = [t for t in ticks if bounds[0] <= t <= bounds[1]] or ticks
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])

    def x(value: float) -> float:
        return label_w + 10 + plot_w * (min(max(value, lo), hi) - lo) / (hi - lo)

    bottom = top + row_h * len(rows)
    parts = [
        f"<svg class='chart' role='img' viewBox='0 0 {width} {height}' width='{width}' height='{height}' "
        f"xmlns='http://www.w3.org/2000/svg' aria-label='{_e(axis)}'>"
    ]
    for tick in ticks:
        parts.append(
            f"<line x1='{x(tick):.1f}' y1='{top}' x2='{x(tick):.1f}' y2='{bottom}' "
            f"stroke='{palette.NEUTRAL['grid']}'/><text x='{x(tick):.1f}' y='{bottom + 14}' "
            f"text-anchor='middle' class='tick'>{_fmt_tick(tick, step)}</text>"
        )
    if zero_line:
        parts.append(
            f"<line x1='{x(0):.1f}' y1='{top}' x2='{x(0):.1f}' y2='{bottom}' stroke='{palette.NEUTRAL['muted']}'/>"
        )
    digits = 2 if scale == 100 else 4
    for index, ((name, mean, ci), color) in enumerate(zip(rows, colors)):
        y = top + index * row_h + row_h / 2
        m = mean * scale
        text = f"{m:.{digits}f}{unit}" + (f" [{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]" if ci else "")
        parts.append(
            f"<g class='prow'><title>{_e(name)}: {_e(text)}</title>"
            f"<text x='{label_w}' y='{y + 4:.1f}' text-anchor='end'>{_e(name)}</text>"
        )
        if zero_line:
            parts.append(
                f"<rect x='{min(x(0), x(m)):.1f}' y='{y - 6:.1f}' width='{abs(x(m) - x(0)):.1f}' "
                f"height='12' fill='{color}' opacity='0.55'/>"
            )
        if ci:
            parts.append(
                f"<line x1='{x(ci[0] * scale):.1f}' y1='{y:.1f}' x2='{x(ci[1] * scale):.1f}' "
                f"y2='{y:.1f}' stroke='{color}' stroke-width='2'/>"
                f"<line x1='{x(ci[0] * scale):.1f}' y1='{y - 5:.1f}' x2='{x(ci[0] * scale):.1f}' "
                f"y2='{y + 5:.1f}' stroke='{color}' stroke-width='2'/>"
                f"<line x1='{x(ci[1] * scale):.1f}' y1='{y - 5:.1f}' x2='{x(ci[1] * scale):.1f}' "
                f"y2='{y + 5:.1f}' stroke='{color}' stroke-width='2'/>"
            )
        parts.append(
            f"<circle cx='{x(m):.1f}' cy='{y:.1f}' r='4.5' fill='{color}'/>"
            f"<text x='{label_w + plot_w + 20}' y='{y + 4:.1f}' class='val'>{_e(text)}</text></g>"
        )
    parts.append(
        f"<text x='{label_w + 10 + plot_w / 2}' y='{bottom + 34}' text-anchor='middle' class='axis'>"
        f"{_e(axis)}</text></svg>"
    )
    return "".join(parts)


def _arm_figure(arms: Sequence[tuple[str, float, tuple[float, float] | None]], what: str) -> str:
    scale = _as_percent([v for _, m, ci in arms for v in (m,) + (ci or ())])
    unit = "%" if scale == 100 else ""
    return (
        f"<figure class='probe-arms'><figcaption>{_e(what.capitalize())} per arm: mean and 95% interval over seeds"
        "</figcaption>"
        + _interval_chart(
            arms,
            [palette.arm_color(a) for a, _, _ in arms],
            f"{what} ({'%' if unit else 'as given'})",
            scale,
            False,
            unit,
            (0.0, 100.0) if unit else None,
        )
        + "</figure>"
    )


def _arm_table(condition: Condition) -> str:
    """Training images, steps, images seen and training time per arm."""
    rows = []
    for arm in condition.arms:
        seconds = arm.train_seconds
        time_text = f"{seconds.mean:.1f}" + (
            f" [{seconds.low:.1f}, {seconds.high:.1f}]" if seconds.low is not None and seconds.high is not None else ""
        )
        rows.append(
            f"<tr><td><span class='key' style='background:{palette.arm_color(arm.arm)}'></span>{_e(arm.arm)}</td>"
            + "".join(f"<td class='num'>{c:,.0f}</td>" for c in (arm.train_images, arm.steps, arm.images_seen))
            + f"<td class='num'>{time_text}</td></tr>"
        )
    if not rows:
        return ""
    return (
        "<table class='arms'><thead><tr><th>arm</th><th>training images</th><th>steps</th><th>images seen</th>"
        "<th>training time (s, 95% interval)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _condition_html(title: str, condition: Condition) -> str:
    parts = [f"<h3>On {_e(title)}</h3>"] if title else []
    facts = [
        f"{name} <b>{value:,.0f}</b>"
        for value, name in (
            (condition.train_images, "training images"),
            (condition.redundant, "redundant copies removed by dedup"),
            (condition.batch_size, "batch size"),
        )
    ]
    seconds, share = condition.duplicate_time_seconds, condition.duplicate_time_fraction
    if seconds is not None:
        facts.append(
            f"time spent on duplicates <b>{seconds:.1f} s</b>"
            + (f" ({_pct(share)} of training)" if share is not None else "")
        )
    parts.append(f"<p class='meta'>{' · '.join(facts)}</p>")
    arms = probe_arms(condition)
    if arms:
        parts.append(_arm_figure(arms, "clean test accuracy"))
    robust = probe_arms(condition, "robust_accuracy")
    if robust:
        parts.append(_arm_figure(robust, "robust test accuracy"))
    table = _arm_table(condition)
    if table:
        parts.append(table)
    verdicts = [c.text for c in condition.comparisons]
    if verdicts:
        parts.append("<ul class='verdicts'>" + "".join(f"<li>{_e(v)}</li>" for v in verdicts) + "</ul>")
    rows = probe_class_differences(condition)
    if rows:
        scale = _as_percent([v for _, m, ci in rows for v in (m,) + (ci or ())])
        unit = " pp" if scale == 100 else ""
        rows = sorted(rows, key=lambda r: r[1])
        colors = [
            palette.arm_color("deduplicated")
            if m > 0
            else palette.arm_color("as-is")
            if m < 0
            else palette.NEUTRAL["muted"]
            for _, m, _ in rows
        ]
        parts.append(
            "<figure class='probe-classes'><figcaption>Per-class accuracy, deduplicated − as-is "
            f"<span class='legend'><span class='key' style='background:{palette.arm_color('deduplicated')}'>"
            "</span> better without duplicates <span class='key' style='background:"
            f"{palette.arm_color('as-is')}'></span> better as-is</span></figcaption>"
        )
        parts.append(
            _interval_chart(
                rows,
                colors,
                "difference in class accuracy (percentage points)" if unit else "difference in class accuracy",
                scale,
                True,
                unit,
            )
        )
        parts.append("</figure>")
    return "".join(parts)


def _sweep_chart(conditions: Sequence[tuple[float, Condition]], inject: str) -> str:
    """Accuracy per arm against the injection rate, with 95% intervals (a probe run with --inject)."""
    series: dict[str, list[tuple[float, float, tuple[float, float] | None]]] = {}
    for rate, condition in conditions:
        for arm, mean, ci in probe_arms(condition):
            series.setdefault(arm, []).append((rate, mean, ci))
    values = [v for points in series.values() for _, m, ci in points for v in (m,) + (ci or ())]
    if not values:
        return ""
    scale = _as_percent(values)
    rates = [rate for rate, _ in conditions]
    x_ticks = _ticks(min(rates), max(rates), 5) if max(rates) > min(rates) else [min(rates) - 0.5, max(rates) + 0.5]
    y_ticks = _ticks(min(values) * scale, max(values) * scale, 4)
    left, top, plot_w, plot_h = 60, 10, 520, 200
    width, height = left + plot_w + 150, top + plot_h + 50

    def x(v: float) -> float:
        return left + plot_w * (v - x_ticks[0]) / (x_ticks[-1] - x_ticks[0])

    def y(v: float) -> float:
        return top + plot_h - plot_h * (v * scale - y_ticks[0]) / (y_ticks[-1] - y_ticks[0])

    xs = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
    ys = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    grid = palette.NEUTRAL["grid"]
    parts = [
        f"<svg class='chart' role='img' viewBox='0 0 {width} {height}' width='{width}' height='{height}' "
        "xmlns='http://www.w3.org/2000/svg' aria-label='accuracy against injection rate'>"
    ]
    for t in x_ticks:
        parts.append(
            f"<line x1='{x(t):.1f}' y1='{top}' x2='{x(t):.1f}' y2='{top + plot_h}' stroke='{grid}'/>"
            f"<text x='{x(t):.1f}' y='{top + plot_h + 14}' text-anchor='middle' class='tick'>"
            f"{_fmt_tick(t, xs)}</text>"
        )
    for t in y_ticks:
        yy = top + plot_h - plot_h * (t - y_ticks[0]) / (y_ticks[-1] - y_ticks[0])
        parts.append(
            f"<line x1='{left}' y1='{yy:.1f}' x2='{left + plot_w}' y2='{yy:.1f}' stroke='{grid}'/>"
            f"<text x='{left - 6}' y='{yy + 4:.1f}' text-anchor='end' class='tick'>{_fmt_tick(t, ys)}</text>"
        )
    for index, (arm, points) in enumerate(series.items()):
        color = palette.arm_color(arm)
        points.sort()
        line = " ".join(f"{x(r):.1f},{y(m):.1f}" for r, m, _ in points)
        parts.append(
            f"<g class='sweep-arm'><title>{_e(arm)}</title>"
            f"<polyline points='{line}' fill='none' stroke='{color}' stroke-width='2'/>"
        )
        for r, m, ci in points:
            if ci:
                parts.append(
                    f"<line x1='{x(r):.1f}' y1='{y(ci[0]):.1f}' x2='{x(r):.1f}' y2='{y(ci[1]):.1f}' "
                    f"stroke='{color}' stroke-width='2'/>"
                )
            parts.append(f"<circle cx='{x(r):.1f}' cy='{y(m):.1f}' r='4' fill='{color}'/>")
        parts.append(
            f"<rect x='{left + plot_w + 16}' y='{top + 6 + 18 * index}' width='10' height='10' "
            f"fill='{color}'/><text x='{left + plot_w + 32}' y='{top + 15 + 18 * index}'>{_e(arm)}</text>"
            "</g>"
        )
    unit = "%" if scale == 100 else "as given"
    parts.append(
        f"<text x='{left + plot_w / 2}' y='{top + plot_h + 34}' text-anchor='middle' class='axis'>"
        f"injection rate{f' ({_e(inject)})' if inject else ''}: share of the training set that is copies"
        f"</text><text transform='translate(14 {top + plot_h / 2}) rotate(-90)' text-anchor='middle' "
        f"class='axis'>clean test accuracy ({unit})</text></svg>"
    )
    return (
        "<figure class='probe-sweep'><figcaption>Sweep: accuracy per arm against the injection rate, "
        "95% intervals over seeds</figcaption>" + "".join(parts) + "</figure>"
    )


def _probe_section(probe: ProbeReport) -> str:
    """The probe, read through its own result types (probing.results; a file: results.read_json)."""
    parts = ["<section id='probe'><h2>Training probe</h2>"]
    settings, data = probe.settings, probe.data
    facts = [f"seeds <b>{len(probe.seeds)}</b>"]
    for value, name in (
        (settings.epochs, "epochs"),
        (settings.size, "image size"),
        (settings.adversarial, "adversarial"),
        (settings.inject, "injection"),
        (data.train_images, "training images"),
        (data.test_images, "test images"),
        (data.test_source, "test images from"),
        (probe.device, "device"),
    ):
        if value is not None:
            facts.append(f"{_e(name)} <b>{_e(f'{value:,}' if isinstance(value, int) else value)}</b>")
    parts.append(f"<p class='meta'>{' · '.join(facts)}</p>")
    conditions = probe_conditions(probe)
    rated = [(c.rate, c) for _, c in conditions if c.rate is not None]
    if len(rated) > 1:
        parts.append(_sweep_chart(rated, settings.inject or ""))
    sweep = len(conditions) > 1
    shown = [(title, _condition_html("" if sweep else title, condition)) for title, condition in conditions]
    shown = [(title, part) for title, part in shown if "<figure" in part]
    for index, (title, part) in enumerate(shown):
        if sweep:  # a sweep: every rate is there, the strongest duplication open
            part = (
                f"<details{' open' if index == len(shown) - 1 else ''}><summary>{_e(title)}</summary>{part}</details>"
            )
        parts.append(part)
    if not shown:
        parts.append("<p>The probe holds no accuracy per arm; its content is below.</p>")
    raw = render_probe_json(probe).rstrip("\n")
    if len(raw) > 200_000:
        raw = raw[:200_000] + "\n…"
    parts.append(f"<details><summary>Probe JSON</summary><pre>{_e(raw)}</pre></details></section>")
    return "".join(parts)


# -------------------------------------------------------------------------------------------------- sections


def _summary_section(report: ScanReport) -> str:
    s = report.summary
    kinds = {k: 0 for k in KINDS}
    for g in report.groups:
        kinds[g.kind] = kinds.get(g.kind, 0) + 1
    kind_text = " · ".join(
        f"<span class='kind' style='color:{palette.kind_color(k)}'>{_e(k)}</span> {n:,}" for k, n in kinds.items()
    )
    evals = [sp for sp in report.splits if sp.role != "train"]
    leak_detail = (
        "; ".join(f"{_e(sp.split)}: {sp.leaked:,} of {sp.images:,} ({_pct(sp.leaked_fraction, 2)})" for sp in evals)
        or "no evaluation split scanned"
    )
    cards = [
        ("images", _num(s.images), f"{len(report.roots)} root{'s' if len(report.roots) != 1 else ''}", ""),
        ("duplicate groups", _num(s.groups), kind_text, ""),
        ("redundant copies", _num(s.redundant), f"{_pct(s.wasted_fraction)} of a training epoch", ""),
        ("skew (prior shift)", f"{s.skew:.4f}", "total variation; 0 = duplication even across classes", ""),
        ("leaked images", _num(s.leaked), f"with a copy in train · {leak_detail}", "leakage" if s.leaked else ""),
        (
            "label conflicts",
            _num(s.label_conflicts),
            "groups whose members carry different labels",
            "conflict" if s.label_conflicts else "",
        ),
        (
            "skipped files",
            _num(s.skipped),
            "<a href='#skipped'>reasons below</a>" if s.skipped else "none",
            "skipped" if s.skipped else "",
        ),
    ]
    html_cards = "".join(
        f"<div class='card {cls}'><div class='label'>{title}</div><div class='value'>{value}</div>"
        f"<div class='detail'>{detail}</div></div>"
        for title, value, detail, cls in cards
    )
    return f"<section id='summary'><h2>Summary</h2><div class='cards'>{html_cards}</div></section>"


def _classes_section(report: ScanReport) -> str:
    by_split: dict[str, list[ClassStats]] = {}
    for c in report.classes:
        by_split.setdefault(c.split, []).append(c)
    if not by_split:
        return ""
    skews = {sp.split: sp.skew for sp in report.splits}
    order = sorted(by_split, key=lambda name: (name != report.train_split, name))
    charts = []
    for split in order:
        classes = by_split[split]
        if all(c.label is None for c in classes):
            charts.append(f"<p><b>{_e(split)}</b>: unlabelled, so no per-class statistics.</p>")
            continue
        if all(c.redundant == 0 for c in classes):
            charts.append(
                f"<p><b>{_e(split)}</b>: {len(classes):,} classes, no redundant copies within the split"
                " (copies across splits are leaks, shown in the summary and the groups).</p>"
            )
            continue
        charts.append(_class_chart(split, classes, skews.get(split)))
    return (
        "<section id='classes'><h2>Classes</h2><p class='note'>Duplication rate: the share of a class's images "
        "that are redundant copies. Prior inflation: how much more often a model sees the class than it would "
        "without duplicates (p/q). Classes far from 1 drive the skew.</p>" + "".join(charts) + "</section>"
    )


def _skipped_section(report: ScanReport, limit: int = 2_000) -> str:
    if not report.skipped:
        return ""
    rows = "".join(
        f"<tr><td>{_e(s.root)}</td><td class='path'>{_e(s.path)}</td><td>{_e(s.reason)}</td></tr>"
        for s in report.skipped[:limit]
    )
    more = (
        f"<p class='note'>… and {len(report.skipped) - limit:,} more (see the JSON report).</p>"
        if len(report.skipped) > limit
        else ""
    )
    return (
        f"<section id='skipped'><h2>Skipped files ({len(report.skipped):,})</h2><details open>"
        f"<summary>Files that could not be read, with the reason</summary><table><thead><tr><th>root</th>"
        f"<th>path</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>{more}</details></section>"
    )


def _container_bytes(report: ScanReport, source_options: SourceOptions | None) -> dict[tuple[str, str], bytes | str]:
    """{(root, id): bytes or why not} of the group members that live in tar shards, Parquet files or manifests,
    read through the source layer (only the shards and row groups that hold them)."""
    from ..engine.sources.reading import item_bytes

    kinds = {r.name: (r.source, r.path) for r in report.roots if r.source != "folder"}
    wanted: dict[tuple[str, str], set[str]] = {}
    for g in report.groups:
        for m in g.members:
            if m.root in kinds:
                wanted.setdefault(kinds[m.root], set()).add(m.path)
    found: dict[tuple[str, str], bytes | str] = {}
    for (kind, url), ids in wanted.items():
        read = item_bytes(kind, url, ids, source_options or SourceOptions())
        found.update(
            ((name, i), data) for name, place in kinds.items() if place == (kind, url) for i, data in read.items()
        )
    return found


def _gallery_data(report: ScanReport, thumb_px: int, source_options: SourceOptions | None = None) -> dict:
    contained = _container_bytes(report, source_options)
    roots = {r.name: r.path for r in report.roots}
    root_names = [r.name for r in report.roots]
    labels = sorted({_clean(m.label) for g in report.groups for m in g.members if m.label is not None})
    for g in report.groups:
        for m in g.members:
            if m.root not in roots:
                roots[m.root] = None
                root_names.append(m.root)
    root_index = {name: i for i, name in enumerate(root_names)}
    label_index = {name: i for i, name in enumerate(labels)}
    # Label conflicts and leaks first (conflicts before leaks), then the report's own order.
    ordered = sorted(report.groups, key=lambda g: (not (g.is_label_conflict or g.is_leak), not g.is_label_conflict))
    groups = []
    for g in ordered:
        members = []
        for m in g.members:
            held = contained.get((m.root, m.path))
            uri, reason = thumbnail(held if held is not None else _member_file(roots.get(m.root), m.path), thumb_px)
            members.append(
                [
                    root_index[m.root],
                    _clean(m.path),
                    -1 if m.label is None else label_index[_clean(m.label)],
                    1 if m.keep else 0,
                    m.width,
                    m.height,
                    m.size,
                    uri,
                    reason,
                    _link_data(g, m),
                ]
            )
        flags = (1 if g.is_label_conflict else 0) | (2 if g.is_leak else 0)
        groups.append([g.id, _clean(g.kind), g.max_distance, flags, members])
    max_distance = max([g.max_distance for g in report.groups] + [report.settings.threshold, 0])
    return {
        "roots": [_clean(r) for r in root_names],
        "labels": labels,
        "kinds": list(KINDS),
        "kindColors": {k: palette.kind_color(k) for k in KINDS},
        "groups": groups,
        "maxDistance": max_distance,
        "threshold": report.settings.threshold,
        "pageSize": PAGE_SIZE,
        "membersShown": MEMBERS_SHOWN,
    }


def _decides(report: ScanReport) -> str:
    """What decided the near copies of this scan, in words (the slider is not a rerun of the scan)."""
    settings = report.settings
    if settings.method == "cnn":
        return f"the scan decided by the embeddings' cosine similarity (&ge; {settings.min_similarity:g})."
    if settings.verify:
        return (
            f"the scan's --threshold {settings.threshold} only proposed candidates (with each image's "
            f"{settings.neighbours} nearest neighbours) and the verification score (&ge; {settings.min_similarity:g}) "
            "decided, so copies can lie beyond it and a lower --threshold would not simply drop these groups."
        )
    return f"without verification, the scan's radius {settings.threshold} decided."


def _threshold_note(report: ScanReport) -> str:
    settings = report.settings
    if settings.method == "cnn":
        return f"scan: cosine &ge; {settings.min_similarity:g}"
    if settings.verify:
        return f"scan: candidate radius {settings.threshold}, verified at score &ge; {settings.min_similarity:g}"
    return f"scan: radius {settings.threshold} (decides)"


def _link_data(group, member) -> list | None:
    """A copy's own link for its thumbnail: [kind, path of the member it copies, distance, score or null]."""
    link = member.link
    if link is None:
        return None
    to = group.members[link.to]
    score = None if link.score is None else round(link.score, 3)
    return [_clean(link.kind), _clean(f"{to.root}/{to.path}"), link.distance, score]


def _groups_section(report: ScanReport) -> str:
    kinds = [k for k in KINDS] + sorted({g.kind for g in report.groups} - set(KINDS))
    kind_boxes = "".join(
        f"<label class='kind'><input type='checkbox' name='kind' value='{_e(k)}' checked> "
        f"<span class='badge' style='background:{palette.kind_color(k)}'>{_e(k)}</span></label>"
        for k in kinds
    )
    labels = sorted({_clean(m.label) for g in report.groups for m in g.members if m.label is not None})
    label_opts = "".join(f"<option value='{_e(label)}'>{_e(label)}</option>" for label in labels)
    roots = [r.name for r in report.roots]
    split_opts = "".join(f"<option value='{_e(r)}'>{_e(r)}</option>" for r in roots)
    max_distance = max([g.max_distance for g in report.groups] + [report.settings.threshold, 0])
    return f"""<section id='groups'><h2>Duplicate groups</h2>
<p class='note'>Each row is one group: the member marked <b>keep</b> is the one a dedup keeps (highest resolution,
then largest file), and every other member is a copy of it (or a byte/pixel twin of such a copy); each thumbnail
says what kind of copy it is, of which file, at what distance and score. Label conflicts and leaks come first.
The slider hides groups whose members lie further apart (largest hash distance) than it says: {_decides(report)}</p>
<form id='filters' autocomplete='off'>
<fieldset><legend>kind</legend>{kind_boxes}</fieldset>
<fieldset><legend>class</legend><select id='f-label'><option value=''>any class</option>{label_opts}</select></fieldset>
<fieldset><legend>split</legend><select id='f-split'><option value=''>any split</option>{split_opts}</select></fieldset>
<fieldset><legend>findings</legend><label><input type='checkbox' id='f-conflict'> label conflicts only</label>
<label><input type='checkbox' id='f-leak'> leakage only</label></fieldset>
<fieldset class='slider'><legend>max distance ≤ <output id='f-distance-value'>{max_distance}</output></legend>
<input type='range' id='f-distance' min='0' max='{max_distance}' step='1' value='{max_distance}'>
<span class='note'>{_threshold_note(report)}</span></fieldset>
<fieldset><legend>order</legend><select id='f-order'><option value='findings'>findings first</option>
<option value='distance'>distance, smallest first</option><option value='distance-desc'>distance, largest first</option>
<option value='size'>most images first</option></select></fieldset>
<fieldset><legend>path</legend><input type='search' id='f-text' placeholder='contains…' size='16'></fieldset>
<button type='reset' id='f-reset'>reset</button>
</form>
<div class='pager'><span id='count' data-matching='0' data-total='{len(report.groups)}'></span>
<span class='buttons'><button type='button' data-page='first'>« first</button><button type='button'
data-page='prev'>‹ prev</button><span class='page-label'></span><button type='button' data-page='next'>next ›</button>
<button type='button' data-page='last'>last »</button></span></div>
<div id='gallery'><noscript><p>The gallery and its filters need JavaScript.</p></noscript></div>
<div class='pager bottom'><span class='buttons'><button type='button' data-page='prev'>‹ prev</button>
<span class='page-label'></span><button type='button' data-page='next'>next ›</button></span></div>
</section>"""


CSS = _asset("report.css") % {
    "text": palette.NEUTRAL["text"],
    "muted": palette.NEUTRAL["muted"],
    "grid": palette.NEUTRAL["grid"],
    "keep": palette.HIGHLIGHT["kept"],
    "conflict": palette.HIGHLIGHT["label_conflict"],
    "leak": palette.HIGHLIGHT["leakage"],
}

# The gallery. Every string from the data is put in the page with textContent or as an attribute value set
# through the DOM, never parsed as HTML.
SCRIPT = _asset("report.js")


def render(
    report: ScanReport,
    probe: ProbeReport | None = None,
    *,
    thumb_px: int = THUMBNAIL_PX,
    source_options: SourceOptions | None = None,
) -> str:
    """The report as one self-contained HTML page (thumbnails read from each root's files, or through the source
    layer for items of tar shards, Parquet and manifests, opened with `source_options`: detected when None),
    with a probe's results when given (a ProbeReport: dupaudit.probe's, or probing.results.read_json of a saved
    one)."""
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    csp = (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'; "
        "base-uri 'none'; form-action 'none'"
    )
    roots = " · ".join(f"<b>{_e(r.name)}</b> <span class='path'>{_e(r.path)}</span>" for r in report.roots)
    st = report.settings
    title = "dupaudit report: " + ", ".join(_clean(r.name) for r in report.roots)
    data = _script_json(_gallery_data(report, thumb_px, source_options))
    body = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{_e(csp)}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<meta name='generator' content='dupaudit'>",
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>dupaudit report</h1><p class='meta'>{roots}<br>{_e(st.method)} · "
        + (f"cosine similarity ≥ {st.min_similarity:g}" if st.method == "cnn" else f"threshold {st.threshold} bits")
        + f"{' · flips' if st.flips else ''} · dupaudit {_e(report.tool_version)}</p></header>",
        _summary_section(report),
        _classes_section(report),
    ]
    if report.groups:
        body.append(
            f"<section id='distances'><h2>Distances</h2>{_distance_chart(report.groups, st.threshold)}</section>"
        )
    if probe is not None:
        body.append(_probe_section(probe))
    body.append(
        _groups_section(report)
        if report.groups
        else "<section id='groups'><h2>Duplicate groups</h2><p>No duplicates found.</p></section>"
    )
    body.append(_skipped_section(report))
    if report.groups:
        body.append(f"<script type='application/json' id='dupaudit-data'>{data}</script>")
        body.append(f"<script>{SCRIPT}</script>")
    body.append("</body></html>\n")
    return "".join(body)
