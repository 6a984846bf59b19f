"""Records, statuses and ids."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uniqc_store import (
    TERMINAL_STATUSES,
    UNIQC_TASK_ID_PREFIX,
    TaskInfo,
    TaskShard,
    TaskStatus,
    TaskStore,
    generate_uniqc_task_id,
    is_uniqc_task_id,
)
from uniqc_store.records import normalize_status
from uniqc_store.schema.payload import decode_json


def test_ids() -> None:
    task_id = generate_uniqc_task_id()
    assert task_id.startswith(UNIQC_TASK_ID_PREFIX) and len(task_id) == 36
    assert int(task_id[4:], 16) >= 0
    assert task_id != generate_uniqc_task_id()
    assert is_uniqc_task_id(task_id)
    assert not is_uniqc_task_id("abc123") and not is_uniqc_task_id(None)


def test_task_info_round_trip_and_old_snapshots() -> None:
    info = TaskInfo(task_id="t", backend="b", result={"x": [1]}, metadata={"m": 1})
    assert TaskInfo.from_dict(info.to_dict()) == info
    old = info.to_dict()
    del old["error_message"]
    assert TaskInfo.from_dict(old).error_message is None
    assert (info.status, info.shots, info.archived_at) == ("pending", 1000, None)


def test_shard_defaults() -> None:
    shard = TaskShard("uqt_x", 0, "p", "b")
    assert (shard.circuit_count, shard.sub_index_offset, shard.status) == (1, 0, "pending")
    assert shard.to_dict()["platform_task_id"] == "p"


def test_status_normalisation() -> None:
    assert normalize_status(TaskStatus.RUNNING) == "running"
    assert normalize_status("failed") == "failed"
    with pytest.raises(ValueError, match="pending, running, success, failed, cancelled"):
        normalize_status("done")
    with pytest.raises(TypeError, match="must be a string"):
        normalize_status(3)
    assert TERMINAL_STATUSES == ("success", "failed", "cancelled")


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "pending"),
        (["success", "running"], "running"),
        (["pending"], "running"),
        (["success", "success"], "success"),
        (["success", "failed", "cancelled"], "failed"),
        (["cancelled", "success"], "cancelled"),
        ([TaskStatus.CANCELLED], "cancelled"),
    ],
)
def test_aggregate_status(statuses: list[str], expected: str) -> None:
    shards = [TaskShard("uqt_x", i, f"p{i}", "b", status=s) for i, s in enumerate(statuses)]
    assert TaskStore.aggregate_status(shards) == expected
    assert TaskStore.aggregate_status(iter(shards)) == expected  # any iterable, read once


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ("uqt_0123", "shards must be an iterable of TaskShard, not str"),
        ("", "shards must be an iterable of TaskShard, not str"),
        (b"uqt_0123", "not bytes"),
        (None, "not NoneType"),
        (3, "not int"),
        (["uqt_0123"], "shards must hold TaskShard objects, not str"),
        ([{"status": "success"}], "not dict"),
        ({"uqt_x": TaskShard("uqt_x", 0, "p", "b")}, "not str"),  # a dict iterates its keys
    ],
)
def test_aggregate_status_refuses_what_is_not_shards(shards: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        TaskStore.aggregate_status(shards)  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # a store's bound method says the same
        TaskStore.__new__(TaskStore).aggregate_status(shards)  # type: ignore[arg-type]


def test_aggregate_status_refuses_a_bad_status_as_its_arguments_do() -> None:
    with pytest.raises(TypeError, match="must be a string"):
        TaskStore.aggregate_status([TaskShard("uqt_x", 0, "p", "b", status=3)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown task status 'done'"):
        TaskStore.aggregate_status([TaskShard("uqt_x", 0, "p", "b", status="done")])


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ('{"a": [1, {"b": null}]}', {"a": [1, {"b": None}]}),
        ('\n  {"a": 1}\n', {"a": 1}),  # pretty-printed by another tool
        ("[1, 2]", [1, 2]),
        ('"text"', "text"),
        ("{}", {}),
        ('{"a": 1} x', {"_invalid_json": '{"a": 1} x'}),
        ("{} {}", {"_invalid_json": "{} {}"}),
        ('{"a": 1', {"_invalid_json": '{"a": 1'}),
        ("\ufeff{}", {"_invalid_json": "\ufeff{}"}),
        ("", "empty"),
        (None, "empty"),
    ],
)
def test_stored_json_decoding(stored: str | None, expected: object) -> None:
    assert decode_json(stored, "empty") == expected


def _reference_decode(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return {"_invalid_json": text}


@given(
    st.text(alphabet=' \t\n{}[]":,0123456789.-+eEtruefalsnNIfinity\\ab\u00e9', max_size=30)
    | st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=5,
    ).map(lambda value: json.dumps(value, indent=1))
)
def test_stored_json_decodes_like_json_loads(text: str) -> None:
    """The scanner fast path never disagrees with the full decoder."""
    expected = _reference_decode(text) if text else "empty"
    got = decode_json(text, "empty")
    assert repr(got) == repr(expected)  # repr: NaN is not equal to itself
