"""Calls on many ids at once (``archive_many``, ``delete_many``): set-based, in chunks.

Each chunk of ids is one transaction of a few set statements (lock the rows, then
move or delete what was locked), instead of one call per id. What a call reports
is what the bulk REST routes reported when they called ``archive_task`` / ``delete``
on each id in turn, in the order given (a repeat of an archived id is missing, of a
deleted id in neither list); these functions build that report from the per-id
outcomes of the chunks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from uniqc_store.db.executor import Transaction
from uniqc_store.repository.archive import moves


def chunks(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    """The distinct ids, in the order first given, ``size`` at a time."""
    distinct = list(dict.fromkeys(ids))
    for start in range(0, len(distinct), size):
        yield distinct[start : start + size]


def delete_listed(tx: Transaction, chunk: Sequence[str]) -> list[str]:
    """Delete the chunk's live tasks (their shards go by the cascade): one atomic unit.

    Returns the ids deleted. Only rows this unit found and locked are deleted, so
    the ids it reports are exactly the rows it took (a task saved meanwhile under
    a missing id stays, as if its save came after this call).
    """
    found = [row[0] for row in tx.fetch(moves(True).lock_live, {"ids": sorted(set(chunk))})]
    if found:
        tx.run(moves(True).delete_live, {"ids": found})
    return found


def archive_report(
    ids: Sequence[str], done: set[str], moved: set[str], conflicts: set[str]
) -> dict[str, Any]:
    """``archive_many``'s report over the ids whose chunk committed (``done``).

    ``archived``: each moved id once, where it first appears; ``conflicts``: every
    appearance of an id that is live and archived; ``missing``: the rest (no live
    task, or a repeat of an id moved earlier in the call).
    """
    archived: list[str] = []
    missing: list[str] = []
    conflicted: list[str] = []
    seen: set[str] = set()
    for task_id in ids:
        if task_id not in done:
            continue
        if task_id in moved and task_id not in seen:
            archived.append(task_id)
        elif task_id in conflicts:
            conflicted.append(task_id)
        else:
            missing.append(task_id)
        seen.add(task_id)
    return {"archived": archived, "missing": missing, "conflicts": conflicted}


def delete_report(ids: Sequence[str], done: set[str], deleted: set[str]) -> dict[str, Any]:
    """``delete_many``'s report over the ids whose chunk committed (``done``).

    ``deleted``: each deleted id once, where it first appears; ``missing``: every
    appearance of an id that was no live task (a repeat of a deleted id is in neither,
    as the REST route always reported it).
    """
    removed = list(dict.fromkeys(t for t in ids if t in deleted))
    missing = [t for t in ids if t in done and t not in deleted]
    return {"deleted": removed, "missing": missing}
