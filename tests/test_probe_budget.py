"""The probe's time budget planner and its honest statistics: pure arithmetic, no torch, no training.

The planner gets a mocked device speed; nothing here measures or asserts a time.
"""

from __future__ import annotations

import math
import random

import pytest

from dupaudit.errors import InputError
from dupaudit.probing.budget import DeviceSpeed, parse_duration, plan_budget
from dupaudit.probing.config import HYPERPARAMETERS, TTA_VIEWS, batch_size_for, total_steps_for
from dupaudit.probing.stats import (
    describe_difference,
    describe_ratio,
    log_interval,
    mean_interval,
    paired_difference,
    paired_ratio,
    seeds_to_detect,
    verdict,
)


def mocked(train_at_16: float, eval_at_16: float, run_seconds: float = 0.5):
    """A device whose speed falls with the square of the width (the wide layers dominate), and a call log."""
    calls: list[int] = []

    def measure(width: int) -> DeviceSpeed:
        calls.append(width)
        factor = (16 / width) ** 2
        return DeviceSpeed(width, train_at_16 * factor, eval_at_16 * factor, run_seconds)

    return measure, calls


def replay(plan, speed: DeviceSpeed) -> float:
    """The plan's run time recomputed from the training loop's own rules (full batches, steps rounded up)."""
    batch = min(plan.batch_size, plan.train_images)
    steps = total_steps_for(plan.train_images, batch, plan.epochs)
    train = steps * batch / speed.train_images_per_second
    return speed.run_seconds + train + plan.test_images * TTA_VIEWS[plan.tta_level] / speed.eval_images_per_second


def test_duration_parsing():
    assert parse_duration("90s") == 90 and parse_duration("5m") == 300 and parse_duration("1h") == 3600
    assert parse_duration("1h30m") == 5400 and parse_duration("45") == 45 and parse_duration("2.5m") == 150
    for bad in ("", "5x", "m", "-5m", "0s", "five minutes"):
        with pytest.raises(InputError, match="--budget"):
            parse_duration(bad)


def test_the_planner_never_plans_past_the_budget_on_a_mocked_device():
    rng = random.Random(0)
    for _ in range(300):
        budget = rng.choice([60, 90, 300, 600, 1800, 3600, 14400])
        spent = rng.uniform(0, 0.3) * budget
        measure, _ = mocked(rng.uniform(20, 5000), rng.uniform(50, 20000), rng.uniform(0.05, 3))
        runs = rng.choice([1, 3, 6, 9, 15])
        plan = plan_budget(
            budget,
            lambda: spent,
            runs=runs,
            train_available=rng.choice([500, 5000, 50000]),
            test_available=rng.choice([300, 10000]),
            measure=measure,
            load_seconds_per_image=rng.choice([0, 1e-5, 1e-4]),
        )
        speed = next(s for s in plan.speeds if s.width == plan.width)
        run = replay(plan, speed)
        assert run == pytest.approx(plan.predicted_run_seconds)
        if plan.fits:
            assert plan.predicted_seconds <= budget
            assert spent + runs * run <= budget
        else:  # only when even the smallest useful probe cannot fit: then the plan says so
            assert plan.predicted_seconds > budget or plan.epochs <= 0
            assert any("overrun" in reason for reason in plan.reasons)


def test_the_plan_on_this_issue_s_numbers_reports_what_it_chose_and_why():
    # issue 19: on 2 cores the network trains at about 450 images/s at width 16 and 110 at width 64
    measure, calls = mocked(450, 1300, 0.3)  # testing: forward passes only, about 3x faster than training
    plan = plan_budget(300, lambda: 15.0, runs=9, train_available=50_000, test_available=10_000, measure=measure)
    assert plan.fits and plan.predicted_seconds <= 300
    assert plan.width == 16 and calls == [16]  # a wider net would afford fewer images still: not calibrated
    assert 1000 <= plan.train_images < 50_000 and plan.epochs == pytest.approx(4.0)
    assert plan.tta_level == 0  # six test views would cost more than testing may take
    assert plan.test_images <= 2000
    assert plan.batch_size == batch_size_for(plan.train_images)
    text = "\n".join(plan.lines())
    assert "width 16" in text and f"{plan.train_images:,} of 50,000 training images" in text
    assert "450 training images/s" in text and "9 runs" in text
    assert set(plan.chosen) == {"width", "epochs", "max_train", "max_test", "tta_level"}


def test_a_large_budget_on_a_fast_device_keeps_the_full_recipe():
    measure, calls = mocked(200_000, 1_000_000, 0.5)
    plan = plan_budget(3600, lambda: 5.0, runs=9, train_available=50_000, test_available=10_000, measure=measure)
    assert plan.width == 64 and calls == list(HYPERPARAMETERS["budget"]["widths"])
    assert plan.train_images == 50_000 and plan.epochs == HYPERPARAMETERS["opt"]["epochs"]
    assert plan.tta_level == HYPERPARAMETERS["net"]["tta_level"] and plan.test_images == 2000


def test_explicit_flags_win_and_an_overrun_is_reported():
    measure, calls = mocked(450, 3000, 0.3)
    fixed = {"width": 64, "epochs": 10.0, "max_train": 50_000}
    plan = plan_budget(
        300, lambda: 10.0, runs=9, train_available=50_000, test_available=10_000, measure=measure, fixed=fixed
    )
    assert (plan.width, plan.epochs, plan.train_images) == (64, 10.0, 50_000) and calls == [64]
    assert not plan.fits and plan.predicted_seconds > 300
    assert any("overrun" in reason for reason in plan.reasons)
    assert "width" not in plan.chosen and "epochs" not in plan.chosen and "max_test" in plan.chosen

    plan = plan_budget(
        300,
        lambda: 10.0,
        runs=9,
        train_available=50_000,
        test_available=10_000,
        measure=mocked(450, 3000)[0],
        fixed={"epochs": 2.0, "tta_level": 2},
    )
    assert plan.epochs == 2.0 and plan.tta_level == 2 and plan.fits
    assert plan.train_images > 1000  # the images are what is left to choose


def test_calibration_time_counts_against_the_budget():
    clock = {"spent": 20.0}

    def measure(width: int) -> DeviceSpeed:
        clock["spent"] += 100.0  # a slow calibration
        return DeviceSpeed(width, 450 * (16 / width) ** 2, 3000, 0.3)

    plan = plan_budget(
        300, lambda: clock["spent"], runs=9, train_available=50_000, test_available=10_000, measure=measure
    )
    assert plan.spent_seconds == 120.0 and plan.predicted_seconds <= 300


# --- statistics ---------------------------------------------------------------------------------------------------


def test_time_intervals_are_never_negative():
    # the issue's case: two noisy seeds whose t interval of the mean reached -117 s
    times = [40.0, 170.0]
    assert mean_interval(times).low < 0  # what a plain t interval says: impossible for a time
    interval = log_interval(times)
    assert interval.scale == "log" and 0 < interval.low < interval.mean < interval.high
    assert interval.mean == pytest.approx(math.sqrt(40 * 170))  # the geometric mean
    rng = random.Random(1)
    for _ in range(200):
        values = [rng.lognormvariate(3, rng.uniform(0.01, 2)) for _ in range(rng.randint(2, 6))]
        low = log_interval(values).low
        assert low is not None and low > 0
        ratio = paired_ratio(values, [v * rng.uniform(0.5, 2) for v in values])
        assert ratio.low > 0 and ratio.high > 0
    with pytest.raises(ValueError):
        log_interval([1.0, 0.0])


def test_a_paired_ratio_of_times_in_words():
    faster = paired_ratio([9.0, 9.2, 8.8], [10.0, 10.1, 9.9])
    assert faster.high < 1 and "significantly shorter" in describe_ratio("time", faster)
    same = paired_ratio([10.0, 12.0, 9.0], [11.0, 10.0, 10.5])
    assert same.low < 1 < same.high and "no detectable difference" in describe_ratio("time", same)
    one = paired_ratio([9.0], [10.0])
    assert one.low is None and "no interval" in describe_ratio("time", one)


def test_one_seed_is_not_tested_and_no_difference_comes_with_a_power_estimate():
    single = paired_difference([0.5], [0.45])
    assert verdict(single) == "not tested" and "not tested" in describe_difference("d", single)
    assert seeds_to_detect([0.05], 0.01) is None

    differences = [0.02, -0.01, 0.015, -0.02]  # a spread of about 2 points between seeds
    interval = paired_difference([0.6 + d for d in differences], [0.6] * 4)
    assert verdict(interval) == "no detectable difference"
    needed = seeds_to_detect(differences, 0.01)
    # normal approximation: ((1.96 + 0.84) * s / 0.01)^2, a little more with t quantiles
    s = mean_interval(differences).half_width  # only to get s back below
    sd = math.sqrt(sum((d - sum(differences) / 4) ** 2 for d in differences) / 3)
    assert s is not None and needed >= math.ceil(((1.96 + 0.8416) * sd / 0.01) ** 2)
    assert needed <= math.ceil(((1.96 + 0.8416) * sd / 0.01) ** 2) + 4
    text = describe_difference("d", interval, needed)
    assert f"to detect 1 point you would need about {needed:,} seeds" in text
    # a smaller spread needs fewer seeds
    assert seeds_to_detect([d / 4 for d in differences], 0.01) < needed
    assert verdict(paired_difference([0.7, 0.71, 0.72], [0.6, 0.6, 0.61])) == "higher"
