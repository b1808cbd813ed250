"""The Hub's HTTP face: HTTP/1.1 with keep-alive (huggingface_hub shares one httpx client
over all its calls), request bodies read as streams (an LFS upload goes to disk as it
arrives, never whole into memory), answers sent from memory or straight from a file on
disk (``sendfile``), and a way to go down for real: the listening socket and every open
connection closed, then the same port bound again."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from io import BufferedIOBase
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from llmops.testing.httpserver import RestartableServer, TrackedHandler

__all__ = ["Answer", "HubHttpServer", "Incoming"]

#: The size of the pieces request bodies are read in.
CHUNK = 1 << 20


class Incoming:
    """A request as received: method, path (percent-escapes kept), query, headers (lower
    case names); the body is read on demand with :meth:`read` or :meth:`chunks`."""

    def __init__(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        rfile: BufferedIOBase,
    ) -> None:
        split = urlsplit(target)
        self.method = method
        self.path = split.path
        self.raw_query = split.query
        self.query: dict[str, list[str]] = parse_qs(split.query, keep_blank_values=True)
        self.headers = dict(headers)
        self._rfile = rfile
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._left = 0 if self._chunked else int(self.headers.get("content-length") or 0)
        self._done = not self._chunked and self._left == 0

    @property
    def complete(self) -> bool:
        """Whether the whole body has been read (so the connection can be reused)."""
        return self._done

    def chunks(self) -> Iterator[bytes]:
        """The body, piece by piece, as it arrives (chunked transfer encoding or a
        Content-Length)."""
        if self._done:
            return
        if not self._chunked:
            while self._left > 0:
                piece = self._rfile.read(min(CHUNK, self._left))
                if not piece:
                    raise ConnectionResetError("the client closed the connection mid-body")
                self._left -= len(piece)
                yield piece
            self._done = True
            return
        while True:
            size = int(self._rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self._rfile.readline().strip():  # trailers
                    pass
                self._done = True
                return
            while size > 0:
                piece = self._rfile.read(min(CHUNK, size))
                if not piece:
                    raise ConnectionResetError("the client closed the connection mid-body")
                size -= len(piece)
                yield piece
            self._rfile.readline()

    def read(self, limit: int = 64 << 20) -> bytes:
        """The whole body (at most ``limit`` bytes: an API body is small)."""
        parts: list[bytes] = []
        total = 0
        for piece in self.chunks():
            total += len(piece)
            if total > limit:
                raise ValueError(f"request body over {limit} bytes")
            parts.append(piece)
        return b"".join(parts)

    def drain(self) -> None:
        for _ in self.chunks():
            pass


@dataclass
class Answer:
    """What to send: a status, headers, and a body from memory (``body``) or from a file
    (``file`` from ``offset``, ``length`` bytes). ``length`` is the Content-Length (for
    HEAD too: what a GET would send). ``cut_after`` stops the body after that many bytes
    and closes the connection: a transfer interrupted mid-way."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: Path | None = None
    offset: int = 0
    length: int | None = None
    cut_after: int | None = None

    @property
    def content_length(self) -> int:
        return self.length if self.length is not None else len(self.body)


Dispatch = Callable[[Incoming, Callable[[], bool]], Answer]


class HubHttpServer(RestartableServer):
    """A threaded HTTP server on ``host:port`` that hands each request to ``dispatch``
    (with a callable telling whether this server has gone down since)."""

    def __init__(
        self, dispatch: Dispatch, *, name: str, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(_handler(dispatch), name=name, host=host, port=port)


def _handler(dispatch: Dispatch) -> type[TrackedHandler]:
    class HubRequestHandler(TrackedHandler):
        def _serve(self) -> None:
            request = Incoming(
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile,
            )
            server = self.server
            answer = dispatch(request, lambda: server.gone)
            try:
                if not request.complete:
                    request.drain()  # an unread body would be taken for the next request
                self._send(answer)
            except (BrokenPipeError, ConnectionResetError, OSError, ValueError):
                self.close_connection = True

        def _send(self, answer: Answer) -> None:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(answer.content_length))
            self.end_headers()
            if self.command == "HEAD" or answer.status in (204, 304):
                return
            length = answer.content_length
            if answer.cut_after is not None:
                length = min(length, answer.cut_after)
            if answer.file is not None:
                with answer.file.open("rb") as source:
                    sent = 0
                    while sent < length:
                        done = self.connection.sendfile(source, answer.offset + sent, length - sent)
                        if done == 0:
                            break
                        sent += done
            else:
                self.wfile.write(answer.body[:length])
            if answer.cut_after is not None and answer.cut_after < answer.content_length:
                self._hang_up()

        def _hang_up(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)

    return HubRequestHandler
