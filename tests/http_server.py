"""Real HTTP servers for the API and dashboard tests: the app under uvicorn on a free
port in a thread of the test process (spoken to with httpx), ``uniqc-store serve`` as a
process of its own, and a reverse proxy that serves an upstream under a path prefix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from sqlalchemy import URL
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

STARTUP_SECONDS = 20
#: What a script sends with its writes (the server refuses a body-less write without it).
SCRIPT_HEADERS = {"X-Requested-With": "uniqc-store-tests"}


@contextmanager
def served(app: Any, *, root_path: str = "") -> Iterator[str]:
    """The base URL of ``app`` served by uvicorn (port chosen by the OS), until exit."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", root_path=root_path)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_SECONDS)


@contextmanager
def http_client(app: Any, *, headers: Mapping[str, str] = SCRIPT_HEADERS) -> Iterator[httpx.Client]:
    """An httpx client on ``app`` served for real (what a caller of the API sees).

    It sends ``X-Requested-With`` unless ``headers`` says otherwise, as a script
    must for a body-less write.
    """
    with (
        served(app) as base,
        httpx.Client(base_url=base, timeout=30, headers=dict(headers)) as client,
    ):
        yield client


class SharedServer:
    """One uvicorn server for a whole test module, serving each test's own app in turn.

    Starting and stopping uvicorn is the dearest part of a short API test (its loop
    looks at ``should_exit`` every 0.1 s); the app is the test's (``create_app`` on
    the test's store), so nothing but the listening socket is shared. The app's
    lifespan is not run (``create_app`` has none): an app that needs one is served
    by ``served`` itself.
    """

    def __init__(self) -> None:
        self.base = ""
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # the server's own start and stop
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self._app is not None, "a request between tests"
        await self._app(scope, receive, send)

    @contextmanager
    def client(
        self, app: Any, *, headers: Mapping[str, str] = SCRIPT_HEADERS
    ) -> Iterator[httpx.Client]:
        """``http_client``'s client, on this server now serving ``app``."""
        self._app = app
        try:
            with httpx.Client(base_url=self.base, timeout=30, headers=dict(headers)) as client:
                yield client
        finally:
            self._app = None


@contextmanager
def shared_server() -> Iterator[SharedServer]:
    """A ``SharedServer`` listening until exit (a module-scoped fixture's body)."""
    server = SharedServer()
    with served(server) as base:
        server.base = base
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serve(
    url: URL, *options: str, token: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``uniqc-store serve`` on a free loopback port, once it answers; and its base URL."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k != "UNIQC_STORE_API_TOKEN"}
    environ.update(env or {})
    if token is not None:
        environ["UNIQC_STORE_API_TOKEN"] = token
    command = [sys.executable, "-m", "uniqc_store.cli", "serve", "--port", str(port), *options]
    process = subprocess.Popen(
        [*command, "--url", url.render_as_string(hide_password=False)],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base}/api/health", timeout=1)
            return process, base
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                _, err = process.communicate()
                raise AssertionError(f"uniqc-store serve did not start: {err.decode()}") from None
            time.sleep(0.1)


def stop_serve(process: subprocess.Popen[bytes]) -> str:
    """Stop ``serve`` (as Ctrl-C would) and return what it wrote on stderr."""
    process.terminate()
    try:
        _, err = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err.decode()


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "content-length"}


def prefix_proxy(upstream: str, prefix: str) -> Starlette:
    """A reverse proxy: ``{prefix}/x`` goes to ``{upstream}/x`` with the client's ``Host``
    and every other header kept (as nginx's ``proxy_set_header Host $http_host``), the
    answer streamed back (Server-Sent Events included)."""
    client = httpx.AsyncClient(base_url=upstream, timeout=None)

    async def forward(request: Request) -> Response:
        path = request.url.path
        if not path.startswith(prefix + "/"):
            return Response("not under the proxy's prefix", status_code=404)
        headers = [(k, v) for k, v in request.headers.raw if k.decode().lower() != "content-length"]
        query = request.url.query
        outgoing = client.build_request(
            request.method,
            path[len(prefix) :] + (f"?{query}" if query else ""),
            headers=headers,
            content=await request.body(),
        )
        answer = await client.send(outgoing, stream=True)

        async def body() -> AsyncIterator[bytes]:
            async for chunk in answer.aiter_raw():
                yield chunk

        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
        return StreamingResponse(
            body(),
            status_code=answer.status_code,
            headers=kept,
            background=BackgroundTask(answer.aclose),
        )

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])
