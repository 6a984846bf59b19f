"""``uniqc-store serve`` stops on SIGTERM (what an orchestrator sends) while dashboards
hold their event streams open: the streams end, the application shuts down and the process
exits, and nothing is left waiting on a tab that never closes."""

from __future__ import annotations

import signal
import threading
import time

import httpx
from sqlalchemy import URL

from tests.http_server import start_serve
from uniqc_store import TaskStore

STREAMS = 5


def test_sigterm_ends_open_event_streams_and_exits(fresh_url: URL) -> None:
    TaskStore(url=fresh_url, auto_migrate=True).close()
    process, base = start_serve(fresh_url)
    opened, ended = threading.Barrier(STREAMS + 1, timeout=30), []

    def listen() -> None:
        with (
            httpx.Client(base_url=base, timeout=60) as client,
            client.stream("GET", "/api/events") as stream,
        ):
            opened.wait()
            for _ in stream.iter_bytes():
                pass  # until the server ends the stream
            ended.append(stream.status_code)

    listeners = [threading.Thread(target=listen, daemon=True) for _ in range(STREAMS)]
    try:
        for listener in listeners:
            listener.start()
        opened.wait()
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    for listener in listeners:
        listener.join(10)
    said = process.stderr.read().decode() if process.stderr else ""
    # uvicorn shuts down, then ends with the signal it caught (exit status -15), as a
    # process that handles SIGTERM should
    assert code in (0, -signal.SIGTERM), said
    assert "Application shutdown complete" in said
    assert ended == [200] * STREAMS
    assert took < 10, f"shutdown took {took:.1f} s with {STREAMS} open streams"
