"""The dashboard in a real browser: Playwright driving Debian's Chromium against a
real ``uniqc-store serve`` process on a free loopback port, on a SQLite file and, when
their URLs are set, on PostgreSQL and MariaDB.

Skipped (with the reason) when Playwright or Chromium is missing, unless ``CI``
is set: CI installs both (``.ci/run``), so there a missing browser fails.
Set ``UNIQC_DASHBOARD_SCREENSHOTS=docs`` to (re)write the README's screenshots.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import URL, update
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.conftest import scratch_url
from tests.http_server import prefix_proxy, served, start_serve, stop_serve
from tests.repository.test_retention import archived, archived_ids, poisoned
from uniqc_store import CURRENT_SCHEMA_VERSION, TaskInfo, TaskShard, TaskStore
from uniqc_store.api.app import create_app
from uniqc_store.schema.tables import archived_tasks

SCHEMA_FOOTER = f"Schema version {CURRENT_SCHEMA_VERSION} of {CURRENT_SCHEMA_VERSION}"

CHROMIUM = os.environ.get("UNIQC_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "t0ken-for-the-browser"
PROXIED = "tasks.example"  # the name a reverse proxy serves the dashboard under
EVIL = "evil.example"  # another site, open in the same browser
REBOUND = "rebind.example"  # a name whose DNS was pointed at 127.0.0.1 (DNS rebinding)
SCREENSHOTS = os.environ.get("UNIQC_DASHBOARD_SCREENSHOTS")

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]


def _missing() -> str | None:
    if sync_playwright is None:
        return "playwright is not installed (pip install playwright)"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {reason}", pytrace=False)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        # names a page may be served from, all on this machine (as DNS rebinding makes them)
        names = ", ".join(f"MAP {name} 127.0.0.1" for name in (PROXIED, EVIL, REBOUND))
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", f"--host-resolver-rules={names}"]
        )
        yield launched
        launched.close()


@dataclass
class Server:
    base: str
    store: TaskStore  # this test process's own store: "another process" to the server


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    with scratch_url(request.param, tmp_path) as url:
        yield url


def serve(db_url: URL, token: str | None = None, *options: str) -> Iterator[Server]:
    store = TaskStore(url=db_url, auto_migrate=True)
    process, base = start_serve(db_url, *options, token=token)
    try:
        yield Server(base, store)
    finally:
        stop_serve(process)
        store.close()


@pytest.fixture
def server(db_url: URL) -> Iterator[Server]:
    yield from serve(db_url)


@pytest.fixture
def locked_server(tmp_path: Path) -> Iterator[Server]:
    url = URL.create("sqlite+pysqlite", database=str(tmp_path / "tasks.sqlite"))
    yield from serve(url, TOKEN)


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Server]:
    """For what happens in the page only: its routes are tested on every engine."""
    yield from serve(URL.create("sqlite+pysqlite", database=str(tmp_path / "tasks.sqlite")))


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="Asia/Tokyo", locale="en-GB"
    )
    context.set_default_timeout(10_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert errors == [], errors


BACKENDS = ["originq:WK_C180", "quafu:ScQ-P136", "ibm:brisbane"]
STATUSES = ["success", "success", "failed", "running", "pending", "cancelled"]


def seed(store: TaskStore, n: int = 30) -> list[str]:
    """``n`` tasks an hour apart (``uqt_..00`` oldest); a secret in each metadata."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ids = [f"uqt_{i:032x}" for i in range(n)]
    store.save_many(
        TaskInfo(
            task_id=task_id,
            backend=BACKENDS[i % 3],
            status=STATUSES[i % 6],
            shots=1000 + i,
            submit_time=(start + timedelta(hours=i)).isoformat(),
            metadata={"api_key": "k-secret", "circuit": f"bell_{i}"},
            result={"counts": {"00": 500 + i, "11": 500 - i}} if i % 6 < 2 else None,
        )
        for i, task_id in enumerate(ids)
    )
    return ids


def rows(page: Page) -> Any:
    return page.locator("table.tasks tbody tr")


def shoot(page: Page, name: str, **options: Any) -> None:
    if SCREENSHOTS:
        page.wait_for_timeout(300)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"dashboard-{name}.png"), **options)


def test_load_filter_and_page(server: Server, page: Page) -> None:
    ids = seed(server.store)
    page.goto(server.base + "/")
    expect(page.locator("#total")).to_have_text("30 tasks")
    expect(rows(page)).to_have_count(25)
    expect(rows(page).first.locator("a")).to_have_text(ids[-1])
    expect(page.locator("#page-info")).to_have_text("Page 1: 1–25 of 30")
    expect(page.locator("#schema")).to_have_text(
        f"Schema version {CURRENT_SCHEMA_VERSION} of {CURRENT_SCHEMA_VERSION}"
    )
    expect(page.locator("#live-state")).to_have_text("● Live")
    shoot(page, "tasks", full_page=True)
    utc = page.locator("tbody time").first.get_attribute("title") or ""
    assert utc.startswith("UTC 2026-01-02 05:00:00")  # ids[29]: 29 h after 1 Jan
    expect(page.locator("tbody time").first).to_contain_text("14:00:00")  # Tokyo, UTC+9

    page.get_by_role("button", name="Next →").click()
    expect(rows(page)).to_have_count(5)
    expect(page.locator("#page-info")).to_have_text("Page 2: 26–30 of 30")
    expect(page.get_by_role("button", name="Next →")).to_be_disabled()
    page.get_by_role("button", name="← Previous").click()
    expect(rows(page)).to_have_count(25)

    page.get_by_label("Status").select_option("failed")
    expect(page.locator("#total")).to_have_text("5 tasks")
    expect(rows(page)).to_have_count(5)
    assert "status=failed" in page.url
    page.get_by_label("Backend").select_option(BACKENDS[2])
    expect(page.locator("#total")).to_have_text("5 tasks")  # i % 6 == 2 is always i % 3 == 2
    page.get_by_label("Backend").select_option("")
    page.get_by_label("Status").select_option("")
    page.get_by_label("Order").select_option("oldest")
    expect(rows(page).first.locator("a")).to_have_text(ids[0])
    page.reload()  # the filters live in the URL
    expect(page.get_by_label("Order")).to_have_value("oldest")
    expect(rows(page).first.locator("a")).to_have_text(ids[0])


def test_open_archive_restore_and_delete(server: Server, page: Page) -> None:
    ids = seed(server.store, 3)
    server.store.save_shard(TaskShard(ids[1], 0, "plat-1", BACKENDS[1], status="success"))
    page.goto(server.base + "/")
    page.locator(f"a:text('{ids[1]}')").focus()
    page.keyboard.press("Enter")  # real links: the keyboard opens a task
    expect(page.locator("#task-state")).to_have_text("Live")
    expect(page.locator("pre.json").first).to_contain_text('"api_key": "[REDACTED]"')
    expect(page.locator("pre.json").nth(1)).to_contain_text('"11": 499')
    expect(page.get_by_role("cell", name="plat-1")).to_be_visible()
    shoot(page, "task", full_page=True)

    page.get_by_role("button", name="Archive").click()
    expect(page.locator("#task-state")).to_contain_text("Archived")
    assert server.store.get(ids[1]) is None and server.store.get_archived(ids[1]) is not None
    page.goto(server.base + "/#/archived")
    expect(page.locator("#total")).to_have_text("1 task")
    page.get_by_role("link", name=ids[1]).click()
    page.get_by_role("button", name="Restore").click()
    expect(page.locator("#task-state")).to_have_text("Live")
    assert server.store.get(ids[1]) is not None

    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    assert server.store.get(ids[1]) is not None
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator("#total")).to_have_text("2 tasks")
    assert server.store.get(ids[1]) is None
    expect(page.locator("#alert")).to_have_text(f"Deleted {ids[1]}.")  # on the list it went to
    page.get_by_role("link", name="Archive", exact=True).click()
    expect(page.locator("#view-title")).to_have_text("Archived tasks")
    expect(page.locator("#alert")).to_be_hidden()  # a notice does not follow you to another tab


def test_archive_expired_after_a_dry_run(server: Server, page: Page) -> None:
    seed(server.store, 6)  # written now: nothing is 72 h old
    page.goto(server.base + "/")
    page.get_by_text("Archive expired tasks").click()
    page.get_by_label("Not updated for (hours)").fill("0")
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#expired-outcome")).to_contain_text("Dry run: 4 task(s) would be archived")
    assert server.store.count_archived() == 0
    page.get_by_label("Not updated for (hours)").fill("1")
    expect(page.locator("#expired-run")).to_be_disabled()  # the dry run no longer applies
    page.get_by_label("Not updated for (hours)").fill("0")
    page.get_by_role("button", name="Dry run").click()
    page.get_by_role("button", name="Archive 4 task(s)").click()
    dialog = page.get_by_role("dialog")  # it asks first, as a delete does
    expect(dialog).to_contain_text("Archive 4 task(s) not updated for 0 hour(s)?")
    dialog.get_by_role("button", name="Cancel").click()
    assert server.store.count_archived() == 0
    page.get_by_role("button", name="Archive 4 task(s)").click()
    dialog.get_by_role("button", name="Archive").click()
    expect(page.locator("#expired-outcome")).to_contain_text("Archived 4 task(s)")
    expect(page.locator("#total")).to_have_text("2 tasks")
    assert server.store.count_archived() == 4


def _old_archive(store: TaskStore) -> None:
    """Four archived tasks, 40, 35, 31 and 2 days old, two shards each; one live task."""
    for task_id, days in (("uqt_old_a", 40), ("uqt_old_b", 35), ("uqt_old_c", 31), ("uqt_new", 2)):
        archived(store, task_id, 24 * days)
    store.save(TaskInfo(task_id="uqt_live", backend="dummy", status="success"))


def _dry_run(page: Page, age: str, unit: str = "days", keep: str = "0") -> None:
    page.get_by_label("Archived more than").fill(age)
    page.get_by_label("Unit").select_option(unit)
    page.get_by_label("Always keep the newest").fill(keep)
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#purge-outcome")).to_contain_text("Dry run: ")  # cleared by the fills


def test_purge_the_archive_after_a_dry_run(server: Server, page: Page) -> None:
    store = server.store
    _old_archive(store)
    sent: list[Any] = []  # the purge calls' bodies, in order
    page.on(
        "request",
        lambda r: sent.append(r.post_data_json) if r.url.endswith("/api/archive/purge") else None,
    )
    # no event stream: what refreshes the list after the purge is the purge itself
    page.route("**/api/events", lambda route: route.abort())
    page.goto(server.base + "/#/archived")
    expect(page.locator("#total")).to_have_text("4 tasks")
    summary = page.get_by_text("Purge old archived tasks…")
    summary.focus()
    page.keyboard.press("Enter")  # a <details>: the keyboard opens it
    age = page.get_by_label("Archived more than")
    expect(age).to_have_value("30")
    age.press("Enter")  # the form's submit: the dry run, 30 days, nothing kept
    outcome = page.locator("#purge-outcome")
    expect(outcome).to_contain_text("Dry run: 3 archived tasks (6 shards) archived before")
    expect(outcome).to_contain_text("would be deleted: uqt_old_a, uqt_old_b, uqt_old_c.")
    assert archived_ids(store) == ["uqt_new", "uqt_old_a", "uqt_old_b", "uqt_old_c"]

    _dry_run(page, "72", "hours")  # 3 days: uqt_new (2 days) is still too young
    expect(outcome).to_contain_text("Dry run: 3 archived tasks")
    _dry_run(page, "47", "hours")
    expect(outcome).to_contain_text("Dry run: 4 archived tasks (8 shards)")
    purge = page.locator("#purge-run")
    expect(purge).to_have_text("Purge 4 tasks…")
    page.get_by_label("Always keep the newest").fill("2")
    expect(purge).to_be_disabled()  # the dry run no longer applies
    expect(purge).to_have_text("Purge")
    expect(outcome).to_be_empty()

    _dry_run(page, "30", keep="0")
    purge.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete 3 archived tasks and their 6 shards for good?")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # the safe default
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert archived_ids(store) == ["uqt_new", "uqt_old_a", "uqt_old_b", "uqt_old_c"]

    _dry_run(page, "30", keep="2")  # the two newest (uqt_new, uqt_old_c) stay
    expect(outcome).to_contain_text("Dry run: 2 archived tasks (4 shards)")
    expect(outcome).to_contain_text("(the newest 2 archived tasks kept)")
    purge.click()
    expect(dialog).to_contain_text("Delete 2 archived tasks and their 4 shards for good?")
    dialog.get_by_role("button", name="Purge").click()
    expect(outcome).to_have_text("Purged 2 archived tasks and 4 shards in 1 batch.")
    expect(page.locator("#total")).to_have_text("2 tasks")  # the list, refreshed
    expect(rows(page)).to_have_count(2)
    assert archived_ids(store) == ["uqt_new", "uqt_old_c"]
    assert (
        store.get_archived_shards("uqt_old_a") == []
        and store.get_archived_shards("uqt_old_b") == []
    )
    assert len(store.get_archived_shards("uqt_old_c")) == 2
    assert store.get("uqt_live") is not None  # live tasks are not the purge's
    expect(purge).to_be_disabled()  # a purge is followed by a new dry run, not a repeat
    # one real purge was sent (none on Cancel), after a dry run of the same parameters
    real = [body for body in sent if not body["dry_run"]]
    assert len(real) == 1 and real[0]["keep_last"] == 2, sent
    assert 720 <= real[0]["older_than_hours"] < 720.01  # 30 days, from the dry run's moment
    assert sent[-2]["dry_run"] and sent[-2]["keep_last"] == 2


def test_purge_deletes_only_what_its_dry_run_showed(sqlite_server: Server, page: Page) -> None:
    """What changes between the dry run and the Purge click (a task archived by someone
    else) is found before anything is deleted; the age counts from the dry run."""
    store = sqlite_server.store
    _old_archive(store)
    page.goto(sqlite_server.base + "/#/archived")
    page.get_by_text("Purge old archived tasks…").click()
    _dry_run(page, "30")
    outcome = page.locator("#purge-outcome")
    expect(outcome).to_contain_text("Dry run: 3 archived tasks")
    archived(store, "uqt_old_d", 24 * 50)  # archived meanwhile, by someone else
    page.locator("#purge-run").click()
    page.get_by_role("dialog").get_by_role("button", name="Purge").click()
    expect(outcome).to_contain_text(
        "The archive changed since the dry run; nothing was deleted. Dry run: 4 archived tasks"
    )
    assert len(archived_ids(store)) == 5
    expect(page.locator("#purge-run")).to_have_text("Purge 4 tasks…")

    # The age counts from the dry run: a task 10 s short of 60 h at the dry run is
    # past 60 h when Purge is clicked, and stays (it was not in the dry run).
    archived(store, "uqt_almost", 60 - 10 / 3600)
    aged = time.monotonic() + 10
    _dry_run(page, "60", "hours")
    expect(outcome).to_contain_text("Dry run: 4 archived tasks")
    expect(outcome).not_to_contain_text("uqt_almost")
    page.wait_for_timeout(1000 * (aged - time.monotonic()) + 1000)
    page.locator("#purge-run").click()
    page.get_by_role("dialog").get_by_role("button", name="Purge").click()
    expect(outcome).to_have_text("Purged 4 archived tasks and 8 shards in 1 batch.")
    assert archived_ids(store) == ["uqt_almost", "uqt_new"]


def test_purge_errors_are_shown_without_credentials(
    server: Server, page: Page, db_url: URL
) -> None:
    """A database that refuses the delete (a real trigger): the server's masked message
    in the page's alert, nothing deleted, and no password anywhere in the page."""
    store = server.store
    _old_archive(store)
    page.goto(server.base + "/#/archived")
    page.get_by_text("Purge old archived tasks…").click()
    _dry_run(page, "30")
    expect(page.locator("#purge-outcome")).to_contain_text("Dry run: 3 archived tasks")
    with poisoned(store, db_url.get_backend_name(), "DELETE", "uqt_old_b"):
        page.locator("#purge-run").click()
        page.get_by_role("dialog").get_by_role("button", name="Purge").click()
        alert = page.locator("#alert")
        expect(alert).to_contain_text("503: ")
    assert len(archived_ids(store)) == 4  # the one batch failed whole
    expect(page.locator("#purge-outcome")).to_contain_text("Dry run: 3 archived tasks")
    if db_url.password:
        assert db_url.password not in page.content()
    _dry_run(page, "30")  # the next call that works clears the error
    expect(page.locator("#alert")).to_be_hidden()


def test_purge_with_a_token(locked_server: Server, page: Page) -> None:
    """The purge's JSON POSTs carry the bearer token, as every other call does."""
    store = locked_server.store
    _old_archive(store)
    headers: list[dict[str, str]] = []
    page.on(
        "request",
        lambda r: headers.append(r.headers) if r.url.endswith("/api/archive/purge") else None,
    )
    page.goto(locked_server.base + "/#/archived")
    page.get_by_label("API token", exact=True).fill(TOKEN)
    page.get_by_role("button", name="Unlock").click()
    expect(page.locator("#total")).to_have_text("4 tasks")
    page.get_by_text("Purge old archived tasks…").click()
    _dry_run(page, "30")
    page.get_by_role("button", name="Purge 3 tasks…").click()
    page.get_by_role("dialog").get_by_role("button", name="Purge").click()
    expect(page.locator("#purge-outcome")).to_have_text(
        "Purged 3 archived tasks and 6 shards in 1 batch."
    )
    assert archived_ids(store) == ["uqt_new"]
    assert len(headers) == 3  # the dry run, its re-check, the purge
    for sent in headers:
        assert sent["authorization"] == f"Bearer {TOKEN}"
        assert sent["content-type"] == "application/json"


def test_purge_stopped_part_way_says_what_went(sqlite_server: Server, page: Page) -> None:
    """The route's batches are 1,000 tasks: the second fails, the first stays deleted."""
    store = sqlite_server.store
    ids = [f"uqt_{i:04d}" for i in range(1002)]
    store.save_many(TaskInfo(task_id=task_id, backend="b", status="success") for task_id in ids)
    store.archive_expired(hours=0)
    with store.engine.begin() as conn:
        conn.execute(
            update(archived_tasks).values(
                archived_at=(datetime.now(timezone.utc) - timedelta(days=40)).isoformat()
            )
        )
    page.goto(sqlite_server.base + "/#/archived")
    page.get_by_text("Purge old archived tasks…").click()
    _dry_run(page, "30")
    outcome = page.locator("#purge-outcome")
    expect(outcome).to_contain_text("Dry run: 1,002 archived tasks (0 shards)")
    expect(outcome).to_contain_text("and 982 more.")
    with poisoned(store, "sqlite", "DELETE", ids[-1]):
        page.locator("#purge-run").click()
        page.get_by_role("dialog").get_by_role("button", name="Purge").click()
        expect(outcome).to_have_text("Stopped by an error after deleting 1,000 tasks and 0 shards.")
    expect(page.locator("#alert")).to_contain_text("part-way")
    expect(page.locator("#total")).to_have_text("2 tasks")
    assert archived_ids(store) == ids[1000:]


def test_changes_from_another_process_appear_without_reload(server: Server, page: Page) -> None:
    seed(server.store, 2)
    page.goto(server.base + "/")
    expect(page.locator("#total")).to_have_text("2 tasks")
    expect(page.locator("#live-state")).to_have_text("● Live")
    page.evaluate("window.notReloaded = true")
    server.store.save(TaskInfo(task_id="uqt_from_elsewhere", backend="dummy", status="running"))
    expect(page.get_by_role("link", name="uqt_from_elsewhere")).to_be_visible()
    expect(page.locator("#total")).to_have_text("3 tasks")
    expect(page.get_by_role("link", name="dummy")).to_be_visible()  # the backend chart
    server.store.archive_task("uqt_from_elsewhere")
    expect(page.locator("#total")).to_have_text("2 tasks")
    assert page.evaluate("window.notReloaded") is True


def test_token_prompt_then_unlocked(locked_server: Server, page: Page) -> None:
    seed(locked_server.store, 3)
    page.goto(locked_server.base + "/")
    expect(page.get_by_role("heading", name="This store needs an API token")).to_be_visible()
    expect(page.get_by_label("API token", exact=True)).to_be_focused()
    expect(page.locator("#view")).to_be_hidden()
    shoot(page, "token")
    expect(page.locator("#auth-why")).to_have_text(
        "The server was started with UNIQC_STORE_API_TOKEN. Enter that token to continue."
    )
    page.get_by_label("API token", exact=True).fill("wrong")
    page.get_by_label("API token", exact=True).press("Enter")
    expect(page.locator("#auth-why")).to_have_text(
        "The server refused that token. Enter the token it was started with "
        "(UNIQC_STORE_API_TOKEN) to continue."
    )
    page.get_by_label("API token", exact=True).fill(TOKEN)
    page.get_by_role("button", name="Unlock").click()
    expect(page.locator("#total")).to_have_text("3 tasks")
    expect(page.locator("#live-state")).to_have_text("● Live")
    assert page.evaluate("sessionStorage.getItem('uniqc-store-token')") == TOKEN
    locked_server.store.save(TaskInfo(task_id="uqt_live_with_token", backend="dummy"))
    expect(page.get_by_role("link", name="uqt_live_with_token")).to_be_visible()


def test_narrow_screen_and_dark_scheme(server: Server, browser: Browser) -> None:
    seed(server.store, 8)
    context = browser.new_context(viewport={"width": 375, "height": 800}, color_scheme="dark")
    page = context.new_page()
    page.goto(server.base + "/")
    expect(rows(page)).to_have_count(8)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways at 375 px ({width} px wide)"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 24, 28)"
    shoot(page, "narrow-dark")
    context.close()


def test_purge_panel_at_375px_dark(sqlite_server: Server, browser: Browser) -> None:
    """The purge panel, its dry run (20 ids listed) and its dialog fit a phone's width
    in dark mode; the danger button keeps the dark scheme's colour."""
    store = sqlite_server.store
    for i in range(24):
        archived(store, f"uqt_{i:032x}", 24 * (40 + i), shards=1)
    context = browser.new_context(viewport={"width": 375, "height": 800}, color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(sqlite_server.base + "/#/archived")
        expect(rows(page)).to_have_count(24)
        page.get_by_text("Purge old archived tasks…").click()
        _dry_run(page, "30", keep="1")
        expect(page.locator("#purge-outcome")).to_contain_text(
            "Dry run: 23 archived tasks (23 shards)"
        )
        expect(page.locator("#purge-outcome")).to_contain_text("and 3 more.")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways at 375 px ({width} px wide)"
        colour = page.locator("#purge-run").evaluate("(b) => getComputedStyle(b).color")
        assert colour == "rgb(255, 138, 128)"  # --danger, dark
        page.locator("#purge").scroll_into_view_if_needed()
        shoot(page, "purge")
        page.locator("#purge-run").click()
        dialog = page.get_by_role("dialog")
        box = dialog.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
        page.keyboard.press("Escape")
        assert len(archived_ids(store)) == 24
    finally:
        context.close()


# -- under a prefix, and against other sites ---------------------------------------


def _use_the_dashboard(page: Page, store: TaskStore, ids: list[str]) -> None:
    """Load, open a task, archive it with the button, see a change from elsewhere."""
    expect(page.locator("#total")).to_have_text(f"{len(ids)} tasks")
    expect(page.locator("#schema")).to_have_text(
        f"Schema version {CURRENT_SCHEMA_VERSION} of {CURRENT_SCHEMA_VERSION}"
    )
    expect(page.locator("#live-state")).to_have_text("● Live")
    page.get_by_role("link", name=ids[0]).click()
    expect(page.locator("pre.json").first).to_contain_text('"api_key": "[REDACTED]"')
    page.get_by_role("button", name="Archive").click()  # a POST: the server's write rules
    expect(page.locator("#task-state")).to_contain_text("Archived")
    assert store.get(ids[0]) is None and store.get_archived(ids[0]) is not None
    page.get_by_role("link", name="← Archive").click()
    expect(page.locator("#total")).to_have_text("1 task")
    store.save(TaskInfo(task_id="uqt_from_elsewhere", backend="dummy", status="running"))
    store.archive_task("uqt_from_elsewhere")
    expect(page.locator("#total")).to_have_text("2 tasks")  # the event stream, under the prefix


def test_under_a_mount(db_url: URL, page: Page) -> None:
    """``app.mount("/store", create_app(store))`` in an application's own FastAPI app."""
    store = TaskStore(url=db_url, auto_migrate=True)
    ids = seed(store, 3)
    parent = FastAPI()
    parent.mount("/store", create_app(store))
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    try:
        with served(parent) as base:
            page.goto(f"{base}/store/")
            _use_the_dashboard(page, store, [ids[-1], *ids[:-1]])
    finally:
        store.close()
    assert failed == []


def test_behind_a_proxy_with_a_prefix_a_name_and_a_token(db_url: URL, page: Page) -> None:
    """``uniqc-store serve --root-path /store --allowed-host tasks.example`` behind a
    proxy that serves it at ``http://tasks.example:PORT/store/``, keeping the Host."""
    options = ("--root-path", "/store", "--allowed-host", PROXIED)
    for server in serve(db_url, TOKEN, *options):
        ids = seed(server.store, 3)
        with served(prefix_proxy(server.base, "/store")) as proxy:
            port = proxy.rsplit(":", 1)[1]
            page.goto(f"http://{PROXIED}:{port}/store/")
            page.get_by_label("API token", exact=True).fill(TOKEN)
            page.get_by_role("button", name="Unlock").click()
            _use_the_dashboard(page, server.store, [ids[-1], *ids[:-1]])
            # a name the server was not told about is refused, through the proxy too
            other = httpx.get(f"{proxy}/store/api/health", headers={"Host": "other.example"})
            assert other.status_code == 200  # probes answer for any host
            refused = httpx.get(f"{proxy}/store/", headers={"Host": f"other.example:{port}"})
            assert refused.status_code == 400 and "--allowed-host" in refused.text


def _attacker(target: str) -> Starlette:
    """Another site: a page that tries to archive everything on ``target`` as the issue
    describes (a body-less POST, no token; no preflight is needed), by fetch and by form."""
    forged = f"{target}/api/tasks/archive-expired?hours=0&terminal_only=false"
    html = f"""<!doctype html><title>cat pictures</title>
<form id="f" method="post" action="{forged}"></form>
<script>
  window.fetched = fetch("{forged}", {{method: "POST", mode: "no-cors"}})
    .then(() => "sent", (e) => "failed: " + e);
</script>"""

    async def index(_request: object) -> HTMLResponse:
        return HTMLResponse(html)

    return Starlette(routes=[Route("/", index)])


def test_another_site_cannot_archive_everything(server: Server, page: Page) -> None:
    seed(server.store, 6)
    server.store.save(TaskInfo(task_id="uqt_running", backend="dummy", status="running"))
    statuses: list[tuple[str, int]] = []
    page.on("response", lambda r: statuses.append((r.request.method, r.status)))
    port = server.base.rsplit(":", 1)[1]
    with served(_attacker(f"http://127.0.0.1:{port}")) as evil:
        page.goto(f"http://{EVIL}:{evil.rsplit(':', 1)[1]}/")
        assert page.evaluate("window.fetched") == "sent"  # no-cors: the page cannot see the answer
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.evaluate("document.getElementById('f').submit()")
        assert posted.value.status == 403
        expect(page.locator("body")).to_contain_text("may not change data")
    # both reached the server (the browser did not block them) and were refused
    assert statuses.count(("POST", 403)) == 2, statuses
    assert server.store.count() == 7 and server.store.count_archived() == 0
    # the dashboard's own requests still work
    page.goto(server.base + "/")
    page.get_by_text("Archive expired tasks").click()
    page.get_by_label("Not updated for (hours)").fill("0")
    page.get_by_role("button", name="Dry run").click()
    page.get_by_role("button", name="Archive 4 task(s)").click()
    page.get_by_role("dialog").get_by_role("button", name="Archive").click()
    expect(page.locator("#expired-outcome")).to_contain_text("Archived 4 task(s)")
    assert server.store.count_archived() == 4


def test_a_rebound_name_gets_nothing(server: Server, page: Page) -> None:
    """DNS rebinding: a page at rebind.example, whose name now resolves to 127.0.0.1,
    would be same-origin with the server; the server does not answer for that name."""
    seed(server.store, 2)
    port = server.base.rsplit(":", 1)[1]
    answer = page.goto(f"http://{REBOUND}:{port}/")
    assert answer is not None and answer.status == 400
    status = page.evaluate("fetch('/api/tasks').then((r) => r.status)")
    assert status == 400
    assert "uqt_" not in page.content()


# -- large results, the URL, the layout, the search ---------------------------------


def test_a_large_result_loads_collapsed_with_a_download(sqlite_server: Server, page: Page) -> None:
    """A 5 MB result (150,000 lines): "Loading" first, then its first 64 KB, then all."""
    counts = {f"{i:020b}": i for i in range(150_000 - 4)}
    result = {"counts": counts}
    metadata = {"circuit": "x" * 100_000}  # over 64 KB too: its "Show all" is tried
    sqlite_server.store.save(
        TaskInfo(task_id="uqt_big", backend="dummy", result=result, metadata=metadata)
    )
    held: list[Any] = []  # the task's answers, held back to see the page wait for them

    def hold(route: Any) -> None:
        if held and held[0] is None:
            route.continue_()  # released
        else:
            held.append(route)

    page.route("**/api/dashboard/task/*", hold)
    page.goto(sqlite_server.base + "/#/task/uqt_big")
    expect(page.locator("#task-loading")).to_have_text("Loading task…")
    waiting, held[:] = held[:], [None]
    for request in waiting:  # the first load and any live refresh since
        request.continue_()
    block = page.locator("[data-json=result]")
    expect(block).to_contain_text(re.compile(r"Showing the first 64\.0 KB of \d\.\d MB\."))
    shown = block.locator("pre.json").evaluate("(pre) => pre.textContent.length")
    assert shown == 64 * 1024
    with page.expect_download() as download:
        block.get_by_role("button", name="Download JSON").click()
    saved = Path(download.value.path()).read_text()
    assert json.loads(saved) == result and len(saved) > 4_000_000
    assert download.value.suggested_filename == "uqt_big.result.json"
    expect(block.get_by_role("button", name=re.compile(r"Show all \(\d\.\d MB\)"))).to_be_visible()
    lines = block.locator("pre.json").evaluate("(pre) => pre.textContent.split('\\n').length")
    assert lines < 2_000  # of 150,000
    meta = page.locator("[data-json=metadata]")
    expect(meta).to_contain_text("Showing the first 64.0 KB of 97.7 KB.")
    expect(meta.get_by_role("button", name="Download JSON")).to_have_count(0)
    meta.get_by_role("button", name="Show all (97.7 KB)").click()
    assert json.loads(meta.locator("pre.json").text_content() or "") == metadata
    expect(meta.get_by_role("button", name=re.compile("Show all"))).to_have_count(0)
    expect(meta).not_to_contain_text("Showing the first")


def test_the_page_is_in_the_url(sqlite_server: Server, page: Page, browser: Browser) -> None:
    """Tab, filters, page and task in the URL: back, forward, reload and a shared link."""
    ids = seed(sqlite_server.store, 60)
    base = sqlite_server.base + "/"
    page.goto(base)
    expect(rows(page)).to_have_count(25)
    page.get_by_label("Backend").select_option(BACKENDS[0])  # 20 tasks: ids[0], ids[3], ...
    expect(page.locator("#total")).to_have_text("20 tasks")
    page.get_by_label("Order").select_option("oldest")
    expect(rows(page).first.locator("a")).to_have_text(ids[0])
    page.get_by_label("Status").select_option("success")  # ids 0, 6, 12, ..., 54: 10 of them
    expect(page.locator("#total")).to_have_text("10 tasks")
    page.go_back()
    expect(page.locator("#total")).to_have_text("20 tasks")
    expect(page.get_by_label("Status")).to_have_value("")
    page.go_forward()
    expect(page.locator("#total")).to_have_text("10 tasks")
    expect(page.get_by_label("Status")).to_have_value("success")

    page.goto(base + "#/live?size=10")
    page.get_by_role("button", name="Next →").click()
    page.get_by_role("button", name="Next →").click()
    expect(page.locator("#page-info")).to_have_text("Page 3: 21–30 of 60")
    assert "page=3" in page.url and "cursor=" in page.url
    shared = page.url
    page.go_back()
    expect(page.locator("#page-info")).to_have_text("Page 2: 11–20 of 60")
    page.go_forward()
    expect(page.locator("#page-info")).to_have_text("Page 3: 21–30 of 60")
    page.get_by_role("button", name="← Previous").click()  # the cursors came back with it
    expect(page.locator("#page-info")).to_have_text("Page 2: 11–20 of 60")

    page.get_by_role("link", name=ids[-15]).click()
    expect(page.locator("#view-title")).to_have_text(ids[-15])
    assert page.url.endswith(f"#/task/{ids[-15]}")
    page.go_back()
    expect(page.locator("#page-info")).to_have_text("Page 2: 11–20 of 60")
    page.get_by_role("link", name="Archive", exact=True).click()
    expect(page.locator("#view-title")).to_have_text("Archived tasks")
    page.go_back()
    expect(page.locator("#view-title")).to_have_text("Live tasks")

    other = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        tab = other.new_page()  # a link someone shared: no history behind it
        tab.goto(shared)
        expect(tab.locator("#page-info")).to_have_text("Page 3: 21–30 of 60")
        expect(rows(tab).first.locator("a")).to_have_text(ids[-21])
        tab.get_by_role("button", name="← Previous").click()  # page 2's cursor is not known
        expect(tab.locator("#page-info")).to_have_text("Page 1: 1–10 of 60")
        tab.goto(f"{base}#/task/{ids[7]}")
        expect(tab.locator("#view-title")).to_have_text(ids[7])
        expect(tab.locator("#task-state")).to_have_text("Live")
    finally:
        other.close()


def test_ids_stay_on_one_line_at_1280px(sqlite_server: Server, page: Page) -> None:
    long_backend = "originq:WK_C180_" + "calibrated-partition-" * 4 + "east"
    sqlite_server.store.save_many(
        TaskInfo(task_id=f"uqt_{i:032x}", backend=long_backend if i % 2 else "dummy")
        for i in range(6)
    )
    page.goto(sqlite_server.base + "/")
    expect(rows(page)).to_have_count(6)
    assert page.viewport_size == {"width": 1280, "height": 900}
    lines = page.locator("table.tasks tbody a.id").evaluate_all(
        "(links) => links.map((a) => a.getClientRects().length)"
    )
    assert lines == [1] * 6, lines
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"the page scrolls sideways at 1280 px ({width} px wide)"
    shoot(page, "long-backend")


def test_search_by_task_id_and_platform_id(sqlite_server: Server, page: Page) -> None:
    ids = seed(sqlite_server.store, 30)
    store = sqlite_server.store
    store.save_shard(TaskShard(ids[4], 0, "plat-xyz", BACKENDS[1], status="success"))
    store.archive_task(ids[4])
    page.goto(sqlite_server.base + "/")
    expect(rows(page)).to_have_count(25)
    search = page.get_by_role("searchbox", name="Task id or platform id")
    search.fill(f"  {ids[17][:-1]}  ")  # uqt_0..01: the start of ids[16] to ids[29]
    search.press("Enter")
    expect(page.locator("#view-title")).to_have_text("Search")
    assert "#/search?q=" in page.url
    found = page.locator("#search-results tbody tr")
    expect(found).to_have_count(14)
    expect(found.first.get_by_role("link")).to_have_text(ids[16])  # in id order
    search.fill("plat-xyz")
    search.press("Enter")
    expect(found).to_have_count(1)
    expect(found.first).to_contain_text("Archive")
    expect(found.first).to_contain_text("platform id")
    found.first.get_by_role("link", name=ids[4]).click()
    expect(page.locator("#task-state")).to_contain_text("Archived")
    page.go_back()
    expect(found).to_have_count(1)
    expect(search).to_have_value("plat-xyz")
    search.fill("uqt_nothing")
    search.press("Enter")
    expect(page.locator("#search-none")).to_have_text("No task matches.")
