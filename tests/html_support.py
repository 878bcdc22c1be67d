"""Builders shared by the HTML report tests: a sample with hostile file names, synthetic reports, a probe result."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from dupaudit.engine.model import (
    ClassStats,
    DuplicateGroup,
    GroupMember,
    Root,
    ScanReport,
    Settings,
    Skipped,
    SplitStats,
    Summary,
)
from dupaudit.sample import CLASSES, make_sample, procedural_image

HOSTILE = "<img src=x onerror=alert(1)>.jpg"
# Same attack, but it would leave a trace a test can read (alert() only shows a dialog).
HOSTILE_FLAG = "\"'><img src=x onerror=window.__pwned=1>.jpg"
HOSTILE_LABEL = "<svg onload=window.__pwned=2>"


def hostile_sample(root: Path) -> Path:
    """The demo dataset plus copies whose file and class names are HTML that would run a script if not escaped."""
    make_sample(root)
    circle = root / "train" / "circle"
    shutil.copyfile(circle / "0000.jpg", circle / HOSTILE)
    shutil.copyfile(root / "train" / "stripes" / "0003.jpg", root / "train" / "stripes" / HOSTILE_FLAG)
    (root / "train" / HOSTILE_LABEL).mkdir()
    shutil.copyfile(root / "train" / "checker" / "0005.jpg", root / "train" / HOSTILE_LABEL / "0000.jpg")
    return root


def embedded_data(page: str) -> dict:
    """The gallery's JSON block of a rendered page."""
    match = re.search(r"<script type='application/json' id='dupaudit-data'>(.*?)</script>", page, re.S)
    assert match, "no data block"
    return json.loads(match.group(1))


def synthetic_report(
    root: Path | None,
    distances: list[int],
    *,
    conflict_every: int = 5,
    leak_every: int = 7,
    skipped: tuple[Skipped, ...] = (),
) -> ScanReport:
    """One two-member group per distance; with a root, the images are written there (32 px, like CIFAR)."""
    train = Root("train", str(root / "train") if root else "/nonexistent/train", True)
    test = Root("test", str(root / "test") if root else "/nonexistent/test", True)
    groups = []
    for index, distance in enumerate(distances):
        label = CLASSES[index % len(CLASSES)]
        conflict = conflict_every and index % conflict_every == 1
        leak = leak_every and index % leak_every == 3
        other_label = CLASSES[(index + 1) % len(CLASSES)] if conflict else label
        first = GroupMember("train", f"{label}/g{index:05d}_a.jpg", label, True, 32, 32, 900)
        second = GroupMember(
            "test" if leak else "train", f"{other_label}/g{index:05d}_b.jpg", other_label, False, 32, 32, 880
        )
        if root is not None:
            image = procedural_image(10_000 + index, 32)
            for member in (first, second):
                path = root / member.root / member.path
                path.parent.mkdir(parents=True, exist_ok=True)
                image.save(path, quality=90)
        groups.append(DuplicateGroup(index, "exact" if distance == 0 else "near", distance, (first, second)))
    classes = tuple(
        ClassStats(
            "train", label, 100, 100 - 5 * i, 5 * i, 0.05 * i, 0.25 + 0.01 * (i - 1.5), 0.25, 1 + 0.04 * (i - 1.5)
        )
        for i, label in enumerate(CLASSES)
    )
    splits = (
        SplitStats("train", "train", 400, 370, 30, 0.02, 0.075, 0, 0.0),
        SplitStats("test", "eval", 100, 100, 0, 0.0, 0.0, 3, 0.03),
    )
    conflicts = sum(1 for g in groups if g.is_label_conflict)
    leaks = sum(1 for g in groups if g.is_leak)
    summary = Summary(500, len(skipped), len(groups), len(groups), conflicts, leaks, 0.02, 0.075)
    return ScanReport(
        "0.1.0",
        (train, test),
        Settings("phash", 10, False),
        summary,
        classes,
        splits,
        tuple(groups),
        skipped,
        train_split="train",
    )


def probe_result() -> dict:
    """A probe result shaped like dupaudit.probing.results.to_dict (issue 5): one condition, three arms, 3 seeds."""

    def interval(mean, half):
        return {"mean": mean, "low": mean - half, "high": mean + half, "n": 3, "level": 0.95}

    arms = [
        {
            "arm": arm,
            "train_images": images,
            "images_seen": images * 10,
            "steps": 490,
            "accuracy": interval(m, h),
            "robust_accuracy": None,
            "train_seconds": interval(s, 0.4),
        }
        for arm, images, m, h, s in (
            ("as-is", 50000, 0.9312, 0.0021, 31.0),
            ("deduplicated", 45802, 0.9297, 0.0018, 28.6),
            ("random-removed", 45802, 0.9270, 0.0025, 28.5),
        )
    ]
    comparisons = [
        {
            "treatment": "deduplicated",
            "control": "as-is",
            "metric": "accuracy",
            "difference": interval(-0.0015, 0.003),
            "significant": False,
            "text": "deduplicated − as-is (accuracy): -0.15 points (95% CI -0.45 to +0.15): no significant difference",
        }
    ]
    deltas = [
        {
            "label": label,
            "train_images": 5000,
            "redundant": 100 * i,
            "duplication_rate": 0.02 * i,
            "scan_duplication_rate": 0.02 * i,
            "as_is_accuracy": 0.93,
            "deduplicated_accuracy": 0.93 + d,
            "difference": d,
        }
        for i, (label, d) in enumerate((("airplane", -0.012), ("cat", 0.006), ("<b>dog</b>", 0.001)))
    ]
    condition = {
        "rate": None,
        "train_images": 50000,
        "redundant": 4198,
        "batch_size": 1024,
        "arms": arms,
        "comparisons": comparisons,
        "class_deltas": deltas,
        "duplicate_time_seconds": 2.4,
        "duplicate_time_fraction": 0.077,
        "runs": [],
    }
    return {
        "schema": "dupaudit-probe",
        "schema_version": 1,
        "tool_version": "0.1.0",
        "torch_version": "2.14.1",
        "device": "cpu",
        "settings": {"epochs": 10, "seeds": 3},
        "hyperparameters": {},
        "seeds": [0, 1, 2],
        "data": {
            "root": "/data",
            "train_split": "train",
            "test_source": "test",
            "classes": ["airplane", "cat", "<b>dog</b>"],
            "train_images": 50000,
            "test_images": 10000,
            "groups": 3000,
            "redundant": 4198,
            "leaked": 12,
        },
        "conditions": [condition],
        "timings": {},
    }


def probe_report():
    """probe_result() read through the probe's own types, as `dupaudit report --probe` reads a file."""
    from dupaudit.probing.results import from_dict

    return from_dict(probe_result())
