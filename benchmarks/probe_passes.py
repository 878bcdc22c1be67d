"""Accuracy of the probe's network at a fixed number of image-passes: how to spend a small budget.

At a fixed number of training image-passes (what a time budget buys on a given device), trains ProbeNet once per
variant "IMAGES,BATCH,WIDTH" on a stratified subset of CIFAR-10 train (IMAGES images, epochs = passes / IMAGES)
and tests it on a stratified 2,000 of CIFAR-10 test (TTA 0). One seed a variant: the standard error of one
accuracy on 2,000 test images is about 1.1 points. Accuracy does not depend on the machine's load; the seconds do.

    python benchmarks/probe_passes.py --passes 11800 3000,128,16 6000,128,16 12000,128,16 6000,64,16 12000,64,16
    python benchmarks/probe_passes.py --passes 35400 --size 16 12000,128,16     # 16x16 images
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help="IMAGES,BATCH,WIDTH")
    parser.add_argument("--passes", type=int, default=11800, help="training image-passes per variant")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from dupaudit.probing.data import load_images
    from dupaudit.probing.train import evaluate, train_model

    torch.set_num_threads(args.threads)
    classes = sorted(os.listdir(args.data / "train"))
    rng = random.Random(0)

    def pick(split: str, per_class: int) -> tuple[list[str], list[int]]:
        paths: list[str] = []
        labels: list[int] = []
        for index, name in enumerate(classes):
            files = sorted(str(p) for p in (args.data / split / name).glob("*.jpg"))
            rng.shuffle(files)
            paths += files[:per_class]
            labels += [index] * len(files[:per_class])
        return paths, labels

    largest = max(int(v.split(",")[0]) for v in args.variants)
    train_paths, train_labels = pick("train", -(-largest // len(classes)))
    test_paths, test_labels = pick("test", 200)
    x, y = torch.from_numpy(load_images(train_paths, args.size)), torch.tensor(train_labels)
    x_test, y_test = torch.from_numpy(load_images(test_paths, args.size)), torch.tensor(test_labels)
    mean, std = x.float().div(255).mean((0, 2, 3)), x.float().div(255).std((0, 2, 3))
    print(
        f"{args.passes:,} image-passes a variant, {args.size}px, {len(x_test):,} test images, torch {torch.__version__}"
    )
    for spec in args.variants:
        images, batch, width = (int(v) for v in spec.split(","))
        chosen = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))[:images]
        steps = max(1, args.passes // batch)
        started = time.perf_counter()
        outcome = train_model(
            x[chosen],
            y[chosen],
            num_classes=len(classes),
            mean=mean,
            std=std,
            seed=0,
            total_steps=steps,
            batch_size=batch,
            width=width,
        )
        accuracy = evaluate(outcome.model, x_test, y_test, tta_level=0)[0].mean()
        print(
            f"images {images:,} batch {batch} width {width}: {steps} steps, {steps * batch / images:.1f} epochs, "
            f"accuracy {accuracy:.3f}, {time.perf_counter() - started:.1f} s (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
