"""The real pre-commit hook: a git repository in tmp_path whose .pre-commit-config.yaml points at this checkout.

pre-commit clones this repository at its HEAD commit and builds the hook environment with pip (core install, no
torch), so the hook that runs is the committed one, exactly as a user gets it. Building the environment takes
about a minute; it happens once per session (set DUPAUDIT_TEST_PRE_COMMIT_HOME to a folder to keep it between
sessions).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from dupaudit.sample import procedural_image

CHECKOUT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def pre_commit_home(tmp_path_factory) -> Path:
    kept = os.environ.get("DUPAUDIT_TEST_PRE_COMMIT_HOME")
    return Path(kept) if kept else tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture(scope="session")
def hook_rev() -> str:
    """The commit pre-commit installs the hook from; it must hold the hook manifest (commit it first)."""
    rev = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=CHECKOUT, capture_output=True, text=True, check=True
    ).stdout.strip()
    manifest = subprocess.run(["git", "cat-file", "-e", f"{rev}:.pre-commit-hooks.yaml"], cwd=CHECKOUT)
    assert manifest.returncode == 0, f"HEAD {rev} has no .pre-commit-hooks.yaml: commit it before running this test"
    return rev


class Repo:
    """A data repository with pre-commit installed, driven through git like a user would."""

    def __init__(self, path: Path, home: Path, cache: Path, rev: str) -> None:
        self.path = path
        self.rev = rev
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DUPAUDIT_", "GIT_", "PRE_COMMIT"))}
        self.env.update(
            {
                "PRE_COMMIT_HOME": str(home),
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_AUTHOR_NAME": "data team",
                "GIT_AUTHOR_EMAIL": "data@example.com",
                "GIT_COMMITTER_NAME": "data team",
                "GIT_COMMITTER_EMAIL": "data@example.com",
            }
        )
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        (path / ".pre-commit-config.yaml").write_text(
            f"repos:\n  - repo: {CHECKOUT.as_posix()}\n    rev: {rev}\n    hooks:\n      - id: dupaudit\n",
            encoding="utf-8",
        )
        (path / "pyproject.toml").write_text(
            f'[tool.dupaudit]\ncache = "{cache.as_posix()}"\njobs = 1\n', encoding="utf-8"
        )
        subprocess.run(
            [sys.executable, "-m", "pre_commit", "install"], cwd=path, env=self.env, check=True, capture_output=True
        )

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["git", *args], cwd=self.path, env=self.env, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def commit(self, message: str) -> tuple[int, str]:
        """`git commit` (which runs the hook); returns its exit status and everything it printed."""
        result = self.git("commit", "-m", message, check=False)
        return result.returncode, result.stdout + result.stderr

    def dupaudit(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dupaudit", *args], cwd=self.path, env=self.env, capture_output=True, text=True
        )

    def image(self, relpath: str, seed: int) -> None:
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        procedural_image(seed, size=64).save(target, quality=90)

    def copy(self, source: str, target: str) -> None:
        shutil.copy(self.path / source, self.path / target)

    def near_copy(self, source: str, target: str) -> None:
        image = Image.open(self.path / source).convert("RGB")
        ImageEnhance.Brightness(image).enhance(1.05).save(self.path / target, quality=70)

    def discard(self, relpath: str) -> None:
        """Unstage and delete a file this test added (after a refused commit)."""
        self.git("rm", "-q", "-f", "--", relpath)


def hook_modules(repo: Repo) -> list[str]:
    """Which of the heavy modules the hook's own environment can import (pre-commit's db names its folder)."""
    with sqlite3.connect(Path(repo.env["PRE_COMMIT_HOME"]) / "db.db") as db:
        rows = db.execute("SELECT path FROM repos WHERE repo = ? AND ref = ?", (CHECKOUT.as_posix(), repo.rev))
        (folder,) = rows.fetchone()
    pythons = sorted(Path(folder).glob("py_env-*/bin/python"))
    assert pythons, f"no python environment under {folder}"
    probe = (
        "import importlib.util as u; print(' '.join(m for m in ('dupaudit', 'faiss', 'torch', 'torchvision', "
        "'imagededup') if u.find_spec(m)))"
    )
    result = subprocess.run([str(pythons[0]), "-c", probe], capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.fixture
def repo(tmp_path: Path, pre_commit_home: Path, hook_rev: str) -> Repo:
    repo = Repo(tmp_path / "data-repo", pre_commit_home, tmp_path / "cache.sqlite", hook_rev)
    seed = 700
    for split, count in (("train", 4), ("test", 2)):
        for label in ("cat", "dog"):
            for index in range(count):
                seed += 1
                repo.image(f"{split}/{label}/{index:04d}.jpg", seed)
    return repo


def test_hook_passes_clean_commits_and_blocks_each_kind_of_new_duplicate(repo: Repo):
    repo.git("add", ".")
    status, output = repo.commit("clean dataset")
    assert status == 0, output
    assert "dupaudit" in output and "Passed" in output
    modules = hook_modules(repo)
    assert "dupaudit" in modules and "faiss" in modules, modules
    assert not {"torch", "torchvision", "imagededup"} & set(modules), f"the hook env must be core only: {modules}"

    cases = [
        (
            "train/cat/copy.jpg",
            lambda: repo.copy("train/cat/0001.jpg", "train/cat/copy.jpg"),
            "train/cat/copy.jpg: exact copy of train/cat/0001.jpg",
        ),
        (
            "train/dog/near.jpg",
            lambda: repo.near_copy("train/dog/0002.jpg", "train/dog/near.jpg"),
            "train/dog/near.jpg: near duplicate of train/dog/0002.jpg (distance ",
        ),
        (
            "train/dog/stray.jpg",
            lambda: repo.copy("train/cat/0002.jpg", "train/dog/stray.jpg"),
            "train/dog/stray.jpg: exact copy of train/cat/0002.jpg (label conflict)",
        ),
        (
            "train/cat/from_test.jpg",
            lambda: repo.copy("test/cat/0001.jpg", "train/cat/from_test.jpg"),
            "train/cat/from_test.jpg: exact copy of test/cat/0001.jpg (leakage train/test)",
        ),
    ]
    for path, make, expected in cases:
        make()
        repo.git("add", path)
        status, output = repo.commit(f"add {path}")
        assert status != 0, output
        assert expected in output, output
        assert "- exit code: 1" in output, output
        repo.discard(path)

    repo.image("train/cat/new.jpg", 9001)  # a genuinely new image still goes in
    repo.git("add", "train/cat/new.jpg")
    status, output = repo.commit("one more cat")
    assert status == 0, output


def test_hook_with_a_baseline_accepts_old_findings_and_trims_deleted_files(repo: Repo):
    # History already holds duplicates (committed before the hook existed).
    repo.copy("train/cat/0001.jpg", "train/cat/copy.jpg")
    repo.copy("train/cat/0002.jpg", "train/dog/stray.jpg")
    repo.copy("test/dog/0000.jpg", "train/dog/from_test.jpg")
    repo.git("add", ".")
    repo.git("commit", "-q", "--no-verify", "-m", "old data with duplicates")
    repo.image("train/dog/new.jpg", 9002)
    repo.copy("train/cat/0001.jpg", "train/cat/copy2.jpg")  # joins an old finding: new
    repo.git("add", "train/dog/new.jpg", "train/cat/copy2.jpg")
    status, output = repo.commit("more data")
    assert status != 0 and "train/cat/copy2.jpg: exact copy of" in output, output
    repo.discard("train/cat/copy2.jpg")

    made = repo.dupaudit("baseline")
    assert made.returncode == 0, made.stderr
    # Forgetting to stage the baseline is refused (the commit would not carry what the hook accepted).
    status, output = repo.commit("more data")
    assert status != 0 and "is not staged" in output and "- exit code: 2" in output, output
    repo.git("add", ".dupaudit-baseline.json")
    status, output = repo.commit("more data, accepted baseline")
    assert status == 0, output

    # The old findings pass even when the hook is given every file; a new one still fails.
    every = subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files"],
        cwd=repo.path,
        env=repo.env,
        capture_output=True,
        text=True,
    )
    assert every.returncode == 0, every.stdout + every.stderr
    repo.near_copy("train/dog/0003.jpg", "train/dog/near.jpg")
    repo.git("add", "train/dog/near.jpg")
    status, output = repo.commit("a near copy")
    assert status != 0 and "train/dog/near.jpg: near duplicate of train/dog/0003.jpg" in output, output
    assert "copy.jpg" not in output and "stray.jpg" not in output and "from_test.jpg" not in output, output
    repo.discard("train/dog/near.jpg")

    # Deleting an accepted copy shrinks the baseline: the hook rewrites it and exits 3 until it is re-staged.
    repo.git("rm", "-q", "train/dog/stray.jpg")
    repo.image("train/cat/another.jpg", 9003)
    repo.git("add", "train/cat/another.jpg")
    status, output = repo.commit("remove a mislabelled copy")
    assert status != 0 and "- exit code: 3" in output and "dropped 1 accepted file" in output, output
    baseline = (repo.path / ".dupaudit-baseline.json").read_text(encoding="utf-8")
    assert "train/dog/stray.jpg" not in baseline and "train/cat/copy.jpg" in baseline
    repo.git("add", ".dupaudit-baseline.json")
    status, output = repo.commit("remove a mislabelled copy")
    assert status == 0, output
    assert repo.git("status", "--porcelain").stdout == ""
