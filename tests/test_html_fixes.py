"""HTML report details users saw wrong: 16-bit thumbnails, the distance chart's axis and threshold label."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

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
