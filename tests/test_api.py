"""The public Python API: dupaudit.scan and its cache argument, ScanReport.to_json/from_json, Settings,
dupaudit.probe, errors that name parameters (and the CLI's flags for them), py.typed, no module/function clash."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dupaudit
from dupaudit import ParameterError, ScanReport, Settings
from dupaudit.cli import app
from dupaudit.cli.common import as_flag
from dupaudit.sample import make_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("api") / "demo"
    make_sample(root)
    return root


def test_every_public_name_resolves_and_no_module_shares_a_functions_name():
    for name in dupaudit.__all__:
        assert getattr(dupaudit, name) is not None, name
    package = Path(dupaudit.__file__).parent  # from the files, so that no module can hide
    modules = sorted(
        ".".join(("dupaudit", *path.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
        for path in package.rglob("*.py")
    )
    assert "dupaudit.engine.pipeline" in modules and "dupaudit.api" in modules
    for full in modules:
        if full in ("dupaudit", "dupaudit.__main__"):  # __main__ runs the CLI when imported
            continue
        try:
            module = importlib.import_module(full)
        except ModuleNotFoundError as exc:  # probing's training modules without the probe extra
            if exc.name in ("torch", "torchvision", "matplotlib"):
                continue
            raise
        parent, _, short = full.rpartition(".")
        # `import dupaudit.X.Y` must give the module Y, never a function of that name (the old dupaudit.scan)
        assert getattr(importlib.import_module(parent), short) is module, full
    functions = {n for n in dupaudit.__all__ if inspect.isfunction(getattr(dupaudit, n))}
    assert {"scan", "probe", "explain"} <= functions
    assert not functions & {full.rpartition(".")[2] for full in modules if full.count(".") == 1}


def test_importing_dupaudit_loads_neither_torch_nor_the_probe():
    code = "import sys, dupaudit; print('torch' in sys.modules, 'dupaudit.probing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_py_typed_is_shipped():
    package = Path(dupaudit.__file__).parent
    assert (package / "py.typed").is_file()
    pyproject = (package.parents[1] / "pyproject.toml").read_text()
    assert '"dupaudit" = ["py.typed"]' in pyproject


def test_saved_report_reads_back_equal_and_is_the_clis_json(sample, tmp_path):
    report = dupaudit.scan(sample, cache=False)
    assert report.groups and report.label_conflict_groups and report.leak_groups  # the demo plants all three
    saved = tmp_path / "out" / "report.json"  # the folder is created
    text = report.to_json(saved)
    assert saved.read_text(encoding="utf-8") == text
    loaded = ScanReport.from_json(saved)
    assert loaded == report  # every field the JSON holds, floats included (kept to model.DECIMALS)
    assert loaded.roots == report.roots and loaded.settings == report.settings
    assert loaded.to_json() == text

    cli_json = tmp_path / "cli.json"
    result = CliRunner().invoke(app, ["scan", str(sample), "--no-cache", "--quiet", "--json", str(cli_json)])
    assert result.exit_code == 0, result.output
    assert cli_json.read_bytes() == saved.read_bytes()


def test_from_json_refuses_what_is_not_a_report(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 99}')
    with pytest.raises(dupaudit.InputError, match="bad.json: not a dupaudit scan report"):
        ScanReport.from_json(bad)
    with pytest.raises(dupaudit.InputError, match="not found"):
        ScanReport.from_json(tmp_path / "absent.json")


def test_cache_argument_path_default_and_none(sample, tmp_path, monkeypatch):
    own = tmp_path / "own.sqlite"
    first = dupaudit.scan(sample, cache=own)
    assert own.is_file() and first.decoded > 0
    again = dupaudit.scan(sample, cache=own)
    assert again.decoded == 0 and again == first

    default = tmp_path / "default.sqlite"
    monkeypatch.setenv("DUPAUDIT_CACHE", str(default))  # what the default location honours
    dupaudit.scan(sample)
    assert default.is_file()
    default.unlink()
    uncached = dupaudit.scan(sample, cache=False)
    assert not default.exists() and uncached.decoded == uncached.summary.images and uncached == first
    with pytest.raises(ParameterError, match="cache must be a path"):
        dupaudit.scan(sample, cache=3)
    assert dupaudit.scan(sample, cache_path=own).decoded == 0  # the earlier keyword, the same cache
    with pytest.raises(ParameterError, match="give cache alone"):
        dupaudit.scan(sample, cache=own, use_cache=False)


def test_more_sources_are_evaluation_folders_as_against_was(sample):
    positional = dupaudit.scan(sample / "train", sample / "test", cache=False)
    keyword = dupaudit.scan(sample / "train", against=[sample / "test"], cache=False)
    assert positional == keyword
    earlier = dupaudit.scan(sample / "train", [sample / "test"], use_cache=False)  # the 0.1 signature still works
    assert earlier == positional
    assert [r.name for r in positional.roots] == ["train", "test"] and positional.summary.leaked > 0


def test_settings_or_single_parameters_not_both(sample):
    unverified = dupaudit.scan(sample, verify=False, cache=False)
    assert unverified.settings == Settings.resolve(verify=False) == Settings(threshold=6, verify=False)
    same = dupaudit.scan(sample, settings=unverified.settings, cache=False)
    assert same == unverified
    with pytest.raises(ParameterError, match="give settings or threshold, not both"):
        dupaudit.scan(sample, settings=Settings(), threshold=4)


def test_settings_hold_the_defaults_and_refuse_by_parameter_name():
    assert Settings.resolve() == Settings()
    assert Settings.resolve(method="dhash", neighbours=5).neighbours == 5
    cnn = Settings.resolve(method="cnn")
    assert (cnn.threshold, cnn.verify, cnn.neighbours, cnn.min_similarity) == (0, False, 0, 0.90)
    assert Settings.resolve(**{f: getattr(cnn, f) for f in Settings.__dataclass_fields__}) == cnn  # idempotent
    with pytest.raises(ParameterError) as caught:
        Settings.resolve(model="w.pth")
    assert str(caught.value) == "model goes with method='cnn'"
    assert caught.value.spelled(as_flag) == "--model goes with --method cnn"
    with pytest.raises(ParameterError, match="threshold, flips and neighbours are hash settings"):
        Settings.resolve(method="cnn", threshold=4)
    with pytest.raises(ParameterError, match="threshold must be between 0 and 64, not 65"):
        Settings.resolve(threshold=65)


def test_the_cli_spells_parameters_as_flags(sample):
    assert as_flag("min_similarity", None) == "--min-similarity"
    assert as_flag("verify", "False") == "--no-verify" and as_flag("flips", "True") == "--flips"
    assert as_flag("method", "'cnn'") == "--method cnn"
    result = CliRunner().invoke(app, ["scan", str(sample), "--model", "w.pth", "--no-cache"])
    assert result.exit_code == 2
    assert "--model goes with --method cnn" in result.output and "Traceback" not in result.output


def test_probe_returns_the_probes_report(tmp_path):
    pytest.importorskip("torch")
    from dupaudit.probing import ProbeReport

    data = tmp_path / "demo"
    make_sample(data, per_class=6, test_per_class=2)
    report = dupaudit.probe(data, arms=("as-is",), seeds=1, epochs=1, size=16, width=8, cache=False)
    assert isinstance(report, ProbeReport) and isinstance(report.settings, dupaudit.ProbeSettings)
    assert report.data.train_images > 0 and report.conditions[0].arms[0].arm == "as-is"
    with pytest.raises(ParameterError, match="unknown probe setting colour"):
        dupaudit.probe(data, colour=True)


def test_probe_and_dedup_settings_name_their_parameters(sample):
    from dupaudit.probing import ProbeSettings

    with pytest.raises(ParameterError, match="^seeds must be at least 1$"):
        ProbeSettings(seeds=0)
    with pytest.raises(ParameterError, match="^rates need inject uniform or nonuniform$"):
        ProbeSettings(rates=(0.1,))
    report = dupaudit.scan(sample, cache=False)
    with pytest.raises(ParameterError, match="^kinds must be a comma-separated subset of exact,pixel,near$"):
        dupaudit.make_plan(report, kinds=["blurry"])
    with pytest.raises(ParameterError, match="^unknown keep 'newest'"):
        dupaudit.make_plan(report, keep="newest")
    pytest.importorskip("torch")  # the probe command checks for its extra before its settings
    result = CliRunner().invoke(app, ["probe", str(sample), "--rate", "0.1", "--no-cache"])
    assert result.exit_code == 2 and "--rate/--sweep need --inject uniform or nonuniform" in result.output
