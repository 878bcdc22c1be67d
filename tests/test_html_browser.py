"""The HTML report in a real browser (headless Chromium via selenium): counts, filters, slider, hostile names.

Needs Debian's `chromium` and `chromium-driver` (installed by .ci/run); skipped with the reason when absent.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from dupaudit.engine.pipeline import scan
from dupaudit.formats import html as html_format

try:  # tests/ may or may not be a package
    from .html_support import HOSTILE, HOSTILE_FLAG, HOSTILE_LABEL, hostile_sample, probe_report, synthetic_report
except ImportError:
    from html_support import HOSTILE, HOSTILE_FLAG, HOSTILE_LABEL, hostile_sample, probe_report, synthetic_report

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1600",
)


def find_chromium() -> tuple[str, str] | None:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser():
    found = find_chromium()
    if found is None:
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="dupaudit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in CHROME_FLAGS + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    options.set_capability("unhandledPromptBehavior", "ignore")  # an alert() stays open, so a test can see it
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    report = scan(hostile_sample(folder / "data"), use_cache=False, jobs=1)
    page = folder / "report.html"
    page.write_text(html_format.render(report, probe=probe_report()), encoding="utf-8")
    return report, page


def open_page(driver, path: Path) -> None:
    driver.get(path.as_uri())
    assert driver.execute_script("return document.documentElement.getAttribute('data-ready')") == "1"


def shown(driver) -> list:
    return [g for g in driver.find_elements(By.CSS_SELECTOR, "#gallery article.group") if g.is_displayed()]


def wait_for_matching(driver, count: int) -> None:
    """Wait (up to 20 s) for a debounced redraw to show `count` matching groups."""
    WebDriverWait(driver, 20).until(
        lambda d: d.find_element(By.ID, "count").get_attribute("data-matching") == str(count)
    )


def assert_no_script_ran(driver) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 (an alert() from a file name would be open here)
    assert driver.execute_script("return window.__pwned === undefined")
    assert (
        driver.execute_script("return document.querySelectorAll('img:not(.thumb), svg [onload], [onerror]').length")
        == 0
    )


def test_gallery_shows_every_group_and_every_thumbnail(browser, sample):
    report, page = sample
    open_page(browser, page)
    assert len(shown(browser)) == len(report.groups)
    members = sum(len(g.members) for g in report.groups)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#gallery figure.member")) == members
    thumbs = browser.find_elements(By.CSS_SELECTOR, "#gallery img.thumb")
    assert len(thumbs) == members
    assert all(
        browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", t) for t in thumbs
    )  # every embedded image decodes
    assert len(browser.find_elements(By.CSS_SELECTOR, "#gallery .member.keep")) == len(report.groups)
    assert browser.find_element(By.ID, "count").get_attribute("data-matching") == str(len(report.groups))
    assert browser.find_elements(By.CSS_SELECTOR, "#classes svg .crow") and browser.find_elements(
        By.CSS_SELECTOR, "#probe figure.probe-arms svg"
    )


@pytest.mark.parametrize("csp", [True, False], ids=["with-csp", "escaping-alone"])
def test_hostile_file_names_show_as_text_and_run_nothing(browser, sample, tmp_path, csp):
    report, page = sample
    if not csp:  # the policy is a second line of defence: escaping alone must hold too
        text = page.read_text(encoding="utf-8")
        start = text.index("<meta http-equiv='Content-Security-Policy'")
        page = tmp_path / "no-csp.html"
        page.write_text(text[:start] + text[text.index(">", start) + 1 :], encoding="utf-8")
    open_page(browser, page)
    paths = [p.text for p in browser.find_elements(By.CSS_SELECTOR, "#gallery .member .path")]
    assert f"circle/{HOSTILE}" in paths and f"stripes/{HOSTILE_FLAG}" in paths
    assert f"{HOSTILE_LABEL}/0000.jpg" in paths
    options = [o.text for o in Select(browser.find_element(By.ID, "f-label")).options]
    assert HOSTILE_LABEL in options
    assert_no_script_ran(browser)
    browser.find_element(By.ID, "f-text").send_keys("onerror")  # the path filter: only the hostile groups
    wait_for_matching(browser, 2)
    assert len(shown(browser)) == 2
    assert_no_script_ran(browser)


def test_filters_change_which_groups_are_visible(browser, sample):
    report, page = sample
    open_page(browser, page)
    total = len(report.groups)
    conflicts = sum(g.is_label_conflict for g in report.groups)
    leaks = sum(g.is_leak for g in report.groups)
    assert 0 < conflicts < total and 0 < leaks < total
    browser.find_element(By.ID, "f-conflict").click()
    assert len(shown(browser)) == conflicts
    assert all("conflict" in g.get_attribute("class") for g in shown(browser))
    browser.find_element(By.ID, "f-conflict").click()
    browser.find_element(By.ID, "f-leak").click()
    assert len(shown(browser)) == leaks
    browser.find_element(By.ID, "f-leak").click()
    Select(browser.find_element(By.ID, "f-split")).select_by_value("test")
    assert len(shown(browser)) == sum(any(m.root == "test" for m in g.members) for g in report.groups)
    Select(browser.find_element(By.ID, "f-split")).select_by_value("")
    Select(browser.find_element(By.ID, "f-label")).select_by_value("stripes")
    stripes = sum(any(m.label == "stripes" for m in g.members) for g in report.groups)
    assert 0 < len(shown(browser)) == stripes < total
    Select(browser.find_element(By.ID, "f-label")).select_by_value("")
    for kind in {g.kind for g in report.groups}:
        browser.find_element(By.CSS_SELECTOR, f"input[name=kind][value={kind}]").click()
    assert shown(browser) == [] and "No group matches" in browser.find_element(By.ID, "gallery").text
    browser.find_element(By.ID, "f-reset").click()  # the form's reset redraws on the next tick
    wait_for_matching(browser, total)
    assert len(shown(browser)) == total


def test_distance_slider_hides_groups_above_it(browser, tmp_path):
    distances = [0, 2, 4, 6, 8, 10, 10, 4]
    page = tmp_path / "slider.html"
    page.write_text(html_format.render(synthetic_report(tmp_path / "data", distances)), encoding="utf-8")
    open_page(browser, page)
    slider = browser.find_element(By.ID, "f-distance")
    assert len(shown(browser)) == len(distances)
    slider.send_keys(Keys.HOME)  # the keyboard moves a range input as a user would
    assert [g.get_attribute("data-distance") for g in shown(browser)] == ["0"]
    for _ in range(4):
        slider.send_keys(Keys.ARROW_RIGHT)
    assert browser.find_element(By.ID, "f-distance-value").text == "4"
    visible = sorted(int(g.get_attribute("data-distance")) for g in shown(browser))
    assert visible == [0, 2, 4, 4]
    slider.send_keys(Keys.END)
    assert len(shown(browser)) == len(distances)
    Select(browser.find_element(By.ID, "f-order")).select_by_value("distance-desc")
    assert [int(g.get_attribute("data-distance")) for g in shown(browser)] == sorted(distances, reverse=True)
    Select(browser.find_element(By.ID, "f-order")).select_by_value("distance")
    assert [int(g.get_attribute("data-distance")) for g in shown(browser)] == sorted(distances)


def test_ten_thousand_groups_are_paginated(browser, tmp_path):
    report = synthetic_report(None, [i % 11 for i in range(10_000)])
    page = tmp_path / "big.html"
    page.write_text(html_format.render(report), encoding="utf-8")
    open_page(browser, page)
    count = browser.find_element(By.ID, "count")
    assert count.get_attribute("data-matching") == "10000"
    first = [g.get_attribute("data-group-id") for g in shown(browser)]
    assert len(first) == html_format.PAGE_SIZE  # only one page is in the DOM
    browser.find_element(By.CSS_SELECTOR, ".pager [data-page=next]").click()
    second = [g.get_attribute("data-group-id") for g in shown(browser)]
    assert len(second) == html_format.PAGE_SIZE and not set(first) & set(second)
    assert "page 2 of 200" in browser.find_element(By.CSS_SELECTOR, ".page-label").text
    browser.find_element(By.ID, "f-conflict").click()
    assert count.get_attribute("data-matching") == str(sum(g.is_label_conflict for g in report.groups))
    browser.find_element(By.ID, "f-distance").send_keys(Keys.HOME)
    expected = sum(g.is_label_conflict and g.max_distance == 0 for g in report.groups)
    assert count.get_attribute("data-matching") == str(expected)
    assert len(shown(browser)) == min(expected, html_format.PAGE_SIZE)


def test_a_screenshot_is_written(browser, sample, tmp_path):
    _, page = sample
    open_page(browser, page)
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
