"""Intervals over seeds: t-based 95% confidence intervals of a mean and of paired differences."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean over n values with its two-sided confidence interval (None when n < 2)."""

    mean: float
    low: float | None
    high: float | None
    n: int
    level: float = 0.95

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (a significant difference)."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def t_quantile(level: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, dof))


def mean_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean ± t(level, n-1) · s / √n, with s the sample standard deviation."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = math.fsum(values) / n
    if n < 2:
        return Interval(mean, None, None, n, level)
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_quantile(level, n - 1) * math.sqrt(variance / n)
    return Interval(mean, mean - half, mean + half, n, level)


def paired_difference(treatment: Sequence[float], control: Sequence[float], level: float = 0.95) -> Interval:
    """Interval of the mean of treatment[i] - control[i] (the same seed i in both)."""
    if len(treatment) != len(control):
        raise ValueError("paired values must have the same length")
    return mean_interval([a - b for a, b in zip(treatment, control)], level)


def describe_difference(name: str, interval: Interval, unit_scale: float = 100.0, unit: str = "points") -> str:
    """One plain sentence: the difference, its interval, and whether it is significant."""
    mean = interval.mean * unit_scale
    if interval.low is None or interval.high is None:
        return f"{name}: {mean:+.2f} {unit} (one seed: no interval; use --seeds 3 or more)"
    low, high = interval.low * unit_scale, interval.high * unit_scale
    text = f"{name}: {mean:+.2f} {unit} (95% CI {low:+.2f} to {high:+.2f})"
    if not interval.excludes_zero:
        return text + ": no significant difference"
    return text + (": significantly higher" if mean > 0 else ": significantly lower")
