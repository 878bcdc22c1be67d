"""Typed results of a probe: runs, per-arm summaries, paired comparisons, per-class differences, the report."""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .budget import BudgetPlan
from .config import ProbeSettings
from .stats import Interval

PROBE_SCHEMA_VERSION = 2  # 2: significant may be null (not tested), verdicts, log-scale times, the budget plan
READABLE_SCHEMA_VERSIONS = (1, 2)  # version 1 reads as 2 with its new fields at their defaults


@dataclass(frozen=True, slots=True)
class RunResult:
    """One training run: an arm, a seed, (with injection) a rate."""

    arm: str
    seed: int
    rate: float | None
    train_images: int
    steps: int
    images_seen: int
    train_seconds: float
    accuracy: float  # clean test accuracy
    robust_accuracy: float | None  # under the PGD attack (adversarial probes only)
    class_accuracy: tuple[float | None, ...]  # per class, in ProbeReport.classes order (None: no test image)
    reused: bool = False  # the same training set, seed and steps ran before: its result is reused


@dataclass(frozen=True, slots=True)
class ArmSummary:
    arm: str
    train_images: int
    images_seen: int
    steps: int
    accuracy: Interval
    robust_accuracy: Interval | None
    train_seconds: Interval  # geometric mean and log-scale interval: never below 0


@dataclass(frozen=True, slots=True)
class Comparison:
    """A paired difference treatment − control over the same seeds, with a plain-words verdict."""

    treatment: str
    control: str
    metric: str  # "accuracy" or "robust_accuracy"
    difference: Interval
    significant: bool | None  # None: not tested (one seed gives no interval)
    text: str
    verdict: str = ""  # "higher", "lower", "no detectable difference" or "not tested" ("" in a version 1 file)
    seeds_needed: int | None = None  # about how many seeds would detect a 1-point difference (None: one seed)


@dataclass(frozen=True, slots=True)
class ClassDelta:
    """Per class: deduplicated − as-is accuracy next to how duplicated the class is."""

    label: str
    train_images: int  # in the as-is training set of this probe
    redundant: int  # items that deduplication removes from this class
    duplication_rate: float  # redundant / train_images
    scan_duplication_rate: float | None  # the scan's rate for the class over the whole training split
    as_is_accuracy: float | None
    deduplicated_accuracy: float | None
    difference: float | None  # mean over seeds of the paired per-class differences


@dataclass(frozen=True, slots=True)
class Condition:
    """All arms over all seeds at one injection rate (or on the data as they are: rate None)."""

    rate: float | None
    train_images: int
    redundant: int
    batch_size: int
    arms: tuple[ArmSummary, ...]
    comparisons: tuple[Comparison, ...]
    class_deltas: tuple[ClassDelta, ...]
    duplicate_time_seconds: float | None  # mean train time as-is − deduplicated (a point estimate)
    duplicate_time_fraction: float | None  # the same, as a share of the as-is time
    runs: tuple[RunResult, ...]
    time_ratio: Interval | None = None  # deduplicated / as-is train time per seed, on the log scale
    time_text: str | None = None  # the ratio in words

    def arm(self, name: str) -> ArmSummary | None:
        return next((a for a in self.arms if a.arm == name), None)


@dataclass(frozen=True, slots=True)
class DataInfo:
    root: str
    train_split: str
    test_source: str
    classes: tuple[str, ...]
    train_images: int
    test_images: int
    groups: int  # duplicate groups with two or more members in the training images
    redundant: int  # training images that deduplication removes
    leaked: int  # test images with a copy in the training images
    scan_settings: dict = field(default_factory=dict)
    decoded_files: int = 0  # files the probe decoded (the others came from its pixel store)


@dataclass(frozen=True, slots=True)
class ProbeReport:
    tool_version: str
    torch_version: str
    device: str
    settings: ProbeSettings
    hyperparameters: dict
    seeds: tuple[int, ...]
    data: DataInfo
    conditions: tuple[Condition, ...]
    timings: dict[str, float]
    budget: BudgetPlan | None = None  # --budget: what the planner chose and why

    @property
    def classes(self) -> tuple[str, ...]:
        return self.data.classes


def to_dict(report: ProbeReport) -> dict:
    """Everything in the report as plain JSON values."""
    body = dataclasses.asdict(report)
    return {"schema": "dupaudit-probe", "schema_version": PROBE_SCHEMA_VERSION, **body}


def render_json(report: ProbeReport) -> str:
    return json.dumps(to_dict(report), indent=2, sort_keys=False, allow_nan=False) + "\n"


def from_dict(data: object) -> ProbeReport:
    """The ProbeReport that to_dict made `data` from (`dupaudit probe --json`); InputError when it is not one.

    Keys this version does not know are ignored, so a newer probe file still reads."""
    if not isinstance(data, dict) or data.get("schema") != "dupaudit-probe":
        raise InputError('not a dupaudit probe result (no "schema": "dupaudit-probe")')
    if data.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
        readable = " or ".join(map(str, READABLE_SCHEMA_VERSIONS))
        raise InputError(f"a probe result of schema_version {data.get('schema_version')!r}, not {readable}")
    try:
        return _typed(ProbeReport, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"malformed probe result: {exc}") from None


def read_json(path: str | os.PathLike) -> ProbeReport:
    """A probe result from a file written by `dupaudit probe --json`; InputError naming the file if not."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: probe result not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the probe result: {exc}") from None
    try:
        return from_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON: {exc}") from None
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def _typed(kind: object, value: object) -> object:
    """`value` (plain JSON) as an instance of the annotated type `kind`: dataclasses field by field, tuples,
    optionals, numbers. Raises TypeError/KeyError when it does not fit."""
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise TypeError(f"{kind.__name__}: expected an object, not {type(value).__name__}")
        hints = typing.get_type_hints(kind)
        known = [f for f in dataclasses.fields(kind) if f.name in value]
        return kind(**{f.name: _typed(hints[f.name], value[f.name]) for f in known})
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _typed(next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, not {type(value).__name__}")
        return tuple(_typed(args[0], item) for item in value)
    if kind is dict or origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, not {type(value).__name__}")
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind in (int, str, bool) and isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise TypeError(f"expected {getattr(kind, '__name__', kind)}, not {value!r}")
