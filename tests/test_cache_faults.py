"""Cache faults a user can cause, with real processes and real files: a corrupt cache file is moved aside and
rebuilt, a cache that cannot be written means a scan without it, two processes share one cache. Each asserts the
exit code, a one-line warning without a traceback, and that no result is lost (the same report)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dupaudit.sample import make_sample

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=SRC, COLUMNS="120")
    env.pop("DUPAUDIT_CACHE", None)
    env.update(extra)
    return env


def _scan(data: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dupaudit", "scan", str(data), "-q", "-f", "json", "--jobs", "1", *args],
        capture_output=True,
        text=True,
        env=env or _env(),
    )


def _one_warning(stderr: str, *words: str) -> None:
    assert "Traceback" not in stderr and "internal error" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_sample(tmp_path / "data").root


@pytest.fixture
def reference(data: Path) -> str:
    result = _scan(data, "--no-cache")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_corrupt_cache_file_is_moved_aside_and_rebuilt(tmp_path, data, reference):
    cache = tmp_path / "fingerprints.sqlite"
    cache.write_bytes(os.urandom(20_000))  # garbage from the first byte: not a database
    first = _scan(data, "--cache", str(cache))
    assert first.returncode == 0
    _one_warning(first.stderr, "corrupt cache", "fingerprints.sqlite.corrupt-", "rebuilding")
    assert first.stdout == reference
    aside = list(tmp_path.glob("fingerprints.sqlite.corrupt-*"))
    assert [p.read_bytes()[:20_000] for p in aside if not p.name.endswith(("-wal", "-shm"))] != []
    # The rebuilt cache serves the next scan with the same answer and no warning.
    second = _scan(data, "--cache", str(cache))
    assert second.returncode == 0 and second.stderr == "" and second.stdout == reference


def test_garbage_inside_a_valid_cache_file_is_found_and_rebuilt(tmp_path, data, reference):
    cache = tmp_path / "fingerprints.sqlite"
    assert _scan(data, "--cache", str(cache)).returncode == 0
    db = sqlite3.connect(cache)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(cache, "r+b") as handle:  # keep the header and the schema page, overwrite the data pages
        handle.seek(2 * 16384)
        handle.write(os.urandom(cache.stat().st_size - 2 * 16384))
    result = _scan(data, "--cache", str(cache))
    assert result.returncode == 0
    _one_warning(result.stderr, "corrupt cache", "rebuilding")
    assert result.stdout == reference
    check = sqlite3.connect(cache)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_read_only_cache_file_means_a_scan_without_it(tmp_path, data, reference):
    cache = tmp_path / "fingerprints.sqlite"
    assert _scan(data, "--cache", str(cache)).returncode == 0
    before = cache.read_bytes()
    cache.chmod(0o444)
    try:
        result = _scan(data, "--cache", str(cache))
    finally:
        cache.chmod(0o644)
    assert result.returncode == 0
    _one_warning(result.stderr, str(cache), "read-only", "without the fingerprint cache")
    assert result.stdout == reference
    assert cache.read_bytes() == before


def test_an_unusable_home_means_a_scan_without_the_default_cache(tmp_path, data, reference):
    not_a_folder = tmp_path / "home-is-a-file"
    not_a_folder.write_text("")
    result = _scan(data, env=_env(HOME=str(not_a_folder), XDG_CACHE_HOME=""))
    assert result.returncode == 0
    _one_warning(result.stderr, "cannot create the folder", "without the fingerprint cache")
    assert result.stdout == reference


def test_check_with_a_corrupt_cache_answers_too(tmp_path, data):
    cache = tmp_path / "c.sqlite"
    cache.write_bytes(b"SQLite format 3\0" + os.urandom(5000))  # a real header, garbage after it
    result = subprocess.run(
        [sys.executable, "-m", "dupaudit", "check", "--root", str(data), "--cache", str(cache), "-q"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 1  # the planted duplicates are findings
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert sum("corrupt cache" in line for line in result.stderr.splitlines()) == 1


def _noise_images(root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"c{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")


def test_processes_sharing_one_cache_all_answer_and_the_cache_stays_valid(tmp_path, reference):
    data = tmp_path / "noise"
    _noise_images(data, 1200)  # five write batches per process: the writers interleave
    cache = tmp_path / "shared.sqlite"
    command = [sys.executable, "-m", "dupaudit", "scan", str(data), "-q", "-f", "json", "--jobs", "1"]
    command += ["--cache", str(cache), "--no-verify"]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()) for _ in range(3)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr.decode()
        assert stderr == b""
    assert len({stdout for stdout, _ in outputs}) == 1
    db = sqlite3.connect(cache)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*) FROM fingerprints").fetchone() == (1200,)
    db.close()
    # A fourth process, warm, gives the same answer from the shared file.
    warm = subprocess.run(command, capture_output=True, env=_env())
    assert warm.returncode == 0 and warm.stdout == outputs[0][0]
