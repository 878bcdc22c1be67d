"""Reproduce the experiments of Aghabagherloo et al. on CIFAR-10 with `dupaudit probe`'s injection.

Injected duplicates make `--rate` (default 30%) of the training set redundant, either uniformly (every class the
same share) or non-uniformly (the same number of copies, all in half of the classes). Each is compared with the
clean training set over paired seeds, under standard training and under PGD adversarial training.

The paper's claims, checked against what this run measures (the tool measures; it does not have to confirm):
  1. standard training: non-uniform duplication lowers clean accuracy (95% interval of the difference below 0);
  2. standard training: uniform duplication gives no significant gain (interval not above 0);
  3. PGD training: both kinds of duplication lower accuracy, clean and robust (intervals below 0).

Defaults are the full GPU experiment (50,000 training images, 10 epochs, width 64). With --budget the whole table
fits a time budget: each training mode gets its share (BUDGET_SHARES), the probe's planner (--budget of
`dupaudit probe`) calibrates the device and chooses training subset, width, epochs and testing for the clean and
uniform arms, and the non-uniform arm reuses that choice, so every row is trained alike. Explicit
--train-images/--test-images/--epochs/--width still win. Standard training then uses 5 seeds (the paper's table needs
them to resolve a few points), PGD as many as --seeds (3).
    python benchmarks/paper_repro.py --budget 60m --out benchmarks/results/paper_repro_budget
A fixed reduced version (recorded in docs/probe.md, about 10 minutes on 2 shared cores):
    python benchmarks/paper_repro.py --train-images 1000 --test-images 500 --epochs 3 --width 32 \\
        --pgd-steps 2 --threads 1 --out benchmarks/results/paper_repro_cpu
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from dupaudit.probing import ProbeSettings, paired_difference, run_probe  # noqa: E402
from dupaudit.probing.experiment import ACCURACY_BOUNDS, DIFFERENCE_BOUNDS  # noqa: E402
from dupaudit.probing.results import to_dict  # noqa: E402
from dupaudit.probing.stats import mean_interval  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10"
# With --budget: the share of it each training mode gets. PGD costs about (1 + PGD steps) times as much per image,
# so an equal share buys it a smaller scale; the standard table is the one the paper's main claims rest on.
BUDGET_SHARES = {"standard": 0.5, "pgd": 0.5}
BUDGET_STANDARD_SEEDS = 5


def run_mode(args, adversarial: str | None, budget_seconds: float | None = None) -> dict:
    """Clean, uniform and non-uniform injection under one training mode; per-seed accuracies of each."""
    seeds = args.seeds
    if budget_seconds is not None and not adversarial and args.seeds_given is None:
        seeds = BUDGET_STANDARD_SEEDS
    given = {
        "epochs": args.epochs,
        "width": args.width,
        "max_train": args.train_images,
        "max_test": args.test_images,
    }
    common = dict(
        seeds=seeds,
        device=args.device,
        adversarial=adversarial,
        pgd_steps=args.pgd_steps,
        match_steps=args.match_steps,
        threads=args.threads,
        **{name: value for name, value in given.items() if value is not None},
    )
    if budget_seconds is None:
        common.setdefault("epochs", 10.0)
        common.setdefault("width", 64)
    # as-is = the injected training set; deduplicated = exactly the clean set (copies join their source's group).
    # With a budget, this call gets 2/3 of the mode's share (2 of its 3 arm-runs per seed) and plans the scale.
    uniform = run_probe(
        args.data,
        cache_path=args.cache,
        settings=ProbeSettings(
            arms=("as-is", "deduplicated"),
            inject="uniform",
            rates=(args.rate,),
            budget_seconds=budget_seconds * 2 / 3 if budget_seconds is not None else None,
            explicit=tuple(name for name, value in given.items() if value is not None),
            **common,
        ),
    )
    planned = uniform.settings
    same_scale = dict(
        common,
        epochs=planned.epochs,
        width=planned.width,
        max_train=planned.max_train,
        max_test=planned.max_test,
        tta_level=planned.tta_level,
    )
    # the clean arm is the same training set with the same seeds, so only the injected arm runs again
    nonuniform = run_probe(
        args.data,
        cache_path=args.cache,
        settings=ProbeSettings(arms=("as-is",), inject="nonuniform", rates=(args.rate,), **same_scale),
    )
    u, n = uniform.conditions[0], nonuniform.conditions[0]

    def per_seed(condition, arm: str, metric: str) -> list[float]:
        return [getattr(r, metric) for r in sorted(condition.runs, key=lambda r: r.seed) if r.arm == arm]

    metric_names = ("accuracy", "robust_accuracy") if adversarial else ("accuracy",)
    rows = {}
    for name, condition, arm in (("clean", u, "deduplicated"), ("uniform", u, "as-is"), ("non-uniform", n, "as-is")):
        rows[name] = {m: per_seed(condition, arm, m) for m in metric_names}
        rows[name]["train_images"] = condition.arm(arm).train_images
        rows[name]["train_seconds"] = [r.train_seconds for r in condition.runs if r.arm == arm]
    return {
        "rows": rows,
        "reports": [to_dict(uniform), to_dict(nonuniform)],
        "nonuniform_classes": _injected_classes(nonuniform),
        "scale": {
            "seeds": seeds,
            "width": planned.width,
            "epochs": planned.epochs,
            "train_images": uniform.data.train_images,
            "test_images": uniform.data.test_images,
            "tta_level": planned.tta_level,
            "budget_plan": uniform.budget.lines() if uniform.budget is not None else None,
        },
    }


def _injected_classes(report) -> list[str]:
    """The classes non-uniform injection chose (not those with a natural duplicate)."""
    from dupaudit.probing import HYPERPARAMETERS
    from dupaudit.probing.data import choose_classes

    chosen = choose_classes(report.classes, (), HYPERPARAMETERS["data"]["data_seed"])
    return [report.classes[i] for i in chosen]


def _fmt(interval) -> str:
    if interval.low is None:
        return f"{100 * interval.mean:.2f}"
    if abs((interval.high - interval.mean) - (interval.mean - interval.low)) > 1e-12:  # cut at 0 or 100%
        return f"{100 * interval.mean:.2f} ({100 * interval.low:.2f}–{100 * interval.high:.2f})"
    return f"{100 * interval.mean:.2f} ± {100 * interval.half_width:.2f}"


def table(results: dict) -> tuple[str, list[str]]:
    """A markdown table and the verdict on each of the paper's claims."""
    lines = [
        "| training | data | train images | clean accuracy (%) | Δ vs clean (points, 95% CI) | "
        "robust accuracy (%) | Δ robust vs clean |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for mode, result in results.items():
        rows = result["rows"]
        clean = rows["clean"]
        for name, row in rows.items():
            accuracy = mean_interval(row["accuracy"], bounds=ACCURACY_BOUNDS)
            robust = mean_interval(row["robust_accuracy"], bounds=ACCURACY_BOUNDS) if "robust_accuracy" in row else None
            if name == "clean":
                delta = delta_robust = "–"
            else:
                d = paired_difference(row["accuracy"], clean["accuracy"], bounds=DIFFERENCE_BOUNDS)
                delta = _difference(d)
                delta_robust = (
                    _difference(
                        paired_difference(row["robust_accuracy"], clean["robust_accuracy"], bounds=DIFFERENCE_BOUNDS)
                    )
                    if robust
                    else "–"
                )
            lines.append(
                f"| {mode} | {name} | {row['train_images']:,} | {_fmt(accuracy)} | {delta} | "
                f"{_fmt(robust) if robust else '–'} | {delta_robust} |"
            )
    standard = results.get("standard")
    if standard:
        rows = standard["rows"]
        d = paired_difference(rows["non-uniform"]["accuracy"], rows["clean"]["accuracy"], bounds=DIFFERENCE_BOUNDS)
        verdicts.append(_claim("standard: non-uniform duplication lowers clean accuracy (CI below 0)", "lower", d))
        d = paired_difference(rows["uniform"]["accuracy"], rows["clean"]["accuracy"], bounds=DIFFERENCE_BOUNDS)
        verdicts.append(
            _claim("standard: uniform duplication gives no significant gain (CI not above 0)", "no gain", d)
        )
    pgd = results.get("pgd")
    if pgd:
        rows = pgd["rows"]
        for name in ("uniform", "non-uniform"):
            for metric in ("accuracy", "robust_accuracy"):
                d = paired_difference(rows[name][metric], rows["clean"][metric], bounds=DIFFERENCE_BOUNDS)
                verdicts.append(
                    _claim(f"PGD: {name} duplication lowers {metric.replace('_', ' ')} (CI below 0)", "lower", d)
                )
    return "\n".join(lines), verdicts


def _difference(d) -> str:
    if d.low is None:
        return f"{100 * d.mean:+.2f}"
    return f"{100 * d.mean:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]"


def _claim(text: str, claim: str, d) -> str:
    """REPRODUCED, NOT reproduced (the interval says otherwise) or NOT RESOLVABLE at this scale (it cannot say).

    claim "lower": reproduced when the interval lies below 0, not reproduced when above, not resolvable when it
    holds 0. claim "no gain": not reproduced when the interval lies above 0; consistent when it holds 0 or lies
    below, but only resolvable when it is narrower than the effects in question (half-width under 2 points).
    """
    measured = f"measured {_difference(d)} points"
    if d.low is None or d.high is None:
        return f"NOT RESOLVABLE at this scale (one seed): {text}; {measured}"
    if claim == "lower":
        if d.high < 0:
            return f"REPRODUCED: {text}; {measured}"
        if d.low > 0:
            return f"NOT reproduced (significantly higher): {text}; {measured}"
        return f"NOT RESOLVABLE at this scale (the interval holds 0): {text}; {measured}"
    if d.low > 0:
        return f"NOT reproduced (a significant gain): {text}; {measured}"
    if d.half_width is not None and d.half_width * 100 < 2:
        return f"REPRODUCED: {text}; {measured}"
    wide = f"consistent, but the interval is ±{100 * d.half_width:.1f} points"
    return f"NOT RESOLVABLE at this scale ({wide}): {text}; {measured}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=None, help="fingerprint cache (default: dupaudit's own)")
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--seeds", dest="seeds_given", type=int, default=None, help="default 3 (5 standard, budget)")
    parser.add_argument("--epochs", type=float, default=None, help="default 10 (planned with --budget)")
    parser.add_argument("--width", type=int, default=None, help="default 64 (planned with --budget)")
    parser.add_argument("--budget", default=None, help="fit the whole table in this time: 20m, 60m, 2h")
    parser.add_argument("--pgd-steps", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=None, help="stratified subset (default: all 50,000)")
    parser.add_argument("--test-images", type=int, default=None, help="stratified subset (default: all 10,000)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--modes", default="standard,pgd")
    parser.add_argument(
        "--match-steps",
        action="store_true",
        help="train the clean set for as many optimizer steps as the injected sets",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "paper_repro")
    args = parser.parse_args()
    args.seeds = args.seeds_given or 3

    import torch

    from dupaudit.probing.budget import parse_duration

    budget = parse_duration(args.budget) if args.budget else None
    load = os.getloadavg()
    started = time.perf_counter()
    results = {}
    modes = args.modes.split(",")
    for position, mode in enumerate(modes):
        mark = time.perf_counter()
        share = None
        if budget is not None:  # this mode's share of what is left, so an overrun early is made up later
            left = budget - (time.perf_counter() - started)
            share = max(1.0, left) * BUDGET_SHARES[mode] / sum(BUDGET_SHARES[m] for m in modes[position:])
        results[mode] = run_mode(args, "pgd" if mode == "pgd" else None, share)
        print(f"[{mode}] {time.perf_counter() - mark:.0f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - started
    markdown, verdicts = table(results)
    device = results[next(iter(results))]["reports"][0]["device"]
    now = datetime.datetime.now(datetime.timezone.utc)
    scales = "; ".join(
        f"{mode}: {r['scale']['seeds']} seeds, {r['scale']['train_images']:,} clean training images "
        f"x {r['scale']['epochs']:g} epochs, width {r['scale']['width']}, {r['scale']['test_images']:,} test "
        f"images, TTA {r['scale']['tta_level']}"
        for mode, r in results.items()
    )
    end_load = os.getloadavg()
    header = (
        f"Paper reproduction (Aghabagherloo et al.), {now:%Y-%m-%d %H:%M} UTC, {device}, "
        f"{platform.node() or 'unknown host'}, torch {torch.__version__}\n"
        f"rate {args.rate:g} (share of the injected training set that is copies); {scales}"
        f"{' (steps matched)' if args.match_steps else ''}; PGD train steps {args.pgd_steps}; "
        f"non-uniform copies in: {', '.join(results[next(iter(results))]['nonuniform_classes'])}; "
        f"budget {args.budget or 'none'}, wall time {wall:.0f} s; load average {load[0]:.1f} at the start, "
        f"{end_load[0]:.1f} at the end ({os.cpu_count()} CPUs)"
    )
    text = header + "\n\n" + markdown + "\n\n" + "\n".join(f"- {v}" for v in verdicts) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    slim = {
        mode: {"rows": r["rows"], "nonuniform_classes": r["nonuniform_classes"], "scale": r["scale"]}
        for mode, r in results.items()
    }
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "wall_seconds": wall,
                "results": slim,
                "verdicts": verdicts,
                "reports": {m: r["reports"] for m, r in results.items()},
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
