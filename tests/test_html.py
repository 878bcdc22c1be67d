"""The HTML report without a browser: content, thumbnails, escaping, the probe section, the `report` command."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from dupaudit.cli import app
from dupaudit.engine.model import ClassStats, Skipped
from dupaudit.engine.pipeline import scan
from dupaudit.errors import InputError
from dupaudit.formats import html as html_format
from dupaudit.formats import json as json_format
from dupaudit.probing.results import from_dict

try:  # tests/ may or may not be a package
    from .html_support import (
        HOSTILE,
        HOSTILE_LABEL,
        embedded_data,
        hostile_sample,
        probe_report,
        probe_result,
        synthetic_report,
    )
except ImportError:
    from html_support import (
        HOSTILE,
        HOSTILE_LABEL,
        embedded_data,
        hostile_sample,
        probe_report,
        probe_result,
        synthetic_report,
    )


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = hostile_sample(tmp_path_factory.mktemp("html") / "data")
    report = scan(root, use_cache=False, jobs=1)
    return root, report


def members(data: dict) -> list[list]:
    return [m for g in data["groups"] for m in g[4]]


def test_every_group_and_member_is_in_the_page_with_a_thumbnail(sample):
    root, report = sample
    data = embedded_data(html_format.render(report))
    assert len(data["groups"]) == len(report.groups) >= 6
    assert len(members(data)) == sum(len(g.members) for g in report.groups)
    assert all(m[7].startswith(("data:image/jpeg;base64,", "data:image/png;base64,")) for m in members(data))
    assert {m[1] for m in members(data)} >= {f"circle/{HOSTILE}", f"{HOSTILE_LABEL}/0000.jpg"}


def test_each_copy_shows_its_own_link(sample):
    _, report = sample
    data = embedded_data(html_format.render(report))
    for group, shown in zip(sorted(report.groups, key=lambda g: g.id), sorted(data["groups"], key=lambda g: g[0])):
        for member, row in zip(group.members, shown[4]):
            if member.keep:
                assert row[9] is None
            else:
                to = group.members[member.link.to]
                assert row[9][:3] == [member.link.kind, f"{to.root}/{to.path}", member.link.distance]
    assert "verification score" in html_format.render(report)  # the slider's note says what decided


def test_thumbnails_are_small_images(sample):
    _, report = sample
    for member in members(embedded_data(html_format.render(report))):
        raw = base64.b64decode(member[7].split(",", 1)[1])
        assert len(raw) < 8_000
        with Image.open(io.BytesIO(raw)) as image:
            assert max(image.size) <= html_format.THUMBNAIL_PX


def test_label_conflicts_and_leaks_come_first(sample):
    _, report = sample
    flags = [g[3] for g in embedded_data(html_format.render(report))["groups"]]
    assert any(flags) and not all(flags)
    first_plain = flags.index(0)
    assert all(flags[:first_plain]) and not any(flags[first_plain:])


def test_a_missing_file_or_root_gets_a_placeholder(tmp_path):
    report = synthetic_report(tmp_path, [0, 2, 4])
    (tmp_path / "train" / report.groups[1].members[0].path).unlink()
    data = embedded_data(html_format.render(report))
    reasons = [m[8] for m in members(data) if m[7] is None]
    assert reasons == ["file not found"]
    nowhere = embedded_data(html_format.render(synthetic_report(None, [0, 2])))
    assert all(m[7] is None and m[8] for m in members(nowhere))


def test_an_unreadable_image_gets_a_placeholder(tmp_path):
    report = synthetic_report(tmp_path, [0])
    (tmp_path / "train" / report.groups[0].members[0].path).write_bytes(b"\xff\xd8\xff not really a jpeg")
    data = embedded_data(html_format.render(report))
    assert [m[7] is None for m in members(data)] == [True, False]


def test_a_path_that_leaves_its_root_is_not_read(tmp_path):
    secret = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8)).save(secret)
    (tmp_path / "train").mkdir()
    assert html_format._member_file(str(tmp_path / "train"), "../secret.jpg") is None
    assert html_format._member_file(str(tmp_path / "train"), "/etc/passwd") is None
    assert html_format.thumbnail(None) == (None, "path outside its root")
    assert html_format.thumbnail(tmp_path / "train") == (None, "not a regular file")
    os.mkfifo(tmp_path / "fifo.jpg")  # opening it would block forever
    assert html_format.thumbnail(tmp_path / "fifo.jpg") == (None, "not a regular file")


def test_untrusted_text_is_escaped_everywhere(tmp_path):
    evil = "<img src=x onerror=alert(1)></script><script>alert(2)</script>&amp;\"'"
    report = synthetic_report(tmp_path, [0, 4], skipped=(Skipped("train", f"cat/{evil}.jpg", f"bad: {evil}"),))
    from dataclasses import replace

    group = report.groups[0]
    hostile_member = replace(group.members[1], path=f"{evil}.jpg", label=evil)
    report = replace(
        report,
        roots=report.roots + (replace(report.roots[0], name=evil, path=f"/x/{evil}"),),
        groups=(replace(group, members=(group.members[0], hostile_member)),) + report.groups[1:],
        classes=report.classes + (ClassStats("train", evil, 10, 9, 1, 0.1, 0.1, 0.09, 1.1),),
        tool_version=evil,
    )
    page = html_format.render(
        report,
        probe=from_dict(
            _broken(
                lambda p: (
                    p.update(device=evil),
                    p["conditions"][0]["arms"][0].update(arm=evil),
                    p["conditions"][0]["comparisons"][0].update(text=evil),
                )
            )
        ),
    )
    assert "<img src=x" not in page
    assert page.count("<script") == 2 and page.count("</script>") == 2  # the data block and the page's own script
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # shown as text (summary, chart, skipped list, options)
    assert embedded_data(page)["groups"][0][4][1][1] == f"{evil}.jpg"  # the gallery gets the name intact


def test_file_names_that_are_not_utf8_still_render(tmp_path):
    report = synthetic_report(None, [0])
    from dataclasses import replace

    group = report.groups[0]
    odd = replace(group.members[1], path="cat/caf\udce9.jpg")  # a Latin-1 byte, as os.fsdecode gives it
    page = html_format.render(replace(report, groups=(replace(group, members=(group.members[0], odd)),)))
    page.encode("utf-8")
    assert "cat/caf\ufffd.jpg" in page or "cat/caf\\ufffd.jpg" in page


def test_the_page_loads_nothing_and_runs_only_its_own_script(sample):
    _, report = sample
    page = html_format.render(report)
    csp = re.search(r"Content-Security-Policy' content=\"([^\"]+)\"", page).group(1)
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode()
    assert f"script-src &#x27;sha256-{digest}&#x27;" in csp and "default-src &#x27;none&#x27;" in csp
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", page)


def test_class_chart_highlights_the_classes_that_drive_the_skew():
    def stats(label, prior, without):
        return ClassStats("train", label, 100, 90, 10, 0.1, prior, without, prior / without)

    classes = [stats("a", 0.40, 0.30), stats("b", 0.20, 0.23), stats("c", 0.20, 0.23), stats("d", 0.20, 0.24)]
    assert html_format.skew_drivers(classes) == {"a"}
    assert html_format.skew_drivers([stats("a", 0.5, 0.5), stats("b", 0.5, 0.5)]) == set()
    chart = html_format._class_chart("train", classes, 0.1)
    assert chart.count("class='crow driver'") == 1 and "duplication rate" in chart and "(%)" in chart


def test_probe_result_shows_arms_intervals_verdicts_and_class_differences(sample):
    _, report = sample
    page = html_format.render(report, probe=probe_report())
    section = page[page.index("<section id='probe'>") : page.index("</section>", page.index("<section id='probe'>"))]
    assert html_format.probe_arms(probe_report().conditions[0])[1] == (
        "deduplicated",
        0.9297,
        pytest.approx((0.9279, 0.9315)),
    )
    for text in (
        "as-is",
        "deduplicated",
        "random-removed",
        "93.12%",
        "[92.91, 93.33]",
        "no significant difference",
        "airplane",
        "&lt;b&gt;dog&lt;/b&gt;",
        "-1.20 pp",
        "clean test accuracy (%)",
        "percentage points",
        "45,802",
        "28.6 [28.2, 29.0]",
        "time spent on duplicates <b>2.4 s</b> (7.7% of training)",
    ):
        assert text in section, text
    assert "<b>dog</b>" not in section


def test_probe_sweep_shows_accuracy_against_the_injection_rate(sample):
    _, report = sample
    probe = probe_result()
    base = probe["conditions"][0]
    probe["conditions"] = [dict(base, rate=rate) for rate in (0.0, 0.1, 0.3)]
    probe["settings"].update(inject="nonuniform", rates=[0.0, 0.1, 0.3])
    page = html_format.render(report, probe=from_dict(probe))
    sweep = page[page.index("<figure class='probe-sweep'>") :]
    sweep = sweep[: sweep.index("</figure>")]
    assert sweep.count("class='sweep-arm'") == 3 and sweep.count("<circle") == 9
    assert "injection rate (nonuniform)" in sweep and "clean test accuracy (%)" in sweep
    assert "duplicates injected at rate 0.3" in page and page.count("<details open><summary>duplicates") == 1


def _broken(change) -> dict:
    probe = probe_result()
    change(probe)
    return probe


@pytest.mark.parametrize(
    "probe, message",
    [
        ({}, "not a dupaudit probe result"),
        ([1, 2], "not a dupaudit probe result"),
        (dict(probe_result(), schema_version=99), "schema_version 99"),  # a version this one cannot read
        (_broken(lambda p: p.update(conditions=[1, None, "x"])), "malformed probe result"),
        (_broken(lambda p: p["conditions"][0].update(arms="nope")), "malformed probe result"),
        (_broken(lambda p: p["conditions"][0]["arms"][0].pop("accuracy")), "malformed probe result"),
        (_broken(lambda p: p["settings"].update(seeds=0)), "seeds must be at least 1"),
    ],
)
def test_a_probe_file_is_read_through_the_probes_types_or_refused(probe, message):
    with pytest.raises(InputError, match=message):
        from_dict(probe)


def test_a_probe_without_conditions_still_renders(sample):
    _, report = sample
    probe = from_dict(_broken(lambda p: p.update(conditions=[], extra_key_from_a_newer_probe=1)))
    page = html_format.render(report, probe=probe)
    assert "<section id='probe'>" in page and "Probe JSON" in page and "holds no accuracy per arm" in page


def test_report_without_groups_says_so(tmp_path):
    page = html_format.render(synthetic_report(None, []))
    assert "No duplicates found" in page and "<script" not in page


def test_report_command_renders_a_saved_scan_with_a_probe(sample, tmp_path):
    _, report = sample
    (tmp_path / "scan.json").write_text(json_format.render(report), encoding="utf-8")
    (tmp_path / "probe.json").write_text(json.dumps(probe_result()), encoding="utf-8")
    out = tmp_path / "report.html"  # its folder must exist: no output option creates folders (cli/outputs.py)
    result = CliRunner().invoke(
        app, ["report", str(tmp_path / "scan.json"), "--html", str(out), "--probe", str(tmp_path / "probe.json")]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert len(embedded_data(page)["groups"]) == len(report.groups) and "<section id='probe'>" in page


@pytest.mark.parametrize("case", ["missing", "not-json", "not-a-report", "bad-probe"])
def test_report_command_refuses_bad_input_with_exit_2(sample, tmp_path, case):
    _, report = sample
    scan_file, probe_file = tmp_path / "scan.json", tmp_path / "probe.json"
    scan_file.write_text(
        {"missing": "", "not-json": "{", "not-a-report": '{"x": 1}'}.get(case, json_format.render(report)),
        encoding="utf-8",
    )
    if case == "missing":
        scan_file.unlink()
    probe_file.write_text("[1, 2]", encoding="utf-8")
    args = ["report", str(scan_file), "--html", str(tmp_path / "r.html")]
    result = CliRunner().invoke(app, args + (["--probe", str(probe_file)] if case == "bad-probe" else []))
    assert result.exit_code == 2
    assert not (tmp_path / "r.html").exists()


def test_scan_html_option_writes_the_report(tmp_path):
    root = synthetic_report(tmp_path / "data", [0, 2]).roots[0].path
    result = CliRunner().invoke(
        app, ["scan", str(Path(root).parent), "--no-cache", "--quiet", "--html", str(tmp_path / "r.html")]
    )
    assert result.exit_code == 0, result.output
    assert "dupaudit-data" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_a_real_probe_report_renders(sample):
    """Contract with issue 5: the JSON of dupaudit.probing's own result types shows up as charts, not as raw JSON."""
    results = pytest.importorskip("dupaudit.probing.results")
    from dupaudit.probing.config import ProbeSettings
    from dupaudit.probing.stats import Interval

    def interval(mean):
        return Interval(mean, mean - 0.002, mean + 0.002, 3)

    arms = tuple(
        results.ArmSummary(
            arm=arm,
            train_images=100,
            images_seen=1000,
            steps=10,
            accuracy=interval(acc),
            robust_accuracy=None,
            train_seconds=interval(3.0),
        )
        for arm, acc in (("as-is", 0.91), ("deduplicated", 0.905), ("random-removed", 0.9))
    )
    comparison = results.Comparison(
        treatment="deduplicated",
        control="as-is",
        metric="accuracy",
        difference=interval(-0.005),
        significant=True,
        text="deduplicated − as-is: lower",
    )
    delta = results.ClassDelta(
        label="cat",
        train_images=50,
        redundant=5,
        duplication_rate=0.1,
        scan_duplication_rate=0.1,
        as_is_accuracy=0.9,
        deduplicated_accuracy=0.92,
        difference=0.02,
    )
    condition = results.Condition(
        rate=None,
        train_images=100,
        redundant=5,
        batch_size=32,
        arms=arms,
        comparisons=(comparison,),
        class_deltas=(delta,),
        duplicate_time_seconds=0.3,
        duplicate_time_fraction=0.1,
        runs=(),
    )
    data = results.DataInfo(
        root="/data",
        train_split="train",
        test_source="test",
        classes=("cat",),
        train_images=100,
        test_images=20,
        groups=3,
        redundant=5,
        leaked=0,
    )
    probe = results.ProbeReport(
        tool_version="0.1.0",
        torch_version="2",
        device="cpu",
        settings=ProbeSettings(),
        hyperparameters={},
        seeds=(0, 1, 2),
        data=data,
        conditions=(condition,),
        timings={},
    )
    assert results.from_dict(json.loads(results.render_json(probe))) == probe  # the JSON reads back equal
    page = html_format.render(sample[1], probe=results.from_dict(json.loads(results.render_json(probe))))
    section = page[page.index("<section id='probe'>") :]
    assert "No accuracy per arm" not in section
    assert section.count("class='prow'") == 4  # three arms and one class
    assert "91.00% [90.80, 91.20]" in section and "deduplicated − as-is: lower" in section and "2.00 pp" in section


def test_report_command_warns_when_a_root_is_gone(tmp_path):
    report = synthetic_report(tmp_path / "data", [0, 2, 4, 6])  # group 3 is a leak: one member in test
    text = json_format.render(report).replace(str(tmp_path / "data" / "test"), str(tmp_path / "moved"))
    (tmp_path / "scan.json").write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["report", str(tmp_path / "scan.json"), "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 0
    assert "root test" in result.output and "placeholders" in result.output
    data = embedded_data((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert [m[8] for g in data["groups"] for m in g[4] if m[0] == 1] == ["file not found"]  # the one test member
