"""The REST API and the dashboard (``create_app(store)``).

``app`` builds the FastAPI application and its routes, ``bodies`` the request
and response models, ``errors`` the input types and error statuses, ``auth``
the bearer token, ``edge`` the host and origin checks, ``probes`` the liveness
and readiness probes, ``metrics`` the Prometheus ``/metrics``, ``dashboard``
the page and its JSON routes. The names of ``app`` are importable from here, loaded on
first use so that ``uniqc_store.api.edge`` and friends import without it.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    """``uniqc_store.api.create_app`` and the other names of ``app``, imported lazily."""
    app = importlib.import_module("uniqc_store.api.app")
    if name in app.__all__:
        return getattr(app, name)
    raise AttributeError(f"module 'uniqc_store.api' has no attribute {name!r}")
