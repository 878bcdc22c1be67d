"""One configuration for every command: scan, dedup and probe read `[tool.dupaudit]` / `.dupaudit.toml` as
check does (flag > env > file > default), every scan setting is a key, and dedup plans from a saved scan."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dupaudit.check.runner import run_check, write_baseline
from dupaudit.cli import app
from dupaudit.config import load_config
from dupaudit.engine.model import Settings
from dupaudit.sample import make_sample

runner = CliRunner()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("config") / "demo"
    make_sample(root)
    return root


@pytest.fixture
def repo(tmp_path: Path, template: Path, monkeypatch) -> Path:
    """A data repository: the demo under data/, the working folder at its top, no DUPAUDIT_* variables."""
    (tmp_path / ".git").mkdir()
    shutil.copytree(template, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DUPAUDIT_"):
            monkeypatch.delenv(name)
    return tmp_path


def _settings_of(output: str) -> dict:
    return json.loads(output)["settings"]


def _scan_json(*args: str) -> dict:
    result = runner.invoke(app, ["scan", *args, "-f", "json", "--quiet"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_scan_honours_the_config_threshold_flips_verify_and_cache(repo, monkeypatch):
    (repo / "pyproject.toml").write_text(
        '[tool.dupaudit]\nthreshold = 4\nflips = true\nverify = false\ncache = "ci/cache.sqlite"\n', encoding="utf-8"
    )
    report = _scan_json("data")
    assert report["settings"] == {
        "method": "phash",
        "threshold": 4,
        "flips": True,
        "verify": False,
        "neighbours": 3,
        "min_similarity": 0.84,
    }
    assert (repo / "ci" / "cache.sqlite").is_file()  # relative to the config file, not a cold default cache

    monkeypatch.setenv("DUPAUDIT_THRESHOLD", "3")  # the environment beats the file...
    assert _scan_json("data")["settings"]["threshold"] == 3
    assert _scan_json("data", "--threshold", "2", "--no-flips")["settings"]["threshold"] == 2  # ...a flag beats both
    assert _scan_json("data", "--no-flips")["settings"]["flips"] is False


def test_scan_and_check_give_the_same_answer_from_one_config(repo):
    (repo / ".dupaudit.toml").write_text(
        'root = "data"\nneighbours = 1\nmin_similarity = 0.9\nfast_decode = true\njobs = 1\n', encoding="utf-8"
    )
    scanned = _scan_json()  # no ROOT: the config's dataset, as check reads it
    assert scanned["roots"] == [
        {"name": "train", "path": str((repo / "data" / "train").resolve())},
        {"name": "test", "path": str((repo / "data" / "test").resolve())},
    ]
    settings = scanned["settings"]
    assert (settings["neighbours"], settings["min_similarity"], settings["fast_decode"]) == (1, 0.9, True)
    config = load_config(environ={})
    checked = run_check(config, use_cache=False)
    assert checked.report.settings == Settings.resolve(neighbours=1, min_similarity=0.9, fast_decode=True)
    assert len(checked.report.groups) == len(scanned["groups"])


def test_every_scan_setting_is_a_config_key_and_bad_values_exit_2(repo):
    (repo / ".dupaudit.toml").write_text(
        'verify = "no"\nmin-similarity = 0.5\nneighbours = 0\nfast-decode = false\nmethod = "dhash"\n',
        encoding="utf-8",
    )
    config = load_config(environ={})
    assert config.scan_settings() == Settings(
        method="dhash", threshold=6, verify=False, neighbours=0, min_similarity=0.5
    )
    for bad, message in (
        ("min_similarity = 2", "'min_similarity' must be a number between -1 and 1"),
        ("neighbours = -1", "'neighbours' must be 0 or more"),
        ('verify = "maybe"', "'verify' must be true or false"),
    ):
        (repo / ".dupaudit.toml").write_text(bad + "\n", encoding="utf-8")
        result = runner.invoke(app, ["scan", "data", "--no-cache", "--quiet"])
        assert result.exit_code == 2 and message in result.output, (bad, result.output)
        assert "Traceback" not in result.output


def test_config_model_is_for_cnn_only_and_a_model_flag_is_still_checked(repo):
    (repo / ".dupaudit.toml").write_text('model = "weights/mnv3s.pth"\n', encoding="utf-8")
    config = load_config(environ={})
    assert config.model == str((repo / "weights" / "mnv3s.pth").resolve())
    assert config.scan_parameters()["model"] is None  # a hash scan does not use (nor refuse) the configured weights
    assert _scan_json("data", "--no-cache")["settings"]["method"] == "phash"
    result = runner.invoke(app, ["scan", "data", "--model", "x.pth", "--no-cache"])
    assert result.exit_code == 2 and "--model goes with --method cnn" in result.output


def test_baseline_with_non_default_settings_is_not_reported_as_made_otherwise(repo, caplog):
    (repo / ".dupaudit.toml").write_text('root = "data"\nverify = false\nneighbours = 0\n', encoding="utf-8")
    config = load_config(environ={})
    write_baseline(config, use_cache=False)
    saved = json.loads(Path(config.baseline).read_text())["settings"]
    assert saved == {"method": "phash", "threshold": 6, "flips": False, "verify": False, "neighbours": 0}
    with caplog.at_level(logging.WARNING):
        run_check(config, use_cache=False)
    assert not [r for r in caplog.records if "was made with" in r.getMessage()]


@pytest.mark.parametrize(
    "scan_options", [(), ("--no-verify", "--flips"), ("--min-similarity", "0.9", "--neighbours", "1")]
)
def test_dedup_from_a_saved_scan_equals_dedup_with_the_same_options(repo, scan_options):
    saved = repo / "scan.json"
    result = runner.invoke(app, ["scan", "data", *scan_options, "--no-cache", "--quiet", "--json", str(saved)])
    assert result.exit_code == 0, result.output
    plans = {}
    for name, source in (("scanned", ["data", *scan_options, "--no-cache"]), ("saved", ["--from-scan", str(saved)])):
        plans[name] = repo / f"{name}.plan.json"
        listed = repo / f"{name}.list"
        args = ["dedup", *source, "--plan", str(plans[name]), "--list", str(listed), "--quiet"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert plans["saved"].read_bytes() == plans["scanned"].read_bytes()
    assert (repo / "saved.list").read_bytes() == (repo / "scanned.list").read_bytes()
    assert json.loads(plans["saved"].read_text())["groups"]  # the demo's planted copies are planned for


def test_dedup_takes_every_scan_option_and_from_scan_refuses_them(repo):
    result = runner.invoke(app, ["dedup", "data", "--no-verify", "--fast-decode", "--neighbours", "0", "--plan", "-"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["threshold"] == 6  # --no-verify's radius
    saved = repo / "scan.json"
    runner.invoke(app, ["scan", "data", "--no-cache", "--quiet", "--json", str(saved)])
    for extra in (["--threshold", "4"], ["--no-cache"], ["data"]):
        result = runner.invoke(app, ["dedup", "--from-scan", str(saved), *extra, "--plan", "-"])
        assert result.exit_code == 2 and "Traceback" not in result.output, extra
    result = runner.invoke(app, ["dedup", "--from-scan", str(repo / "absent.json"), "--plan", "-"])
    assert result.exit_code == 2 and "absent.json: scan report not found" in result.output
