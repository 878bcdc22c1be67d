"""Time `dupaudit check` cold and warm on a real dataset in a git repository with a baseline, the hook's check of a
10-image commit (incremental: only the changed files are searched) against the warm check of the unchanged tree,
and a fresh copy of the repository checked with the restored cache.

    python benchmarks/check_speed.py /work/shared/data/cifar10 /tmp/dupaudit-measure [--no-git]

The dataset is mirrored with hard links into WORKDIR (no image is copied or ever opened for writing), so new
files can be added beside it; the fingerprint cache and the baseline live in WORKDIR too. Each step runs the
real command line in a fresh process, as pre-commit does. Prints one line per step, then the ratio of the
10-image check (median of three commits) to the warm unchanged check (target: at most 1.5x), whether the last
commit's findings equal those of a full search (in-process, the incremental update switched off), and the
fresh copy's decode count (target: 0). Run it with PYTHONDONTWRITEBYTECODE unset, as an installed package
runs: without bytecode every process compiles dupaudit's modules again (seconds, more for the larger imports).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

CPU: list[float] = []  # the CPU seconds (user + system) of each run's process tree, in order


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], cwd: Path) -> tuple[float, int, str]:
    """Wall seconds, exit code and output of the real command line; its CPU seconds go to CPU (a figure that
    a loaded machine disturbs less than the wall clock)."""
    started, cpu = time.perf_counter(), _children_cpu()
    result = subprocess.run([sys.executable, "-m", "dupaudit", *args], cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    CPU.append(_children_cpu() - cpu)
    if result.returncode not in (0, 1):
        raise SystemExit(f"dupaudit {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return elapsed, result.returncode, result.stdout + result.stderr


def counts(output: str) -> str:
    match = re.search(r"([\d,]+) decoded, ([\d,]+) from cache", output)
    return f"{match.group(1)} decoded, {match.group(2)} from cache" if match else "?"


def stat_everything(root: Path) -> tuple[float, int]:
    """The floor: walk the tree and stat every file, in Python, as discovery must."""
    started = time.perf_counter()
    count = 0
    for folder, folders, files in os.walk(root):
        folders[:] = [f for f in folders if f != ".git"]  # discovery skips hidden folders too
        for name in files:
            os.stat(os.path.join(folder, name))
            count += 1
    return time.perf_counter() - started, count


def main() -> None:
    source, workdir = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    tree, cache = workdir / source.name, workdir / "check-cache.sqlite"
    if tree.exists():
        shutil.rmtree(tree)  # our own mirror from an earlier run (hard links: the originals stay)
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(source), str(tree)], check=True)
    cache.unlink(missing_ok=True)
    common = ["--cache", str(cache)]

    use_git = "--no-git" not in sys.argv
    if use_git:  # a data repository: the hook also asks git whether the baseline is staged
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
        subprocess.run([*git, "init", "-q"], cwd=tree, check=True)
        subprocess.run([*git, "add", "-A"], cwd=tree, check=True)
        subprocess.run([*git, "commit", "-qm", "data"], cwd=tree, check=True)

    seconds, files = stat_everything(tree)
    print(f"walk + stat {files:,} files: {seconds:.2f} s")
    seconds, code, output = run(["check", *common], tree)
    print(
        f"cold check, whole dataset, fresh cache: {seconds:.1f} s, exit {code}, {counts(output)}, "
        f"{len(re.findall(r'^(?:train|test)/.*: ', output, re.M)):,} finding lines"
    )
    seconds, code, output = run(["baseline", *common], tree)
    print(f"baseline (warm): {seconds:.1f} s, {output.strip().splitlines()[-1]}")
    if use_git:
        subprocess.run([*git, "add", ".dupaudit-baseline.json"], cwd=tree, check=True)
        subprocess.run([*git, "commit", "-qm", "baseline"], cwd=tree, check=True)
    warm: list[float] = []
    warm_cpu: list[float] = []
    for attempt in (1, 2, 3):
        seconds, code, output = run(["check", *common], tree)
        warm.append(seconds)
        warm_cpu.append(CPU[-1])
        print(
            f"warm check #{attempt}, whole dataset: {seconds:.2f} s (CPU {CPU[-1]:.2f} s), exit {code}, "
            f"{counts(output)}"
        )

    # Three commits of 10 images each: 5 new pictures and 5 re-encoded copies of dataset images under another
    # class; each is checked as the hook does (a wall-clock figure on a shared machine is noisy: the median of
    # three), then committed.
    from PIL import Image

    from dupaudit.sample import procedural_image

    hooks: list[tuple[float, float]] = []
    for commit in range(3):
        added = []
        for index in range(5):
            target = tree / "train" / "cat" / f"new_{commit}_{index}.jpg"
            procedural_image(424_242 + 10 * commit + index, size=32).save(target, quality=90)
            added.append(target)
        dogs = sorted((tree / "train" / "dog").iterdir())[5 * commit : 5 * commit + 5]
        for index, source_image in enumerate(dogs):
            target = tree / "train" / "cat" / f"dog_copy_{commit}_{index}.jpg"
            Image.open(source_image).convert("RGB").save(target, quality=80)
            added.append(target)
        names = [str(p.relative_to(tree)) for p in added]
        if use_git:
            subprocess.run([*git, "add", *names], cwd=tree, check=True)
        seconds, code, output = run(["check", *common, *names], tree)
        hooks.append((seconds, CPU[-1]))
        findings = sorted(line for line in output.splitlines() if line.startswith("train/cat/"))
        print(
            f"check of 10-image commit #{commit + 1}: {seconds:.2f} s (CPU {CPU[-1]:.2f} s), exit {code}, "
            f"{counts(output)}, {len(findings)} findings"
        )
        for line in findings:
            print(f"  {line}")
        if commit < 2:
            if use_git:
                subprocess.run([*git, "commit", "-qm", f"commit {commit + 1}"], cwd=tree, check=True)
            continue
        seconds, code, output = run(["check", *common, *names], tree)
        print(f"same commit again (hook rerun): {seconds:.2f} s (CPU {CPU[-1]:.2f} s), exit {code}, {counts(output)}")
    base, hook = sorted(warm)[1], sorted(h for h, _ in hooks)[1]
    print(
        f"10-image commit (median of 3, {hook:.2f} s) / warm unchanged check (median of 3, {base:.2f} s): "
        f"{hook / base:.2f}x (target <= 1.5x)"
    )
    base_cpu, hook_cpu = sorted(warm_cpu)[1], sorted(c for _, c in hooks)[1]
    print(f"the same in CPU seconds ({hook_cpu:.2f} s / {base_cpu:.2f} s): {hook_cpu / base_cpu:.2f}x")

    from dupaudit.check.runner import run_check
    from dupaudit.config import load_config
    from dupaudit.engine import incremental

    config = load_config({"cache": str(cache)}, start=tree)
    report = run_check(config, names, cwd=tree).report
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in report.timings.items())
    print(f"in-process stages of that check: {stages}")
    incremental.update = lambda *args, **kwargs: None  # the full search, as before the index existed
    full = run_check(config, names, cwd=tree, update_baseline=False)
    full_findings = sorted(f.message for f in full.failing)
    print(f"findings equal to a full search's: {full_findings == findings} ({len(full_findings)} vs {len(findings)})")

    # A fresh checkout elsewhere (new paths, new mtimes) with the cache restored, as actions/cache does.
    copy, restored = workdir / "fresh-checkout", workdir / "restored-cache.sqlite"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(tree, copy, copy_function=shutil.copy, ignore=shutil.ignore_patterns(".git"))
    shutil.copy(cache, restored)
    seconds, code, output = run(["check", "--cache", str(restored)], copy)
    print(
        f"fresh copy, restored cache, whole dataset: {seconds:.1f} s, exit {code}, {counts(output)} (target 0 decoded)"
    )


if __name__ == "__main__":
    main()
