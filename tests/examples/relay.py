"""A TCP relay in front of the server that keeps what clients sent: to see the headers that a
client (Java's HttpClient) writes, which its own output does not show."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.e2e.servers import free_port


class Relay:
    """``with Relay(port) as relay``: connections to ``relay.url`` go on to 127.0.0.1:``port``;
    ``relay.sent()`` is every byte the clients sent, connection after connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.listener = socket.create_server(("127.0.0.1", free_port()))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._sent: list[bytearray] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Relay:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # (wakes the accept(): close alone does not)
        self.listener.close()
        for thread in self._threads:
            thread.join(10)

    def sent(self) -> bytes:
        return b"".join(self._sent)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed: no more clients
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            record = bytearray()
            self._sent.append(record)
            self._spawn(_pipe, client, upstream, record)
            self._spawn(_pipe, upstream, client, None)


def _pipe(source: socket.socket, target: socket.socket, record: bytearray | None) -> None:
    try:
        while data := source.recv(65536):
            if record is not None:
                record += data
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):  # (the other direction's pipe then ends too)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
