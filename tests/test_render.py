"""The terminal summary at 80 columns (every CI log) and 40: nothing cut to ambiguity, no line too long."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dupaudit.cli.render import ELLIPSIS, shorten_middle, shorten_unambiguously

LONG_CLASS = "a_rather_long_class_name_for_a_table"
DEEP = "collected/2024/batch_one/originals/from_the_old_server"


@pytest.fixture(scope="module")
def deep_dataset(tmp_path_factory) -> Path:
    """Two classes; a duplicate pair whose paths differ only deep in the middle, another with a long class name."""
    root = tmp_path_factory.mktemp("render") / "data"
    rng = np.random.default_rng(0)
    for label in ("cat", LONG_CLASS):
        for i in range(4):
            folder = root / label / "misc"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    for variant in ("one", "two"):
        folder = root / "cat" / DEEP.replace("one", variant) / "final_selection"
        folder.mkdir(parents=True)
        shutil.copy(root / "cat" / "misc" / "0000.png", folder / "0000.png")
    shutil.copy(root / LONG_CLASS / "misc" / "0001.png", root / LONG_CLASS / "misc" / "copy.png")
    return root


def summary(root: Path, columns: int) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dupaudit", "scan", str(root), "--no-cache"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": str(columns), "TERM": "dumb"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_at_80_columns_no_header_or_member_is_cut_to_ambiguity(deep_dataset):
    text = summary(deep_dataset, 80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    table = text[text.index("Most duplicated classes") :]
    header = next(line for line in table.splitlines() if "images" in line)
    for word in ("class", "images", "redundant", "rate"):  # whole headers, not "redun…"
        assert f" {word} " in f" {header} ", header
    assert ELLIPSIS not in header
    assert LONG_CLASS in "".join(line.strip() for line in table.splitlines())  # wrapped if it must, never cut
    # the two copies differ only in one folder deep inside: both are listed, and they read differently
    shown = [line for line in text[text.index("Largest groups") :].splitlines() if "0000.png" in line]
    assert len(shown) == 3, shown  # the original and the two deep copies
    paths = [next(part for part in line.split() if "0000.png" in part) for line in shown]
    assert len(set(paths)) == 3, paths
    assert all(p.endswith("0000.png") and p.startswith("data/cat/") for p in paths), paths


def test_at_40_columns_nothing_breaks(deep_dataset):
    lines = summary(deep_dataset, 40).splitlines()
    assert all(len(line) <= 40 for line in lines), max(lines, key=len)
    assert any("Largest groups" in line for line in lines) and any("images" in line for line in lines)


def test_unlabelled_data_says_what_does_not_apply(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    shutil.copy(tmp_path / "0.png", tmp_path / "copy.png")
    text = summary(tmp_path, 100)
    assert "class skew and label conflicts do not apply" in text
    assert "Skew" not in text and "Label conflicts" not in text and "Most duplicated classes" not in text
    flat = " ".join(text.split())  # the findings line may wrap at this width
    assert "in 1 duplicate group " in flat and "of an epoch spent on copies" in flat


def test_shortening_keeps_the_file_name_and_tells_paths_apart():
    path = f"train/cat/{DEEP}/final_selection/0000.png"
    short = shorten_middle(path, 40)
    assert len(short) <= 40 and short.startswith("train/cat/") and short.endswith("/final_selection/0000.png")
    a, b = path, path.replace("one", "two")
    assert shorten_middle(a, 40) == shorten_middle(b, 40)  # alone, each would read the same...
    assert len(set(shorten_unambiguously([a, b], 40))) == 2  # ...so together they are not shortened that far
    assert shorten_middle("short.png", 40) == "short.png"
