"""A TCP proxy in front of a database server that, when armed, lets the next
COMMIT through to the server and then cuts the client off before the answer:
the transaction is committed, and the client only sees its connection drop."""

from __future__ import annotations

import re
import socket
import threading
import time

#: How long the server gets to finish the COMMIT before its side is closed.
COMMIT_GRACE = 0.3
#: A packet that is the statement COMMIT (PostgreSQL's ends in NUL), not SET AUTOCOMMIT.
_COMMIT = re.compile(rb"(?<![A-Z_])COMMIT\x00?$")


class CommitDropper:
    """``with CommitDropper(host, port) as proxy``: connect to ``127.0.0.1:proxy.port``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.armed = threading.Event()
        self.dropped = threading.Event()  # the armed COMMIT was seen, the client cut off
        self.delivered = threading.Event()  # ... and the server had COMMIT_GRACE to finish it
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]

    def __enter__(self) -> CommitDropper:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed: the test is over
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket) -> None:
        """Client to server; the armed COMMIT goes through, then both sides close."""
        try:
            while data := client.recv(65536):
                if self.armed.is_set() and _COMMIT.search(data.upper()):
                    self.armed.clear()
                    self.dropped.set()
                    client.close()  # the client hears nothing more
                    server.sendall(data)
                    time.sleep(COMMIT_GRACE)
                    self.delivered.set()
                    break
                server.sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            server.close()

    @staticmethod
    def _down(server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            server.close()
