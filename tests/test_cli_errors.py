"""What users do wrong, run as real processes: each ends in exit 2 and one line, never a traceback or exit 123."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dupaudit.sample import CLASSES, make_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return make_sample(tmp_path_factory.mktemp("sample") / "data").root


def run(*args, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dupaudit", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single `error: ...` line of a refused command (exit `code`, no traceback, nothing on stdout)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


# ------------------------------------------------------------------------------- output paths, before any work


@pytest.mark.parametrize(
    "option, target, words",
    [
        ("--json", "/proc/dupaudit-test.json", "cannot be written"),
        ("--json", "{tmp}", "is a folder"),
        ("--html", "{tmp}/", "is a folder"),
        ("--csv", "{tmp}/missing/groups.csv", "does not exist"),
        ("--json", "{tmp}/a-file/report.json", "is not a folder"),
    ],
)
def test_a_bad_output_path_is_refused_before_the_scan(sample, tmp_path, option, target, words):
    (tmp_path / "a-file").write_text("x")
    cache = tmp_path / "cache.sqlite"
    target = target.format(tmp=tmp_path)
    line = one_line_error(run("scan", sample, "--cache", cache, option, target))
    assert f"{option} {target.rstrip('/')}" in line and words in line
    assert line.count(target.rstrip("/")) == 1  # the path once
    assert not cache.exists()  # refused before any work: the scan never opened its cache


def test_an_unwritable_folder_is_refused(sample, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    line = one_line_error(run("scan", sample, "--no-cache", "--json", folder / "r.json"))
    assert "not writable" in line


def test_report_to_a_missing_folder_is_refused_like_every_other_output(sample, tmp_path):
    scan_json = tmp_path / "scan.json"
    assert run("scan", sample, "--no-cache", "-q", "--json", scan_json).returncode == 0
    line = one_line_error(run("report", scan_json, "--html", tmp_path / "nonexistent" / "dir" / "x.html"))
    assert "does not exist" in line and "create it first" in line
    assert not (tmp_path / "nonexistent").exists()  # nothing is created silently


def test_report_never_writes_over_its_input(sample, tmp_path):
    scan_json = tmp_path / "scan.json"
    assert run("scan", sample, "--no-cache", "-q", "--json", scan_json).returncode == 0
    before = scan_json.read_bytes()
    assert "is the input SCAN.json" in one_line_error(run("report", scan_json, "--html", scan_json))
    assert "is the input --from-scan" in one_line_error(run("dedup", "--from-scan", scan_json, "--plan", scan_json))
    assert scan_json.read_bytes() == before


def test_two_outputs_to_one_file_or_to_stdout_are_refused(sample, tmp_path):
    line = one_line_error(run("scan", sample, "--no-cache", "--json", tmp_path / "x", "--csv", tmp_path / "x"))
    assert "--json and --csv both write to" in line
    line = one_line_error(run("scan", sample, "--no-cache", "-f", "csv", "--json", "-"))
    assert "--format csv and --json both write to stdout" in line


def test_dash_means_stdout_for_every_output(sample, tmp_path):
    result = run("scan", sample, "--no-cache", "--json", "-", "--csv", tmp_path / "g.csv")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # the report alone on stdout; the summary went to stderr
    assert data["schema_version"] == 1 and "duplicate groups" in result.stderr
    assert not Path("-").exists() and not (tmp_path / "-").exists()
    scan_json = tmp_path / "scan.json"
    scan_json.write_text(result.stdout)
    page = run("report", scan_json, "--html", "-")
    assert page.returncode == 0 and page.stdout.startswith("<!doctype html>"), page.stderr
    listed = run("dedup", sample, "--no-cache", "-q", "--list", "-")
    assert listed.returncode == 0 and all(Path(p).is_file() for p in listed.stdout.splitlines()), listed.stderr


def test_demo_into_a_file_or_a_missing_parent_is_exit_2(tmp_path):
    (tmp_path / "file").write_text("x")
    assert "is a file" in one_line_error(run("demo", tmp_path / "file"))
    assert "does not exist" in one_line_error(run("demo", tmp_path / "no" / "demo"))
    assert run("demo", tmp_path / "demo").returncode == 0
    assert "not empty" in one_line_error(run("demo", tmp_path / "demo"))


def test_probe_and_dedup_outputs_are_checked_before_any_work(sample, tmp_path):
    # probe checks its outputs before it even asks for torch
    assert "does not exist" in one_line_error(run("probe", sample, "--json", tmp_path / "no" / "p.json"))
    line = one_line_error(run("dedup", sample, "--no-cache", "--plan", tmp_path / "no" / "plan.json"))
    assert line.startswith("error: --plan ") and "does not exist" in line
    assert "is a file" in one_line_error(
        run("dedup", sample, "--no-cache", "--link-tree", sample / "train" / "blobs" / "0000.jpg")
    )


# ------------------------------------------------------------------------------------- options and the command


def test_version_and_h_work_alone():
    from dupaudit import __version__

    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"dupaudit {__version__}"
    for args in (["-h"], ["scan", "-h"], ["check", "-h"]):
        result = run(*args)
        assert result.returncode == 0 and "Usage:" in result.stdout, (args, result.stderr)


@pytest.mark.parametrize(
    "args, pair",
    [
        (["--no-cache", "--cache", "x.sqlite"], "--no-cache and --cache x.sqlite"),
        (["--no-verify", "--min-similarity", "0.5"], "--no-verify and --min-similarity"),
        (["--no-verify", "--neighbours", "2"], "--no-verify and --neighbours"),
    ],
)
def test_contradicting_scan_options_name_the_pair(sample, tmp_path, args, pair):
    line = one_line_error(run("scan", sample, *args, cwd=tmp_path))
    assert pair in line and "contradict" in line
    assert not (tmp_path / "x.sqlite").exists()


def test_check_verify_content_without_a_cache_is_a_contradiction(sample, tmp_path):
    line = one_line_error(run("check", "--root", sample, "--no-cache", "--verify-content", cwd=tmp_path))
    assert "--no-cache and --verify-content" in line and "contradict" in line


def test_the_cache_variable_does_not_contradict_no_cache(sample, tmp_path):
    cache = tmp_path / "env.sqlite"
    result = run("scan", sample, "--no-cache", "-q", env={"DUPAUDIT_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr
    assert not cache.exists()  # --no-cache honoured


def test_explain_honours_json_and_refuses_report_options(sample, tmp_path):
    a, b = sample / "train" / "blobs" / "0000.jpg", sample / "train" / "blobs" / "0001.jpg"
    result = run("scan", sample, "--explain", a, b, "-f", "json", "--no-cache")
    assert result.returncode == 0, result.stderr
    explanation = json.loads(result.stdout)
    assert explanation["verdict"] and explanation["first"].endswith("0000.jpg") and explanation["reasons"]
    json_file = tmp_path / "x.json"
    assert "--explain and --json" in one_line_error(run("scan", sample, "--explain", a, b, "--json", json_file))
    assert "--explain and --format csv" in one_line_error(run("scan", sample, "--explain", a, b, "-f", "csv"))
    # --explain answers by the scan's rule in a dataset (issue 17): without ROOT it says so
    assert "--explain needs the dataset" in one_line_error(run("scan", "--explain", a, b))


def test_dedup_options_without_their_partner(sample):
    assert "--null needs --list" in one_line_error(run("dedup", sample, "--null"))
    assert "--hardlinks needs --link-tree" in one_line_error(run("dedup", sample, "--hardlinks"))
    assert "--rate and --sweep" in one_line_error(
        run("probe", sample, "--inject", "uniform", "--rate", "0.1", "--sweep", "0,0.2")
    )
    assert "--eps needs --adversarial" in one_line_error(run("probe", sample, "--eps", "4"))


# ------------------------------------------------------------------------------------------------- messages


def test_a_missing_report_names_its_path_once(tmp_path):
    line = one_line_error(run("report", "nonexist.json", "--html", tmp_path / "x.html", cwd=tmp_path))
    assert line.count("nonexist.json") == 1 and "no such file" in line and "dupaudit scan --json" in line


def test_report_warns_about_a_probe_of_another_dataset(sample, tmp_path):
    try:
        from .html_support import probe_result
    except ImportError:
        from html_support import probe_result
    scan_json, probe_json = tmp_path / "scan.json", tmp_path / "probe.json"
    assert run("scan", sample, "--no-cache", "-q", "--json", scan_json).returncode == 0
    probe = probe_result()
    probe["data"].update(root=str(tmp_path / "elsewhere"), classes=["a", "b"])
    probe_json.write_text(json.dumps(probe))
    result = run("report", scan_json, "--html", tmp_path / "r.html", "--probe", probe_json)
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "another dataset" in result.stderr
    probe["data"].update(root=str(sample), classes=list(CLASSES))
    probe_json.write_text(json.dumps(probe))
    result = run("report", scan_json, "--html", tmp_path / "r.html", "--probe", probe_json)
    assert result.returncode == 0 and "another dataset" not in result.stderr, result.stderr


def test_plural_counts():
    from dupaudit.wording import plural

    assert [plural(1, "group"), plural(2, "group"), plural(1, "seed"), plural(3, "copy")] == [
        "1 group",
        "2 groups",
        "1 seed",
        "3 copies",
    ]
    assert plural(1234, "redundant copy") == "1,234 redundant copies"


# ------------------------------------------------------------------------------------------------ check -f json


def test_check_json_output(sample, tmp_path):
    result = run("check", "--root", sample, "--no-cache", "-q", "-f", "json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # the sample's planted findings fail the default gate
    data = json.loads(result.stdout)
    assert data["schema"] == "dupaudit-check" and data["exit_code"] == 1 and data["verdict"] == "findings"
    assert data["failing"] and all(f["rules"] and f["message"].startswith(f["path"]) for f in data["failing"])
    assert data["baseline"]["found"] is False and data["files"] is None
    assert data["summary"]["images"] > 0
    import jsonschema

    from dupaudit.formats import check_json

    jsonschema.validate(data, check_json.schema())  # the shipped schema of this output


def test_undo_of_a_missing_journal_creates_nothing(tmp_path):
    missing = tmp_path / "journal.jsonl"
    line = one_line_error(run("undo", missing))
    assert line.count(str(missing)) == 1 and "no such file" in line
    assert not missing.exists()


def test_a_link_tree_into_a_full_folder_is_refused_before_the_scan(sample, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cache = tmp_path / "cache.sqlite"
    assert "not empty" in one_line_error(run("dedup", sample, "--cache", cache, "--link-tree", tmp_path / "full"))
    assert not cache.exists()
