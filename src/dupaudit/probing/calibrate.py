"""Calibration for `--budget`: how fast this device trains and tests the probe network at one width.

Imports torch: load lazily. Synthetic images of the probe's size (speed does not depend on their content), the
real training loop and evaluation: a 1-step run pays the one-off costs, then a run of a few steps is timed.
"""

from __future__ import annotations

import time

import torch

from .budget import DeviceSpeed
from .config import HYPERPARAMETERS
from .train import AttackSpec, evaluate, train_model


def measure_speed(
    device: torch.device,
    *,
    width: int,
    size: int,
    num_classes: int,
    adversarial: AttackSpec | None = None,
    robust: AttackSpec | None = None,
) -> DeviceSpeed:
    """Time the real training loop and evaluation (one test view) at `width` on `device`."""
    hp = HYPERPARAMETERS["budget"]
    batch, steps = hp["calibration_batch"]["cuda" if device.type == "cuda" else "cpu"], hp["calibration_steps"]
    generator = torch.Generator().manual_seed(0)
    count = batch * steps
    images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator).to(device)
    labels = (torch.arange(count) % num_classes).to(device)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)

    def timed(total_steps: int):
        started = time.perf_counter()
        outcome = train_model(
            images,
            labels,
            num_classes=num_classes,
            mean=mean,
            std=std,
            seed=0,
            total_steps=total_steps,
            batch_size=batch,
            width=width,
            adversarial=adversarial,
        )
        return outcome, time.perf_counter() - started

    timed(1)  # one-off costs of this width (kernels, allocator): not a run's cost
    # A run's set-up (network, whitening) is counted as training time: a little pessimistic, and one timed
    # run fewer (calibration is paid out of the budget, and on a loaded 2-core machine a run costs seconds).
    outcome, seconds = timed(steps)
    per_step = max(seconds / steps, 1e-6)
    test = images[: min(count, hp["calibration_test_images"])]
    started = time.perf_counter()
    evaluate(outcome.model, test, labels[: len(test)], tta_level=0, robust=robust)
    eval_seconds = max(time.perf_counter() - started, 1e-6)
    return DeviceSpeed(width, batch / per_step, len(test) / eval_seconds, 0.0)
