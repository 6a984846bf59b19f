"""Client-side deadlines on server connections, enforced by one watchdog thread.

A server that stopped answering (SIGSTOP, a frozen VM, a half-open TCP
connection) enforces nothing: no ``statement_timeout`` fires and the kernel
still acknowledges every packet, so keepalives and ``tcp_user_timeout`` see a
healthy peer. Only the client can end such a wait. Each unit of work on a
server connection is armed with an :class:`Alarm`; when its time is up the
watchdog acts on the connection from its own thread:

1. ``cancel_at`` (PostgreSQL only): a cancel request, the protocol's own way
   to stop a statement, sent from a short-lived thread with a timeout (the
   request itself must not hang on a stopped server). The server answers the
   waiting statement with SQLSTATE 57014 and nothing of it is committed.
2. ``close_at``: the socket is shut down (``shutdown(2)``, not ``close``: the
   descriptor stays the driver's). The blocked read returns at once, the
   driver reports a lost connection and SQLAlchemy invalidates it.

Why not the drivers' own read timeouts: PyMySQL's is one number per
connection (a bulk call needs a longer one than a ``get``) and psycopg has
none. Why one thread and not a ``threading.Timer`` per call: arming costs a
dictionary insert under a lock (about a microsecond), not a thread start.
The thread sleeps until the earliest due alarm; alarms disarmed before they
are due are simply forgotten.

An alarm is disarmed under its lock before its connection goes back to the
pool, so the watchdog never touches a connection another caller holds; a
connection the watchdog acted on is invalidated, never reused (a late cancel
request could otherwise stop the next caller's statement).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

#: How long a cancel request may take before the watchdog gives up on it.
CANCEL_REQUEST_SECONDS = 2.0

IDLE, CANCELLED, CLOSED = 0, 1, 2


class Alarm:
    """The deadlines of one unit of work on one connection."""

    __slots__ = (
        "_armed",
        "_cancel",
        "_fd",
        "_lock",
        "cancel_after",
        "cancel_at",
        "close_after",
        "close_at",
        "stage",
    )

    def __init__(
        self,
        fd: int | None,
        cancel: Callable[[], None] | None,
        cancel_at: float | None,
        close_at: float,
    ) -> None:
        self._fd = fd
        self._cancel = cancel
        self._lock = threading.Lock()
        self._armed = True
        self.cancel_at = cancel_at if cancel is not None else None
        self.close_at = close_at
        now = time.monotonic()
        #: The bounds as durations, for messages.
        self.cancel_after = 0.0 if cancel_at is None else round(cancel_at - now, 1)
        self.close_after = round(close_at - now, 1)
        self.stage = IDLE

    def due(self) -> float:
        """When the watchdog must next look at this alarm."""
        if self.stage == IDLE and self.cancel_at is not None:
            return min(self.cancel_at, self.close_at)
        return self.close_at

    def disarm(self) -> int:
        """Stop the alarm; what it had done by then (``IDLE``, ``CANCELLED``, ``CLOSED``)."""
        with self._lock:
            self._armed = False
            return self.stage

    def fire(self, now: float) -> bool:
        """Act if due; whether the alarm is finished (closed or disarmed)."""
        with self._lock:
            if not self._armed:
                return True
            if now >= self.close_at:
                self.stage = CLOSED
                _shut(self._fd)
                return True
            if self.stage == IDLE and self.cancel_at is not None and now >= self.cancel_at:
                self.stage = CANCELLED
                cancel = self._cancel
                assert cancel is not None
                threading.Thread(target=_quietly, args=(cancel,), daemon=True).start()
            return False


def _quietly(action: Callable[[], None]) -> None:
    """Run a cancel request; a server that does not take it changes nothing (the
    close stage still comes)."""
    with contextlib.suppress(Exception):  # any failure leaves the close stage to act
        action()


def _shut(fd: int | None) -> None:
    """Shut down the socket behind ``fd`` for both directions, leaving ``fd`` open."""
    if fd is None or fd < 0:
        return
    try:
        duplicate = socket.socket(fileno=os.dup(fd))
    except OSError:
        return  # already closed
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected any more
    finally:
        duplicate.close()  # closes the duplicate only


class Watchdog:
    """The thread that fires alarms (one per process, started on first use)."""

    def __init__(self) -> None:
        self._alarms: dict[int, Alarm] = {}
        self._wake = threading.Condition(threading.Lock())
        self._next_due = float("inf")
        self._thread: threading.Thread | None = None

    def arm(self, alarm: Alarm) -> None:
        with self._wake:
            self._alarms[id(alarm)] = alarm
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="uniqc-store-watchdog", daemon=True
                )
                self._thread.start()
            if alarm.due() < self._next_due:
                self._wake.notify()

    def forget(self, alarm: Alarm) -> None:
        with self._wake:
            self._alarms.pop(id(alarm), None)

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for key, alarm in list(self._alarms.items()):
                    if alarm.due() <= now and alarm.fire(now):
                        del self._alarms[key]
                self._next_due = min((a.due() for a in self._alarms.values()), default=now + 60)
                self._wake.wait(max(0.0, self._next_due - time.monotonic()))


_watchdog = Watchdog()


def _new_watchdog_in_child() -> None:
    global _watchdog
    _watchdog = Watchdog()  # the parent's thread does not exist in a forked child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_watchdog_in_child)


def driver_socket(dbapi_connection: Any) -> int | None:
    """The socket descriptor of a psycopg, PyMySQL or aiomysql connection (None if unknown).

    psycopg (``Connection`` and ``AsyncConnection``) exposes ``fileno()``; PyMySQL
    keeps its socket in ``_sock``, which it has named so since its first release;
    aiomysql has an asyncio stream, whose transport gives the socket. Shutting the
    socket down wakes an event loop waiting on it as it wakes a blocked read.
    """
    fileno = getattr(dbapi_connection, "fileno", None)
    if callable(fileno):
        try:
            return int(fileno())
        except Exception:  # a closed connection has no descriptor
            return None
    sock = getattr(dbapi_connection, "_sock", None)
    if sock is None:
        writer = getattr(dbapi_connection, "_writer", None)  # aiomysql
        sock = None if writer is None else writer.transport.get_extra_info("socket")
    return sock.fileno() if sock is not None else None


def postgresql_cancel(dbapi_connection: Any) -> Callable[[], None] | None:
    """A cancel request for a psycopg connection, itself bounded in time.

    An ``AsyncConnection``'s ``cancel_safe`` is a coroutine: the watchdog's short-lived
    thread runs it on a loop of its own (the request is a connection of its own, not
    the one its statement runs on).
    """
    cancel_safe = getattr(dbapi_connection, "cancel_safe", None)
    if cancel_safe is None:
        return None
    if inspect.iscoroutinefunction(cancel_safe):
        return lambda: asyncio.run(cancel_safe(timeout=CANCEL_REQUEST_SECONDS))
    return lambda: cancel_safe(timeout=CANCEL_REQUEST_SECONDS)


def arm(dbapi_connection: Any, cancel_at: float | None, close_at: float) -> Alarm:
    """Arm the deadlines (``time.monotonic()`` values) of a unit of work on
    ``dbapi_connection``: a cancel request at ``cancel_at`` (PostgreSQL), the
    socket shut at ``close_at``."""
    cancel = postgresql_cancel(dbapi_connection) if cancel_at is not None else None
    alarm = Alarm(driver_socket(dbapi_connection), cancel, cancel_at, close_at)
    _watchdog.arm(alarm)
    return alarm


def disarm(alarm: Alarm) -> int:
    """Disarm an alarm; what it had done (``IDLE``, ``CANCELLED`` or ``CLOSED``)."""
    stage = alarm.disarm()
    _watchdog.forget(alarm)
    return stage
