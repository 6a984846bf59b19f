"""``AsyncTaskStore`` has every public member of ``TaskStore``, with the same signature
and docstring: a method added to ``TaskStore`` fails here until the async store wraps it.

The one difference allowed is what being async means: a coroutine returns what the
sync method returns; a walk is an ``AsyncIterator``; a block an async context
manager; ``session()`` an ``AsyncSession``; ``close`` / ``__enter__`` / ``__exit__``
are ``aclose`` / ``__aenter__`` / ``__aexit__``.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from uniqc_store import AsyncTaskStore, TaskStore

#: Sync name -> async name, where they differ.
RENAMED = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}
#: Members that are not coroutines, and the return annotation each has instead.
NOT_COROUTINES = {
    "iter_tasks": "AsyncIterator[TaskInfo]",
    "iter_archived": "AsyncIterator[TaskInfo]",
    "reading": "contextlib.AbstractAsyncContextManager[AsyncUnitConnection]",
    "transaction": "contextlib.AbstractAsyncContextManager[AsyncUnitConnection]",
    "session": "AsyncSession",
    "using": "AsyncIterator[AsyncTaskStore]",  # an async context manager
    "aggregate_status": None,  # the very same function
    "__repr__": None,
}
#: Parameters whose type is the async form of the sync one's.
ASYNC_TYPES = {("using", "connection"): ("Connection", "AsyncConnection | AsyncUnitConnection")}
#: Return annotations that name the sync store itself.
SELF_RETURNS = {"__enter__": ("TaskStore", "AsyncTaskStore")}


def public_members(cls: type) -> list[str]:
    names = [name for name in vars(cls) if not name.startswith("_")]
    return sorted([*names, "__enter__", "__exit__", "__repr__"])


def test_the_sync_store_has_the_members_this_test_knows() -> None:
    """A sanity check that the walk below sees the store's methods."""
    assert {"save", "get", "modify", "archive_expired", "purge_archived"} <= set(
        public_members(TaskStore)
    )


@pytest.mark.parametrize("name", public_members(TaskStore))
def test_each_member_has_its_async_counterpart(name: str) -> None:
    sync_member = inspect.getattr_static(TaskStore, name)
    async_name = RENAMED.get(name, name)
    assert hasattr(AsyncTaskStore, async_name), (
        f"AsyncTaskStore has no {async_name}: wrap TaskStore.{name} in repository/async_store.py"
    )
    async_member = inspect.getattr_static(AsyncTaskStore, async_name)
    if isinstance(sync_member, property):
        assert isinstance(async_member, property), name
        assert async_member.__doc__ == sync_member.__doc__, name
        return
    if isinstance(sync_member, staticmethod):
        assert getattr(AsyncTaskStore, async_name) is getattr(TaskStore, name)
        return
    sync_fn, async_fn = getattr(TaskStore, name), getattr(AsyncTaskStore, async_name)
    assert async_fn.__doc__ == sync_fn.__doc__, f"{async_name}'s docstring is not {name}'s"
    is_coroutine = inspect.iscoroutinefunction(async_fn)
    assert is_coroutine == (name not in NOT_COROUTINES), name
    sync_sig, async_sig = inspect.signature(sync_fn), inspect.signature(async_fn)
    expected_parameters = [
        (*p[:3], ASYNC_TYPES[(name, p[0])][1]) if (name, p[0]) in ASYNC_TYPES else p
        for p in _parameters(sync_sig)
    ]
    assert _parameters(async_sig) == expected_parameters, f"{async_name} takes other arguments"
    expected = NOT_COROUTINES.get(name) or sync_sig.return_annotation
    if name in SELF_RETURNS:
        expected = SELF_RETURNS[name][1]
    assert _plain(async_sig.return_annotation) == _plain(expected), f"{async_name} returns other"


def test_the_constructors_take_the_same_arguments() -> None:
    sync_sig = inspect.signature(TaskStore.__init__)
    async_sig = inspect.signature(AsyncTaskStore.__init__)
    names = [p.name for p in sync_sig.parameters.values()]
    assert [p.name for p in async_sig.parameters.values()] == names
    for name in names:
        sync_p, async_p = sync_sig.parameters[name], async_sig.parameters[name]
        assert (async_p.kind, async_p.default) == (sync_p.kind, sync_p.default), name
    engine = async_sig.parameters["engine"].annotation
    assert "AsyncEngine" in engine and "Engine" in engine


def _parameters(signature: inspect.Signature) -> list[tuple[Any, ...]]:
    return [
        (p.name, p.kind, p.default, _plain(p.annotation)) for p in signature.parameters.values()
    ]


def _plain(annotation: Any) -> str:
    """An annotation as text, ``builtins.list`` and ``list`` alike."""
    return str(annotation).replace("builtins.", "")
