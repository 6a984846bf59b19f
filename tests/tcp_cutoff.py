"""A TCP proxy in front of a database server that can be switched off: every
connection through it is cut and new ones are refused, as when the server goes
down or the network between goes away."""

from __future__ import annotations

import contextlib
import socket
import threading


class Cutoff:
    """``with Cutoff(host, port) as proxy``: connect to ``127.0.0.1:proxy.port``;
    ``proxy.cut()`` takes the database away."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False

    def __enter__(self) -> Cutoff:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()

    def cut(self) -> None:
        """Close the listening socket and every connection: the database is gone."""
        with self._lock:
            self._cut = True
            for sock in [self._listener, *self._open]:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # cut: the test is over, or the database went away
                return
            server = socket.create_connection(self.target)
            with self._lock:
                if self._cut:
                    client.close()
                    server.close()
                    return
                self._open += [client, server]
            threading.Thread(target=_pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=_pipe, args=(server, client), daemon=True).start()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)
