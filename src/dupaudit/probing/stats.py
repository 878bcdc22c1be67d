"""Intervals over seeds: t intervals of means and paired differences, log-scale intervals for times, power.

Accuracy differences can be negative, so they get Student's t interval. Times cannot: their interval is a t
interval of the logarithms, mapped back (a geometric mean times/divided by a factor), and two arms' times are
compared as a paired ratio on the same log scale, so no interval ever says "minus 117 seconds".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

POWER = 0.8  # the chance of detecting a true difference of the stated size that "you would need N seeds" promises
DETECT_POINTS = 1.0  # the difference, in accuracy points, that the power estimate speaks of
MAX_SEEDS = 100_000  # the power estimate says "about 100,000" rather than search further


@dataclass(frozen=True, slots=True)
class Interval:
    """A centre over n values with its two-sided confidence interval (None when n < 2).

    scale "linear": the arithmetic mean and a t interval; "log": the geometric mean and a t interval of the
    logarithms, mapped back, so low > 0 whenever every value is (times, and ratios of times).
    """

    mean: float
    low: float | None
    high: float | None
    n: int
    level: float = 0.95
    scale: str = "linear"

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (a significant difference)."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    @property
    def excludes_one(self) -> bool:
        """True when the whole interval lies on one side of 1 (a significant ratio)."""
        return self.low is not None and self.high is not None and (self.low > 1 or self.high < 1)


def t_quantile(level: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, dof))


def _sample_sd(values: Sequence[float]) -> float:
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def mean_interval(values: Sequence[float], level: float = 0.95, bounds: tuple[float, float] | None = None) -> Interval:
    """Mean ± t(level, n-1) · s / √n, with s the sample standard deviation, cut to `bounds` when given
    (an accuracy is within [0, 1] whatever two noisy seeds suggest)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = math.fsum(values) / n
    if n < 2:
        return Interval(mean, None, None, n, level)
    half = t_quantile(level, n - 1) * _sample_sd(values) / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return Interval(mean, low, high, n, level)


def log_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Geometric mean of positive values with exp(mean log ± t · s_log / √n): never below 0."""
    if not values:
        raise ValueError("no values")
    if any(v <= 0 for v in values):
        raise ValueError("a log interval needs positive values")
    logs = [math.log(v) for v in values]
    inner = mean_interval(logs, level)
    if inner.low is None or inner.high is None:
        return Interval(math.exp(inner.mean), None, None, inner.n, level, "log")
    return Interval(math.exp(inner.mean), math.exp(inner.low), math.exp(inner.high), inner.n, level, "log")


def paired_difference(
    treatment: Sequence[float],
    control: Sequence[float],
    level: float = 0.95,
    bounds: tuple[float, float] | None = None,
) -> Interval:
    """Interval of the mean of treatment[i] - control[i] (the same seed i in both), cut to `bounds` if given."""
    if len(treatment) != len(control):
        raise ValueError("paired values must have the same length")
    return mean_interval([a - b for a, b in zip(treatment, control)], level, bounds)


def paired_ratio(treatment: Sequence[float], control: Sequence[float], level: float = 0.95) -> Interval:
    """Interval of treatment[i] / control[i] on the log scale (the same seed i in both): for times."""
    if len(treatment) != len(control):
        raise ValueError("paired values must have the same length")
    return log_interval([a / b for a, b in zip(treatment, control)], level)


def seeds_to_detect(
    differences: Sequence[float], detect: float, level: float = 0.95, power: float = POWER
) -> int | None:
    """About how many paired seeds a two-sided paired t test needs to find a true difference of `detect`
    with the given power, from the seed-to-seed spread of the measured differences (None: under 2 values).

    The smallest n with (t(level, n-1) + t_power(n-1)) · s / √n <= detect, the usual normal-approximation
    formula with t quantiles so that small n are not promised too much; at least 2.
    """
    if len(differences) < 2:
        return None
    spread = _sample_sd(differences)
    if spread == 0:
        return 2
    import numpy as np
    from scipy.stats import t

    n = np.arange(2, MAX_SEEDS + 1)
    reach = (t.ppf(0.5 + level / 2, n - 1) + t.ppf(power, n - 1)) * spread / np.sqrt(n)
    enough = np.flatnonzero(reach <= detect)
    return int(n[enough[0]]) if len(enough) else MAX_SEEDS


def verdict(interval: Interval) -> str:
    """One word for a paired difference: "not tested" (one seed), "higher", "lower" or "no detectable difference"."""
    if interval.low is None or interval.high is None:
        return "not tested"
    if not interval.excludes_zero:
        return "no detectable difference"
    return "higher" if interval.mean > 0 else "lower"


def describe_difference(
    name: str,
    interval: Interval,
    needed_seeds: int | None = None,
    unit_scale: float = 100.0,
    unit: str = "points",
) -> str:
    """One plain sentence: the difference, its interval, the verdict, and how many seeds would detect 1 point."""
    mean = interval.mean * unit_scale
    if interval.low is None or interval.high is None:
        return f"{name}: {mean:+.2f} {unit} from one seed: not tested (an interval needs --seeds 2 or more)"
    low, high = interval.low * unit_scale, interval.high * unit_scale
    text = f"{name}: {mean:+.2f} {unit} (95% CI {low:+.2f} to {high:+.2f})"
    word = verdict(interval)
    if word != "no detectable difference":
        return text + (": significantly higher" if word == "higher" else ": significantly lower")
    text += f": no detectable difference with {interval.n} seeds"
    if needed_seeds is not None:
        text += f"; to detect {DETECT_POINTS:g} point you would need about {needed_seeds:,} seeds"
    return text


def describe_ratio(name: str, interval: Interval) -> str:
    """A ratio of times in words: "0.93x (95% CI 0.85x to 1.02x)"; one seed: no interval."""
    if interval.low is None or interval.high is None:
        return f"{name}: {interval.mean:.2f}x from one seed (no interval)"
    text = f"{name}: {interval.mean:.2f}x (95% CI {interval.low:.2f}x to {interval.high:.2f}x)"
    if not interval.excludes_one:
        return text + ": no detectable difference"
    return text + (": significantly longer" if interval.mean > 1 else ": significantly shorter")
