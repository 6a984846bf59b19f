"""The REST API's bearer token: read it, refuse a token that cannot work, check requests.

The token comes from ``UNIQC_STORE_API_TOKEN``. Unset means no
authentication; set means every request needs ``Authorization: Bearer
<token>``. A token that is set but empty or blank fails closed (the app
refuses to start rather than serve everyone), and so does a token no client
could send in a header (non-ASCII, spaces, control characters).
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from uniqc_store.api.edge import route_path

TOKEN_ENV = "UNIQC_STORE_API_TOKEN"
UNAUTHORISED = "missing or wrong bearer token"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_SENDABLE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what a header value can carry as is
_HOW_TO_MAKE_ONE = "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"

bearer_scheme = HTTPBearer(
    auto_error=False,
    description=f"The value of {TOKEN_ENV} (only when the server has one set).",
)


def api_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The token requests must present, or None when ``UNIQC_STORE_API_TOKEN`` is unset.

    Raises ``ValueError`` (saying why, never echoing the token) when the
    variable is set but empty, blank or not sendable in an HTTP header.
    """
    raw = (os.environ if environ is None else environ).get(TOKEN_ENV)
    if raw is None:
        return None
    if not raw.strip():
        raise ValueError(
            f"{TOKEN_ENV} is set but {'empty' if not raw else 'blank'}: refusing to serve "
            f"without authentication by accident. Set it to a secret ({_HOW_TO_MAKE_ONE}), "
            "or unset it to serve without a token."
        )
    if not _SENDABLE.fullmatch(raw):
        raise ValueError(
            f"{TOKEN_ENV} cannot be sent in an HTTP header: it has {_unsendable(raw)}. "
            f"Use visible ASCII characters only ({_HOW_TO_MAKE_ONE})."
        )
    return raw


def _unsendable(token: str) -> str:
    """What makes ``token`` impossible to present, without showing it."""
    if token != token.strip():
        return "leading or trailing whitespace"
    if not token.isascii():
        return "non-ASCII characters"
    return "spaces or control characters"


def _matches(given: str, expected: str) -> bool:
    """Constant-time comparison, so response times do not reveal the token."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def token_dependency(expected: str) -> Callable[..., None]:
    """A route dependency that checks the bearer token (and declares it in OpenAPI)."""

    def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> None:
        if credentials is None or not _matches(credentials.credentials.strip(), expected):
            raise HTTPException(status_code=401, detail=UNAUTHORISED, headers=_CHALLENGE)

    return require_token


def _authorised(request: Request, expected: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and _matches(given.strip(), expected)


def guard_every_path(
    app: FastAPI, expected: str, *, public: Callable[[str], bool] = lambda _path: False
) -> None:
    """Require the token before any route runs: the OpenAPI document, docs and 404s too.

    The per-route dependency does the same check for the API routes; this
    covers what has no route dependency, so nothing is served unchecked, except
    the ``public`` paths (the dashboard's page and assets, which hold no data),
    named as the routes see them (under a mount or ``root_path`` too).
    """

    @app.middleware("http")
    async def check(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not public(route_path(request.scope)) and not _authorised(request, expected):
            return JSONResponse(
                status_code=401, content={"detail": UNAUTHORISED}, headers=_CHALLENGE
            )
        return await call_next(request)
