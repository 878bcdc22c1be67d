"""HTML report details users saw wrong: 16-bit thumbnails, the distance chart's axis and threshold label."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from dupaudit.formats import html as html_format
from dupaudit.formats.html import THUMBNAIL_PX, thumbnail


def decoded(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("L"), dtype=float)


def test_a_16_bit_png_thumbnail_is_not_blank(tmp_path):
    side = THUMBNAIL_PX * 3  # larger than a thumbnail, so it is re-encoded rather than embedded as it is
    ramp = np.tile(np.linspace(0, 65535, side), (side, 1)).astype(np.uint16)  # dark left, bright right
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    uri, reason = thumbnail(path)
    assert uri is not None, reason
    pixels = decoded(uri)
    assert 100 < pixels.mean() < 155  # a ramp, not the white (255) of clipped 16-bit values
    assert pixels[:, :5].mean() < 30 and pixels[:, -5:].mean() > 225


def _distance_svg(distances: list[int]) -> str:
    try:
        from .html_support import synthetic_report
    except ImportError:
        from html_support import synthetic_report
    page = html_format.render(synthetic_report(None, distances))
    section = page[page.index("<section id='distances'>") :]
    return section[: section.index("</svg>")]


def test_the_distance_chart_counts_in_whole_numbers():
    svg = _distance_svg([0, 3])  # one group at each of two distances: the tallest bar is 1
    ticks = re.findall(r"text-anchor='end' class='tick'>([^<]+)</text>", svg)
    assert ticks == ["0", "1"], ticks  # not 0, 0, 0, 0, 1
    svg = _distance_svg([2] * 7 + [4] * 3)
    ticks = [int(t) for t in re.findall(r"text-anchor='end' class='tick'>([^<]+)</text>", svg)]
    assert ticks == sorted(set(ticks)) and ticks[0] == 0 and ticks[-1] >= 7, ticks


def test_the_threshold_label_sits_above_the_bars():
    svg = _distance_svg([0, 1, 1, 2, 9, 10, 10, 10])  # the tallest bars stand right after the threshold (10)
    label = re.search(r"<text x='([\d.]+)' y='([\d.]+)'[^>]*class='tick threshold'>scan threshold", svg)
    assert label, svg
    label_y = float(label.group(2))
    bar_tops = [float(y) for y in re.findall(r"<rect x='[\d.]+' y='([\d.]+)'", svg)]
    assert bar_tops and label_y < min(bar_tops)  # the label's baseline is above every bar: no overlap
    width = float(re.search(r"viewBox='0 0 ([\d.]+) ", svg).group(1))
    assert 0 < float(label.group(1)) < width
