"""A small labelled dataset with planted duplicates, made offline from procedural images.

Used by `dupaudit demo`, the README's first command and the tests: train/test splits, a few classes,
exact copies, re-encodings, near copies (resized, re-compressed, brightened), a label conflict and a
train/test leak, so that every part of the report has something to show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

CLASSES = ("circle", "stripes", "checker", "blobs")


def procedural_image(seed: int, size: int = 96) -> Image.Image:
    """A distinct, natural-looking-enough RGB image: smooth random fields plus a class-free pattern."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = []
    for _ in range(3):
        field = np.zeros((size, size))
        for _ in range(6):
            fx, fy, phase = rng.uniform(0.5, 6.0), rng.uniform(0.5, 6.0), rng.uniform(0, 2 * np.pi)
            field += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
        cx, cy, radius = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.35)
        field += 2.5 * (((x - cx) ** 2 + (y - cy) ** 2) < radius**2)
        channels.append(field)
    stack = np.stack(channels, axis=-1)
    stack = (stack - stack.min()) / (np.ptp(stack) + 1e-9)
    return Image.fromarray((stack * 255).astype(np.uint8), "RGB")


@dataclass(frozen=True)
class SamplePlan:
    """What was planted, so tests can check the scan finds exactly it."""

    root: Path
    exact: int
    pixel: int
    near: int
    leaks: int
    conflicts: int


def make_sample(root: str | Path, per_class: int = 12, test_per_class: int = 4, seed: int = 0) -> SamplePlan:
    """Write ROOT/{train,test}/<class>/*.jpg|png with planted duplicates; returns what was planted."""
    root = Path(root)
    counter = seed * 100_000
    exact = pixel = near = leaks = conflicts = 0
    for split, count in (("train", per_class), ("test", test_per_class)):
        for label in CLASSES:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                counter += 1
                procedural_image(counter).save(folder / f"{index:04d}.jpg", quality=90)
    train = root / "train"
    # Planted duplicates, uneven across classes so that the skew is visibly non-zero.
    source = train / "circle" / "0000.jpg"
    (train / "circle" / "copy_exact.jpg").write_bytes(source.read_bytes())
    exact += 1
    image = Image.open(source).convert("RGB")
    image.save(train / "circle" / "copy_png.png")
    pixel += 1
    image.resize((192, 192), Image.Resampling.LANCZOS).save(train / "circle" / "copy_upscaled.jpg", quality=90)
    image.save(train / "circle" / "copy_q60.jpg", quality=60)
    ImageEnhance.Brightness(image).enhance(1.08).save(train / "circle" / "copy_bright.jpg", quality=90)
    near += 3
    other = Image.open(train / "stripes" / "0001.jpg").convert("RGB")
    other.save(train / "stripes" / "0001_again.jpg", quality=75)
    near += 1
    # The same image under two labels, and a test image copied into train.
    Image.open(train / "checker" / "0002.jpg").convert("RGB").save(train / "blobs" / "mislabelled.jpg", quality=85)
    conflicts += 1
    Image.open(root / "test" / "blobs" / "0000.jpg").convert("RGB").save(train / "blobs" / "from_test.jpg", quality=85)
    leaks += 1
    return SamplePlan(root, exact, pixel, near, leaks, conflicts)
