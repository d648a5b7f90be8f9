"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright from PyPI with
``executable_path`` pointing at the system's Chromium (no browser download), against a real local cluster.

Screenshots go to ``artifacts/screenshots/`` (``CLIPPER_DEPLOY_ARTIFACTS`` moves it), which CI keeps.
"""

import os
import shutil
import signal
import threading
import urllib.request
from pathlib import Path

import pytest

from clipper_deploy_core.deployers.python import create_endpoint, deploy_python_closure
from clipper_deploy_core.testing import local_cluster, predict, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("CLIPPER_DEPLOY_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts"))
# The flags the machine's own probe found Chromium needs here: no sandbox as root, and no background networking on
# a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install chromium (.ci/run installs it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    with local_cluster("dashboard", tmp_path_factory.mktemp("dashboard")) as c:
        create_endpoint(c, "sum", "doubles", lambda xs: [str(sum(x)) for x in xs])
        yield c


@pytest.fixture()
def page(browser, conn):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"http://{conn.cm.get_admin_addr()}/dashboard")
    yield page
    context.close()
    assert errors == [], f"the page raised: {errors}"


def screenshot(page, name):
    ARTIFACTS.joinpath("screenshots").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "screenshots" / f"{name}.png"), full_page=True)


def row(page, model):
    return page.locator(f'#models tr[data-model="{model}"]')


def last(page, chart):
    text = page.locator(f'output[data-last="{chart}"]').text_content()
    return None if text in (None, "-") else float(text)


def load(conn, stop):
    i = 0
    while not stop.is_set():
        predict(conn, "sum", {"input": [float(i), 1.0]})
        i += 1


def test_the_page_shows_apps_and_replicas_and_a_chart_moves_under_load(conn, page):
    page.locator('#apps tr[data-app="sum"]').wait_for()
    assert row(page, "sum:1").locator("td.replica-count").text_content() == "1/1"
    assert "default" in page.locator('#apps tr[data-app="sum"]').text_content()
    stop = threading.Event()
    loader = threading.Thread(target=load, args=(conn, stop), daemon=True)
    loader.start()
    try:
        wait_until(lambda: (last(page, "throughput") or 0) > 0, "the throughput chart to show the load")
        first = last(page, "throughput")
        wait_until(lambda: last(page, "throughput") != first, "the chart's last value to move")
        wait_until(lambda: (last(page, "batch") or 0) >= 1 and last(page, "latency") is not None,
                   "the batch size and latency charts")
        screenshot(page, "dashboard-under-load")
    finally:
        stop.set()
        loader.join(30)
    names = "id => document.getElementById(id).data.map(t => t.name)"
    assert page.evaluate(f"({names})('chart-throughput')") == ["sum", "model sum:1"]  # per app and per model
    assert set(page.evaluate(f"({names})('chart-latency')")) == {"sum p50", "sum p99", "model sum:1 batch p50",
                                                                  "model sum:1 batch p99"}


def test_a_killed_replica_shows_its_state_change_and_its_restart(conn, page):
    row(page, "sum:1").wait_for()
    (replica,) = [r for r in conn.get_all_model_replicas(verbose=True) if r["model_name"] == "sum"]
    restarts = replica["restarts"]
    os.kill(replica["pid"], signal.SIGKILL)
    wait_until(lambda: row(page, "sum:1").locator("td.restarts").text_content() == str(restarts + 1),
               "the restart to be counted on the page")
    wait_until(lambda: row(page, "sum:1").locator("td.replica-states").text_content() == "ready",
               "the replica to be ready again")


def test_scaling_needs_the_token_and_works_with_it(conn, page):
    r = row(page, "sum:1")
    r.wait_for()
    r.locator("input.scale-to").fill("2")
    r.locator("button", has_text="Scale").click()
    result = page.locator("#action-result.refused")
    result.wait_for()
    assert "need the cluster's admin token" in result.text_content()
    assert conn.get_num_replicas("sum") == 1
    page.locator("#token").fill(conn.cm.admin_token)
    page.locator("#token-form button").click()
    assert page.locator("#token-state").text_content() == "actions enabled for this session"
    r.locator("input.scale-to").fill("2")
    r.locator("button", has_text="Scale").click()
    page.locator("#action-result.done").wait_for(timeout=60_000)
    wait_until(lambda: row(page, "sum:1").locator("td.replica-count").text_content() == "2/2", "2/2 on the page")
    assert conn.get_num_replicas("sum") == 2
    screenshot(page, "dashboard-scaled")


def test_rolling_back_to_a_version_from_the_page(conn, page):
    deploy_python_closure(conn, "sum", "2", "doubles", lambda xs: [f"v2:{sum(x)}" for x in xs])
    assert predict(conn, "sum", {"input": [1.0]})["output"] == "v2:1.0"
    page.locator("#token").fill(conn.cm.admin_token)
    page.locator("#token-form button").click()
    row(page, "sum:1").locator("button", has_text="Make current").click()
    page.locator("#action-result.done").wait_for(timeout=30_000)
    wait_until(lambda: row(page, "sum:1").locator("td.current").count() == 1, "version 1 marked current")
    assert row(page, "sum:2").locator("td.current").count() == 0
    assert predict(conn, "sum", {"input": [1.0]})["output"] == 1.0


def test_the_token_is_kept_in_the_browser_session_only(conn, browser):
    """A new browser session (a new context) starts read-only again."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"http://{conn.cm.get_admin_addr()}/dashboard")
    assert page.locator("#token-state").text_content() == "read-only"
    assert page.evaluate("sessionStorage.length") == 0 and page.evaluate("localStorage.length") == 0
    context.close()


def test_the_charting_library_comes_from_the_installed_package(conn):
    import plotly

    served = urllib.request.urlopen(f"http://{conn.cm.get_admin_addr()}/dashboard/assets/plotly.min.js").read()
    assert served == (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()


def test_a_query_sent_from_the_docs_page_is_answered(conn, browser):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"http://{conn.get_query_addr()}/docs")
    section = page.locator('section[data-operation="POST /sum/predict"]')
    section.wait_for()
    section.locator("textarea").fill('{"input": [1.0, 2.5]}')
    section.locator("button", has_text="Send").click()
    wait_until(lambda: "200" in (section.locator("pre.reply").text_content() or ""), "the reply on the page")
    reply = section.locator("pre.reply").text_content()
    assert '"default": false' in reply and ('"output": 3.5' in reply or '"output": "v2:3.5"' in reply), reply
    screenshot(page, "docs-page")
    context.close()
