"""Time `dupaudit check` cold and warm on a real dataset, and show that a commit of 10 images decodes 10.

    python benchmarks/check_speed.py /work/shared/data/cifar10 /tmp/dupaudit-measure

The dataset is mirrored with hard links into WORKDIR (no image is copied or ever opened for writing), so new
files can be added beside it; the fingerprint cache and the baseline live in WORKDIR too. Each step runs the
real command line in a fresh process, as pre-commit does. Prints one line per step.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(args: list[str], cwd: Path) -> tuple[float, int, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "dupaudit", *args], cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
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
    for folder, _, files in os.walk(root):
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

    seconds, files = stat_everything(tree)
    print(f"walk + stat {files:,} files: {seconds:.2f} s")
    seconds, code, output = run(["check", *common], tree)
    print(
        f"cold check, whole dataset, fresh cache: {seconds:.1f} s, exit {code}, {counts(output)}, "
        f"{len(re.findall(r'^(?:train|test)/.*: ', output, re.M)):,} finding lines"
    )
    seconds, code, output = run(["baseline", *common], tree)
    print(f"baseline (warm): {seconds:.1f} s, {output.strip().splitlines()[-1]}")
    for attempt in (1, 2):
        seconds, code, output = run(["check", *common], tree)
        print(f"warm check #{attempt}, whole dataset: {seconds:.1f} s, exit {code}, {counts(output)}")

    # A commit of 10 images: 5 new pictures and 5 re-encoded copies of dataset images under another class.
    from PIL import Image

    from dupaudit.sample import procedural_image

    added = []
    for index in range(5):
        target = tree / "train" / "cat" / f"new_{index}.jpg"
        procedural_image(424_242 + index, size=32).save(target, quality=90)
        added.append(target)
    for index, source_image in enumerate(sorted((tree / "train" / "dog").iterdir())[:5]):
        target = tree / "train" / "cat" / f"dog_copy_{index}.jpg"
        Image.open(source_image).convert("RGB").save(target, quality=80)
        added.append(target)
    names = [str(p.relative_to(tree)) for p in added]
    seconds, code, output = run(["check", *common, *names], tree)
    findings = [line for line in output.splitlines() if line.startswith("train/cat/")]
    print(f"check of a 10-image commit: {seconds:.1f} s, exit {code}, {counts(output)}, {len(findings)} findings")
    for line in findings:
        print(f"  {line}")
    seconds, code, output = run(["check", *common, *names], tree)
    print(f"same commit again (hook rerun): {seconds:.1f} s, exit {code}, {counts(output)}")

    from dupaudit.check.runner import run_check
    from dupaudit.config import load_config

    config = load_config({"cache": str(cache)}, start=tree)
    report = run_check(config, names, cwd=tree).report
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in report.timings.items())
    print(f"in-process stages of that check: {stages}")


if __name__ == "__main__":
    main()
