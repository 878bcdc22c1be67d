"""The probe's CPU training speed against a plain PyTorch loop on the same network, measured in one run.

The plain loop is the floor any training code pays: the same ProbeNet and batch, float images already in memory,
forward, loss, backward, SGD step, nothing else (no augmentation, no schedule, no EMA). dupaudit's loop adds
uint8-to-float conversion, translate + flip augmentation, the learning-rate schedule and the weight EMA.
Both are timed over the same number of steps after a warm-up; the ratio is what the probe's extras cost.
Also: the same comparison with channels-last memory format, and testing speed per TTA level.

    python benchmarks/probe_cpu_speed.py                 # widths 16 and 32, batch 128, 8 steps, all cores
    python benchmarks/probe_cpu_speed.py --threads 1 --widths 16 --steps 4
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="16,32")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from dupaudit.probing.experiment import usable_cores
    from dupaudit.probing.net import ProbeNet
    from dupaudit.probing.train import evaluate, train_model

    torch.set_num_threads(args.threads or usable_cores())
    count = args.batch * args.steps
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(count) % 10
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    load = os.getloadavg()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.steps} steps, "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (on {os.cpu_count()} CPUs)"
    )

    def plain(width: int, channels_last: bool) -> float:
        model = ProbeNet(10, mean, std, width)
        x_all = images.float() / 255
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        model.train()

        def step(first: int) -> None:
            x = x_all[first : first + args.batch]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), labels[first : first + args.batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step(0)  # warm-up
        started = time.perf_counter()
        for first in range(0, count, args.batch):
            step(first)
        return count / (time.perf_counter() - started)

    def probe(width: int) -> float:
        def run(steps: int) -> float:
            started = time.perf_counter()
            train_model(
                images,
                labels,
                num_classes=10,
                mean=mean,
                std=std,
                seed=0,
                total_steps=steps,
                batch_size=args.batch,
                width=width,
            )
            return time.perf_counter() - started

        run(1)  # warm-up
        one, many = run(1), run(args.steps)
        return (args.steps - 1) * args.batch / max(many - one, 1e-9)  # per-run set-up excluded, as in plain

    for width in (int(w) for w in args.widths.split(",")):
        floor = plain(width, channels_last=False)
        floor_cl = plain(width, channels_last=True)
        ours = probe(width)
        model = train_model(
            images, labels, num_classes=10, mean=mean, std=std, seed=0, total_steps=1, batch_size=8, width=width
        ).model
        tests = []
        for level in (0, 1, 2):
            started = time.perf_counter()
            evaluate(model, images[:500], labels[:500], tta_level=level)
            tests.append(500 / (time.perf_counter() - started))
        print(
            f"width {width}: plain loop {floor:,.0f} img/s (channels-last {floor_cl:,.0f}, "
            f"{floor_cl / floor:.2f}x); dupaudit train_model {ours:,.0f} img/s = {ours / floor:.2f}x the plain loop; "
            f"testing {tests[0]:,.0f} / {tests[1]:,.0f} / {tests[2]:,.0f} img/s at TTA 0 / 1 / 2",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
