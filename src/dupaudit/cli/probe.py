"""`dupaudit probe`: train a small network with and without the duplicates and report what they cost."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import app, options
from .common import contradiction, err_console, given, guarded, needs, progress_sink
from .outputs import binary_stdout, check_distinct, check_file, is_stdout, write_text
from .sources import SOURCE_OPTIONS, source_options


class Adversarial(str, Enum):
    pgd = "pgd"
    fgsm = "fgsm"


class Inject(str, Enum):
    uniform = "uniform"
    nonuniform = "nonuniform"


class Device(str, Enum):
    auto = "auto"
    cuda = "cuda"
    cpu = "cpu"


def _split_list(text: Optional[str]) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def _rates(rate: Optional[float], sweep: Optional[str]) -> tuple[float, ...]:
    if sweep:
        try:
            return tuple(float(part) for part in _split_list(sweep))
        except ValueError:
            raise typer.BadParameter(f"--sweep takes comma-separated rates such as 0,0.1,0.3, not {sweep!r}") from None
    return (rate,) if rate is not None else ()


@app.command()
@guarded
def probe(
    ctx: typer.Context,
    root: str = typer.Argument(
        ...,
        help="Labelled dataset: ROOT/<class>/... or ROOT/{train,val,test}/<class>/..., or tar shards, Parquet, a "
        "manifest, a URL (docs/sources.md).",
    ),
    test: Optional[str] = typer.Option(
        None,
        "--test",
        help="Evaluation dataset (default: ROOT's test/val split, else a hold-out that keeps duplicate groups whole).",
    ),
    epochs: float = typer.Option(10.0, "--epochs", min=0.01, help="Training epochs per run (fractions allowed)."),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Paired seeds per arm (intervals need at least 2)."),
    arms: str = typer.Option(
        "as-is,deduplicated,random-removed", "--arms", help="Comma-separated arms: as-is, deduplicated, random-removed."
    ),
    match_steps: bool = typer.Option(
        False,
        "--match-steps",
        help="Train smaller arms for as many optimizer steps as as-is (default: the same epochs).",
    ),
    size: int = typer.Option(32, "--size", min=16, help="Image side in pixels (resize shorter side, centre crop)."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", min=2, help="Default: 1024, smaller for small datasets."
    ),
    width: int = typer.Option(64, "--width", min=1, help="Base width of the network (airbench94: 64)."),
    adversarial: Optional[Adversarial] = typer.Option(
        None, "--adversarial", help="Adversarial training (L-inf): PGD, or FGSM with random start."
    ),
    eps: float = typer.Option(8.0, "--eps", min=0.0, help="L-inf radius in /255 units (default 8/255)."),
    pgd_steps: int = typer.Option(5, "--pgd-steps", min=1, help="PGD steps per training batch."),
    inject: Optional[Inject] = typer.Option(None, "--inject", help="Add duplicates in memory to a clean dataset."),
    rate: Optional[float] = typer.Option(
        None, "--rate", min=0.0, max=0.99, help="Injection: share of the injected training set that is copies."
    ),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="Injection rates to run in turn, e.g. 0,0.1,0.3,0.5."),
    classes: Optional[str] = typer.Option(
        None, "--classes", help="Non-uniform injection: the classes that get copies (default: half of them, at random)."
    ),
    holdout: float = typer.Option(
        0.2, "--holdout", min=0.01, max=0.99, help="Hold-out share when there is no test split."
    ),
    max_train: Optional[int] = typer.Option(
        None, "--max-train", min=1, help="Use a stratified subset of this many training images."
    ),
    max_test: Optional[int] = typer.Option(
        None, "--max-test", min=1, help="Use a stratified subset of this many test images."
    ),
    device: Device = typer.Option(Device.auto, "--device", help="auto: CUDA when present, else CPU."),
    budget: Optional[str] = typer.Option(
        None,
        "--budget",
        help="Finish within this time (90s, 5m, 1h): calibrate this device, then choose the training subset, "
        "width, epochs and testing to fit every arm and seed. Explicit flags still win.",
    ),
    tta: Optional[int] = typer.Option(
        None, "--tta", min=0, max=2, help="Test-time augmentation: 0 none, 1 mirror, 2 mirror + translations."
    ),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Decoding processes/threads."),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="CPU threads for torch (default: one per core this process may use)."
    ),
    cache: Optional[Path] = options.CACHE,
    no_cache: bool = options.NO_CACHE,
    config_file: Optional[Path] = options.CONFIG,
    json_file: Optional[Path] = typer.Option(
        None, "--json", help="Write every number, the device, torch version, seeds and settings as JSON ('-': stdout)."
    ),
    plot_file: Optional[Path] = typer.Option(
        None, "--plot", help="Write a PNG: accuracy per arm, per-class differences, the sweep curve ('-': stdout)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars and no table."),
    source_type: Optional[str] = SOURCE_OPTIONS["source_type"],
    image_column: Optional[str] = SOURCE_OPTIONS["image_column"],
    label_column: Optional[str] = SOURCE_OPTIONS["label_column"],
    split_column: Optional[str] = SOURCE_OPTIONS["split_column"],
    path_column: Optional[str] = SOURCE_OPTIONS["path_column"],
    storage_option: list[str] = SOURCE_OPTIONS["storage_option"],
) -> None:
    """Measure what the duplicates cost: train as-is, deduplicated and random-removed arms over paired seeds."""
    from ..probing import ProbeSettings, render_json, require_torch, run_probe
    from ..probing.budget import parse_duration

    if rate is not None and sweep:
        raise contradiction("--rate", "--sweep", "--sweep runs each of its rates in turn")
    if classes and inject is not Inject.nonuniform:
        raise needs("--classes", "--inject nonuniform", "it picks the classes that get copies")
    for name, option in (("eps", "--eps"), ("pgd_steps", "--pgd-steps")):
        if given(ctx, name) and adversarial is None:
            raise needs(option, "--adversarial pgd|fgsm", "it is a setting of adversarial training")
    check_distinct({"--json": json_file, "--plot": plot_file})
    check_file(json_file, "--json")  # before any work: a bad path is said now, not after the training
    check_file(plot_file, "--plot")
    budget_seconds = parse_duration(budget) if budget is not None else None
    require_torch()  # before any work: exit 2 with the pip line when the extra is missing
    if plot_file is not None:
        from ..probing.plot import require_matplotlib

        require_matplotlib()
    settings = ProbeSettings(
        arms=_split_list(arms),
        seeds=seeds,
        epochs=epochs,
        match_steps=match_steps,
        size=size,
        batch_size=batch_size,
        width=width,
        adversarial=adversarial.value if adversarial else None,
        eps=eps / 255,
        pgd_steps=pgd_steps,
        inject=inject.value if inject else None,
        rates=_rates(rate, sweep),
        inject_classes=_split_list(classes),
        holdout=holdout,
        max_train=max_train,
        max_test=max_test,
        device=device.value,
        tta_level=tta,
        threads=threads,
        budget_seconds=budget_seconds,
        explicit=tuple(field for option, field in _PLANNED_OPTIONS.items() if _given(ctx, option)),
    )
    # the scan behind the arms reads the same configuration as `dupaudit scan` (its settings, cache and jobs)
    config = options.scan_config(jobs=jobs, cache=cache, config_file=config_file)
    report = run_probe(
        root,
        test=test,
        settings=settings,
        jobs=config.jobs,
        cache_path=config.cache,
        use_cache=not no_cache,
        progress=progress_sink(quiet),
        scan_options={
            **config.scan_parameters(),
            **config.layout_parameters(),  # layout keys too
            "source_options": source_options(
                source_type, image_column, label_column, split_column, path_column, storage_option
            ),
        },
        on_plan=None if quiet else _print_plan,
    )
    if json_file:
        write_text(json_file, render_json(report))
    if plot_file:
        from ..probing.plot import plot_report

        plot_report(report, binary_stdout() if is_stdout(plot_file) else plot_file)
    if not quiet:
        on_stdout = is_stdout(json_file) or is_stdout(plot_file)
        print_probe(report, err_console if on_stdout else Console())
        for written in (json_file, plot_file):
            if written is not None and not is_stdout(written):
                err_console.print(f"[dim]wrote {written}[/]", highlight=False)


# options a --budget plan may choose, by their setting: one given on the command line is never changed
_PLANNED_OPTIONS = {
    "epochs": "epochs",
    "width": "width",
    "max_train": "max_train",
    "max_test": "max_test",
    "tta": "tta_level",
    "batch_size": "batch_size",
}


def _given(ctx: typer.Context, name: str) -> bool:
    """True when the option came from the command line or the environment, not from its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")  # by name: typer may vendor click


def _print_plan(plan) -> None:
    """The --budget plan on stderr as soon as it is made: an overrun is announced before the training starts."""
    for line in plan.lines():
        err_console.print(f"[dim]{escape(line)}[/]", highlight=False, soft_wrap=True)


def _count(n: float, word: str) -> str:
    """ "1 seed", "3 seeds", "1 epoch", "0.5 epochs": the plural right."""
    number = f"{int(n):,}" if float(n).is_integer() else f"{n:g}"
    return f"{number} {word}" if n == 1 else f"{number} {word}s"


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _interval(interval) -> str:
    if interval is None:
        return "–"
    if interval.low is None:
        return f"{100 * interval.mean:.2f}"
    if abs((interval.high - interval.mean) - (interval.mean - interval.low)) > 1e-12:  # cut at 0 or 100%
        return f"{100 * interval.mean:.2f} ({100 * interval.low:.2f}–{100 * interval.high:.2f})"
    return f"{100 * interval.mean:.2f} ± {100 * interval.half_width:.2f}"


def _seconds(interval) -> str:
    """A time: the geometric mean and its log-scale interval (never below 0), as "48.0 (41.2–55.9)"."""
    if interval.low is None:
        return f"{interval.mean:.1f}"
    return f"{interval.mean:.1f} ({interval.low:.1f}–{interval.high:.1f})"


def print_probe(report, console: Console) -> None:
    """The terminal summary: per arm, the paired comparisons in words, per class, the time cost."""
    data, settings = report.data, report.settings
    console.print(f"[bold]dupaudit probe[/] of {data.root}", highlight=False)
    console.print(
        f"train: {_count(data.train_images, 'image')} ('{data.train_split}'), "
        f"{_count(data.groups, 'duplicate group')}, "
        f"{data.redundant:,} redundant · test: {_count(data.test_images, 'image')} ({data.test_source}), "
        f"{data.leaked:,} with a copy in train",
        highlight=False,
    )
    mode = (
        f"adversarial {settings.adversarial} (eps {settings.eps * 255:g}/255)"
        if settings.adversarial
        else "standard training"
    )
    console.print(
        f"{report.device} · torch {report.torch_version} · {mode} · {_count(len(report.seeds), 'seed')} · "
        f"{_count(settings.epochs, 'epoch')}{' (steps matched to as-is)' if settings.match_steps else ''} · "
        f"{settings.size}px · width {settings.width}",
        highlight=False,
    )
    if report.budget is not None:
        for line in report.budget.lines():
            console.print(f"[dim]{line}[/]", highlight=False, soft_wrap=True)
    one_seed = len(report.seeds) < 2
    for condition in report.conditions:
        title = (
            "Arms" if condition.rate is None else f"Arms with {settings.inject} injection at rate {condition.rate:g}"
        )
        what = (
            "accuracy in %, one seed: no interval"
            if one_seed
            else "accuracy in %, mean ± 95% CI over seeds; time: geometric mean (95% CI)"
        )
        table = Table(title=f"{title} ({what})", title_justify="left")
        for column in ("arm", "train images", "images seen", "clean accuracy", "robust accuracy", "train time (s)"):
            if column == "robust accuracy" and not settings.adversarial:
                continue
            table.add_column(column, justify="left" if column == "arm" else "right")
        for arm in condition.arms:
            row = [arm.arm, f"{arm.train_images:,}", f"{arm.images_seen:,}", _interval(arm.accuracy)]
            if settings.adversarial:
                row.append(_interval(arm.robust_accuracy))
            row.append(_seconds(arm.train_seconds))
            table.add_row(*row)
        console.print(table)
        for comparison in condition.comparisons:
            style = "bold" if comparison.significant else "dim"
            console.print(f"[{style}]{comparison.text}[/]", highlight=False, soft_wrap=True)
        if condition.time_text is not None:
            console.print(condition.time_text, highlight=False, soft_wrap=True)
        deltas = [d for d in condition.class_deltas if d.difference is not None]
        if deltas:
            table = Table(
                title="Per class: deduplicated − as-is accuracy (points) next to the duplication rate",
                title_justify="left",
            )
            for column in ("class", "train images", "redundant", "duplication rate", "as-is", "deduplicated", "Δ"):
                table.add_column(column, justify="left" if column == "class" else "right")
            for d in sorted(deltas, key=lambda d: (-d.duplication_rate, d.label)):
                table.add_row(
                    d.label,
                    f"{d.train_images:,}",
                    f"{d.redundant:,}",
                    f"{d.duplication_rate:.2%}",
                    _pct(d.as_is_accuracy),
                    _pct(d.deduplicated_accuracy),
                    f"{100 * d.difference + 0.0:+.2f}",  # + 0.0: a difference of -0.0 shows as +0.00
                )
            console.print(table)
    if len(report.conditions) > 1:
        table = Table(title="Sweep: clean accuracy (%) per injection rate", title_justify="left")
        table.add_column("rate", justify="right")
        for arm in settings.arms:
            table.add_column(arm, justify="right")
        for condition in report.conditions:
            table.add_row(f"{condition.rate:g}", *(_interval(condition.arm(a).accuracy) for a in settings.arms))
        console.print(table)
    console.print(
        f"[dim]{report.timings.get('total', 0):.1f} s in all (scan {report.timings.get('scan', 0):.1f} s, "
        f"loading {report.timings.get('load', 0):.1f} s, training and testing "
        f"{report.timings.get('train', 0):.1f} s)[/]",
        highlight=False,
    )
