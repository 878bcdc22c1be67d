"""The probe's PNG: accuracy per arm with 95% intervals, per-class differences, the sweep curve (matplotlib)."""

from __future__ import annotations

import os

from ..errors import MissingExtraError
from ..palette import NEUTRAL, arm_color
from .results import ProbeReport


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtraError("probe", "--plot") from None


def _errors(intervals) -> tuple[list[float], list[list[float]] | None]:
    """Means in % and error bars; no bars at all when there is no interval (one seed), not zero-width ones."""
    means = [100 * i.mean for i in intervals]
    if any(i.low is None or i.high is None for i in intervals):
        return means, None
    return means, [[100 * (i.mean - i.low) for i in intervals], [100 * (i.high - i.mean) for i in intervals]]


def plot_report(report: ProbeReport, path: str | os.PathLike) -> None:
    """Write the figure to `path` (PNG)."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = len(report.conditions) > 1
    condition = max(report.conditions, key=lambda c: c.rate or 0.0)  # the sweep's strongest duplication
    panels = 3 if sweep else 2
    figure, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2), constrained_layout=True)
    label = "" if condition.rate is None else f" (injection rate {condition.rate:g})"

    ax = axes[0]
    names = [a.arm for a in condition.arms]
    metrics = [("accuracy", "clean", 1.0)]
    if report.settings.adversarial:
        metrics.append(("robust_accuracy", "robust (PGD)", 0.45))
    offsets = [0.0] if len(metrics) == 1 else [-0.2, 0.2]
    for (metric, metric_label, alpha), offset in zip(metrics, offsets):
        means, errors = _errors([getattr(a, metric) for a in condition.arms])
        ax.bar(
            [i + offset for i in range(len(names))],
            means,
            width=0.8 / len(metrics),
            yerr=errors,
            capsize=4,
            color=[arm_color(n) for n in names],
            alpha=alpha,
            label=metric_label,
        )
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("test accuracy (%)")
    seeds = len(report.seeds)
    spread = "one seed: no interval, not tested" if seeds < 2 else f"95% CI over {seeds} seeds"
    ax.set_title(f"Accuracy per arm, {spread}{label}", fontsize=10)
    if len(metrics) > 1:
        ax.legend(fontsize=8)
    ax.set_ylim(0, 100)  # bars start at zero: a cut axis makes a 2-point difference look like a doubling
    ax.grid(axis="y", color=NEUTRAL["grid"])

    ax = axes[1]
    deltas = [d for d in condition.class_deltas if d.difference is not None]
    if deltas:
        deltas.sort(key=lambda d: (-d.duplication_rate, d.label))
        positions = range(len(deltas))
        ax.bar(
            positions,
            [100 * d.difference for d in deltas],
            color=arm_color("deduplicated"),
            label="deduplicated − as-is",
        )
        ax.axhline(0, color=NEUTRAL["muted"], linewidth=0.8)
        ax.set_xticks(positions, [d.label for d in deltas], rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("accuracy difference (points)")
        twin = ax.twinx()
        twin.plot(  # markers only: the classes are categories, and a line would suggest a trend between them
            positions,
            [100 * d.duplication_rate for d in deltas],
            "o",
            linestyle="none",
            color=arm_color("as-is"),
            label="duplication rate",
        )
        twin.set_ylabel("duplication rate in training (%)")
        ax.set_title("Per class: deduplicated − as-is, by duplication rate", fontsize=10)
    else:
        ax.text(
            0.5,
            0.5,
            "needs the as-is and deduplicated arms",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color=NEUTRAL["muted"],
        )
        ax.set_axis_off()

    if sweep:
        ax = axes[2]
        rates = [c.rate for c in report.conditions]
        for arm in names:
            intervals = [c.arm(arm).accuracy for c in report.conditions]
            means, errors = _errors(intervals)
            ax.errorbar(rates, means, yerr=errors, marker="o", capsize=3, color=arm_color(arm), label=arm)
        means = [100 * c.arm(arm).accuracy.mean for c in report.conditions for arm in names]
        ax.set_ylim(max(0.0, min(means) - 10), min(100.0, max(means) + 10))  # wide intervals must not hide the curve
        ax.set_xlabel(f"injection rate ({report.settings.inject})")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("Sweep: accuracy against the share of copies", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(color=NEUTRAL["grid"])
    figure.savefig(path, dpi=120)
    plt.close(figure)
