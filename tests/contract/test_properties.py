"""Property-based tests: random sequences of calls keep the store's invariants,
checked against a plain-Python model of what the store should hold."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from uniqc_store import TaskConflictError, TaskInfo, TaskShard, TaskStore

IDS = st.sampled_from([f"uqt_{i}" for i in range(5)])
STATUSES = st.sampled_from(["pending", "running", "success", "failed", "cancelled"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def run_machine(store: TaskStore) -> None:
    """Run the state machine below against ``store`` (emptied before each example)."""

    class StoreMachine(RuleBasedStateMachine):
        @initialize()
        def empty(self) -> None:
            store.clear_all()
            self.live: dict[str, dict[str, Any]] = {}
            self.archived: dict[str, dict[str, Any]] = {}
            self.shards: dict[str, dict[int, dict[str, Any]]] = {}
            self.archived_shards: dict[str, dict[int, dict[str, Any]]] = {}

        @rule(
            task_id=IDS,
            status=STATUSES,
            result=JSON,
            meta=st.dictionaries(st.text(max_size=4), JSON, max_size=2),
        )
        def save(self, task_id: str, status: str, result: Any, meta: dict[str, Any]) -> None:
            info = TaskInfo(
                task_id=task_id,
                backend="b",
                status=status,
                result=None if result is None else {"r": result},
                metadata=meta,
            )
            submit = self.live[task_id]["submit_time"] if task_id in self.live else info.submit_time
            store.save(info)
            self.live[task_id] = {**info.to_dict(), "submit_time": submit}

        @precondition(lambda self: bool(self.live))
        @rule(data=st.data(), index=st.integers(0, 3), status=STATUSES, result=JSON)
        def save_shard(self, data: st.DataObject, index: int, status: str, result: Any) -> None:
            parent = data.draw(st.sampled_from(sorted(self.live)))
            shard = TaskShard(
                parent, index, f"p-{parent}-{index}", "b", status=status, result=result
            )
            old = self.shards.get(parent, {}).get(index)
            store.save_shard(shard)
            expected = shard.to_dict()
            if old is not None:
                expected["submit_time"] = old["submit_time"]
            self.shards.setdefault(parent, {})[index] = expected

        @rule(task_id=IDS)
        def delete(self, task_id: str) -> None:
            assert store.delete(task_id) == (task_id in self.live)
            self.live.pop(task_id, None)
            self.shards.pop(task_id, None)

        @rule(task_id=IDS)
        def archive(self, task_id: str) -> None:
            if task_id in self.live and task_id in self.archived:
                try:
                    store.archive_task(task_id)
                except TaskConflictError:
                    return
                raise AssertionError("archiving over an archived id must conflict")
            moved = store.archive_task(task_id)
            assert moved == (task_id in self.live)
            if moved:
                archived = store.get_archived(task_id)
                assert archived is not None and archived.archived_at
                self.archived[task_id] = {
                    **self.live.pop(task_id),
                    "archived_at": archived.archived_at,
                }
                self.archived_shards[task_id] = self.shards.pop(task_id, {})

        @rule(task_id=IDS)
        def restore(self, task_id: str) -> None:
            if task_id in self.live and task_id in self.archived:
                try:
                    store.restore_task(task_id)
                except TaskConflictError:
                    return
                raise AssertionError("restoring over a live id must conflict")
            moved = store.restore_task(task_id)
            assert moved == (task_id in self.archived)
            if moved:
                self.live[task_id] = {**self.archived.pop(task_id), "archived_at": None}
                self.shards[task_id] = self.archived_shards.pop(task_id)

        @invariant()
        def matches_model(self) -> None:
            if not hasattr(self, "live"):
                return
            assert store.count() == len(self.live)
            assert store.count_archived() == len(self.archived)
            assert {t.task_id: t.to_dict() for t in store.list()} == self.live
            assert {t.task_id: t.to_dict() for t in store.list_archived()} == self.archived
            for parent in self.live:
                got = {s.shard_index: s.to_dict() for s in store.get_shards(parent)}
                assert got == self.shards.get(parent, {})
            for parent in self.archived:
                got = {s.shard_index: s.to_dict() for s in store.get_archived_shards(parent)}
                assert got == self.archived_shards.get(parent, {})
            for gone in {f"uqt_{i}" for i in range(5)} - set(self.live):
                assert store.get_shards(gone) == []

    StoreMachine.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    StoreMachine.TestCase().runTest()


def test_random_call_sequences_keep_invariants(store: TaskStore) -> None:
    run_machine(store)
