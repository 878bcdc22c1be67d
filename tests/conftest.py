"""Shared fixtures: images made in tmp_path with Pillow, and the ../shared real data when present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR = SHARED / "cifar10"
FORMATS = SHARED / "formats"
CIFAIR = SHARED / "cifair" / "cifar10_train_test_pairs_dev.csv"


@pytest.fixture
def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "cache.sqlite"


@pytest.fixture
def full_searches(monkeypatch) -> list[int]:
    """Counts the full searches (pipeline.find_groups) run meanwhile: an incremental update runs none."""
    from dupaudit.engine import pipeline

    calls: list[int] = []
    original = pipeline.find_groups

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "find_groups", counting)
    return calls


def need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is absent (real data lives in ../shared/data)")


# ------------------------------------------------------------------ every report the tests produce meets its schema


@pytest.fixture(scope="session")
def report_validator():
    """The shipped JSON Schema of the scan report (jsonschema is in the dev extra)."""
    import jsonschema

    from dupaudit.formats import json as json_format

    schema = json_format.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def assert_valid_report(validator, data: dict, where: str) -> None:
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    assert not errors, f"{where}: the report breaks report.schema.json: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors[:5]
    )


def _is_scan_report(data: object) -> bool:
    return isinstance(data, dict) and "schema_version" in data and "groups" in data and "schema" not in data


@pytest.fixture(autouse=True)
def _every_report_meets_the_schema(request, monkeypatch, report_validator):
    """Validate each report rendered in this process, and each report file a test (or its processes) left in
    tmp_path: what the tests produce is what users get, so it must match the schema we ship."""
    from dupaudit.formats import json as json_format

    rendered = json_format.to_dict

    def checked(report):
        data = rendered(report)
        assert_valid_report(report_validator, data, "formats.json.to_dict")
        return data

    monkeypatch.setattr(json_format, "to_dict", checked)
    yield
    tmp = request.node.funcargs.get("tmp_path")
    if tmp is None or not Path(tmp).is_dir():
        return
    for path in Path(tmp).rglob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # the tests of bad input write broken files on purpose
        if _is_scan_report(data) and data.get("schema_version") == json_format.SCHEMA_VERSION:
            assert_valid_report(report_validator, data, str(path))
