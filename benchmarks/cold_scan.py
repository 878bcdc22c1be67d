"""The cold scan against the decode floor, in one run: `dupaudit index build DATA -o INDEX` on an existing folder.

    python benchmarks/cold_scan.py /tmp/dupaudit-scale/data --index /tmp/cold.index [--jobs 2]
    python benchmarks/cold_scan.py /tmp/sub250k --index /tmp/x.index --baseline-src /work/main/src

The floor and the process-tree peak memory are scale.py's (the million-image benchmark, which also generates the
data); this script only times the cold scan of a folder that exists, so that one branch can be compared with
another (`--baseline-src`: the same build with that source tree first) without regenerating a million files.
Per build: wall and CPU seconds (the whole process tree), the ratio to the floor, the peak memory of the tree
(sampled every 50 ms) and of the scan's own process (its maximum resident set), the engine's stage timings;
with `--trace`, where the scan's process is, its memory and CPU, every second (what docs/scale.md's stage table
is read from).
The index files are deleted before each build (never the data); each build's JSON report is written beside the
index (INDEX.baseline.json, INDEX.this-tree.json) and the two are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import CPU, PeakMemory, _children_cpu, decode_floor  # noqa: E402 - the benchmark next door

_CHILD = """
import json, os, resource, sys, threading, time
from dupaudit.engine import index

def trace(path, main):  # each second: seconds, resident GB, CPU seconds of this process, where its main thread is
    started = time.perf_counter()
    with open(path, "w") as out:
        while True:
            frame, names = sys._current_frames().get(main), []
            while frame is not None:
                if "dupaudit" in frame.f_code.co_filename:
                    names.append(frame.f_code.co_name)
                frame = frame.f_back
            rss = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9
            where = "/".join(reversed(names[:4]))
            seconds, cpu = time.perf_counter() - started, time.process_time()
            print(f"{seconds:7.1f} s {rss:5.2f} GB {cpu:7.1f} s {where}", file=out)
            out.flush()
            time.sleep(1.0)

if len(sys.argv) > 5:
    threading.Thread(target=trace, args=(sys.argv[5], threading.main_thread().ident), daemon=True).start()
started = time.perf_counter()
report = index.build(sys.argv[1], sys.argv[2], jobs=int(sys.argv[3]))
if len(sys.argv) > 4:  # the JSON report, to compare two trees' answers
    from dupaudit.formats.json import render
    open(sys.argv[4], "w").write(render(report))
print(json.dumps({"wall": time.perf_counter() - started, "timings": report.timings, "images": report.summary.images,
                  "groups": report.summary.groups, "decoded": report.decoded,
                  "main_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def build(data: Path, target: Path, jobs: int, source: str | None, report: Path, trace: Path | None) -> dict:
    for path in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
        path.unlink(missing_ok=True)
    env = dict(os.environ)
    if source:
        env["PYTHONPATH"] = source
    cpu = _children_cpu()
    started = time.perf_counter()
    command = [sys.executable, "-c", _CHILD, str(data), str(target), str(jobs), str(report)]
    command += [str(trace)] if trace else []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    memory = PeakMemory(process.pid)
    out, _ = process.communicate()
    result = json.loads(out.strip().splitlines()[-1])
    result["process_wall"] = time.perf_counter() - started
    result["peak"] = memory.stop()
    result["cpu"] = _children_cpu() - cpu
    size = sum(p.stat().st_size for p in (target, Path(f"{target}-wal")) if p.exists())
    result["index_mb"] = size / 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--index", type=Path, required=True, help="the index file to write (deleted first)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--baseline-src", help="a source tree (its src/) to build with first, for a same-run ratio")
    parser.add_argument(
        "--trace",
        help="write each build's trace to TRACE.<tree>: every second, the resident memory "
        "and CPU seconds of the scan's process and the functions its main thread is in",
    )
    args = parser.parse_args()
    floor, files = decode_floor(args.data, args.jobs)
    floor_cpu = CPU["last"]
    print(f"decode floor ({files:,} files, {args.jobs} processes): {floor:.1f} s, CPU {floor_cpu:.1f} s", flush=True)
    reports = {name: Path(f"{args.index}.{name.replace(' ', '-')}.json") for name in ("baseline", "this tree")}
    for name, source in (("baseline", args.baseline_src), ("this tree", os.environ.get("PYTHONPATH"))):
        if name == "baseline" and not source:
            continue
        trace = Path(f"{args.trace}.{name.replace(' ', '-')}") if args.trace else None
        result = build(args.data, args.index, args.jobs, source, reports[name], trace)
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in result["timings"].items())
        wall, cpu = result["process_wall"], result["cpu"]
        print(
            f"{name} ({source}): cold index build {wall:.1f} s = {wall / floor:.2f}x the floor, "
            f"CPU {cpu:.1f} s = {cpu / floor_cpu:.2f}x; peak {result['peak'] / 1e9:.2f} GB "
            f"(the scan's process {result['main_peak'] / 1e9:.2f} GB); index {result['index_mb']:,.0f} MB; "
            f"{result['images']:,} images, {result['groups']:,} groups; {stages}; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    if args.baseline_src:
        same = reports["baseline"].read_bytes() == reports["this tree"].read_bytes()
        print(f"JSON reports of the two trees: {'identical' if same else 'DIFFERENT'} ({reports['this tree']})")


if __name__ == "__main__":
    main()
