"""`--budget`: choose the training subset, width, epochs and evaluation so that every run fits a time budget.

Pure arithmetic over measured speeds (calibrate.py measures them; tests pass made-up ones): no torch here.
The plan covers every arm x seed x injection rate, assumes each run trains on the as-is arm's images (the other
arms are smaller, and identical runs are reused, so the real time is at most the plan's), and keeps a safety share
of the time left for what it cannot measure. Explicit flags are never changed; when they alone overrun the budget,
the plan says so (fits=False) and they still win.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import InputError
from .config import HYPERPARAMETERS, TTA_VIEWS, batch_size_for, total_steps_for

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)?", re.IGNORECASE)
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Seconds in "90s", "5m", "1h", "1h30m" or a plain number of seconds; an InputError otherwise."""
    cleaned = text.strip().replace(" ", "")
    position, total = 0, 0.0
    while position < len(cleaned):
        match = _DURATION.match(cleaned, position)
        if not match or match.end() == position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
        position = match.end()
    if not cleaned or position != len(cleaned) or total <= 0:
        raise InputError(f"--budget {text!r}: give a positive duration such as 90s, 5m, 1h or 1h30m")
    return total


@dataclass(frozen=True, slots=True)
class DeviceSpeed:
    """What calibration measured for one network width on this device."""

    width: int
    train_images_per_second: float  # training images per second (one image-pass)
    eval_images_per_second: float  # test images per second with one view (and the PGD check, when adversarial)
    run_seconds: float  # fixed cost of one run: building the network, the whitening, the first step's set-up


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    """What the planner chose, the measurements it used, and why, in words."""

    budget_seconds: float
    spent_seconds: float  # before training: scan, listing, calibration
    runs: int  # arms x seeds x injection rates
    width: int
    epochs: float
    train_images: int  # the as-is training subset (the stratified --max-train)
    test_images: int
    tta_level: int
    batch_size: int
    predicted_run_seconds: float  # one run, training and testing
    predicted_seconds: float  # the whole probe: spent + load + runs x run
    fits: bool  # False only when explicit flags (or the smallest useful probe) overrun the budget
    speeds: tuple[DeviceSpeed, ...]
    reasons: tuple[str, ...]
    chosen: tuple[str, ...] = field(default=())  # the settings the plan set (the others were explicit)

    def lines(self) -> list[str]:
        """The plan as printed under the probe's header."""
        head = (
            f"budget {format_duration(self.budget_seconds)}: {self.runs} runs of about "
            f"{self.predicted_run_seconds:.0f} s, {self.predicted_seconds:.0f} s predicted in all"
            + ("" if self.fits else " (OVER the budget)")
        )
        return [head, *(f"  {reason}" for reason in self.reasons)]


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class _Candidate:
    width: int
    epochs: float
    train_images: int
    test_images: int
    tta_level: int
    batch_size: int
    run_seconds: float
    all_images: bool  # trains on every available image for at least the target epochs


def _run_seconds(
    speed: DeviceSpeed, images: int, epochs: float, batch: int, test: int, tta: int, eval_views: Callable[[int], int]
) -> float:
    """One run as the training loop will do it: full batches, steps rounded up, then every test view."""
    batch = min(batch, images)
    steps = total_steps_for(images, batch, epochs)
    train = steps * batch / speed.train_images_per_second
    return speed.run_seconds + train + test * eval_views(tta) / speed.eval_images_per_second


def plan_budget(
    budget_seconds: float,
    elapsed: Callable[[], float],
    *,
    runs: int,
    train_available: int,
    test_available: int,
    measure: Callable[[int], DeviceSpeed],
    fixed: dict[str, object] | None = None,
    load_seconds_per_image: float = 0.0,
    adversarial: bool = False,
) -> BudgetPlan:
    """The plan for `runs` runs in what is left of the budget; `measure(width)` calibrates one width.

    elapsed(): the seconds spent so far (scan, listing, calibration), asked again after every measurement.

    fixed: the explicit settings among width, epochs, max_train, max_test, tta_level, batch_size (never changed).
    Rules, in order: testing takes at most eval_share of a run (TTA dropped first, then test images, down to
    min_test_images); training gets the rest; at one width, all images for up to the recipe's epochs when they
    fit, else target_epochs over as many images as fit (at least min_train_images, with fewer epochs then);
    widths are tried narrowest first and the widest that still trains on every image for target_epochs wins,
    else the narrowest (on a slow device more images teach more than a wider network).
    """
    hp = HYPERPARAMETERS["budget"]
    fixed = dict(fixed or {})
    max_epochs = HYPERPARAMETERS["opt"]["epochs"]
    tta_default = HYPERPARAMETERS["adversarial" if adversarial else "net"]["tta_level"]
    levels = [int(fixed["tta_level"])] if "tta_level" in fixed else sorted({0, tta_default}, reverse=True)

    def views(level: int) -> int:
        return TTA_VIEWS[level]

    train_pool = min(train_available, int(fixed["max_train"])) if "max_train" in fixed else train_available
    test_pool = min(test_available, int(fixed["max_test"])) if "max_test" in fixed else test_available
    loading = load_seconds_per_image * (train_pool + test_pool)  # an upper bound: a plan may load fewer

    def time_per_run(spent: float) -> float:
        return max(0.0, ((budget_seconds - spent) * hp["safety"] - loading) / max(1, runs))

    def candidate(speed: DeviceSpeed, per_run: float) -> _Candidate:
        # Testing first: the levels asked for (or TTA, then none), then fewer test images if still too slow.
        test = test_pool if "max_test" in fixed else min(test_pool, hp["test_images"])
        eval_limit = hp["eval_share"] * per_run
        level = levels[-1]
        for option in levels:
            if test * views(option) / speed.eval_images_per_second <= eval_limit:
                level = option
                break
        if "max_test" not in fixed:
            affordable = int(eval_limit * speed.eval_images_per_second / views(level))
            test = max(min(test_pool, hp["min_test_images"]), min(test, affordable))
        eval_seconds = test * views(level) / speed.eval_images_per_second
        passes = max(0.0, (per_run - eval_seconds - speed.run_seconds) * speed.train_images_per_second)
        target = hp["target_epochs"]
        least_images = min(train_pool, hp["min_train_images"])  # below these floors a probe teaches nothing:
        least_epochs = min(hp["min_epochs"], float(fixed.get("epochs", max_epochs)))  # overrun instead
        if "epochs" in fixed:
            epochs = float(fixed["epochs"])
            images = train_pool if "max_train" in fixed else int(passes / epochs)
        elif "max_train" in fixed:
            images = train_pool
            epochs = min(max_epochs, passes / max(1, images))
        elif passes >= target * train_pool:
            images, epochs = train_pool, min(max_epochs, passes / train_pool)
        else:
            images, epochs = int(passes / target), target
            if images < least_images:
                images = least_images
                epochs = passes / max(1, images)
        if "max_train" not in fixed:
            images = max(least_images, min(train_pool, images))
        requested_batch = int(fixed["batch_size"]) if "batch_size" in fixed else None
        batch = batch_size_for(images, requested_batch)
        if "epochs" not in fixed:
            epochs = max(least_epochs, math.floor(epochs * 10) / 10)
            # steps round up and batches are full: step the epochs down until the run really fits
            while epochs > least_epochs and _run_seconds(speed, images, epochs, batch, test, level, views) > per_run:
                epochs = max(least_epochs, round(epochs - 0.1, 1))
        if "max_train" not in fixed:
            while images > least_images and _run_seconds(speed, images, epochs, batch, test, level, views) > per_run:
                images = max(least_images, int(images * 0.95))
                batch = batch_size_for(images, requested_batch)
        seconds = _run_seconds(speed, images, epochs, batch, test, level, views)
        return _Candidate(
            speed.width,
            epochs,
            images,
            test,
            level,
            batch,
            seconds,
            images >= train_pool and epochs >= min(target, max_epochs),
        )

    widths: Sequence[int] = [int(fixed["width"])] if "width" in fixed else hp["widths"]
    speeds: list[DeviceSpeed] = []
    candidates: list[_Candidate] = []
    for width in widths:
        speed = measure(width)
        speeds.append(speed)
        option = candidate(speed, time_per_run(elapsed()))
        candidates.append(option)
        if not option.all_images:
            break  # a wider network is slower: it would afford fewer images still
    fitting = [c for c in candidates if c.all_images]
    spent_seconds = elapsed()
    per_run = time_per_run(spent_seconds)
    best = candidate(next(s for s in speeds if s.width == (fitting[-1] if fitting else candidates[0]).width), per_run)
    predicted = spent_seconds + loading + runs * best.run_seconds
    fits = predicted <= budget_seconds and best.epochs > 0

    reasons = []
    chosen_speed = next(s for s in speeds if s.width == best.width)
    measured = ", ".join(
        f"width {s.width}: {s.train_images_per_second:,.0f} training images/s, "
        f"{s.eval_images_per_second:,.0f} test views/s"
        for s in speeds
    )
    reasons.append(f"measured on this device: {measured}")
    reasons.append(
        f"{budget_seconds - spent_seconds:.0f} s left after {spent_seconds:.0f} s of scanning and calibration; planned "
        f"{hp['safety']:.0%} of it: {per_run:.1f} s per run for {runs} runs"
    )
    if "width" in fixed:
        reasons.append(f"width {best.width}: as given")
    elif fitting:
        reasons.append(
            f"width {best.width}: the widest that still trains on all {train_pool:,} images for "
            f"{hp['target_epochs']:g} epochs or more"
        )
    else:
        reasons.append(
            f"width {best.width}: the narrowest; even it cannot train on all {train_pool:,} images for "
            f"{hp['target_epochs']:g} epochs, and more images teach more than a wider network"
        )
    passes = best.epochs * best.train_images
    source = "as given" if "max_train" in fixed or "epochs" in fixed else "chosen"
    reasons.append(
        f"{best.train_images:,} of {train_available:,} training images x {best.epochs:g} "
        f"epoch{'' if best.epochs == 1 else 's'} "
        f"(about {passes:,.0f} image-passes per run at "
        f"{chosen_speed.train_images_per_second:,.0f}/s; {source})"
    )
    reasons.append(
        f"testing: {best.test_images:,} of {test_available:,} test images, TTA level {best.tta_level} "
        f"({views(best.tta_level)} view{'s' if views(best.tta_level) > 1 else ''}"
        + (
            "; as given)"
            if "max_test" in fixed or "tta_level" in fixed
            else f"; at most {hp['eval_share']:.0%} of a run)"
        )
    )
    if not fits:
        reasons.append(
            "the explicit settings (or the smallest useful probe) need more than the budget: they are kept, "
            "and the probe will overrun"
        )
    chosen = tuple(name for name in ("width", "epochs", "max_train", "max_test", "tta_level") if name not in fixed)
    return BudgetPlan(
        budget_seconds=budget_seconds,
        spent_seconds=spent_seconds,
        runs=runs,
        width=best.width,
        epochs=best.epochs,
        train_images=best.train_images,
        test_images=best.test_images,
        tta_level=best.tta_level,
        batch_size=best.batch_size,
        predicted_run_seconds=best.run_seconds,
        predicted_seconds=predicted,
        fits=fits,
        speeds=tuple(speeds),
        reasons=tuple(reasons),
        chosen=chosen,
    )
