"""Write a photo-size benchmark set: JPEGs of 300-800 px made from the photos that scikit-image ships.

    python benchmarks/make_photo_set.py /tmp/dupaudit-photos [--count 6000] [--seed 0] [--jobs 2]

Each file is a random crop (50-100 % of each side) of one of the skimage.data photos, rescaled so that its
longer side is 300-800 px, with colour jitter (brightness, contrast, saturation, per-channel gain) and a JPEG
quality of 60-95 (4:2:0 or 4:4:4 chroma), so every file differs; files are grouped in one folder per source
photo (a labelled layout). Deterministic for a seed. Never deletes anything: the folder must be new or empty.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

PHOTOS = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "coins",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "grass",
    "gravel",
    "brick",
    "cell",
    "clock",
)


def load_photos() -> dict[str, Image.Image]:
    import skimage.data

    photos = {}
    for name in PHOTOS:
        array = getattr(skimage.data, name)()
        photos[name] = Image.fromarray(array).convert("RGB")
    return photos


_PHOTOS: dict[str, Image.Image] = {}


def make_one(task: tuple[int, int, str]) -> str:
    index, seed, folder = task
    if not _PHOTOS:
        _PHOTOS.update(load_photos())
    rng = np.random.default_rng([seed, index])
    name = PHOTOS[index % len(PHOTOS)]
    photo = _PHOTOS[name]
    width, height = photo.size
    crop_w = int(width * rng.uniform(0.5, 1.0))
    crop_h = int(height * rng.uniform(0.5, 1.0))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    image = photo.crop((left, top, left + crop_w, top + crop_h))
    longer = int(rng.integers(300, 801))
    scale = longer / max(crop_w, crop_h)
    image = image.resize((max(1, round(crop_w * scale)), max(1, round(crop_h * scale))), Image.BICUBIC)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.2))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.7, 1.3))
    gains = rng.uniform(0.92, 1.08, size=3)
    pixels = np.clip(np.asarray(image, dtype=np.float32) * gains, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    path = Path(folder) / name / f"{index:05d}.jpg"
    image.save(path, "JPEG", quality=int(rng.integers(60, 96)), subsampling=int(rng.choice([0, 2])))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.folder.exists() and any(args.folder.iterdir()):
        sys.exit(f"{args.folder}: not empty; choose a new folder (this script never deletes files)")
    for name in PHOTOS:
        (args.folder / name).mkdir(parents=True, exist_ok=True)
    tasks = [(i, args.seed, str(args.folder)) for i in range(args.count)]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for done, _ in enumerate(pool.map(make_one, tasks, chunksize=64), 1):
            if done % 1000 == 0:
                print(f"{done} files", file=sys.stderr)
    total = sum(p.stat().st_size for p in args.folder.rglob("*.jpg"))
    print(f"wrote {args.count} JPEGs ({total / 1e6:.0f} MB) under {args.folder}")


if __name__ == "__main__":
    main()
