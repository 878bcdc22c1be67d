"""The JSON Schema shipped with the report format (formats/report.schema.json): it holds, and it can fail."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from dupaudit.formats import json as json_format

GOLDEN = Path(__file__).parent / "golden" / "sample_scan.json"


@pytest.fixture
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def errors(validator, data) -> list[str]:
    return [e.message for e in validator.iter_errors(data)]


def test_the_golden_report_is_valid(report_validator, golden):
    assert errors(report_validator, golden) == []


def test_added_fields_are_allowed(report_validator, golden):
    # the contract: fields may be added within schema_version 1 (per-member links, sources, ...)
    golden["sources"] = [{"kind": "folder"}]
    golden["groups"][0]["members"][0]["link"] = {"kind": "near", "score": 0.9}
    golden["summary"]["new_count"] = 3
    assert errors(report_validator, golden) == []


@pytest.mark.parametrize(
    "break_it",
    [
        lambda r: r.pop("summary"),
        lambda r: r.__setitem__("schema_version", 2),
        lambda r: r["groups"][0]["members"][0].__setitem__("path", "/abs/cat.jpg"),
        lambda r: r["groups"][0]["members"][1].__setitem__("keep", not r["groups"][0]["members"][1]["keep"]),
        lambda r: r["groups"][0].__setitem__("kind", "similar"),
        lambda r: r["groups"][0].__setitem__("members", r["groups"][0]["members"][:1]),
        lambda r: r["summary"].__setitem__("skew", 1.5),
        lambda r: r["classes"][0].__setitem__("images", -1),
        lambda r: r["splits"][0].__setitem__("role", "validation"),
    ],
)
def test_a_broken_report_is_caught(report_validator, golden, break_it):
    broken = copy.deepcopy(golden)
    break_it(broken)
    assert errors(report_validator, broken)


def test_the_schema_ships_in_the_package():
    schema = json_format.schema()  # read through importlib.resources, as an installed package reads it
    assert schema["properties"]["schema_version"]["const"] == json_format.SCHEMA_VERSION


def test_the_conftest_hook_checks_reports_rendered_in_process():
    # the autouse fixture wraps to_dict: a report that breaks the schema fails the test that renders it
    report = json_format.loads(GOLDEN.read_text())
    json_format.render(report)  # valid: passes
    group = report.groups[0]
    # a group of one member (the schema wants two or more); its link cleared, as a kept member's is
    lonely = dataclasses.replace(group, members=(dataclasses.replace(group.members[0], link=None),))
    with pytest.raises(AssertionError, match="report.schema.json"):
        json_format.render(dataclasses.replace(report, groups=(lonely,)))
