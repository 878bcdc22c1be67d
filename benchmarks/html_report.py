"""Open a dupaudit HTML report in headless Chromium: time the load and the filters, or write a screenshot.

    python benchmarks/html_report.py measure /tmp/cifar.html [--runs 3]
    python benchmarks/html_report.py screenshot /tmp/cifar.html docs/report.png [--height 2200] [--filter conflicts]

Needs Debian's chromium and chromium-driver (or any chromium + chromedriver on PATH) and selenium.
Times come from the page's own clock (performance.now()), so the driver's overhead is not counted.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

# Each step changes the form as a user would (the form's input/change listeners do the work) and returns how
# long, in ms, the page took to filter, rebuild the gallery and lay it out.
STEP = """
var run = arguments[0], t0 = performance.now();
run();
document.body.offsetHeight;  // force layout of the new gallery
return performance.now() - t0;
"""
STEPS = {
    "next page": "document.querySelector('.pager [data-page=next]').click();",
    "conflicts only": "var b = document.getElementById('f-conflict'); b.click();",
    "leakage only": "document.getElementById('f-conflict').click(); document.getElementById('f-leak').click();",
    "slider to 4": (
        "document.getElementById('f-leak').click(); var s = document.getElementById('f-distance');"
        " s.value = 4; s.dispatchEvent(new Event('input', {bubbles: true}));"
    ),
    "class = cat": (
        "var l = document.getElementById('f-label'); l.value = l.options[Math.min(4, l.options.length"
        " - 1)].value; l.dispatchEvent(new Event('change', {bubbles: true}));"
    ),
    "reset": (
        "var s = document.getElementById('f-distance'); s.value = s.max;"
        " s.dispatchEvent(new Event('input', {bubbles: true}));"
        " var l = document.getElementById('f-label'); l.value = '';"
        " l.dispatchEvent(new Event('change', {bubbles: true}));"
    ),
}


def chromium(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        sys.exit("chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS + (
        f"--user-data-dir={tempfile.mkdtemp(prefix='dupaudit-bench-')}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def open_report(driver, path: Path) -> dict:
    started = time.perf_counter()
    driver.get(path.resolve().as_uri())  # returns after the load event
    wall = time.perf_counter() - started
    timing = driver.execute_script("""
        var nav = performance.getEntriesByType('navigation')[0];
        var paint = performance.getEntriesByName('first-contentful-paint')[0] || {};
        return {ready: document.documentElement.getAttribute('data-ready'), dom: nav.domContentLoadedEventEnd,
                load: nav.loadEventEnd, paint: paint.startTime,
                groups: document.querySelectorAll('#gallery article.group').length,
                heap: performance.memory ? performance.memory.usedJSHeapSize : null};""")
    if timing["ready"] != "1":
        sys.exit("the report's script did not finish")
    timing["driver_get_s"] = wall
    return timing


def measure(args) -> None:
    path = Path(args.html)
    driver = chromium(1280, 1000)
    try:
        loads, steps = [], {name: [] for name in STEPS}
        for _ in range(args.runs):
            loads.append(open_report(driver, path))
            for name, code in STEPS.items():
                steps[name].append(
                    driver.execute_script(f"return (function () {{ {STEP} }})(function () {{ {code} }});")
                )
        version = driver.capabilities.get("browserVersion", "?")
    finally:
        driver.quit()
    result = {
        "file": str(path),
        "size_mb": round(path.stat().st_size / 1e6, 2),
        "open_ms_median": round(statistics.median(t["load"] for t in loads)),
        "dom_ready_ms_median": round(statistics.median(t["dom"] for t in loads)),
        "first_paint_ms_median": round(statistics.median(t["paint"] or 0 for t in loads)),
        "driver_get_s_median": round(statistics.median(t["driver_get_s"] for t in loads), 2),
        "groups_in_dom": loads[0]["groups"],
        "js_heap_mb": round((loads[0]["heap"] or 0) / 1e6, 1),
        "step_ms_median": {name: round(statistics.median(v), 1) for name, v in steps.items()},
        "runs": args.runs,
        "chromium": version,
        "machine": f"{platform.machine()}, {_cpus()} CPUs",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(result, indent=2))


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def screenshot(args) -> None:
    driver = chromium(args.width, args.height)
    try:
        open_report(driver, Path(args.html))
        if args.filter == "conflicts":
            driver.find_element("id", "f-conflict").click()
        if args.scroll:
            driver.execute_script(f"document.querySelector({json.dumps(args.scroll)}).scrollIntoView();")
        driver.save_screenshot(args.out)
    finally:
        driver.quit()
    print(f"wrote {args.out}")


def stress(args) -> None:
    """A report of N two-image groups made from real files under ROOT (a scan never gives that many groups)."""
    from dupaudit.engine.model import DuplicateGroup, GroupMember, Root, ScanReport, Settings, Summary
    from dupaudit.formats import html as html_format

    root = Path(args.root).resolve()
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: 2 * args.groups]
    if len(files) < 2 * args.groups:
        sys.exit(f"{root} holds {len(files)} images; {2 * args.groups} are needed")
    groups = []
    for index in range(args.groups):
        pair = files[2 * index : 2 * index + 2]
        members = tuple(
            GroupMember("data", p.relative_to(root).as_posix(), p.parent.name, i == 0, 32, 32, p.stat().st_size)
            for i, p in enumerate(pair)
        )
        groups.append(DuplicateGroup(index, "near", index % 11, members))
    conflicts = sum(g.is_label_conflict for g in groups)
    report = ScanReport(
        "bench",
        (Root("data", str(root), True),),
        Settings(),
        Summary(len(files), 0, len(groups), len(groups), conflicts, 0, 0.0, 0.0),
        (),
        (),
        tuple(groups),
        (),
        "data",
    )
    started = time.perf_counter()
    page = html_format.render(report)
    Path(args.out).write_text(page, encoding="utf-8")
    seconds = time.perf_counter() - started
    print(f"wrote {args.out}: {len(groups):,} groups, {len(page) / 1e6:.1f} MB in {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="time opening the report and using its filters")
    m.add_argument("html")
    m.add_argument("--runs", type=int, default=3)
    m.set_defaults(func=measure)
    s = sub.add_parser("screenshot", help="write a PNG of the report")
    s.add_argument("html")
    s.add_argument("out")
    s.add_argument("--width", type=int, default=1280)
    s.add_argument("--height", type=int, default=2200)
    s.add_argument("--filter", choices=["none", "conflicts"], default="none")
    s.add_argument("--scroll", help="a CSS selector to scroll to first")
    s.set_defaults(func=screenshot)
    t = sub.add_parser("stress", help="write a report of N synthetic groups of real images")
    t.add_argument("root")
    t.add_argument("out")
    t.add_argument("--groups", type=int, default=10_000)
    t.set_defaults(func=stress)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
