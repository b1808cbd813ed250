"""The Argo Server's HTTP face: HTTP/1.1 with keep-alive, as hera's ``requests`` session
uses it, answers with a ``Content-Length`` or streamed with chunked transfer encoding
(grpc-gateway's server streams), and a way to go down for real: the listening socket and
every open connection closed, then the same port bound again."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from llmops.testing.doubles import Reply


@dataclass(frozen=True)
class IncomingRequest:
    """A request as received: method, path (percent-escapes kept), query, headers (lower
    case names), body."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes


@dataclass
class StreamReply:
    """A streamed answer: each chunk is written (and flushed) as the iterator yields it."""

    chunks: Iterator[bytes]
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


Answer = Reply | StreamReply
Dispatch = Callable[[IncomingRequest, Callable[[], bool]], Answer]


class ArgoHttpServer:
    """A threaded HTTP server on ``host:port`` that hands each request to ``dispatch``
    (with a callable telling whether this server has gone down since)."""

    def __init__(self, dispatch: Dispatch, host: str = "127.0.0.1", port: int = 0) -> None:
        self._dispatch = dispatch
        self.host = host
        self._port = port
        self._server: _Server | None = None
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
        server = _Server((self.host, self._port), _handler(self._dispatch))
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"argo-server-{self._port}",
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


class _Server(ThreadingHTTPServer):
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


def _handler(dispatch: Dispatch) -> type[BaseHTTPRequestHandler]:
    class ArgoRequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        #: headers and body go out as separate writes: without TCP_NODELAY, Nagle's
        #: algorithm and the client's delayed ACK hold each answer back ~40 ms
        disable_nagle_algorithm = True
        server: _Server

        def setup(self) -> None:
            super().setup()
            self.server.track(self.connection, True)

        def finish(self) -> None:
            try:
                super().finish()
            finally:
                self.server.track(self.connection, False)

        def _serve(self) -> None:
            split = urlsplit(self.path)
            request = IncomingRequest(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self._read_body(),
            )
            server = self.server
            answer = dispatch(request, lambda: server.gone)
            try:
                if isinstance(answer, StreamReply):
                    self._stream(answer)
                else:
                    self._send(answer)
            except (BrokenPipeError, ConnectionResetError, OSError):
                self.close_connection = True

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        def _stream(self, reply: StreamReply) -> None:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in reply.chunks:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                parts: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline().strip():
                            pass
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the double's request log is where requests are read."""

    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        setattr(ArgoRequestHandler, f"do_{method}", ArgoRequestHandler._serve)
    return ArgoRequestHandler
