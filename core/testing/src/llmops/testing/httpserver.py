"""The HTTP server the tool doubles share: threaded HTTP/1.1 with keep-alive on
``host:port``, and a way to go down for real: the listening socket and every open
connection closed, then the same port bound again. Each double brings its own request
handler (a :class:`TrackedHandler`), which turns requests into its answers."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["RestartableServer", "TrackedHandler", "TrackingServer"]

#: Every method a handler answers, all through its ``_serve``.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class TrackingServer(ThreadingHTTPServer):
    """A threaded HTTP server that knows its open connections, to close them on stop,
    and whether it has gone down (``gone``), for handlers still answering."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.gone = False
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class TrackedHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, its connection tracked by its :class:`TrackingServer`,
    quiet (a double's request log is where requests are read). A subclass writes
    ``_serve``, which answers every method."""

    protocol_version = "HTTP/1.1"
    #: headers and body go out as separate writes: without TCP_NODELAY, Nagle's
    #: algorithm and the client's delayed ACK hold each answer back ~40 ms
    disable_nagle_algorithm = True
    server: TrackingServer

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method in METHODS:
            setattr(cls, f"do_{method}", cls._serve)

    def _serve(self) -> None:
        raise NotImplementedError

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the double's request log is where requests are read."""


class RestartableServer:
    """A :class:`TrackingServer` on ``host:port`` in a thread of its own, that can stop
    (clients get refused) and start again on the same port."""

    def __init__(
        self,
        handler: type[TrackedHandler],
        *,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._handler = handler
        self.name = name
        self.host = host
        self._port = port
        self._server: TrackingServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (kept while down, so :meth:`start` binds it again)."""
        return self._port

    def start(self) -> None:
        if self._server is not None:
            return
        server = TrackingServer((self.host, self._port), self._handler)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-{self._port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket and every connection: clients get refused."""
        server, self._server = self._server, None
        if server is None:
            return
        server.gone = True
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
