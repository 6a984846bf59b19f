"""What the REST API refuses, and how it says so: never with a 500.

Inputs are checked before the store sees them (no NUL, no lone surrogate:
PostgreSQL cannot take the first, no engine can encode the second), the
store's own argument errors become 422, every status a route can give is
declared in the OpenAPI document, and a 405 names every method the path
has (Starlette's names only the methods of the first route it tried).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .errors import TaskConflictError

MAX_TEXT = 1024  # ids, backends and filters: far above any real one, bounded for the fuzzers


def _storable(value: str) -> str:
    """Refuse text no engine can store or compare (checked here so it is a 422, not a 500)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("must not contain lone surrogates (not valid Unicode)")
    return value


StorableText = Annotated[str, AfterValidator(_storable)]
TaskIdPath = Annotated[
    StorableText, Path(min_length=1, max_length=MAX_TEXT, description="A task id (uqt_...).")
]
BackendQuery = Annotated[
    StorableText | None, Query(min_length=1, max_length=MAX_TEXT, description="Exact backend.")
]


class Detail(BaseModel):
    """The body of every error other than a validation error."""

    detail: str


_DESCRIPTIONS = {
    401: "Missing or wrong bearer token (only when UNIQC_STORE_API_TOKEN is set).",
    404: "No such task.",
    409: "The task is already there (live or archived): delete or restore it first.",
}


def responses(*statuses: int, token: bool) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route: its own error statuses, and 401 with a token."""
    codes = (*statuses, 401) if token else statuses
    return {code: {"model": Detail, "description": _DESCRIPTIONS[code]} for code in codes}


def _clean(text: Any) -> Any:
    """A string with lone surrogates replaced, so the error itself can be encoded as JSON."""
    if not isinstance(text, str):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _validation_body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """FastAPI's 422 shape without the offending input (it may be unencodable or secret)."""
    return {
        "detail": [
            {
                "loc": [_clean(part) for part in error.get("loc", ())],
                "msg": _clean(error.get("msg", "")),
                "type": _clean(error.get("type", "value_error")),
            }
            for error in errors
        ]
    }


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route serves at the request's path."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """422 for bad input (the store's ValueError/TypeError included), 409, and a full 405."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content=_validation_body(list(exc.errors())))

    @app.exception_handler(ValueError)
    @app.exception_handler(TypeError)
    async def refused(_request: Request, exc: Exception) -> JSONResponse:
        error = {"loc": ["request"], "msg": str(exc), "type": "value_error"}
        return JSONResponse(status_code=422, content=_validation_body([error]))

    @app.exception_handler(TaskConflictError)
    async def conflict(_request: Request, exc: TaskConflictError) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(app, request))
        return JSONResponse(
            status_code=exc.status_code, content={"detail": exc.detail}, headers=headers
        )
