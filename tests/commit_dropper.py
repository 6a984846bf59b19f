"""A TCP proxy in front of a database server that loses connections on purpose.

Two faults, the two a client must tell apart:

- ``cut_after(pattern)``: the next client packet matching ``pattern`` (a
  statement, or ``COMMIT``) goes through to the server, then the client is cut
  off before the answer: the server ran it, the client only sees its
  connection drop.
- ``cut_idle()``: every open connection is closed now, while idle; the client
  finds its pooled connection dead before it sends anything.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time

#: How long the server gets to finish the statement before its side is closed.
GRACE = 0.3
#: A packet that is the statement COMMIT (PostgreSQL's ends in NUL), not SET AUTOCOMMIT.
COMMIT = re.compile(rb"(?<![A-Z_])COMMIT\x00?$")


class CommitDropper:
    """``with CommitDropper(host, port) as proxy``: connect to ``127.0.0.1:proxy.port``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.armed = threading.Event()  # cut after the next packet matching ``pattern``
        self.pattern = COMMIT
        self.dropped = threading.Event()  # the armed packet was seen, the client cut off
        self.delivered = threading.Event()  # ... and the server had GRACE to finish it
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> CommitDropper:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        self.cut_idle()

    def cut_after(self, pattern: bytes) -> None:
        """Arm: the next client packet matching ``pattern`` reaches the server, then the
        client is cut off."""
        self.pattern = re.compile(pattern)
        self.dropped.clear()
        self.delivered.clear()
        self.armed.set()

    def cut_idle(self) -> None:
        """Close every open connection, both sides, now."""
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            _close(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed: the test is over
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self._open |= {client, server}
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket) -> None:
        """Client to server; the armed packet goes through, then both sides close."""
        try:
            while data := client.recv(65536):
                if self.armed.is_set() and self.pattern.search(data.upper()):
                    self.armed.clear()
                    self.dropped.set()
                    _close(client)  # the client hears nothing more
                    server.sendall(data)
                    time.sleep(GRACE)
                    self.delivered.set()
                    break
                server.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(server)

    @staticmethod
    def _down(server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(server)


def _close(sock: socket.socket) -> None:
    """Close ``sock`` so that its peer sees the end at once (FIN), whoever else reads it."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
