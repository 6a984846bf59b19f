"""What the REST API and the dashboard's routes refuse, and how they say so: never with a 500.

Inputs are checked before the store sees them (no NUL, no lone surrogate:
PostgreSQL cannot take the first, no engine can encode the second), the
store's own argument errors become 422, the database's trouble 503 (its
messages masked like every other text shown), every status a route can give is
declared in the OpenAPI document, and a 405 names every method the path
has (Starlette's names only the methods of the first route it tried).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel
from sqlalchemy import URL
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from uniqc_store.db.translation import store_error
from uniqc_store.errors import (
    PartialRunError,
    PayloadTooLargeError,
    StoreError,
    TaskConflictError,
    UnreadableRowError,
)
from uniqc_store.redaction import mask_text
from uniqc_store.schema.validation import MAX_HOURS, MAX_KEY_LENGTH, free_text

#: Ids, backends and filters: the store's own bound (``MAX_KEY_LENGTH``, 255), so a
#: value the store would refuse, or could never match, is a 422 here.
MAX_TEXT = MAX_KEY_LENGTH


def storable(value: str) -> str:
    """Refuse text no engine can store or compare (the store's rule, ``free_text``,
    checked here so it is a 422, not a 500)."""
    return free_text(value, "the text")


#: The NUL rule for the OpenAPI document, so schema-valid data is storable data. (Lone
#: surrogates cannot be written in a pattern that fuzzers and validators agree on;
#: JSON text that is valid Unicode has none.)
STORABLE_PATTERN = r"^[^\x00]*$"
TEXT_SCHEMA: dict[str, Any] = {"pattern": STORABLE_PATTERN}

StorableText = Annotated[str, AfterValidator(storable)]
TaskIdPath = Annotated[
    StorableText,
    Path(
        min_length=1,
        max_length=MAX_TEXT,
        json_schema_extra=TEXT_SCHEMA,
        description="A task id (uqt_...).",
    ),
]
BackendQuery = Annotated[
    StorableText | None,
    Query(
        min_length=1,
        max_length=MAX_TEXT,
        json_schema_extra=TEXT_SCHEMA,
        description="Exact backend name.",
    ),
]

HoursQuery = Annotated[
    float,
    Query(ge=0, lt=MAX_HOURS, allow_inf_nan=False, description=f"Age in hours, < {MAX_HOURS:g}."),
]


def reject_unknown_query(request: Request) -> None:
    """A query parameter the route does not take is a mistake worth a 422, not silence."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    known = {field.alias for field in dependant.query_params} if dependant else set()
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError(
            [
                {"loc": ("query", name), "msg": "unknown parameter", "type": "extra_forbidden"}
                for name in unknown
            ]
        )


class Detail(BaseModel):
    """The body of every error other than a validation error."""

    detail: str


_DESCRIPTIONS = {
    400: "The body cannot be read as UTF-8 JSON text.",
    401: "Missing or wrong bearer token (only when UNIQC_STORE_API_TOKEN is set).",
    404: "No such task.",
    409: "The task is already there (live or archived): delete or restore it first; or a "
    "stored row cannot be read (another tool wrote it): the detail names it, fix or delete it.",
    503: "The database cannot be reached, stayed busy or failed: try again later.",
}


_VALIDATION_ERROR = {
    "description": "Bad input: a bound crossed, NUL or a lone surrogate, an unknown field or "
    "query parameter, or an argument the store refuses.",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}


def responses(*statuses: int, token: bool) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route: its own error statuses, 422, 503, and 401 with a
    token.

    422 is declared on every route, parameterless ones too: any route refuses
    an unknown query parameter; 503 too: any route may find the database down.
    """
    codes = (*statuses, 503, 401) if token else (*statuses, 503)
    declared: dict[int | str, dict[str, Any]] = {
        code: {"model": Detail, "description": _DESCRIPTIONS[code]} for code in codes
    }
    return {**declared, 422: _VALIDATION_ERROR}


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
    """The methods of the documented path the request names.

    The first route whose path matches decides which path that is (literal
    paths are registered before templated ones: ``/api/tasks/counts`` is not
    ``/api/tasks/{task_id}``), so ``Allow`` agrees with the OpenAPI document.
    """
    matching = [r for r in app.router.routes if r.matches(request.scope)[0] is not Match.NONE]
    if not matching:
        return []
    path = getattr(matching[0], "path", None)
    methods: set[str] = set()
    for route in matching:
        if getattr(route, "path", None) == path:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def _refused(exc: Exception) -> JSONResponse:
    error = {"loc": ["request"], "msg": mask_text(str(exc)), "type": "value_error"}
    return JSONResponse(status_code=422, content=_validation_body([error]))


def _store_failed(exc: StoreError) -> JSONResponse:
    """409 for a conflict or an unreadable stored row, 422 for a row too large to move,
    503 for every other store error (unreachable, busy, or failed): never a 500."""
    if isinstance(exc, (TaskConflictError, UnreadableRowError)):
        # a conflict, or a stored row another tool wrote that the store cannot read (its
        # message names the row and column, never a payload): the request itself was fine
        return JSONResponse(status_code=409, content={"detail": mask_text(str(exc))})
    if isinstance(exc, PayloadTooLargeError):
        return _refused(exc)
    # the store's messages hold no password (redacted where raised); masked again all the same
    content: dict[str, Any] = {"detail": mask_text(str(exc))}
    if isinstance(exc, PartialRunError):  # what the chunks before the error committed
        content["report"] = _bounded_report(exc.report)
    return JSONResponse(status_code=503, content=content)


#: The most ids an error's report lists per kind (as the routes' own reports).
_REPORTED_IDS = 1000


def _bounded_report(report: object) -> dict[str, Any]:
    """A ``PartialRunError`` report as JSON, each id list cut at 1,000 ids."""
    as_dict = getattr(report, "as_dict", None)
    found: dict[str, Any] = {}
    if callable(as_dict):
        found = as_dict()
    elif isinstance(report, dict):
        found = report
    bounded: dict[str, Any] = {}
    for key, value in found.items():
        if isinstance(value, list) and len(value) > _REPORTED_IDS:
            bounded[f"{key}_truncated"] = True
            value = value[:_REPORTED_IDS]
        bounded[key] = value
    return bounded


def install_error_handlers(app: FastAPI, url: URL) -> None:
    """422 for bad input (the store's ValueError/TypeError included), 409 (a conflict, an
    unreadable stored row), 503 when the database is unavailable, busy or failing, and a
    full 405.

    A database exception that reached a route without the store's translation
    (``url`` names the database in its message, password hidden) is translated
    here by the store's own rules, so it is a 503 like the rest, not a 500.
    """

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content=_validation_body(list(exc.errors())))

    @app.exception_handler(ValueError)
    @app.exception_handler(TypeError)
    async def refused(_request: Request, exc: Exception) -> JSONResponse:
        return _refused(exc)

    @app.exception_handler(StoreError)
    async def store_failed(_request: Request, exc: StoreError) -> JSONResponse:
        return _store_failed(exc)

    @app.exception_handler(SQLAlchemyError)
    async def untranslated(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        return _store_failed(store_error(exc, url))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(app, request))
        return JSONResponse(
            status_code=exc.status_code, content={"detail": exc.detail}, headers=headers
        )
