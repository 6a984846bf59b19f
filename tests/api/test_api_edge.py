"""The web edge, over HTTP from a real uvicorn server on every engine: every route of the
app (read from its route table, so a new route is walked by default) with planted
credentials and hostile input, with and without a token, with the database up and down;
the Host allowlist; no write another site can forge; the app under a mount and a
``root_path``; ``uniqc-store serve --allowed-host`` through the real command."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy import URL
from starlette.routing import BaseRoute, Mount, Route

from tests.conftest import BACKENDS, scratch_url
from tests.http_server import SCRIPT_HEADERS, served, start_serve, stop_serve
from tests.tcp_cutoff import Cutoff
from uniqc_store import TaskInfo, TaskShard, TaskStore
from uniqc_store.api.app import PROBE_PATHS, create_app
from uniqc_store.api.dashboard import is_public_path
from uniqc_store.api.edge import HostAllowlist, host_pattern, parse_host

TOKEN = "t0ken-for-the-edge"
MARK = "S3CR"  # in every planted credential: never in any response
LIVE, ARCHIVED, GONE = "uqt_edge_live", "uqt_edge_archived", "uqt_edge_gone"
PLANTED_ERRORS = [
    f"upstream: https://ada:{MARK}-url@quark.example/x failed",
    f"token={MARK}-pair&page=2",
    f"sent Bearer {MARK}!$%^&*()[]<>-bearer upstream",
    f"'Authorization: Basic {MARK}/basic==' was refused",
    f"header Basic {MARK}+basic== then",
    f'{{"tOkEn": "{MARK}-json"}}',
]
PLANTED_METADATA = {
    "tOkEn": f"{MARK}-1",
    "api_key": f"{MARK}-2",
    "nested": [{"ToKeN": f"{MARK}-3", "region": "cn"}],
    "log": f"Authorization: Bearer {MARK}~!@#-4",
    "headers": [["X-Api-Key", f"{MARK}-5"]],
}
PLANTED_RESULT = {"counts": {"00": 5}, "password": f"{MARK}-6", "PassWord": f"{MARK}-7"}


def _cursor(*parts: str) -> str:
    raw = json.dumps(list(parts)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


#: Every path parameter the app has, with the values the walk sends (percent-encoded).
PATH_VALUES: dict[str, list[str]] = {
    "task_id": [LIVE, ARCHIVED, GONE, "a%00b", "%ED%A0%80", "%F0%9F%98%80", "x" * 2000],
}
#: Query values sent to every query parameter, one parameter at a time.
HOSTILE_QUERY = [
    "a%00b",
    "%ED%A0%80",
    "%FF",
    "-1",
    "1e309",
    "nan",
    "",
    "x" * 3000,
    "nope",
    _cursor("2024-01-01\u0000", "uqt_x"),
    _cursor("\ud800", "uqt_x").replace("=", ""),
    _cursor("a", "b"),
]
#: Values that reach the found-paths of the parameters that have them.
GOOD_QUERY: dict[str, list[str]] = {
    "table": ["archived"],
    "status": ["failed"],
    "backend": ["b"],
    "order": ["oldest"],
    "hours": ["0"],
    "terminal_only": ["false"],
    "limit": ["1"],
    "offset": ["1"],
}
HOSTILE_BODIES = [
    b"{}",
    b"[]",
    b"null",
    b"not json",
    b'{"task_ids": ["a\\u0000b"]}',
    b'{"task_ids": ["\\ud800"]}',
    b'{"task_ids": ["' + LIVE.encode() + b'"]}',
    b'{"hours": -1}',
    b'{"hours": 0, "terminal_only": false}',
]
SAFE = {"GET", "HEAD", "OPTIONS"}


@dataclass
class Call:
    """One request of the walk: ``route`` names the route it exercises."""

    route: str
    method: str
    target: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        return self.method not in SAFE


def _fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def _api_calls(route: APIRoute) -> Iterator[Call]:
    params = route.dependant.path_params
    unknown = [p.name for p in params if p.name not in PATH_VALUES]
    if unknown:
        pytest.fail(f"{route.path} takes {unknown}: add hostile values to PATH_VALUES")
    first = {p.name: PATH_VALUES[p.name][0] for p in params}
    base = _fill(route.path, first)
    for method in sorted(route.methods - {"HEAD"}):
        yield Call(route.path, method, base)
        for p in params:
            for value in PATH_VALUES[p.name][1:]:
                yield Call(route.path, method, _fill(route.path, {**first, p.name: value}))
        for q in route.dependant.query_params:
            for value in [*GOOD_QUERY.get(q.alias, []), *HOSTILE_QUERY]:
                yield Call(route.path, method, f"{base}?{q.alias}={value}")
        yield Call(route.path, method, f"{base}?not_a_parameter=1")
        if route.body_field is not None:
            for body in HOSTILE_BODIES:
                json_type = {"Content-Type": "application/json"}
                yield Call(route.path, method, base, body, json_type)


def routes_of(app: FastAPI) -> list[BaseRoute]:
    """The routes ``app`` serves, those of included routers with their prefix (FastAPI
    0.16x keeps an included router as one entry of ``app.routes``; older ones copy)."""
    iter_route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_route_contexts is None:
        return list(app.routes)
    return [context.route for context in iter_route_contexts(app.routes)]


def app_calls(app: FastAPI) -> list[Call]:
    """Every route of ``app``, from its route table: an unknown kind of route fails."""
    calls: list[Call] = []
    for route in routes_of(app):
        if isinstance(route, APIRoute):
            calls += _api_calls(route)
        elif isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            directory = Path(str(route.app.directory))
            calls += [
                Call(route.path, "GET", f"{route.path}/{f.name}") for f in directory.iterdir()
            ]
            calls.append(Call(route.path, "GET", f"{route.path}/../../pyproject.toml"))
        elif isinstance(route, Route):
            calls += [
                Call(route.path, m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"
            ]
        else:
            pytest.fail(f"the walk does not know how to call {route!r}: teach app_calls")
    return calls


def plant(store: TaskStore) -> None:
    """A live task, an archived one and their shards, each holding every planted credential."""
    for task_id in (LIVE, ARCHIVED, GONE):
        store.delete(task_id)
        store.delete_archived(task_id)
    for task_id in (LIVE, ARCHIVED):
        store.save(
            TaskInfo(
                task_id,
                "b",
                "failed",
                metadata=PLANTED_METADATA,
                result=PLANTED_RESULT,
                error_message=" | ".join(PLANTED_ERRORS),
                submit_time="2024-01-01T00:00:00+00:00",
            )
        )
        for i, message in enumerate(PLANTED_ERRORS):
            store.save_shard(
                TaskShard(
                    task_id, i, f"plat-{i}", "b", result=PLANTED_RESULT, error_message=message
                )
            )
    store.archive_task(ARCHIVED)


def state(store: TaskStore) -> tuple[list[str], list[str], int]:
    """What a write could change: live ids, archived ids, shards of the live task."""
    live = sorted(t.task_id for t in store.list(limit=1000))
    archived = sorted(t.task_id for t in store.list_archived(limit=1000))
    return live, archived, len(store.get_shards(LIVE))


def send(client: httpx.Client, call: Call, **headers: str) -> httpx.Response:
    """The answer to ``call``; of an open event stream, its status and first line only."""
    sent = {**call.headers, **headers}
    if call.target.endswith("/api/events"):
        with client.stream(call.method, call.target, headers=sent) as streamed:
            first = next(streamed.iter_lines()) if streamed.status_code == 200 else streamed.read()
            return httpx.Response(streamed.status_code, content=first)
    return client.request(call.method, call.target, content=call.body, headers=sent)


@pytest.fixture(params=["without-token", "with-token"])
def token(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    if request.param == "with-token":
        monkeypatch.setenv("UNIQC_STORE_API_TOKEN", TOKEN)
        return TOKEN
    monkeypatch.delenv("UNIQC_STORE_API_TOKEN", raising=False)
    return None


def _public(path: str) -> bool:
    return path in PROBE_PATHS or is_public_path(path)


def test_every_route_redacts_and_never_answers_500(store: TaskStore, token: str | None) -> None:
    app = create_app(store)
    calls = app_calls(app)
    assert {"/api/dashboard/task/{task_id}", "/api/tasks/{task_id}", "/dashboard"} <= {
        c.route for c in calls
    }
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    plant(store)
    with served(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        for call in calls:
            if call.writes:
                plant(store)
            response = send(client, call, **SCRIPT_HEADERS, **auth)
            where = f"{call.method} {call.target[:120]} -> {response.status_code}"
            assert response.status_code < 500, f"{where}: {response.text[:300]}"
            assert MARK not in response.text, f"{where} shows a credential: {response.text}"
            if token and not _public(call.target.split("?")[0]):
                refused = send(client, call, **SCRIPT_HEADERS)
                assert refused.status_code == 401, f"{call.method} {call.target[:120]}"


def test_no_route_takes_a_write_another_site_can_forge(store: TaskStore, token: str | None) -> None:
    """Every state-changing route (from the route table) refuses the forgeries; the
    store is unchanged after each, and the same call sent as a script works."""
    app = create_app(store)
    writes = [c for c in app_calls(app) if c.writes and "?" not in c.target and c.body is None]
    assert len({c.route for c in writes}) >= 7  # the REST writes, at least
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    forged: list[dict[str, str]] = [
        {},  # body-less, no header: a plain <form method=post> or fetch(..., {mode: "no-cors"})
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "text/plain"},
        {"Origin": "http://evil.example", **SCRIPT_HEADERS},
        {"Origin": "null", **SCRIPT_HEADERS},
        {"Sec-Fetch-Site": "cross-site", **SCRIPT_HEADERS},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1", **SCRIPT_HEADERS},
    ]
    with served(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        for call in writes:
            plant(store)
            before = state(store)
            for headers in forged:
                with_auth = (
                    {**headers, **auth}
                    if headers.get("Origin") or "Sec-Fetch-Site" in headers
                    else headers
                )
                response = send(client, call, **with_auth)
                expected = 401 if token and "Authorization" not in with_auth else 403
                assert response.status_code == expected, (call, headers, response.text)
                assert state(store) == before, (call, headers)
            own = {"Origin": base, "Sec-Fetch-Site": "same-origin", **SCRIPT_HEADERS, **auth}
            sent = send(client, call, **own)
            assert sent.status_code not in (400, 401, 403), (call, sent.text)


def test_the_forged_request_of_the_issue_is_refused(store: TaskStore) -> None:
    """A page on another site posts ``archive-expired`` to a token-less server: before,
    every task was archived (running ones too); now nothing moves."""
    plant(store)
    store.save(TaskInfo("uqt_running", "b", "running"))
    target = "/api/tasks/archive-expired?hours=0&terminal_only=false"
    with served(create_app(store)) as base, httpx.Client(base_url=base, timeout=30) as client:
        for headers in (
            {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},  # Chromium
            {"Origin": "http://evil.example"},  # a browser without Sec-Fetch-*
            {},  # one that sends neither
        ):
            response = client.post(target, headers=headers)
            assert response.status_code == 403, (headers, response.text)
            assert "may not change data" in response.text or "X-Requested-With" in response.text
        assert store.count() == 2 and store.count_archived() == 1
        # what a script sends works: the header, a JSON body or the bearer header
        assert client.post(target, headers=SCRIPT_HEADERS).json()["count"] == 2
        plant(store)
        body = client.post("/api/tasks/archive-expired", json={"hours": 0}).json()
        assert body["count"] == 1


@pytest.fixture(params=BACKENDS)
def breakable(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TaskStore, Callable[[], None]]]:
    """A planted store and what takes its database away: a server behind a proxy that is
    switched off; a SQLite file overwritten with garbage (the disk went bad)."""
    with scratch_url(request.param, tmp_path) as url:
        if request.param == "sqlite":
            store = TaskStore(url=url, auto_migrate=True)
            plant(store)

            def damage() -> None:
                for path in Path(str(url.database)).parent.glob("tasks.sqlite*"):
                    path.write_bytes(b"\xff" * path.stat().st_size)

            yield store, damage
            store.close()
            return
        assert url.host and url.port
        with Cutoff(url.host, url.port) as proxy:
            store = TaskStore(url=url.set(host="127.0.0.1", port=proxy.port), auto_migrate=True)
            plant(store)
            yield store, proxy.cut
            store.close()


def test_with_the_database_down_every_data_route_is_503(
    breakable: tuple[TaskStore, Callable[[], None]], token: str | None
) -> None:
    store, take_down = breakable
    app = create_app(store)
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    calls = [c for c in app_calls(app) if "?" not in c.target and c.body is None]
    with served(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        assert client.get("/api/dashboard/tasks", headers=auth).status_code == 200
        take_down()
        for call in calls:
            response = send(client, call, **SCRIPT_HEADERS, **auth)
            where = f"{call.method} {call.target[:100]} -> {response.status_code}"
            where += f": {response.text[:200]}"
            if call.route in ("/", "/dashboard", "/openapi.json", "/api/live", "/metrics"):
                # no database: served all the same (a path out of the assets is a 404)
                assert response.status_code == (404 if ".." in call.target else 200), where
            else:  # 422: refused before the database was asked (NUL, too long, no body)
                assert response.status_code in (503, 422), where
            assert MARK not in response.text, where


# -- the Host allowlist ----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "host", "port"),
    [
        ("localhost:8000", "localhost", 8000),
        ("LOCALHOST", "localhost", None),
        ("localhost.", "localhost", None),
        ("[::1]:8000", "::1", 8000),
        ("[::1]", "::1", None),
        ("127.0.0.1:80", "127.0.0.1", 80),
        ("tasks.example.com", "tasks.example.com", None),
    ],
)
def test_host_headers_are_read(header: str, host: str, port: int | None) -> None:
    parsed = parse_host(header)
    assert parsed is not None and (parsed.host, parsed.port) == (host, port)


@pytest.mark.parametrize(
    "header", [None, "", "a b", "::1", "[::g]", "host:99999", "u@host", "a/b", "host:x"]
)
def test_malformed_host_headers_are_refused(header: str | None) -> None:
    assert parse_host(header) is None


def test_allowlist_rules() -> None:
    hosts = HostAllowlist(["tasks.example.com", "*.corp.example", "[fe80::1]", "10.0.0.5"])
    for served_host in ("localhost", "127.0.0.1", "::1", "tasks.example.com", "a.corp.example",
                        "a.b.corp.example", "fe80::1", "10.0.0.5"):  # fmt: skip
        assert hosts.allows(served_host), served_host
    for refused in ("evil.example", "localhost.evil.example", "corp.example", "xcorp.example",
                    "tasks.example.com.evil", "127.0.0.2", "10.0.0.50", ""):  # fmt: skip
        assert not hosts.allows(refused), refused
    assert HostAllowlist(["*"]).allows("anything.at.all")
    from_env = HostAllowlist.configured(
        None, {"UNIQC_STORE_ALLOWED_HOSTS": " a.example, ,B.example"}
    )
    assert from_env.patterns == ("localhost", "127.0.0.1", "::1", "a.example", "b.example")


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("http://tasks.example", "is a URL"),
        ("tasks.example/x", "is a URL"),
        ("tasks.example:8000", "has a port"),
        ("*example.com", "not a host name"),
        ("a.*.example", "not a host name"),
        ("", "not a host name"),
        ("two words", "not a host name"),
    ],
)
def test_bad_allowed_hosts_are_refused(pattern: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        host_pattern(pattern)


def test_allowed_hosts_must_be_a_list(store: TaskStore) -> None:
    with pytest.raises(TypeError, match="list of host names"):
        create_app(store, allowed_hosts="tasks.example")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has a port"):
        create_app(store, allowed_hosts=["tasks.example:80"])


def test_only_served_hosts_get_answers(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    """DNS rebinding: a page at evil.example whose name now points at 127.0.0.1 sends
    ``Host: evil.example``; it gets a 400 on every route, probes excepted."""
    monkeypatch.setenv("UNIQC_STORE_ALLOWED_HOSTS", "from-env.example")
    app = create_app(store, allowed_hosts=["tasks.example", "*.corp.example"])
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    plant(store)
    with served(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        port = base.rsplit(":", 1)[1]
        for host in ("localhost", "127.0.0.1", "[::1]", "tasks.example", "a.corp.example",
                     "from-env.example"):  # fmt: skip
            response = client.get(
                "/api/dashboard/counts", headers={"Host": f"{host}:{port}", **auth}
            )
            assert response.status_code == 200, (host, response.text)
        for call in app_calls(app):
            if "?" in call.target or call.body is not None:
                continue
            response = send(client, call, Host=f"evil.example:{port}", **SCRIPT_HEADERS, **auth)
            if call.target in PROBE_PATHS:
                assert response.status_code == 200, call
                continue
            assert response.status_code == 400, (call, response.text)
            assert "--allowed-host" in response.json()["detail"]
        assert store.get(LIVE) is not None and store.get_archived(ARCHIVED) is not None
        assert client.get("/api/health", headers={"Host": "10.1.2.3:8000"}).status_code == 200
        assert client.get("/", headers={"Host": "a b"}).status_code == 400


# -- under a mount and a root_path -------------------------------------------------


def test_the_app_under_a_mount_and_a_root_path(store: TaskStore, token: str | None) -> None:
    """``app.mount("/store", create_app(store))`` and ``--root-path /store`` behind a
    proxy: the page, its assets and every API call resolve under the prefix; the page
    stays public under a token; the guards hold there too."""
    plant(store)
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    parent = FastAPI()
    parent.mount("/store", create_app(store))
    with served(parent) as base, httpx.Client(base_url=base, timeout=30) as client:
        _check_prefixed(client, "/store", auth)
        assert client.get("/store", follow_redirects=False).headers["location"].endswith("/store/")
    # uvicorn --root-path: the proxy strips the prefix, the app knows it for its URLs
    with (
        served(create_app(store), root_path="/store") as base,
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        _check_prefixed(client, "", auth)


def _check_prefixed(client: httpx.Client, prefix: str, auth: dict[str, str]) -> None:
    page = client.get(f"{prefix}/")
    assert page.status_code == 200 and 'src="dashboard/app.js"' in page.text
    assert 'href="/' not in page.text and 'src="/' not in page.text  # nothing absolute
    assert client.get(f"{prefix}/dashboard/api.js").status_code == 200
    body = client.get(f"{prefix}/api/dashboard/task/{LIVE}", headers=auth).json()
    assert body["task"]["metadata"]["tOkEn"] == "[REDACTED]"
    forged = client.post(
        f"{prefix}/api/tasks/{LIVE}/archive", headers={"Origin": "http://evil.example", **auth}
    )
    assert (
        forged.status_code == 403
        and client.get(f"{prefix}/api/tasks/{LIVE}", headers=auth).status_code == 200
    )
    rebound = client.get(f"{prefix}/api/tasks", headers={"Host": "evil.example", **auth})
    assert rebound.status_code == 400


def test_the_page_finds_the_api_by_relative_urls() -> None:
    """The dashboard's JavaScript names no absolute path but the API's (resolved from its
    own URL), so it works under any prefix."""
    static = Path(__file__).resolve().parents[2] / "uniqc_store" / "api" / "dashboard" / "static"
    api = (static / "api.js").read_text()
    assert 'new URL("../", import.meta.url)' in api and "location.origin" not in api
    assert '"X-Requested-With"' in api
    for script in static.glob("*.js"):
        text = script.read_text()
        assert 'fetch("/' not in text and "fetch('/" not in text, script.name


# -- uniqc-store serve ---------------------------------------------------------------


def test_serve_answers_for_its_allowed_hosts(tmp_path: Path) -> None:
    url = URL.create("sqlite+pysqlite", database=str(tmp_path / "tasks.sqlite"))
    TaskStore(url=url, auto_migrate=True).close()
    env = {"UNIQC_STORE_ALLOWED_HOSTS": "env-one.example,env-two.example"}
    process, base = start_serve(
        url, "--allowed-host", "tasks.example", "--allowed-host", "*.corp.example", env=env
    )
    try:
        port = base.rsplit(":", 1)[1]
        with httpx.Client(base_url=base, timeout=10) as client:
            for host in ("127.0.0.1", "localhost", "[::1]", "tasks.example", "x.corp.example",
                         "env-one.example", "env-two.example"):  # fmt: skip
                assert (
                    client.get("/api/tasks", headers={"Host": f"{host}:{port}"}).status_code == 200
                ), host
            refused = client.get("/api/tasks", headers={"Host": f"evil.example:{port}"})
            assert refused.status_code == 400
            assert client.get("/api/health", headers={"Host": "10.9.8.7"}).status_code == 200
            forged = client.post(
                "/api/tasks/archive-expired?hours=0", headers={"Origin": "http://evil.example"}
            )
            assert forged.status_code == 403
    finally:
        err = stop_serve(process)
    assert "answering for the hosts localhost, 127.0.0.1, ::1, env-one.example" in err
    assert "tasks.example, *.corp.example" in err


def test_serve_refuses_a_bad_allowed_host_before_opening_anything(tmp_path: Path) -> None:
    import subprocess
    import sys

    missing = tmp_path / "nothing.sqlite"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uniqc_store.cli",
            "serve",
            "--allowed-host",
            "http://x.example",
            "--url",
            f"sqlite:///{missing}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "is a URL: give the host name only" in result.stderr
    assert not missing.exists()


def test_serve_binds_and_answers_under_a_root_path(tmp_path: Path) -> None:
    url = URL.create("sqlite+pysqlite", database=str(tmp_path / "tasks.sqlite"))
    with TaskStore(url=url, auto_migrate=True) as store:
        plant(store)
    process, base = start_serve(url, "--root-path", "/store", "--host", "127.0.0.1")
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/").status_code == 200  # the proxy stripped the prefix
            assert client.get(f"/api/tasks/{LIVE}").json()["metadata"]["tOkEn"] == "[REDACTED]"
    finally:
        err = stop_serve(process)
    assert "/store/" in err
