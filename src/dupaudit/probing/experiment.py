"""The probe: scan, choose train/test, decode once, then train every arm over every seed (and injection rate).

torch is imported only inside `run_probe`, so importing this module stays light.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .._version import __version__
from ..engine.discover import discover
from ..engine.pipeline import scan
from ..engine.progress import NullProgress, ProgressSink
from ..errors import InputError, MissingExtraError
from .budget import BudgetPlan, plan_budget
from .config import HYPERPARAMETERS, ProbeSettings, batch_size_for
from .data import (
    EVAL_SPLITS,
    Fetch,
    TrainPool,
    arm_pool,
    choose_classes,
    choose_split,
    class_names,
    image_inputs,
    inject,
    injected_counts,
    label_indices,
    load_images,
    load_records,
)
from .results import (
    ArmSummary,
    ClassDelta,
    Comparison,
    Condition,
    DataInfo,
    ProbeReport,
    RunResult,
)
from .stats import (
    DETECT_POINTS,
    describe_difference,
    describe_ratio,
    log_interval,
    mean_interval,
    paired_difference,
    paired_ratio,
    seeds_to_detect,
    verdict,
)

log = logging.getLogger(__name__)
ACCURACY_BOUNDS = (0.0, 1.0)  # an accuracy interval never reaches past what an accuracy can be...
DIFFERENCE_BOUNDS = (-1.0, 1.0)  # ...nor a difference of two accuracies


def require_torch() -> None:
    """Raise MissingExtraError (exit 2 with the pip line) when torch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingExtraError("probe", "dupaudit probe") from None


def run_probe(
    root: str | os.PathLike,
    *,
    test: str | os.PathLike | None = None,
    settings: ProbeSettings | None = None,
    jobs: int | None = None,
    cache_path: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: ProgressSink | None = None,
    scan_options: Mapping[str, object] | None = None,
    on_plan: Callable[[BudgetPlan], None] | None = None,
) -> ProbeReport:
    """Measure what the duplicates in ROOT cost: train each arm over each seed and compare (see docs/probe.md).

    scan_options: the scan's settings keywords (engine.pipeline.scan: method, threshold, ...; default: Settings'
    defaults), e.g. the configured ones (AuditConfig.scan_parameters). on_plan: called with the --budget plan
    as soon as it is made, before any training (the command prints it, so a user can stop an overrun early)."""
    started = time.perf_counter()  # a --budget counts from here: importing torch and the scan are part of it
    settings = settings or ProbeSettings()
    progress = progress or NullProgress()
    require_torch()
    import torch

    from .train import (
        AttackSpec,
        describe_device,
        evaluate,
        resolve_device,
        total_steps_for,
        train_model,
    )

    device = resolve_device(settings.device)
    if device.type == "cpu":
        torch.set_num_threads(settings.threads or usable_cores())
    timings: dict[str, float] = {}
    mark = time.perf_counter()
    report = scan(
        root,
        [test] if test else [],
        jobs=jobs,
        cache_path=cache_path,
        use_cache=use_cache,
        progress=progress,
        **(scan_options or {}),
    )
    timings["scan"] = time.perf_counter() - mark

    mark = time.perf_counter()
    records, fetch = _records(report, root, test, scan_options, cache_path, use_cache)
    skipped = {(s.root, s.path) for s in report.skipped}
    records = [r for r in records if r.key not in skipped]
    train_name = report.train_split
    if test:
        eval_name: str | None = report.roots[-1].name
        eval_source = f"--test {report.roots[-1].path}"
    else:
        names = {r.name.lower(): r.name for r in report.roots if r.name != train_name}
        eval_name = next((names[s] for s in EVAL_SPLITS if s in names), None)
        eval_source = f"split '{eval_name}'"
    train_records = [r for r in records if r.root == train_name]
    if not train_records:
        raise InputError(f"{root}: no training images in '{train_name}'")
    if any(r.label is None for r in train_records):
        raise InputError(f"{root}: the probe needs labelled images (ROOT/<class>/... or ROOT/train/<class>/...)")
    classes = class_names(train_records)
    if len(classes) < 2:
        raise InputError(f"{root}: the probe needs at least two classes, found {len(classes)}")
    eval_records = [r for r in records if eval_name is not None and r.root == eval_name]
    unknown = sorted({r.label for r in eval_records if r.label not in classes}, key=str)
    if unknown:
        log.warning(
            "ignoring %d test images in classes absent from training: %s",
            sum(r.label not in classes for r in eval_records),
            ", ".join(map(str, unknown[:5])),
        )
        eval_records = [r for r in eval_records if r.label in classes]
    adversarial = (
        AttackSpec.for_training(settings.adversarial, settings.eps, settings.pgd_steps)
        if settings.adversarial
        else None
    )
    robust_spec = AttackSpec.for_evaluation(settings.eps) if settings.adversarial else None
    seed = HYPERPARAMETERS["data"]["data_seed"]
    plan = None
    if settings.budget_seconds is not None:
        calibrating = time.perf_counter()
        plan = _plan_budget(
            settings, device, train_records, eval_records, len(classes), adversarial, robust_spec, started, jobs, fetch
        )
        settings = dataclasses.replace(
            settings,
            width=plan.width,
            epochs=plan.epochs,
            max_train=plan.train_images,
            max_test=plan.test_images,
            tta_level=plan.tta_level,
        )
        timings["calibration"] = time.perf_counter() - calibrating
        if on_plan is not None:
            on_plan(plan)
    split = choose_split(
        train_records,
        eval_records or None,
        report.groups,
        holdout=settings.holdout,
        eval_source=eval_source,
        max_train=settings.max_train,
        max_test=settings.max_test,
        seed=seed,
    )
    train_labels = label_indices(split.train, classes)
    test_labels = label_indices(split.test, classes)
    with _pixel_store(cache_path, use_cache) as store:
        images, decoded = load_records([*split.train, *split.test], settings.size, jobs, store, fetch)
    timings["load"] = time.perf_counter() - mark - timings.get("calibration", 0.0)

    train_images_t = torch.from_numpy(images[: len(split.train)]).to(device)
    test_images_t = torch.from_numpy(images[len(split.train) :]).to(device)
    train_labels_t = torch.from_numpy(train_labels).to(device)
    test_labels_t = torch.from_numpy(test_labels).to(device)
    mean = torch.from_numpy(images[: len(split.train)].mean(axis=(0, 2, 3)) / 255)
    std = torch.from_numpy(images[: len(split.train)].std(axis=(0, 2, 3)) / 255).clamp_min(1e-3)
    del images

    scan_rates = {c.label: c.duplication_rate for c in report.classes if c.split == train_name}
    tta_level = (
        settings.tta_level
        if settings.tta_level is not None
        else HYPERPARAMETERS["adversarial" if settings.adversarial else "net"]["tta_level"]
    )
    seeds = tuple(range(settings.seeds))
    memo: dict[tuple, RunResult] = {}

    def run_one(arm: str, run_seed: int, rate: float | None, pool: TrainPool, steps: int, batch_size: int) -> RunResult:
        digest = hashlib.sha1(pool.items.tobytes()).hexdigest()
        key = (digest, run_seed, steps, batch_size)
        if key in memo:  # identical training set, seed and steps: deterministic, so the same result
            previous = memo[key]
            return RunResult(
                arm,
                run_seed,
                rate,
                previous.train_images,
                previous.steps,
                previous.images_seen,
                previous.train_seconds,
                previous.accuracy,
                previous.robust_accuracy,
                previous.class_accuracy,
                reused=True,
            )
        index = torch.from_numpy(pool.items).to(device)
        label = f"{arm} · seed {run_seed}" + (f" · rate {rate:g}" if rate is not None else "")
        outcome = train_model(
            train_images_t[index],
            train_labels_t[index],
            num_classes=len(classes),
            mean=mean,
            std=std,
            seed=run_seed,
            total_steps=steps,
            batch_size=batch_size,
            width=settings.width,
            adversarial=adversarial,
            progress=progress,
            label=label,
        )
        clean, robust = evaluate(
            outcome.model, test_images_t, test_labels_t, tta_level=tta_level, robust=robust_spec, seed=run_seed
        )
        per_class = tuple(
            float(clean[test_labels == c].mean()) if np.any(test_labels == c) else None for c in range(len(classes))
        )
        result = RunResult(
            arm,
            run_seed,
            rate,
            len(pool),
            outcome.steps,
            outcome.images_seen,
            outcome.seconds,
            float(clean.mean()),
            float(robust.mean()) if robust is not None else None,
            per_class,
        )
        memo[key] = result
        return result

    def warm_up(batch_size: int) -> None:
        # The first training run of a process pays one-off costs (oneDNN primitives, cuDNN autotuning, allocator
        # growth); pay them here, untimed, so that the first arm's training time is not inflated.
        count = min(len(train_images_t), 2 * batch_size)
        outcome = train_model(
            train_images_t[:count],
            train_labels_t[:count],
            num_classes=len(classes),
            mean=mean,
            std=std,
            seed=0,
            total_steps=2,
            batch_size=batch_size,
            width=settings.width,
            adversarial=adversarial,
        )
        evaluate(
            outcome.model,
            test_images_t[:batch_size],
            test_labels_t[:batch_size],
            tta_level=tta_level,
            robust=robust_spec,
        )

    mark = time.perf_counter()
    conditions: list[Condition] = []
    for rate in settings.rates or (None,):
        pool = split.pool
        if rate is not None:
            chosen = choose_classes(classes, settings.inject_classes, seed)
            sizes = np.bincount(train_labels[pool.items], minlength=len(classes)).tolist()
            pool = inject(pool, train_labels, injected_counts(sizes, settings.inject, rate, chosen), seed)
        batch_size = batch_size_for(len(pool), settings.batch_size)
        as_is_steps = total_steps_for(len(pool), batch_size, settings.epochs)
        if not conditions:
            warm_up(batch_size)
        runs = []
        for arm in settings.arms:
            for run_seed in seeds:
                arm_items = arm_pool(pool, arm, run_seed)
                if len(arm_items) == 0:
                    raise InputError(f"the {arm} arm has no training images")
                steps = (
                    as_is_steps
                    if settings.match_steps
                    else total_steps_for(len(arm_items), batch_size, settings.epochs)
                )
                runs.append(run_one(arm, run_seed, rate, arm_items, steps, batch_size))
        conditions.append(summarise(rate, pool, train_labels, classes, scan_rates, batch_size, settings, runs))
    timings["train"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started

    group_sizes = np.bincount(np.unique(split.pool.groups, return_inverse=True)[1])
    data = DataInfo(
        root=str(root),
        train_split=train_name,
        test_source=split.test_source,
        classes=classes,
        train_images=len(split.train),
        test_images=len(split.test),
        groups=int(np.sum(group_sizes > 1)),
        redundant=split.pool.redundant,
        leaked=split.leaked,
        scan_settings={
            "method": report.settings.method,
            "threshold": report.settings.threshold,
            "flips": report.settings.flips,
        },
        decoded_files=decoded,
    )
    return ProbeReport(
        tool_version=__version__,
        torch_version=torch.__version__,
        device=describe_device(device),
        settings=settings,
        hyperparameters=HYPERPARAMETERS,
        seeds=seeds,
        data=data,
        conditions=tuple(conditions),
        timings=timings,
        budget=plan,
    )


@contextlib.contextmanager
def _pixel_store(cache_path, use_cache: bool):
    """The probe's pixel store beside the fingerprint cache, or None (--no-cache, or it cannot be opened)."""
    from ..engine.cache import default_cache_path
    from .pixels import PixelStore, store_path

    store = None
    if use_cache:
        path = store_path(cache_path or default_cache_path())
        try:
            store = PixelStore(path)
        except (sqlite3.Error, OSError) as exc:  # the probe works without it: it decodes every file
            log.warning("%s: cannot use the probe's pixel store (%s); decoding every image", path, exc)
    try:
        yield store
    finally:
        if store is not None:
            store.close()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), which torch's default can overcount."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _records(report, root, test, scan_options, cache_path, use_cache) -> tuple[list, Fetch | None]:
    """The scanned images as records, and how to read their bytes when they are items of tar shards, Parquet
    files or manifests (None: they are files): the source layer, opened as the scan opened it."""
    if all(r.source == "folder" for r in report.roots):
        return discover(report.roots)[0], None
    from ..engine.cache import open_cache
    from ..engine.sources import SourceOptions
    from ..engine.sources.reading import record_bytes
    from ..engine.sources.scanning import every_item

    options = (scan_options or {}).get("source_options") or SourceOptions()
    targets = [str(t) for t in (root, *([test] if test else []))]
    cache = open_cache(cache_path) if use_cache else None
    try:  # after the scan the cache holds every item's fingerprint: this reads the items, decodes none
        method = report.settings.method if report.settings.method != "cnn" else "phash"
        records = every_item(targets, options, method, draft=report.settings.fast_decode, cache=cache)[0]
    finally:
        if cache is not None:
            cache.close()
    return records, lambda chosen: record_bytes(report.roots, chosen, options)


def _plan_budget(
    settings: ProbeSettings,
    device,
    train_records: Sequence,
    eval_records: Sequence,
    num_classes: int,
    adversarial,
    robust_spec,
    started: float,
    jobs: int | None,
    fetch: Fetch | None = None,
) -> BudgetPlan:
    """Calibrate this device (and the decoding) and plan the probe within settings.budget_seconds."""
    from .calibrate import measure_speed

    if eval_records:
        train_available, test_available = len(train_records), len(eval_records)
    else:
        test_available = int(round(settings.holdout * len(train_records)))
        train_available = len(train_records) - test_available
    sample = image_inputs(train_records[:: max(1, len(train_records) // 32)][:32], fetch)
    mark = time.perf_counter()
    load_images(sample, settings.size, jobs)
    load_per_image = (time.perf_counter() - mark) / max(1, len(sample))
    # Every run is planned at the size of the as-is arm; an injected as-is arm is larger by 1 / (1 - rate).
    per_rate = len(settings.arms) * settings.seeds
    runs = math.ceil(sum(per_rate / (1 - rate) for rate in settings.rates) if settings.rates else per_rate)
    explicit = set(settings.explicit)
    fixed = {
        name: getattr(settings, name) for name in _PLANNED if name in explicit and getattr(settings, name) is not None
    }
    if "batch_size" in explicit and settings.batch_size:
        fixed["batch_size"] = settings.batch_size

    def measure(width: int):
        return measure_speed(
            device,
            width=width,
            size=settings.size,
            num_classes=num_classes,
            adversarial=adversarial,
            robust=robust_spec,
        )

    return plan_budget(
        settings.budget_seconds,
        lambda: time.perf_counter() - started,  # the scan, listing and calibration so far
        runs=runs,
        train_available=train_available,
        test_available=test_available,
        measure=measure,
        fixed=fixed,
        load_seconds_per_image=load_per_image,
        adversarial=settings.adversarial is not None,
    )


_PLANNED = ("width", "epochs", "max_train", "max_test", "tta_level")  # what a budget plan may choose


def summarise(
    rate: float | None,
    pool: TrainPool,
    train_labels: np.ndarray,
    classes: Sequence[str],
    scan_rates: dict,
    batch_size: int,
    settings: ProbeSettings,
    runs: Sequence[RunResult],
) -> Condition:
    """Per-arm intervals, paired comparisons, per-class differences and the time the duplicates cost."""
    by_arm = {arm: sorted((r for r in runs if r.arm == arm), key=lambda r: r.seed) for arm in settings.arms}
    arms = []
    for arm, arm_runs in by_arm.items():
        robust = [r.robust_accuracy for r in arm_runs if r.robust_accuracy is not None]
        arms.append(
            ArmSummary(
                arm,
                arm_runs[0].train_images,
                arm_runs[0].images_seen,
                arm_runs[0].steps,
                mean_interval([r.accuracy for r in arm_runs], bounds=ACCURACY_BOUNDS),
                mean_interval(robust, bounds=ACCURACY_BOUNDS) if robust else None,
                log_interval([max(r.train_seconds, 1e-9) for r in arm_runs]),
            )
        )
    comparisons = []
    metrics = ("accuracy", "robust_accuracy") if settings.adversarial else ("accuracy",)
    for treatment, control in (("deduplicated", "as-is"), ("deduplicated", "random-removed")):
        if treatment in by_arm and control in by_arm:
            for metric in metrics:
                treated = [getattr(r, metric) for r in by_arm[treatment]]
                controls = [getattr(r, metric) for r in by_arm[control]]
                difference = paired_difference(treated, controls, bounds=DIFFERENCE_BOUNDS)
                needed = seeds_to_detect([a - b for a, b in zip(treated, controls)], DETECT_POINTS / 100)
                name = f"{treatment} − {control} ({metric.replace('_', ' ')})"
                comparisons.append(
                    Comparison(
                        treatment,
                        control,
                        metric,
                        difference,
                        None if difference.low is None else difference.excludes_zero,
                        describe_difference(name, difference, needed),
                        verdict(difference),
                        needed,
                    )
                )
    item_labels = train_labels[pool.items]
    deltas = []
    for c, label in enumerate(classes):
        in_class = item_labels == c
        images = int(in_class.sum())
        redundant = int(images - pool.keep[in_class].sum())
        as_is = _class_mean(by_arm.get("as-is"), c)
        dedup = _class_mean(by_arm.get("deduplicated"), c)
        paired = None
        if "as-is" in by_arm and "deduplicated" in by_arm:
            pairs = [
                (d.class_accuracy[c], a.class_accuracy[c]) for d, a in zip(by_arm["deduplicated"], by_arm["as-is"])
            ]
            if all(x is not None and y is not None for x, y in pairs):
                paired = float(np.mean([x - y for x, y in pairs]))
        deltas.append(
            ClassDelta(
                label,
                images,
                redundant,
                redundant / images if images else 0.0,
                scan_rates.get(label),
                as_is,
                dedup,
                paired,
            )
        )
    time_cost = time_fraction = time_ratio = time_text = None
    if "as-is" in by_arm and "deduplicated" in by_arm:
        as_is_seconds = [max(r.train_seconds, 1e-9) for r in by_arm["as-is"]]
        dedup_seconds = [max(r.train_seconds, 1e-9) for r in by_arm["deduplicated"]]
        as_is_mean = float(np.mean(as_is_seconds))
        time_cost = as_is_mean - float(np.mean(dedup_seconds))
        time_fraction = time_cost / as_is_mean
        time_ratio = paired_ratio(dedup_seconds, as_is_seconds)
        time_text = describe_ratio("training time, deduplicated / as-is", time_ratio)
    return Condition(
        rate,
        len(pool),
        pool.redundant,
        batch_size,
        tuple(arms),
        tuple(comparisons),
        tuple(deltas),
        time_cost,
        time_fraction,
        tuple(runs),
        time_ratio,
        time_text,
    )


def _class_mean(arm_runs: Sequence[RunResult] | None, c: int) -> float | None:
    if not arm_runs:
        return None
    values = [r.class_accuracy[c] for r in arm_runs if r.class_accuracy[c] is not None]
    return float(np.mean(values)) if values else None
