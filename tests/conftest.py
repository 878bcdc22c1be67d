"""Shared fixtures: images made in tmp_path with Pillow, and the ../shared real data when present."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR = SHARED / "cifar10"
FORMATS = SHARED / "formats"
CIFAIR = SHARED / "cifair" / "cifar10_train_test_pairs_dev.csv"


@pytest.fixture
def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "cache.sqlite"


def need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is absent (real data lives in ../shared/data)")
