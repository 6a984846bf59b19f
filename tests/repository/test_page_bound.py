"""``list(status=, backend=, limit=, offset=)``: on MySQL/MariaDB the page is read from its
bound up (``statements._page_bound``); on every engine it is the page of the sorted rows,
ties on ``submit_time`` (broken by id, or SQLite's rowid) and short or empty pages included."""

from __future__ import annotations

from uniqc_store import TaskInfo, TaskStore


def test_filtered_pages_are_the_sorted_rows_cut(store: TaskStore) -> None:
    # 12 submit times, three tasks each, in three statuses and two backends
    store.save_many(
        TaskInfo(
            task_id=f"uqt_{(i * 7919) % 1000:03d}",
            backend=("a", "b")[i % 2],
            status=("failed", "success", "failed")[i % 3],
            submit_time=f"2025-01-{1 + i // 3:02d}T00:00:00+00:00",
        )
        for i in range(36)
    )
    matching = [t for t in store.list() if t.status == "failed" and t.backend == "a"]
    assert len(matching) == 12 and len({t.submit_time for t in matching}) < 12  # ties
    for limit in (1, 2, 5, 12, 50):
        for offset in (None, 0, 1, 3, 11, 12, 40):
            page = store.list(status="failed", backend="a", limit=limit, offset=offset)
            start = offset or 0
            assert page == matching[start : start + limit], (limit, offset)
    assert store.list(status="failed", backend="nope", limit=5) == []


def test_an_empty_page(store: TaskStore) -> None:
    store.save(TaskInfo(task_id="uqt_1", backend="a", status="failed"))
    assert store.list(status="failed", backend="a", limit=0) == []
    assert [t.task_id for t in store.list(status="failed", backend="a", limit=1)] == ["uqt_1"]
