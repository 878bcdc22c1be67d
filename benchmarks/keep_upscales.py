"""How often the keep rule keeps the original of a planted upscale (and never a downscale over its original).

    python benchmarks/keep_upscales.py [--formats ../shared/data/formats] [--out /tmp/keep-upscales]

Originals: the 10 photos of the formats corpus (base_images, 640x480) and scikit-image's sample photos (when
installed). For each original, copies are planted: upscales by 1.5x, 2x, 3x and to 4000x3000 (an aspect change)
with bilinear, bicubic and Lanczos filters, saved as JPEG 90 and PNG; and downscales to 1/1.5 and 1/2 (JPEG 90).
Each {original, copy} pair is a group; the script prints, per kind of copy, how often the original is kept by
the old rule (highest resolution, then largest file) and by keep.choose_keeper, and the time the rule took.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dupaudit.engine.keep import Candidate, choose_keeper  # noqa: E402

FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def originals(formats: Path) -> list[tuple[str, Image.Image]]:
    found = [(p.stem, Image.open(p).convert("RGB")) for p in sorted((formats / "base_images").glob("*.jpg"))]
    try:
        import skimage.data as samples

        for name in ("astronaut", "camera", "coffee", "chelsea", "rocket", "immunohistochemistry", "coins"):
            found.append((name, Image.fromarray(getattr(samples, name)()).convert("RGB")))
    except ImportError:
        print("scikit-image not installed: the formats corpus only", file=sys.stderr)
    return found


def candidate(path: Path, root: Path) -> Candidate:
    with Image.open(path) as image:
        width, height = image.size
    return Candidate(path.relative_to(root).as_posix(), str(path), width, height, os.path.getsize(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/formats")
    parser.add_argument("--out", type=Path, default=Path("/tmp/keep-upscales"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    kept = defaultdict(lambda: [0, 0, 0])  # kind -> [groups, original kept (old rule), original kept (new rule)]
    elapsed = 0.0
    for name, image in originals(args.formats):
        folder = args.out / name
        folder.mkdir(exist_ok=True)
        original = folder / "original.jpg"
        image.save(original, quality=95)
        copies = []
        for factor in (1.5, 2, 3, "4000x3000"):
            size = (
                (4000, 3000) if factor == "4000x3000" else (round(image.width * factor), round(image.height * factor))
            )
            for filter_name, method in FILTERS.items():
                big = image.resize(size, method)
                for ext, options in ((".jpg", {"quality": 90}), (".png", {})):
                    path = folder / f"up_{factor}_{filter_name}{ext}"
                    big.save(path, **options)
                    copies.append((f"upscale {factor}x {ext[1:]}", path))
        for factor in (1.5, 2):
            path = folder / f"down_{factor}.jpg"
            image.resize((round(image.width / factor), round(image.height / factor)), Image.LANCZOS).save(
                path, quality=90
            )
            copies.append((f"downscale 1/{factor}", path))
        for kind, path in copies:
            members = [candidate(original, args.out), candidate(path, args.out)]
            old = min(range(2), key=lambda i: (-(members[i].width * members[i].height), -members[i].size, i))
            started = time.perf_counter()
            new = choose_keeper(members)
            elapsed += time.perf_counter() - started
            counts = kept[kind]
            counts[0] += 1
            counts[1] += old == 0
            counts[2] += new == 0
    print(f"{'copy':28} {'groups':>6} {'original kept: old rule':>24} {'new rule':>9}")
    for kind in sorted(kept, key=lambda k: (not k.startswith("upscale"), k)):
        groups, old, new = kept[kind]
        print(f"{kind:28} {groups:6d} {old:18d} ({old / groups:4.0%}) {new:4d} ({new / groups:4.0%})")
    total = sum(c[0] for c in kept.values())
    print(f"keep rule time: {elapsed:.2f} s for {total} groups ({1000 * elapsed / total:.0f} ms a group)")


if __name__ == "__main__":
    main()
