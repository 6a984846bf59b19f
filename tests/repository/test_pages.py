"""Deep pages (``list_page`` / ``list_archived_page``) on every engine: the order, the
cursors and their checks, walks beside concurrent writers, and the index they use."""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, insert, text

from uniqc_store import StoreError, TaskInfo, TaskStore
from uniqc_store.repository.pages import MAX_CURSOR_LENGTH, Page, page_query
from uniqc_store.schema.tables import tasks
from uniqc_store.schema.validation import MAX_PAGE_SIZE

Pager = Callable[..., Page]


def stamp(day: int, second: int = 0) -> str:
    return f"2025-01-{day:02d}T00:00:{second:02d}+00:00"


def saved(store: TaskStore, count: int, *, ties: int = 3, seed: int = 7) -> list[TaskInfo]:
    """``count`` tasks, ``ties`` of each ``submit_time``, saved in a shuffled order (so
    insertion order is not the id order on any engine)."""
    infos = [
        TaskInfo(
            f"uqt_{i:04d}",
            f"b{i % 3}",
            ("success", "failed", "running")[i % 3 if i % 2 else 0],
            submit_time=stamp(1 + (i // ties) // 60, (i // ties) % 60),
        )
        for i in range(count)
    ]
    random.Random(seed).shuffle(infos)
    store.save_many(infos)
    return infos


def newest_first(infos: list[TaskInfo]) -> list[str]:
    """The page order: ``submit_time`` DESC, then ``task_id`` DESC (ids and times here are
    ASCII digits and letters of one case: every engine's collation sorts them alike)."""
    ordered = sorted(infos, key=lambda t: (t.submit_time, t.task_id), reverse=True)
    return [t.task_id for t in ordered]


#: More pages than any walk here can have: a walk that keeps going is a failure, not a hang.
MAX_PAGES = 20_000


def walk(pager: Pager, limit: int, **filters: object) -> Iterator[Page]:
    cursor = None
    for _ in range(MAX_PAGES):
        page = pager(**filters, limit=limit, cursor=cursor)
        yield page
        if page.next_cursor is None:
            return
        assert page.next_cursor != cursor, "the walk does not move"
        cursor = page.next_cursor
    raise AssertionError(f"more than {MAX_PAGES} pages")


def walked_ids(pager: Pager, limit: int, **filters: object) -> list[str]:
    return [t.task_id for page in walk(pager, limit, **filters) for t in page.tasks]


@pytest.mark.parametrize("limit", [1, 4, 5, 50])
def test_pages_walk_every_task_once_newest_first(store: TaskStore, limit: int) -> None:
    infos = saved(store, 20)
    pages = list(walk(store.list_page, limit))
    assert [t.task_id for p in pages for t in p.tasks] == newest_first(infos)
    assert all(len(p.tasks) == limit for p in pages[:-1])
    assert 1 <= len(pages[-1].tasks) <= limit  # a full last page has no empty page after it
    assert len(pages) == -(-20 // limit)
    assert pages[0].tasks[0] == store.get(pages[0].tasks[0].task_id)  # whole records


def test_filters_and_the_archive(store: TaskStore) -> None:
    infos = saved(store, 30)
    for status, backend in [("success", None), (None, "b1"), ("running", "b2")]:
        expected = newest_first(
            [
                t
                for t in infos
                if (status is None or t.status == status)
                and (backend is None or t.backend == backend)
            ]
        )
        assert expected and walked_ids(store.list_page, 2, status=status, backend=backend) == (
            expected
        )
    moved = [t for t in infos if t.backend == "b0"]
    for info in moved:
        assert store.archive_task(info.task_id)
    assert walked_ids(store.list_archived_page, 3) == newest_first(moved)
    assert walked_ids(store.list_archived_page, 3, status="failed") == newest_first(
        [t for t in moved if t.status == "failed"]
    )
    archived = store.list_archived_page(limit=1).tasks[0]
    assert archived.archived_at and archived == store.get_archived(archived.task_id)


def test_empty_listing_and_tuple_shape(store: TaskStore) -> None:
    assert store.list_page() == Page([], None)
    tasks_found, next_cursor = store.list_archived_page(limit=10)
    assert (tasks_found, next_cursor) == ([], None)
    saved(store, 3)
    first, cursor = store.list_page(limit=2)
    assert len(first) == 2 and isinstance(cursor, str)
    assert cursor.replace("-", "").replace("_", "").isalnum()  # url-safe as it is


def test_pages_agree_with_list_apart_from_sqlite_ties(store: TaskStore) -> None:
    """Servers break ``list()``'s ties by ``task_id`` too; SQLite by insertion (the
    reference's ``rowid``), so there the orders agree where times differ."""
    saved(store, 24)
    listed = [t.task_id for t in store.list()]
    assert sorted(walked_ids(store.list_page, 5)) == sorted(listed)
    if store.dialect != "sqlite":
        assert walked_ids(store.list_page, 5) == listed
    store.clear_all()
    saved(store, 12, ties=1)
    assert walked_ids(store.list_page, 5) == [t.task_id for t in store.list()]


def test_a_cursor_keeps_its_place_whatever_the_filters(store: TaskStore) -> None:
    """A cursor is a position: the next page under other filters starts there too."""
    infos = saved(store, 12)
    first = store.list_page(limit=4)
    assert first.next_cursor is not None
    rest = store.list_page(limit=50, status="success", cursor=first.next_cursor)
    after = newest_first(infos)[4:]
    assert [t.task_id for t in rest.tasks] == [
        i
        for i in after
        if store.get(i).status == "success"  # type: ignore[union-attr]
    ]


def _forged(payload: object) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _bad_cursors(good: str) -> list[str]:
    decoded = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    _version, _kind, submit, task_id = decoded
    return [
        "",
        "not a cursor",
        "a+b/c==",
        good[:-3],  # truncated
        good + "A",  # one character more
        good + "=",  # padding: not the store's spelling
        "A" * (MAX_CURSOR_LENGTH + 4),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),  # not UTF-8
        _forged({"submit_time": submit}),
        _forged([2, "t", submit, task_id]),  # another version
        _forged([True, "t", submit, task_id]),
        _forged([1, "a", submit, task_id]),  # the archive's
        _forged([1, "z", submit, task_id]),
        _forged([1, "t", 5, task_id]),
        _forged([1, "t", submit, ""]),
        _forged([1, "t", submit, None]),
        _forged([1, "t", submit, "uqt_\x00"]),  # NUL: PostgreSQL cannot even compare it
        _forged([1, "t", "\ud800", task_id]),  # a lone surrogate: no engine can encode it
        _forged([1, "t", {"x": "zz"}, task_id]),  # a BLOB position that is not hex
        base64.urlsafe_b64encode(json.dumps([1, "t", submit, task_id], indent=1).encode())
        .rstrip(b"=")
        .decode(),  # the same position, not in the store's form
    ]


def test_malformed_or_forged_cursors_are_value_errors(store: TaskStore) -> None:
    saved(store, 6)
    good = store.list_page(limit=2).next_cursor
    assert good is not None
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    for bad in _bad_cursors(good):
        with pytest.raises(ValueError, match="cursor is not one this store gave") as caught:
            store.list_page(cursor=bad)
        assert not isinstance(caught.value, StoreError), bad
    assert statements == []  # refused before any SQL
    with pytest.raises(ValueError, match="pages live tasks"):
        store.list_archived_page(cursor=good)
    with pytest.raises(TypeError, match="cursor must be a string"):
        store.list_page(cursor=5)  # type: ignore[arg-type]


def test_a_blob_position_is_sqlite_only(store: TaskStore) -> None:
    """A cursor ending on a BLOB ``submit_time`` (see below) is a position on SQLite only:
    a server cannot hold one, and would fail comparing bytes with text."""
    saved(store, 3)
    blob = _forged([1, "t", {"x": "32303330"}, "uqt_z"])  # b"2030": after every text
    if store.dialect == "sqlite":
        assert len(store.list_page(cursor=blob).tasks) == 3
    else:
        with pytest.raises(ValueError, match="its submit_time is not text"):
            store.list_page(cursor=blob)


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE_SIZE + 1])
def test_limit_bounds(store: TaskStore, limit: int) -> None:
    with pytest.raises(ValueError, match=f"limit must be from 1 to {MAX_PAGE_SIZE}"):
        store.list_page(limit=limit)


@pytest.mark.parametrize("limit", [True, "5", 2.0, None])
def test_limit_types(store: TaskStore, limit: object) -> None:
    with pytest.raises(TypeError, match="limit must be an int"):
        store.list_page(limit=limit)  # type: ignore[arg-type]


def test_a_walk_beside_writers_sees_every_lasting_task_once(store: TaskStore) -> None:
    """Another thread inserts (around, between and tied with the lasting rows), updates
    lasting rows (a save keeps ``submit_time``) and deletes its own rows while pages of
    3 are read: each task that exists from the first page to the last is listed once,
    and no task twice."""
    lasting = saved(store, 60)
    stop = threading.Event()
    errors: list[BaseException] = []
    writes = [0]

    def writer() -> None:
        rnd = random.Random(3)
        try:
            while not stop.is_set():
                n = writes[0]
                day, second = rnd.randint(1, 2), rnd.randint(0, 59)
                store.save(
                    TaskInfo(f"uqt_new{n:05d}", "b9", "running", submit_time=stamp(day, second))
                )
                tied = rnd.choice(lasting)
                store.save(
                    TaskInfo(f"uqt_tie{n:05d}", "b9", "running", submit_time=tied.submit_time)
                )
                store.save(TaskInfo(tied.task_id, tied.backend, "success", submit_time=stamp(28)))
                if n % 2:
                    store.delete(f"uqt_new{n - 1:05d}")
                writes[0] += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen: list[str] = []
        for page in walk(store.list_page, 3):
            seen += [t.task_id for t in page.tasks]
            turn = time.monotonic() + 10
            while writes[0] < len(seen) // 3 and time.monotonic() < turn:
                stop.wait(0.001)  # the writer gets its turn between pages
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    assert writes[0] >= 15  # writes really ran during the walk
    assert len(seen) == len(set(seen)), "a task was listed twice"
    missing = {t.task_id for t in lasting} - set(seen)
    assert not missing, f"lasting tasks skipped: {sorted(missing)}"


def test_sqlite_blob_submit_times_page_like_any_other(store: TaskStore) -> None:
    """Another tool can leave a BLOB in ``submit_time`` on SQLite (the row reads as its
    text); SQLite sorts BLOBs after text, and the cursor keeps the bytes, so pages that
    end on such a row go on where the database's order does."""
    if store.dialect != "sqlite":
        pytest.skip("only SQLite keeps a BLOB in a TEXT column")
    infos = saved(store, 6)
    with store.engine.begin() as conn:
        for i in range(4):
            conn.execute(
                insert(tasks).values(
                    task_id=f"uqt_blob{i}",
                    backend="b",
                    status="success",
                    submit_time=text(f"CAST('2025-02-0{i // 2}' AS BLOB)"),
                    update_time="x",
                    metadata_json="{}",
                )
            )
    for limit in (1, 2, 3):
        ids = walked_ids(store.list_page, limit)
        blobs = ["uqt_blob3", "uqt_blob2", "uqt_blob1", "uqt_blob0"]
        assert ids == blobs + newest_first(infos), limit
    cursor = store.list_page(limit=1).next_cursor
    assert cursor is not None and "x" in json.loads(base64.urlsafe_b64decode(cursor + "=="))[2]


#: Enough rows that MariaDB's optimizer prefers the index to a scan and filesort (at 3,000
#: small rows it scanned the table for the first page, for ``list()`` too).
PLANNED_TASKS = 10_000


def test_the_page_query_reads_the_submit_time_index(store: TaskStore) -> None:
    """The plans of the first page and of a page after a cursor walk an index on
    ``submit_time`` (no scan and sort of the table) on every engine, with statistics
    gathered over ``PLANNED_TASKS`` tasks."""
    saved(store, PLANNED_TASKS, ties=1)
    analyze = "ANALYZE TABLE tasks" if store.dialect in ("mysql", "mariadb") else "ANALYZE"
    with store.engine.begin() as conn:
        conn.exec_driver_sql(analyze)
    explain = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
    params = {"limit": 51, "submit_time": stamp(10), "task_id": "uqt_1500"}
    for after in (False, True):
        sql = page_query(tasks, False, False, after).params(params)
        compiled = str(sql.compile(store.engine, compile_kwargs={"literal_binds": True}))
        with store.engine.connect() as conn:
            plan = " | ".join(str(tuple(row)) for row in conn.exec_driver_sql(explain + compiled))
        assert "tasks_submit_time_idx" in plan, plan
        # a whole-table scan or sort: SQLite's ``SCAN tasks`` alone (not ``SCAN tasks USING
        # INDEX``) or ``TEMP B-TREE FOR ORDER BY`` (its "RIGHT PART" form sorts one time's
        # ties), PostgreSQL's ``Seq Scan`` or a plain ``Sort`` (``Incremental Sort``: the
        # ties), InnoDB's filesort
        whole = ("'SCAN tasks'", "TEMP B-TREE FOR ORDER BY", "Seq Scan", "'  ->  Sort", "filesort")
        assert not any(sign in plan for sign in whole), plan


@settings(
    max_examples=15,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(
        st.tuples(
            st.text("abc0123", min_size=1, max_size=4),
            st.integers(0, 5),
            st.sampled_from(["success", "failed"]),
        ),
        max_size=25,
        unique_by=lambda r: r[0],
    ),
    limit=st.integers(1, 7),
    status=st.sampled_from([None, "success"]),
)
def test_pages_are_list_in_page_order(
    store: TaskStore, rows: list[tuple[str, int, str]], limit: int, status: str | None
) -> None:
    """Property: the pages, joined, are ``list()`` in the page order (on servers, exactly
    ``list()``)."""
    store.clear_all()
    store.save_many(TaskInfo(f"uqt_{i}", "b", s, submit_time=stamp(1, t)) for i, t, s in rows)
    listed = store.list(status=status)
    expected = sorted(listed, key=lambda t: (t.submit_time, t.task_id), reverse=True)
    pages = list(walk(store.list_page, limit, status=status))
    assert [t for p in pages for t in p.tasks] == expected
    if store.dialect != "sqlite":
        assert [t for p in pages for t in p.tasks] == listed
