"""`dupaudit check` and `dupaudit baseline`: config precedence, baseline subtraction, formats and exit codes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

from dupaudit.check import baseline as baseline_file
from dupaudit.check.runner import run_check
from dupaudit.cli import app
from dupaudit.config import AuditConfig, find_config_file, load_config
from dupaudit.engine.model import DuplicateGroup, GroupMember, Root, ScanReport, Settings, Summary
from dupaudit.errors import BaselineError, ConfigError
from dupaudit.formats import github as github_format
from dupaudit.sample import procedural_image

runner = CliRunner()


# ---------------------------------------------------------------- a clean dataset and ways to spoil it


def make_clean_dataset(root: Path, train: int = 4, test: int = 2, seed: int = 500) -> Path:
    """ROOT/{train,test}/{cat,dog}/NNNN.jpg, every image distinct."""
    counter = seed
    for split, count in (("train", train), ("test", test)):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                counter += 1
                procedural_image(counter, size=64).save(folder / f"{index:04d}.jpg", quality=90)
    return root


def near_copy(source: Path, target: Path) -> None:
    """Re-encoded, slightly brighter: other bytes, other pixels, same picture."""
    image = Image.open(source).convert("RGB")
    ImageEnhance.Brightness(image).enhance(1.05).save(target, quality=70)


@pytest.fixture(scope="module")
def clean_template(tmp_path_factory) -> Path:
    return make_clean_dataset(tmp_path_factory.mktemp("template") / "data")


@pytest.fixture
def dataset(tmp_path: Path, clean_template: Path, monkeypatch) -> Path:
    """A fresh copy of the clean dataset as the current folder, with a pyproject.toml that points the cache at
    tmp_path and decodes in-process (jobs = 1: the tests share two cores)."""
    root = tmp_path / "repo"
    shutil.copytree(clean_template, root)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "my-data"\n\n[tool.dupaudit]\ncache = "{(tmp_path / "cache.sqlite").as_posix()}"\n'
        "jobs = 1\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(root)
    for name in list(os.environ):
        if name.startswith("DUPAUDIT_"):
            monkeypatch.delenv(name)
    return root


def invoke(*args: str):
    return runner.invoke(app, list(args))


# ---------------------------------------------------------------- config


def test_config_precedence_flag_over_env_over_file_over_default(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.dupaudit]\nthreshold = 4\nmethod = "dhash"\nfail-on = "leakage"\nroot = "data"\n', encoding="utf-8"
    )
    env = {"DUPAUDIT_THRESHOLD": "6", "DUPAUDIT_FLIPS": "true"}
    assert load_config(start=tmp_path, environ={}).threshold == 4
    assert load_config(start=tmp_path, environ=env).threshold == 6
    flagged = load_config({"threshold": 8, "method": None}, start=tmp_path, environ=env)
    assert flagged.threshold == 8
    assert flagged.method == "dhash"  # a flag not given (None) leaves the file's value
    assert flagged.flips is True  # from the environment
    assert flagged.fail_on == "leakage"  # kebab-case key in the file
    assert flagged.root == str((tmp_path / "data").resolve())  # relative to the config file
    defaults = AuditConfig()
    assert (defaults.method, defaults.threshold, defaults.flips) == ("phash", None, False)


def test_defaults_without_any_config(tmp_path: Path):
    (tmp_path / ".git").mkdir()  # the repository boundary: nothing above it is read
    config = load_config(start=tmp_path, environ={})
    assert config.source is None
    assert config.root == str(tmp_path.resolve())
    assert config.baseline == str((tmp_path / ".dupaudit-baseline.json").resolve())
    assert config.fail_on == "near,label-conflicts,leakage"


def test_config_found_upward_and_dupaudit_toml_wins(tmp_path: Path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "pyproject.toml").write_text("[tool.dupaudit]\nthreshold = 2\n", encoding="utf-8")
    deep = tmp_path / "train" / "cat"
    deep.mkdir(parents=True)
    assert find_config_file(deep) == tmp_path / "pyproject.toml"
    assert load_config(start=deep, environ={}).threshold == 2
    (tmp_path / ".dupaudit.toml").write_text('threshold = 3\nbaseline = "ci/accepted.json"\n', encoding="utf-8")
    config = load_config(start=deep, environ={})
    assert config.threshold == 3
    assert config.baseline == str((tmp_path / "ci" / "accepted.json").resolve())


def test_config_search_stops_at_the_repository_root(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text("[tool.dupaudit]\nthreshold = 2\n", encoding="utf-8")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert find_config_file(repo) is None
    assert load_config(start=repo, environ={}).threshold is None


def test_pyproject_without_our_table_is_passed_over(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text("[tool.dupaudit]\nthreshold = 2\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pyproject.toml").write_text("[tool.black]\nline-length = 100\n", encoding="utf-8")
    assert find_config_file(tmp_path / "sub") == tmp_path / "pyproject.toml"


def test_unknown_key_warns_and_the_rest_still_loads(tmp_path: Path, caplog):
    (tmp_path / "pyproject.toml").write_text("[tool.dupaudit]\nthreshhold = 3\nflips = true\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="dupaudit.config"):
        config = load_config(start=tmp_path, environ={})
    assert config.flips is True
    assert config.threshold is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("threshhold" in w and "pyproject.toml" in w for w in warnings), warnings


@pytest.mark.parametrize(
    "line, complaint",
    [
        ('threshold = "high"', "threshold"),
        ("threshold = 99", "between 0 and 64"),
        ('method = "md5"', "unknown method"),
        ('fail_on = "leakage,typos"', "typos"),
        ("flips = 3", "flips"),
    ],
)
def test_bad_config_values_are_config_errors_naming_the_file(tmp_path: Path, line: str, complaint: str):
    (tmp_path / ".dupaudit.toml").write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=complaint) as caught:
        load_config(start=tmp_path, environ={})
    assert ".dupaudit.toml" in str(caught.value)


def test_env_lists_and_bad_env_values(tmp_path: Path):
    (tmp_path / ".git").mkdir()
    config = load_config(start=tmp_path, environ={"DUPAUDIT_AGAINST": "holdout, extra", "DUPAUDIT_JOBS": "2"})
    assert config.against == (str((tmp_path / "holdout").resolve()), str((tmp_path / "extra").resolve()))
    assert config.jobs == 2
    with pytest.raises(ConfigError, match="environment"):
        load_config(start=tmp_path, environ={"DUPAUDIT_THRESHOLD": "ten"})


# ---------------------------------------------------------------- the baseline file


def _group(group_id: int, kind: str, *members: tuple[str, str, str], distance: int = 0) -> DuplicateGroup:
    return DuplicateGroup(
        group_id,
        kind,
        distance,
        tuple(GroupMember(root, path, label, keep=(i == 0)) for i, (root, path, label) in enumerate(members)),
    )


def _report(*groups: DuplicateGroup, skew: float = 0.0) -> ScanReport:
    return ScanReport(
        tool_version="test",
        roots=(Root("train", "/data/train", True), Root("test", "/data/test", True)),
        settings=Settings(),
        summary=Summary(10, 0, len(groups), 0, 0, 0, skew, 0.0),
        classes=(),
        splits=(),
        groups=groups,
        skipped=(),
    )


def test_baseline_is_sorted_relative_and_free_of_timestamps():
    report = _report(
        _group(0, "near", ("train", "dog/b.jpg", "dog"), ("train", "cat/a.jpg", "cat"), distance=4),
        _group(1, "exact", ("test", "cat/z.jpg", "cat"), ("train", "cat/c.jpg", "cat")),
    )
    text = baseline_file.dumps(baseline_file.from_report(report))
    data = json.loads(text)
    assert data["schema_version"] == 1
    assert [f["members"] for f in data["findings"]] == [
        ["test/cat/z.jpg", "train/cat/c.jpg"],
        ["train/cat/a.jpg", "train/dog/b.jpg"],
    ]
    assert data["findings"][0]["leakage"] is True and data["findings"][1]["label_conflict"] is True
    assert "/data/" not in text  # no absolute paths
    assert not any(word in text for word in ("time", "date", '"id"'))
    # group ids do not matter: the same groups numbered otherwise give the same file
    renumbered = _report(
        _group(7, "exact", ("test", "cat/z.jpg", "cat"), ("train", "cat/c.jpg", "cat")),
        _group(3, "near", ("train", "dog/b.jpg", "dog"), ("train", "cat/a.jpg", "cat"), distance=4),
    )
    assert baseline_file.dumps(baseline_file.from_report(renumbered)) == text
    assert baseline_file.dumps(baseline_file.from_dict(data)) == text


def test_subtract_reports_only_the_file_that_joined_an_accepted_group():
    accepted = baseline_file.from_report(
        _report(_group(0, "near", ("train", "cat/a.jpg", "cat"), ("train", "cat/b.jpg", "cat"), distance=2))
    )
    grown = _report(
        _group(
            0,
            "near",
            ("train", "cat/a.jpg", "cat"),
            ("train", "cat/b.jpg", "cat"),
            ("train", "dog/new.jpg", "dog"),
            distance=6,
        )
    )
    new = baseline_file.subtract(grown, accepted)
    assert [f.message for f in new] == [
        "train/dog/new.jpg: near duplicate of train/cat/a.jpg, train/cat/b.jpg (distance 6, label conflict)"
    ]
    # a group that shrank (a member deleted) is still accepted
    shrunk = _report(_group(0, "near", ("train", "cat/a.jpg", "cat"), ("train", "cat/b.jpg", "cat")))
    assert baseline_file.subtract(shrunk, accepted) == []


def test_subtract_with_changed_files_blames_the_changed_file_only():
    report = _report(
        _group(0, "exact", ("test", "cat/old.jpg", "cat"), ("train", "cat/new.jpg", "cat")),
        _group(1, "exact", ("train", "dog/x.jpg", "dog"), ("train", "dog/y.jpg", "dog")),
    )
    new = baseline_file.subtract(report, baseline_file.Baseline(), changed={"train/cat/new.jpg"})
    assert [f.message for f in new] == ["train/cat/new.jpg: exact copy of test/cat/old.jpg (leakage train/test)"]
    assert new[0].leakage and not new[0].label_conflict


def test_the_accepted_count_and_the_changed_files_findings_follow_the_whole_subtract():
    """accepted_groups (its own test of a group) and subtract with changed files (only the groups touching them)
    give what every group's findings give: over groups whole, grown, split across findings, unaccepted, keeperless."""
    import random

    rng = random.Random(5)
    names = [(rng.choice(["train", "test"]), f"{rng.choice('abc')}/{n}.jpg", "cat") for n in range(400)]
    groups, start = [], 0
    while start < len(names) - 4:
        size = rng.choice([2, 2, 3, 4])
        group = _group(len(groups), "near", *names[start : start + size])
        if rng.random() < 0.1:  # saved without a keeper
            group = DuplicateGroup(group.id, "near", 0, tuple(replace(m, keep=True) for m in group.members))
        groups.append(group)
        start += size
    report = _report(*groups)
    findings = []
    for group in groups:
        members = [f"{m.root}/{m.path}" for m in group.members]
        choice = rng.random()
        if choice < 0.5:
            findings.append(members)
        elif choice < 0.65:
            findings.append(members[:-1] + [f"train/elsewhere/{group.id}.jpg"])
        elif choice < 0.8 and len(members) > 2:
            findings += [members[:2], members[2:] + [f"test/other/{group.id}.jpg"]]
    accepted = baseline_file.Baseline(
        tuple(baseline_file.AcceptedFinding(tuple(sorted(m)), "near") for m in findings if len(m) > 1)
    )
    owner = baseline_file._owners(accepted)
    every = [(g, [f"{m.root}/{m.path}" for m in g.members]) for g in groups]
    expected = sum(1 for g, members in every if not baseline_file._blamed(g, members, owner, None)[0])
    assert baseline_file.accepted_groups(report, accepted) == expected
    assert 0 < expected < len(groups)
    changed = {f"{root}/{path}" for root, path, _ in rng.sample(names, 40)}
    roots = {r.name: r.path for r in report.roots}
    whole = [f for g in groups for f in baseline_file._group_findings(g, owner, roots, changed)]
    assert baseline_file.subtract(report, accepted, changed) == whole and whole


def test_prune_drops_gone_files_and_dissolved_findings():
    accepted = baseline_file.from_report(
        _report(
            _group(
                0, "near", ("train", "cat/a.jpg", "cat"), ("train", "cat/b.jpg", "cat"), ("train", "cat/c.jpg", "cat")
            ),
            _group(1, "exact", ("train", "dog/x.jpg", "dog"), ("train", "dog/y.jpg", "dog")),
        )
    )
    pruned, dropped = baseline_file.prune(accepted, lambda member: member not in {"train/cat/c.jpg", "train/dog/y.jpg"})
    assert dropped == 2
    assert [f.members for f in pruned.findings] == [("train/cat/a.jpg", "train/cat/b.jpg")]


@pytest.mark.parametrize(
    "text",
    ["not json", '{"schema_version": 99}', '{"schema_version": 1, "findings": [{"kind": "near", "members": ["a"]}]}'],
)
def test_a_broken_baseline_is_a_baseline_error(tmp_path: Path, text: str):
    path = tmp_path / "b.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BaselineError, match="b.json"):
        baseline_file.load(path)


# ---------------------------------------------------------------- the command: exit codes 0, 1, 2, 3


def test_clean_dataset_passes_with_and_without_files(dataset: Path):
    result = invoke("check")
    assert result.exit_code == 0, result.output
    result = invoke("check", "train/cat/0000.jpg", "train/dog/0001.jpg")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_exact_copy_fails_with_one_line(dataset: Path):
    shutil.copy(dataset / "train/cat/0001.jpg", dataset / "train/cat/copy.jpg")
    result = invoke("check", "train/cat/copy.jpg")
    assert result.exit_code == 1
    assert result.stdout == "train/cat/copy.jpg: exact copy of train/cat/0001.jpg\n"


def test_near_copy_fails(dataset: Path):
    near_copy(dataset / "train/dog/0002.jpg", dataset / "train/dog/near.jpg")
    result = invoke("check", "train/dog/near.jpg")
    assert result.exit_code == 1
    assert result.stdout.startswith("train/dog/near.jpg: near duplicate of train/dog/0002.jpg (distance ")


def test_copy_under_another_class_is_a_label_conflict(dataset: Path):
    shutil.copy(dataset / "train/cat/0002.jpg", dataset / "train/dog/stray.jpg")
    result = invoke("check", "train/dog/stray.jpg")
    assert result.exit_code == 1
    assert result.stdout == "train/dog/stray.jpg: exact copy of train/cat/0002.jpg (label conflict)\n"


def test_test_image_copied_into_train_is_leakage(dataset: Path):
    near_copy(dataset / "test/cat/0001.jpg", dataset / "train/cat/from_test.jpg")
    result = invoke("check", "train/cat/from_test.jpg")
    assert result.exit_code == 1
    assert "train/cat/from_test.jpg: near duplicate of test/cat/0001.jpg" in result.stdout
    assert "leakage train/test" in result.stdout


def test_rules_narrow_the_gate(dataset: Path):
    shutil.copy(dataset / "train/cat/0001.jpg", dataset / "train/cat/copy.jpg")
    assert invoke("check", "--fail-on", "leakage", "train/cat/copy.jpg").exit_code == 0
    assert invoke("check", "--fail-on", "exact", "train/cat/copy.jpg").exit_code == 1


def test_baseline_accepts_old_findings_and_a_new_one_still_fails(dataset: Path):
    shutil.copy(dataset / "train/cat/0001.jpg", dataset / "train/cat/copy.jpg")
    shutil.copy(dataset / "train/cat/0002.jpg", dataset / "train/dog/stray.jpg")
    assert invoke("check").exit_code == 1
    result = invoke("baseline")
    assert result.exit_code == 0, result.output
    stored = json.loads((dataset / ".dupaudit-baseline.json").read_text())
    assert [f["members"] for f in stored["findings"]] == [
        ["train/cat/0001.jpg", "train/cat/copy.jpg"],
        ["train/cat/0002.jpg", "train/dog/stray.jpg"],
    ]
    assert invoke("check").exit_code == 0
    assert invoke("check", "train/cat/copy.jpg", "train/dog/stray.jpg").exit_code == 0
    shutil.copy(dataset / "train/dog/0003.jpg", dataset / "train/dog/again.jpg")
    result = invoke("check", "train/dog/again.jpg")
    assert result.exit_code == 1
    assert result.stdout == "train/dog/again.jpg: exact copy of train/dog/0003.jpg\n"
    # a third copy of an accepted pair is new too, reported against the accepted pair
    shutil.copy(dataset / "train/cat/0001.jpg", dataset / "train/cat/copy2.jpg")
    result = invoke("check", "train/cat/copy2.jpg")
    assert result.exit_code == 1
    assert result.stdout.startswith("train/cat/copy2.jpg: exact copy of train/cat/0001.jpg, train/cat/copy.jpg")


def test_deleted_file_shrinks_the_baseline_with_exit_3(dataset: Path):
    shutil.copy(dataset / "train/cat/0001.jpg", dataset / "train/cat/copy.jpg")
    shutil.copy(dataset / "train/cat/0001.jpg", dataset / "train/cat/copy2.jpg")
    shutil.copy(dataset / "train/dog/0001.jpg", dataset / "train/dog/copy.jpg")
    assert invoke("baseline").exit_code == 0
    (dataset / "train/cat/copy2.jpg").unlink()
    (dataset / "train/dog/copy.jpg").unlink()
    result = invoke("check")
    assert result.exit_code == 3, result.output
    assert "dropped 2 accepted files" in result.stderr and "git add .dupaudit-baseline.json" in result.stderr
    stored = json.loads((dataset / ".dupaudit-baseline.json").read_text())
    assert [f["members"] for f in stored["findings"]] == [["train/cat/0001.jpg", "train/cat/copy.jpg"]]
    assert invoke("check").exit_code == 0  # rewritten once; the next run is clean


def test_usage_config_and_baseline_errors_exit_2(dataset: Path):
    assert invoke("check", "--fail-on", "nonsense").exit_code == 2
    (dataset / ".dupaudit-baseline.json").write_text("{broken", encoding="utf-8")
    result = invoke("check")
    assert result.exit_code == 2
    assert ".dupaudit-baseline.json" in result.stderr
    (dataset / ".dupaudit-baseline.json").unlink()
    with open(dataset / "pyproject.toml", "a", encoding="utf-8") as handle:
        handle.write('method = "sha1"\n')
    result = invoke("check")
    assert result.exit_code == 2
    assert "pyproject.toml" in result.stderr and "sha1" in result.stderr
    assert invoke("check", "--root", str(dataset / "missing")).exit_code == 2


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def test_a_baseline_modified_but_not_staged_is_refused(dataset: Path):
    _git(dataset, "init", "-q")
    shutil.copy(dataset / "train/cat/0001.jpg", dataset / "train/cat/copy.jpg")
    assert invoke("baseline").exit_code == 0
    result = invoke("check", "train/cat/copy.jpg")
    assert result.exit_code == 2 and "not staged" in result.stderr
    _git(dataset, "add", ".")
    assert invoke("check", "train/cat/copy.jpg").exit_code == 0
    shutil.copy(dataset / "train/dog/0001.jpg", dataset / "train/dog/copy.jpg")
    assert invoke("baseline").exit_code == 0  # changes the tracked baseline without staging it
    result = invoke("check", "train/dog/copy.jpg")
    assert result.exit_code == 2 and "not staged" in result.stderr
    _git(dataset, "add", ".dupaudit-baseline.json")
    assert invoke("check", "train/dog/copy.jpg").exit_code == 0


def test_files_outside_the_dataset_are_ignored(dataset: Path):
    (dataset / "docs").mkdir()
    procedural_image(1, size=32).save(dataset / "docs" / "logo.png")
    shutil.copy(dataset / "docs" / "logo.png", dataset / "docs" / "logo2.png")
    result = invoke("check", "docs/logo.png", "docs/logo2.png")
    assert result.exit_code == 0
    assert "nothing to check" in result.stderr


def test_skew_rule_fails_until_the_baseline_accepts_it(dataset: Path):
    for index in range(3):  # cat inflated by copies: the class priors shift
        shutil.copy(dataset / "train/cat/0000.jpg", dataset / f"train/cat/extra{index}.jpg")
    result = invoke("check", "--fail-on", "skew>0.01")
    assert result.exit_code == 1
    assert "skew" in result.stderr
    assert result.stdout == ""  # duplicates themselves break no rule here
    assert invoke("baseline").exit_code == 0
    assert invoke("check", "--fail-on", "skew>0.01").exit_code == 0


# ---------------------------------------------------------------- formats and the core API


def test_github_format_golden(dataset: Path):
    shutil.copy(dataset / "train/cat/0002.jpg", dataset / "train/dog/stray,1.jpg")
    result = invoke("check", "--format", "github", "train/dog/stray,1.jpg")
    assert result.exit_code == 1
    assert result.stdout == (
        "::error file=train/dog/stray%2C1.jpg,title=dupaudit%3A exact duplicate (near%2C label-conflicts)::"
        "train/dog/stray,1.jpg: exact copy of train/cat/0002.jpg (label conflict)\n"
    )


def test_github_escaping():
    assert github_format.escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert github_format.escape_property("a:b,c%") == "a%3Ab%2Cc%25"


def test_markdown_summary(dataset: Path, tmp_path: Path):
    shutil.copy(dataset / "train/cat/0001.jpg", dataset / "train/cat/copy.jpg")
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    result = invoke("check", "--format", "markdown", "--append-summary", str(summary))
    assert result.exit_code == 1
    assert result.stdout.startswith("## dupaudit check\n\n**Failed:** 1 new finding")
    # without a baseline the copy is reported against the member the keep policy keeps (same size: first path)
    assert "| `train/cat/copy.jpg` | exact copy | `train/cat/0001.jpg` | 0 |  |  | near |" in result.stdout
    assert summary.read_text(encoding="utf-8") == "earlier step\n" + result.stdout


def test_a_commit_of_new_files_decodes_only_them(dataset: Path):
    config = load_config(environ={})
    assert run_check(config).report.decoded == 12  # cold: every image
    near_copy(dataset / "train/cat/0003.jpg", dataset / "train/cat/near.jpg")
    procedural_image(9999, size=64).save(dataset / "train/dog/new.jpg")
    result = run_check(config, ["train/cat/near.jpg", "train/dog/new.jpg"])
    assert (result.report.decoded, result.report.cache_hits) == (2, 12)
    assert [f.finding.path for f in result.failing] == ["train/cat/near.jpg"]
    assert result.exit_code == 1


def _git(root: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x")
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@x")
    subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


def test_whole_dataset_check_annotates_the_added_file(dataset: Path, monkeypatch):
    monkeypatch.delenv("GITHUB_BASE_REF", raising=False)
    _git(dataset, "init", "-q", "-b", "main")
    _git(dataset, "add", "-A")
    _git(dataset, "commit", "-q", "-m", "data")
    # a larger (less compressed) copy: the keep rule keeps it, so without git the old file would be blamed
    Image.open(dataset / "test/cat/0001.jpg").save(dataset / "train/cat/from_test.jpg", quality=100)

    def annotated() -> list[str]:
        result = invoke("check", "--format", "github")
        assert result.exit_code == 1
        return [line.split(",title=")[0].removeprefix("::error file=") for line in result.stdout.splitlines()]

    assert annotated() == ["train/cat/from_test.jpg"]
    _git(dataset, "add", "-A")
    _git(dataset, "commit", "-q", "-m", "a copy")
    _git(dataset, "branch", "target", "HEAD~1")
    monkeypatch.setenv("GITHUB_BASE_REF", "target")  # a pull request on GitHub Actions: against the merge base
    assert annotated() == ["train/cat/from_test.jpg"]
    monkeypatch.setattr("dupaudit.check.runner.changed_in_git", lambda roots, folder: None)
    assert annotated() == ["test/cat/0001.jpg"]  # no git: the member the keep rule drops
