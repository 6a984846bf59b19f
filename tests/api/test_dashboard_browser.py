"""The dashboard in a real browser: Playwright driving Debian's Chromium against a
real ``uniqc-store serve`` process on a free loopback port, on a SQLite file and, when
their URLs are set, on PostgreSQL and MariaDB.

Skipped (with the reason) when Playwright or Chromium is missing, unless ``CI``
is set: CI installs both (``.ci/run``), so there a missing browser fails.
Set ``UNIQC_DASHBOARD_SCREENSHOTS=docs`` to (re)write the README's screenshots.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import URL
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.conftest import scratch_url
from tests.http_server import prefix_proxy, served, start_serve, stop_serve
from uniqc_store import CURRENT_SCHEMA_VERSION, TaskInfo, TaskShard, TaskStore
from uniqc_store.api.app import create_app

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
    expect(page.locator("#expired-outcome")).to_contain_text("Archived 4 task(s)")
    expect(page.locator("#total")).to_have_text("2 tasks")
    assert server.store.count_archived() == 4


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
    page.get_by_label("API token", exact=True).fill("wrong")
    page.get_by_label("API token", exact=True).press("Enter")
    expect(page.locator("#auth-reason")).to_contain_text("refused that token")
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
