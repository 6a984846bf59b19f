"""``uniqc-store list --cursor``: cursor pages from the command line, on every engine."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result

from uniqc_store import TaskInfo, TaskStore
from uniqc_store.cli.commands import main

NEXT = "next cursor: "


def listed(store: TaskStore, *args: str) -> Result:
    url = store.url.render_as_string(hide_password=False)
    return CliRunner().invoke(main, ["list", "--url", url, *args])


def test_a_cursor_walk_prints_every_task_once(store: TaskStore) -> None:
    store.save_many(
        TaskInfo(f"uqt_{i}", "b", "success", submit_time=f"2025-01-01T00:00:0{i // 2}+00:00")
        for i in range(7)
    )
    seen, cursor, pages = [], "", 0
    while True:
        result = listed(store, "--json", "--limit", "3", "--cursor", cursor)
        assert result.exit_code == 0, result.output
        seen += [json.loads(line)["task_id"] for line in result.stdout.splitlines()]
        pages += 1
        last_line = result.stderr.splitlines()[-1]
        if last_line == "last page":
            break
        assert last_line.startswith(NEXT) and pages < 10
        cursor = last_line[len(NEXT) :]
    expected = sorted((f"uqt_{i}" for i in range(7)), key=lambda t: (int(t[4:]) // 2, t))
    assert seen == expected[::-1] and pages == 3
    table = listed(store, "--limit", "2", "--cursor", "")
    assert table.exit_code == 0 and "uqt_6" in table.stdout and NEXT not in table.stdout
    assert table.stderr.startswith(NEXT)
    archived = listed(store, "--archived", "--cursor", "")
    assert archived.exit_code == 0 and archived.stderr == "last page\n"


def test_bad_cursors_and_offsets_are_one_line(store: TaskStore) -> None:
    store.save(TaskInfo("uqt_1", "b"))
    forged = listed(store, "--cursor", "bm9wZQ")
    assert forged.exit_code == 1 and forged.stdout == ""
    assert forged.stderr.startswith("error: cursor is not one this store gave")
    assert len(forged.stderr.splitlines()) == 1
    both = listed(store, "--cursor", "", "--offset", "1")
    assert both.exit_code == 2 and "--offset and --cursor cannot be combined" in both.stderr
    plain = listed(store, "--offset", "0")
    assert plain.exit_code == 0 and plain.stderr == ""  # offset pages print no cursor
