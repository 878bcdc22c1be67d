"""One fail-on rule for every gate: `scan --fail-on` and `check` (whole dataset, and a commit's files) agree on
every rule and every kind of group, including copies of a stricter kind inside a looser group."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from dupaudit import scan
from dupaudit.check.runner import run_check
from dupaudit.config import AuditConfig
from dupaudit.policy import failures, parse_rules
from dupaudit.sample import procedural_image

RULES = ("exact", "pixel", "near", "label-conflicts", "leakage")


def _near(source: Path, target: Path) -> None:
    image = Image.open(source).convert("RGB")
    ImageEnhance.Brightness(image).enhance(1.05).save(target, quality=70)


def _upscaled(source: Path, target: Path) -> None:
    image = Image.open(source).convert("RGB")
    image.resize((image.width * 2, image.height * 2), Image.LANCZOS).save(target, quality=95)


# each: (how to add the finding to a clean dataset, the file it adds, the rules it breaks)
CASES = {
    "exact copy": (
        lambda d: shutil.copy(d / "train/cat/0000.jpg", d / "train/cat/added.jpg"),
        {"exact", "pixel", "near"},
    ),
    "pixel copy": (lambda d: Image.open(d / "train/cat/0000.jpg").save(d / "train/cat/added.png"), {"pixel", "near"}),
    "near copy": (lambda d: _near(d / "train/cat/0000.jpg", d / "train/cat/added.jpg"), {"near"}),
    # a near group {upscaled keeper, near copy}, then a byte copy of the near copy: exact inside a near group
    "exact copy inside a near group": (
        lambda d: (
            _upscaled(d / "train/cat/0001.jpg", d / "train/cat/big.jpg"),
            _near(d / "train/cat/0001.jpg", d / "train/cat/0001.jpg"),
            shutil.copy(d / "train/cat/0001.jpg", d / "train/cat/added.jpg"),
        ),
        {"exact", "pixel", "near"},
    ),
    "pixel copy inside a near group": (
        lambda d: (
            _upscaled(d / "train/cat/0001.jpg", d / "train/cat/big.jpg"),
            Image.open(d / "train/cat/0001.jpg").save(d / "train/cat/added.png"),
        ),
        {"pixel", "near"},
    ),
    "label conflict": (
        lambda d: shutil.copy(d / "train/cat/0000.jpg", d / "train/dog/added.jpg"),
        {"exact", "pixel", "near", "label-conflicts"},
    ),
    "leakage": (
        lambda d: _near(d / "test/cat/0000.jpg", d / "train/cat/added.jpg"),
        {"near", "leakage"},
    ),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean") / "data"
    seed = 900
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            (root / split / label).mkdir(parents=True)
            for index in range(2):
                seed += 1
                procedural_image(seed, size=64).save(root / split / label / f"{index:04d}.jpg", quality=90)
    return root


@pytest.mark.parametrize("case", sorted(CASES))
def test_scan_and_check_apply_one_rule(case, clean, tmp_path, cache_file):
    data = tmp_path / "data"
    shutil.copytree(clean, data)
    spoil, expected = CASES[case]
    spoil(data)
    report = scan(data, cache_path=cache_file, jobs=1)
    assert report.groups, case
    for rule in RULES:
        scan_fails = bool(failures(report, parse_rules(rule)))
        config = AuditConfig(root=str(data), fail_on=rule, cache=str(cache_file), baseline=str(tmp_path / "b.json"))
        whole = run_check(config, update_baseline=False)
        added = next(
            p for p in ("train/cat/added.jpg", "train/cat/added.png", "train/dog/added.jpg") if (data / p).exists()
        )
        commit = run_check(config, [str(data / added)], update_baseline=False)
        assert scan_fails == (rule in expected), (case, rule, failures(report, parse_rules(rule)))
        assert (whole.exit_code == 1) == (rule in expected), (case, rule, [f.message for f in whole.failing])
        assert (commit.exit_code == 1) == (rule in expected), (case, rule, [f.message for f in commit.failing])


def test_a_byte_copy_in_a_near_group_is_reported_as_an_exact_copy(clean, tmp_path, cache_file):
    data = tmp_path / "data"
    shutil.copytree(clean, data)
    CASES["exact copy inside a near group"][0](data)
    config = AuditConfig(root=str(data), fail_on="exact", cache=str(cache_file), baseline=str(tmp_path / "b.json"))
    result = run_check(config, [str(data / "train/cat/added.jpg")], update_baseline=False)
    assert [f.message for f in result.failing] == ["train/cat/added.jpg: exact copy of train/cat/0001.jpg"]
    report = result.report
    assert (report.summary.exact_copies, report.summary.pixel_copies, report.summary.near_copies) == (1, 0, 1)


def test_the_terminal_counts_copies_by_their_own_kind(clean, tmp_path, cache_file):
    from typer.testing import CliRunner

    from dupaudit.cli import app

    data = tmp_path / "data"
    shutil.copytree(clean, data)
    CASES["exact copy inside a near group"][0](data)
    result = CliRunner().invoke(app, ["scan", str(data), "--cache", str(cache_file), "--fail-on", "exact"])
    assert result.exit_code == 1, result.output
    shown = " ".join(result.stdout.split())
    assert "2 redundant copies: exact copies 1, pixel copies 0, near copies 1" in shown
    assert "(exact)" in shown and "(keep)" in shown  # the largest groups table: each member's own role
