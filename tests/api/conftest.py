"""The API and dashboard modules share one real server per module (``SharedServer``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.http_server import SharedServer, shared_server


@pytest.fixture(scope="module")
def api_server() -> Iterator[SharedServer]:
    """One uvicorn server for the module; each test serves its own app on it."""
    with shared_server() as server:
        yield server
