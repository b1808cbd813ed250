"""The Argo Server's HTTP face: HTTP/1.1 with keep-alive, as hera's ``requests`` session
uses it, answers with a ``Content-Length`` or streamed with chunked transfer encoding
(grpc-gateway's server streams), and a way to go down for real: the listening socket and
every open connection closed, then the same port bound again."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from llmops.testing.doubles import Reply
from llmops.testing.httpserver import RestartableServer, TrackedHandler


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


class ArgoHttpServer(RestartableServer):
    """A threaded HTTP server on ``host:port`` that hands each request to ``dispatch``
    (with a callable telling whether this server has gone down since)."""

    def __init__(self, dispatch: Dispatch, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(_handler(dispatch), name="argo-server", host=host, port=port)


def _handler(dispatch: Dispatch) -> type[TrackedHandler]:
    class ArgoRequestHandler(TrackedHandler):
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

    return ArgoRequestHandler
