"""dupaudit without `fcntl` (as on Windows), and the journal lock that keeps a second apply or undo out."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from dupaudit.cli import app
from dupaudit.dedup.journal import JOURNAL_NAME, Journal
from dupaudit.sample import make_sample

SRC = Path(__file__).resolve().parents[1] / "src"


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_every_module_and_the_core_commands_work_without_fcntl(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["fcntl"] = None  # `import fcntl` now raises ImportError, as on Windows
        import importlib, pkgutil
        import dupaudit
        for module in pkgutil.walk_packages(dupaudit.__path__, "dupaudit."):
            # dupaudit.__main__ runs the CLI; probing's modules need torch (the probe extra)
            if module.name != "dupaudit.__main__" and not module.name.startswith("dupaudit.probing."):
                importlib.import_module(module.name)
        from typer.testing import CliRunner
        from dupaudit.cli import app
        for args in (
            ["demo", "data"],
            ["scan", "data", "--no-cache", "-q", "--json", "scan.json", "--html", "scan.html"],
            ["report", "scan.json", "--html", "again.html"],
            ["dedup", "data", "--no-cache", "-q", "--plan", "plan.json"],
        ):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, (args, result.output, result.exception)
        assert sys.modules["fcntl"] is None
        print("ok")
        """
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
    assert (tmp_path / "plan.json").is_file() and (tmp_path / "again.html").is_file()


def test_the_journal_lock_excludes_a_second_process(tmp_path: Path) -> None:
    make_sample(tmp_path / "data", per_class=4, test_per_class=2)
    for args in (
        ["dedup", str(tmp_path / "data"), "--plan", str(tmp_path / "plan.json"), "--no-cache", "-j", "1", "-q"],
        ["dedup", "--apply", str(tmp_path / "plan.json"), "--quarantine", str(tmp_path / "quarantine"), "-q"],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    journal = tmp_path / "quarantine" / JOURNAL_NAME
    quarantined = sorted(p for p in (tmp_path / "quarantine").rglob("*") if p.is_file() and p.name != JOURNAL_NAME)
    assert quarantined, "the sample has duplicates to move"
    undo = f"from dupaudit.cli import main; import sys; sys.argv = ['dupaudit', 'undo', {str(journal)!r}]; main()"

    with Journal(journal):  # this process holds the lock, as a running apply would
        refused = run_python(undo, tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert "another dupaudit apply or undo is using this journal" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert all(path.is_file() for path in quarantined), "the refused undo moved nothing"

    done = run_python(undo, tmp_path)  # the lock is released with the journal
    assert done.returncode == 0, done.stderr
    assert not any(path.exists() for path in quarantined)
