"""Check that two versions of dupaudit write byte-identical reports (a refactoring must not change behaviour).

    git worktree add ../dupaudit-before e1954f5                    # the version to compare against
    python benchmarks/compare_reports.py --before ../dupaudit-before/src
    python benchmarks/compare_reports.py --before ../dupaudit-before/src --data ../shared/data/cifar10/test
    python benchmarks/compare_reports.py --before ../dupaudit-before/src --data ../shared/data/cifar10

Each version runs in its own process with PYTHONPATH set to its src folder (`python -m dupaudit`). Without
--data, the before version writes the demo sample (`dupaudit demo`), the after version writes its own, and the
two trees are compared file by file before both versions scan the same one. Every scan is uncached
(`--no-cache`) and writes --json, --csv and --html; the three files, the summary printed on stdout (its elapsed
seconds masked) and the exit code are compared byte for byte. Prints one line per comparison; exits 1 on a
difference.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPORTS = ("report.json", "report.csv", "report.html")
ELAPSED = re.compile(rb"^[0-9.]+ s \xc2\xb7 ", re.MULTILINE)  # the summary's timing line: "2.0 s · 72 decoded"


def summary(result: subprocess.CompletedProcess[bytes]) -> bytes:
    """The printed summary without the wall-clock seconds, the one part that may differ between two runs."""
    return ELAPSED.sub(b"<seconds> s \xc2\xb7 ", result.stdout)


def run_dupaudit(src: Path, args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(src.resolve()), COLUMNS="120", NO_COLOR="1")
    command = [sys.executable, "-m", "dupaudit", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=False)


def scan(src: Path, data: Path, out: Path) -> tuple[subprocess.CompletedProcess[bytes], float]:
    out.mkdir(parents=True)
    # Relative output names, run from `out`: the summary names the files it wrote, and must not differ by folder.
    outputs = ["--json", "report.json", "--csv", "report.csv", "--html", "report.html"]
    started = time.perf_counter()
    result = run_dupaudit(src, ["scan", str(data.resolve()), "--no-cache", *outputs], cwd=out)
    return result, time.perf_counter() - started


def tree_differences(left: Path, right: Path) -> list[str]:
    """Relative paths that are in only one tree or whose bytes differ."""
    files = {p.relative_to(left) for p in left.rglob("*") if p.is_file()}
    others = {p.relative_to(right) for p in right.rglob("*") if p.is_file()}
    differing = [str(p) for p in sorted(files & others) if not filecmp.cmp(left / p, right / p, shallow=False)]
    return sorted(str(p) for p in files ^ others) + differing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="src folder of the version to compare against")
    parser.add_argument("--after", type=Path, default=HERE.parent / "src", help="src folder (default: this tree)")
    parser.add_argument("--data", type=Path, help="dataset folder to scan (default: the demo sample)")
    options = parser.parse_args()
    failures = 0

    def report(name: str, same: bool, detail: str = "") -> None:
        nonlocal failures
        failures += not same
        print(f"{'same' if same else 'DIFFERENT':9} {name}{': ' + detail if detail else ''}", flush=True)

    with tempfile.TemporaryDirectory(prefix="dupaudit-compare-") as temporary:
        work = Path(temporary)
        data = options.data
        if data is None:
            for side in ("before", "after"):
                made = run_dupaudit(getattr(options, side), ["demo", str(work / f"demo-{side}")])
                if made.returncode != 0:
                    sys.exit(f"{side}: dupaudit demo failed: {made.stderr.decode(errors='replace').strip()}")
            differences = tree_differences(work / "demo-before", work / "demo-after")
            report("demo sample files", not differences, ", ".join(differences[:5]))
            data = work / "demo-before"
        results = {}
        for side in ("before", "after"):
            result, seconds = scan(getattr(options, side), data, work / side)
            print(f"{side}: scanned {data} in {seconds:.1f} s (exit {result.returncode})", flush=True)
            if result.returncode not in (0, 1):
                sys.exit(f"{side}: dupaudit scan failed: {result.stderr.decode(errors='replace').strip()}")
            results[side] = result
        report("exit code", results["before"].returncode == results["after"].returncode)
        report("summary on stdout (seconds masked)", summary(results["before"]) == summary(results["after"]))
        for name in REPORTS:
            before, after = (work / side / name for side in ("before", "after"))
            same = filecmp.cmp(before, after, shallow=False)
            report(name, same, f"{before.stat().st_size:,} bytes" if same else "")
    print("reports byte-identical" if failures == 0 else f"{failures} difference(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
