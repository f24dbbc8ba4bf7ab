"""The leaderboard website in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, which ``.ci/run`` installs) loads every page of the site built from the
committed records with no console error, a click on a column header re-orders the rows by that
column, and a curve point shows its value on hover. Screenshots of the index and of one board are
kept in ``build/site-screenshots/`` (CI artefacts). Skips, saying why, where Chromium, its driver
or selenium is absent."""
import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from i2m2bench.harness.site import build_site

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "build" / "site-screenshots"
BOARD = "boards/avmnist-embedded-avdigits.html"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="headless Chromium not found (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The site of the committed leaderboards, served over HTTP on a free local port."""
    site = tmp_path_factory.mktemp("site")
    build_site(ROOT / "leaderboards", site)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # the test asserts on what matters
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield drv
    drv.quit()


def _errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_every_page_loads_without_a_console_error_or_broken_link(served, browser):
    site, url = served
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    units = [p for p in pages if p.startswith("units/")]
    # every page but the unit pages, and the first unit page of each board
    visit = [p for p in pages if not p.startswith("units/")]
    visit += sorted({p.rsplit("/", 1)[0]: p for p in reversed(units)}.values())
    for rel in visit:
        browser.get(url + rel)
        assert browser.execute_script("return document.readyState") == "complete", rel
        assert _errors(browser) == [], rel
        links = browser.execute_script(
            "return Array.from(document.querySelectorAll('a[href]'), a => a.href)")
        for link in links:
            assert link.startswith(url), f"{rel}: {link} leaves the site"
            target = site / link[len(url):].split("#")[0]
            assert target.is_file(), f"{rel}: broken link {link}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(url + "index.html")
    browser.save_screenshot(str(SHOTS / "index.png"))
    browser.get(url + BOARD)
    browser.save_screenshot(str(SHOTS / "board-avmnist.png"))
    assert (SHOTS / "index.png").stat().st_size > 10_000


def _column(browser, table_id: str, index: int) -> list[float | None]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr'), r => {"
        " const v = r.cells[arguments[1]].getAttribute('data-sort');"
        " return v === null || v === '' ? null : parseFloat(v); })", table_id, index)


def test_a_click_on_a_column_header_sorts_the_rows(served, browser):
    from selenium.webdriver.common.by import By

    _, url = served
    browser.get(url + BOARD)
    headers = browser.find_elements(By.CSS_SELECTOR, "#main thead th")
    index = next(i for i, h in enumerate(headers) if h.text.startswith("test accuracy"))
    before = _column(browser, "main", index)
    values, empty = [v for v in before if v is not None], [v for v in before if v is None]
    assert len(values) > 5 and values != sorted(values)  # the board's order (by family) is not by score
    headers[index].click()
    ascending = _column(browser, "main", index)
    assert ascending == sorted(values) + empty  # cells without a value last, either way
    assert headers[index].get_attribute("aria-sort") == "ascending"
    headers[index].click()
    assert _column(browser, "main", index) == sorted(values, reverse=True) + empty
    method = next(i for i, h in enumerate(headers) if h.text == "Method")
    headers[method].click()
    names = browser.execute_script(
        "return Array.from(document.querySelectorAll('#main tbody tr'), r => r.cells[0]"
        ".textContent.trim().toLowerCase())")
    assert names == sorted(names)
    assert _errors(browser) == []


def test_a_curve_point_shows_its_value_on_hover(served, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _, url = served
    browser.get(url + BOARD)
    tip = browser.find_element(By.ID, "tooltip")
    assert not tip.is_displayed()
    point = browser.find_elements(By.CSS_SELECTOR, "svg.chart circle")[3]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
    ActionChains(browser).move_to_element(point).perform()
    label = point.get_attribute("data-label")
    assert tip.is_displayed() and tip.text == label
    value = float(label.rsplit(": ", 1)[1])
    assert 0 <= value <= 100  # a score in percent, as the table beside it
    ActionChains(browser).move_by_offset(300, 300).perform()
    assert not tip.is_displayed()
