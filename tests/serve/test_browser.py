"""The web page end to end in a real headless browser against a real server.

Debian's chromium (``/usr/bin/chromium``) driven by Playwright's Python API (no
``playwright install``: the browser is the system one). The server is ``recloop serve``
on a free port with EASE fitted on ml-100k in the test session.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from serve_helpers import free_port, missing, start_server, stop_server, wait_healthy

CHROMIUM = os.environ.get("RECLOOP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install playwright; no `playwright install` needed)")
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        missing(f"no chromium at {CHROMIUM} (apt-get install chromium, or set RECLOOP_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(ml100k_artifact, tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(ml100k_artifact, folder / "events.db", port, log_path=folder / "server.log")
    try:
        wait_healthy(process, url)
        yield url
    finally:
        stop_server(process)


def recommendations(page) -> list[str]:
    return page.locator("#recs > li").evaluate_all("rows => rows.map(r => r.dataset.itemId)")


def wait_for_refresh(page, after: int) -> int:
    page.wait_for_function(f"Number(document.querySelector('#recs').dataset.version) > {after}", timeout=30_000)
    return int(page.locator("#recs").get_attribute("data-version"))


@pytest.mark.slow
def test_feedback_in_the_page_changes_the_recommendations(browser, server):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server)
    version = wait_for_refresh(page, 0)
    first = recommendations(page)
    assert len(first) == 10
    assert "popular" in page.locator("#source").inner_text()  # a new visitor: no events yet

    # Search the catalog and like a film.
    page.fill("#search", "star wars")
    page.wait_for_selector("#results > li")
    row = page.locator("#results > li", has_text="Star Wars (1977)").first
    row.locator("button.like").click()
    version = wait_for_refresh(page, version)
    second = recommendations(page)
    assert second != first and "50" not in second  # Star Wars is ml-100k item 50: known now, never shown
    assert "ease" in page.locator("#source").inner_text() and "model" in page.locator("#source").inner_text()
    assert "click: Star Wars (1977)" in page.locator("#activity").inner_text()
    reasons = page.locator("#recs > li .reasons").all_inner_texts()
    assert sum("Because you watched Star Wars (1977)" in r for r in reasons) >= 5  # why, item by item

    # Rate another one from the list of recommendations: the list changes again.
    top = page.locator("#recs > li").first
    top_id = top.get_attribute("data-item-id")
    second_titles = page.locator("#recs > li .title").all_inner_texts()
    top.locator("select.rate").select_option("5")
    version = wait_for_refresh(page, version)
    third = recommendations(page)
    assert top_id not in third and third != second
    top_title = second_titles[0]
    assert any(f"Because you watched {top_title}" in r for r in page.locator("#recs > li .reasons").all_inner_texts())

    # A skip removes the item at once.
    skipped = third[3]
    page.locator(f"#recs > li[data-item-id='{skipped}'] button.skip").click()
    version = wait_for_refresh(page, version)
    assert skipped not in recommendations(page)

    # A genre filter keeps only that genre.
    page.select_option("#filter", "Horror")
    wait_for_refresh(page, version)
    horror = recommendations(page)
    assert len(horror) == 10
    for item_id in horror[:3]:
        info = page.request.get(f"{server}/items/{item_id}").json()
        assert "Horror" in info["features"]["genre"]
    assert not errors, errors


@pytest.mark.slow
def test_api_docs_render_without_the_internet(browser, server):
    """``/docs`` draws every operation from this server's own files: any request to
    another host is blocked and recorded (offline, a CDN would leave a blank page)."""
    page = browser.new_page()
    remote = []

    def only_local(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:
            remote.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(server + "/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    summaries = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/recommend" in summaries and "/events" in summaries
    assert not remote, remote


@pytest.mark.slow
def test_the_online_panel_shows_the_report_of_the_pages_own_clicks(browser, server):
    """A like on a recommended item carries the answer's request id: the panel's table
    (GET /online-report) counts it at the item's position."""
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server)
    version = wait_for_refresh(page, 0)
    page.fill("#user-id", "1")  # a user of the model
    page.dispatch_event("#user-id", "change")
    version = wait_for_refresh(page, version)
    assert "arm A" in page.locator("#source").inner_text()
    page.locator("#recs > li").nth(2).locator("button.like").click()  # the third position
    wait_for_refresh(page, version)
    page.locator("#online-panel summary").click()
    page.wait_for_selector("#online-table tbody tr")
    cells = page.locator("#online-table tbody tr").first.locator("td").all_inner_texts()
    assert cells[1] == "A" and int(cells[3]) >= 2 and int(cells[4]) == 1  # arm, impressions, clicks
    assert cells[7].split()[:3] == ["0", "0", "1"]  # clicks at positions 1, 2, 3
    assert not errors, errors
