"""A real uvicorn server for the API and dashboard tests: the app on a free
port in a thread of the test process, spoken to over HTTP with httpx."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

STARTUP_SECONDS = 20


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """The base URL of ``app`` served by uvicorn (port chosen by the OS), until exit."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
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
def http_client(app: FastAPI) -> Iterator[httpx.Client]:
    """An httpx client on ``app`` served for real (what a caller of the API sees)."""
    with served(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client
