"""How the listing routes (``GET /api/tasks``, ``GET /api/archive``) page.

Two modes. Offset pages are the reference's (``limit`` / ``offset``, the total
always counted): the database walks and drops ``offset`` rows for each page.
Cursor pages (``cursor=``: empty for the first page, then each page's
``next_cursor``) are the store's keyset pages (``TaskStore.list_page``): each page
costs what the first does, and a walk sees every task that exists throughout
exactly once. Counting the matches is a scan of its own: cursor pages count
only with ``total=true``, offset pages unless ``total=false``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from uniqc_store.records import TaskInfo
from uniqc_store.repository.pages import MAX_CURSOR_LENGTH
from uniqc_store.repository.store import TaskStore

#: What a cursor is made of (base64url); empty: the first page.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]*$"

CursorQuery = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_LENGTH,
        pattern=CURSOR_PATTERN,
        description="Cursor paging: empty for the first page, then the next_cursor of the "
        "page before, unchanged (with offset 0 and a limit of at least 1). Without it, pages "
        "go by offset.",
    ),
]
TotalQuery = Annotated[
    bool | None,
    Query(
        description="Count every matching task into total (a scan of its own): by default "
        "for offset pages, not for cursor pages.",
    ),
]


def listed(
    store: TaskStore, *, archived: bool, filters: dict[str, Any], paging: dict[str, Any]
) -> tuple[list[TaskInfo], int | None, str | None]:
    """(tasks, the total or None, the next cursor or None) of one listing request, of
    the archive when ``archived``: ``filters`` are ``status`` and ``backend``, ``paging``
    is ``limit``, ``offset``, ``cursor`` and ``total`` (the route's query, checked).

    A ``ValueError`` (a 422) for a cursor with an offset, a cursor page of no
    rows (``limit=0``), or a cursor the store did not give.
    """
    limit, offset, cursor, total = (paging[k] for k in ("limit", "offset", "cursor", "total"))
    count = store.count_archived if archived else store.count
    if cursor is None:
        by_offset = store.list_archived if archived else store.list
        found = by_offset(**filters, limit=limit, offset=offset)
        next_cursor = None
        counted = total is not False
    else:
        if offset:
            raise ValueError(
                "offset cannot be combined with cursor: a cursor page starts where its "
                "cursor says (drop offset, or drop cursor to page by offset)"
            )
        by_cursor = store.list_archived_page if archived else store.list_page
        found, next_cursor = by_cursor(**filters, limit=limit, cursor=cursor or None)
        counted = total is True
    return found, count(**filters) if counted else None, next_cursor
