"""Helpers for the race tests: pause a transaction between two statements, and
look at where a task's rows ended up.

``PausedAfter`` is an ``after_cursor_execute`` listener: the mover thread stops
after its n-th statement until the test lets it go, so a concurrent call runs
exactly there. Listening makes a SQLite store take SQLAlchemy's execution path,
whose statements the listener sees. COMMIT is no cursor statement on the
servers, so "after the last statement" is "just before COMMIT".

``race`` pauses one call and lets the other run in that gap until it finishes
or blocks. ``race_paused`` pauses both: the first after its n-th statement, the
second after its m-th, then lets the first finish (commit) while the second is
still held, then the second. That is the interleaving where the second call's
first lock ran before the first call committed and its later statements after
it (e.g. a delete that locked nothing, then deleted what had just committed).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event, text

from uniqc_store import TaskStore

#: How long the concurrent call gets before the mover is let go (it may be
#: waiting on the mover's locks, which is the point).
CONCURRENT_HEAD_START = 0.15


class PausedAfter:
    """Stop ``thread``'s statements on ``engine`` after the ``n``-th, until released."""

    def __init__(self, engine: Engine, n: int) -> None:
        self.engine = engine
        self.n = n
        self.seen = 0
        self.thread: threading.Thread | None = None
        self.paused = threading.Event()
        self.released = threading.Event()

    def __enter__(self) -> PausedAfter:
        event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        event.remove(self.engine, "after_cursor_execute", self._after)

    def _after(self, *args: Any) -> None:
        if threading.current_thread() is not self.thread:
            return
        self.seen += 1
        if self.seen == self.n:
            self.paused.set()
            self.released.wait(30)

    def reached(self, outcome: Outcome, timeout: float = 30) -> bool:
        """Wait until the thread paused or finished (at most ``timeout`` s: it may be
        blocked); whether it paused."""
        deadline = time.monotonic() + timeout
        while not (self.paused.is_set() or outcome.done.is_set()) and time.monotonic() < deadline:
            self.paused.wait(0.005)
        return self.paused.is_set()


@dataclass
class Outcome:
    """What a call returned or raised."""

    value: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, Outcome]:
    outcome = Outcome()

    def run() -> None:
        try:
            outcome.value = call()
        except BaseException as exc:  # recorded and asserted on by the test
            outcome.error = exc
        finally:
            outcome.done.set()

    return threading.Thread(target=run, daemon=True), outcome


def race(
    mover: TaskStore, move: Callable[[], Any], other: Callable[[], Any], n: int
) -> tuple[Outcome, Outcome] | None:
    """Run ``move`` paused after its ``n``-th statement and ``other`` in that gap.

    Returns both outcomes, or None when ``move`` has fewer than ``n`` statements.
    """
    with PausedAfter(mover.engine, n) as pause:
        move_thread, moved = in_thread(move)
        pause.thread = move_thread
        move_thread.start()
        if not pause.reached(moved):
            move_thread.join(30)
            return None
        other_thread, othered = in_thread(other)
        other_thread.start()
        othered.done.wait(CONCURRENT_HEAD_START)
        pause.released.set()
        move_thread.join(30)
        other_thread.join(30)
    assert moved.done.is_set() and othered.done.is_set(), "a racing call hung"
    return moved, othered


@dataclass
class Raced:
    """Both outcomes of ``race_paused``, and whether the second call reached its pause
    while the first was still held (if not, it had ended or was blocked: a later pause
    point would give the same interleaving)."""

    first: Outcome
    second: Outcome
    second_paused: bool


def race_paused(
    first_engine: Engine,
    first: Callable[[], Any],
    second_engine: Engine,
    second: Callable[[], Any],
    n: int,
    m: int,
) -> Raced | None:
    """``first`` paused after its ``n``-th statement; ``second`` started in that gap
    and paused after its ``m``-th (unless it blocks or ends first); then ``first``
    released (it commits while ``second`` is still held, unless it waits on
    ``second``'s locks), then ``second``.

    None when ``first`` has fewer than ``n`` statements.
    """
    with (
        PausedAfter(first_engine, n) as first_pause,
        PausedAfter(second_engine, m) as second_pause,
    ):
        first_thread, one = in_thread(first)
        first_pause.thread = first_thread
        first_thread.start()
        if not first_pause.reached(one):
            first_thread.join(30)
            return None
        second_thread, two = in_thread(second)
        second_pause.thread = second_thread
        second_thread.start()
        paused = second_pause.reached(two, CONCURRENT_HEAD_START)  # else ended, or blocked
        first_pause.released.set()
        one.done.wait(CONCURRENT_HEAD_START)  # unless it waits on the second's locks
        second_pause.released.set()
        first_thread.join(30)
        second_thread.join(30)
    assert one.done.is_set() and two.done.is_set(), "a racing call hung"
    return Raced(one, two, paused)


def orphan_archived_shards(store: TaskStore) -> int:
    """Archived shards whose archived task does not exist (must be none)."""
    sql = text(
        "SELECT count(*) FROM archived_task_shards s LEFT JOIN archived_tasks t "
        "ON t.task_id = s.uniqc_task_id WHERE t.task_id IS NULL"
    )
    with store.session() as session:  # the store's own door, not a connection beside it
        return int(session.execute(sql).scalar_one())


def shard_markers(store: TaskStore, task_id: str) -> set[str]:
    """Platform ids of the task's shards, live and archived."""
    shards = store.get_shards(task_id) + store.get_archived_shards(task_id)
    return {s.platform_task_id for s in shards}


def task_markers(store: TaskStore, task_id: str) -> set[Any]:
    """The ``marker`` metadata of the task's live and archived copies."""
    copies = [store.get(task_id), store.get_archived(task_id)]
    return {c.metadata.get("marker") for c in copies if c is not None}


@contextlib.contextmanager
def unit_held_elsewhere(
    unit: Callable[[], contextlib.AbstractContextManager[Any]],
) -> Iterator[None]:
    """Another thread inside ``unit()`` (``store.reading``, ``store.transaction``) until the
    ``with`` ends: a SQLite store's one connection is taken meanwhile."""
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with unit():
            entered.set()
            leave.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    try:
        yield
    finally:
        leave.set()
        holder.join(30)
