"""The base of tool doubles: real HTTP servers on 127.0.0.1 that a tool's real SDK talks to.

A double is a :class:`ToolDouble` subclass whose routes answer like the tool does::

    class HubDouble(ToolDouble):
        @route("GET", "/api/models/{repo_id:path}")
        def model_info(self, request: RecordedRequest, repo_id: str) -> object:
            if repo_id not in self.repos:
                raise ToolError(json_reply({"error": "Repository not found"}, status=404))
            return {"id": repo_id, "sha": self.repos[repo_id]}

    with HubDouble() as hub:
        client = SomeSdk(endpoint=hub.url)
        ...
        assert hub.requests[-1].headers["authorization"] == "Bearer hf_x"

Every request is recorded (method, path, query, headers, body, parsed JSON, time), faults
are injected per route (an error status, a delay, a dropped connection), and
:func:`double_fixture` turns a double into a fixture started once per test session and
reset before each test. It is the standard library's ``ThreadingHTTPServer`` in a
background thread: no dependency, and any HTTP client can reach it.
"""

from __future__ import annotations

import json
import re
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from llmops.capabilities.common import utcnow

if TYPE_CHECKING:
    import pytest

__all__ = [
    "Fault",
    "RecordedRequest",
    "Reply",
    "ToolDouble",
    "ToolError",
    "double_fixture",
    "json_reply",
    "route",
]

D = TypeVar("D", bound="ToolDouble")
Handler = Callable[..., Any]

_ROUTE = "__llmops_double_route__"
_PARAM = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<kind>path))?\}")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the double received it."""

    method: str
    #: The path as sent (percent-escapes kept), without the query string.
    path: str
    query: Mapping[str, list[str]]
    #: Header names in lower case.
    headers: Mapping[str, str]
    body: bytes
    #: The parsed body when it was JSON, else None.
    json: Any
    received_at: datetime
    #: The route pattern that matched, or None.
    route: str | None = None


@dataclass(frozen=True)
class Reply:
    """An answer: status, body bytes and headers."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


def json_reply(value: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    """A JSON answer."""
    return Reply(
        status=status,
        body=json.dumps(value).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


class ToolError(Exception):
    """Raised by a route handler to answer with the tool's own error shape."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"HTTP {reply.status}")
        self.reply = reply


@dataclass(frozen=True)
class Fault:
    """What goes wrong with the requests a fault matches.

    ``delay`` seconds pass first; then either the connection is dropped without an
    answer (``drop_connection``), or ``reply`` is sent instead of the route's answer, or
    (with neither) the route answers normally, late. ``times`` limits how many requests
    the fault hits (None: until cleared).
    """

    reply: Reply | None = None
    delay: float = 0.0
    drop_connection: bool = False
    times: int | None = None

    @classmethod
    def status(cls, status: int, body: Any = None, *, times: int | None = None) -> Fault:
        """Answer ``status`` with ``body`` as JSON (a generic error when None)."""
        payload = body if body is not None else {"error": f"injected fault: HTTP {status}"}
        return cls(reply=json_reply(payload, status=status), times=times)


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Declare a method of a :class:`ToolDouble` subclass as the handler of a route.

    ``pattern`` is a path with ``{name}`` (one segment) or ``{name:path}`` (the rest,
    slashes included) parameters, passed to the handler as keyword arguments after the
    :class:`RecordedRequest`.
    """

    def mark(handler: Handler) -> Handler:
        routes: list[tuple[str, str]] = [*getattr(handler, _ROUTE, []), (method.upper(), pattern)]
        setattr(handler, _ROUTE, routes)
        return handler

    return mark


@dataclass
class _Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler


@dataclass
class _ArmedFault:
    fault: Fault
    method: str
    route: str
    remaining: int | None


class ToolDouble:
    """A real HTTP server on 127.0.0.1 that answers like a tool.

    Subclasses declare routes with :func:`route` (or call :meth:`add_route`), keep the
    tool's state in attributes, and override :meth:`reset_state` to clear it and
    :meth:`not_found` for the tool's own 404 shape.
    """

    #: HTTP/1.0 closes the connection after each answer: simple, and no idle threads.
    protocol_version: ClassVar[str] = "HTTP/1.0"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._faults: list[_ArmedFault] = []
        self._errors: list[str] = []
        self._routes: list[_Route] = []
        for klass in reversed(type(self).__mro__):
            for name, value in vars(klass).items():
                for method, pattern in getattr(value, _ROUTE, []):
                    self.add_route(method, pattern, getattr(self, name))

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._stopping.clear()
        server = ThreadingHTTPServer((self.host, self._requested_port), _handler_class(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # ends injected delays at once
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        """Forget requests, faults and handler errors, and reset the tool's state."""
        with self._changed:
            self._requests.clear()
            self._faults.clear()
            self._errors.clear()
        self.reset_state()

    def reset_state(self) -> None:
        """Clear the tool's own state (override in doubles that keep some)."""

    # -- routes --------------------------------------------------------------------------

    def add_route(self, method: str, pattern: str, handler: Handler) -> None:
        """Answer ``method pattern`` with ``handler(request, **params)``.

        The handler returns a :class:`Reply`, a JSON-serialisable value (answered 200
        as JSON) or None (204); or raises :class:`ToolError`. Routes are tried in the
        order they were added.
        """
        self._routes.append(_Route(method.upper(), pattern, _compile(pattern), handler))

    def not_found(self, request: RecordedRequest) -> Reply:
        """The answer for a path no route matches (override for the tool's shape)."""
        return json_reply({"error": f"no route for {request.method} {request.path}"}, status=404)

    # -- faults --------------------------------------------------------------------------

    def inject(self, fault: Fault, *, method: str = "*", route: str = "*") -> None:
        """Apply ``fault`` to requests for ``route`` (a pattern as declared, or ``*``)
        with ``method`` (or ``*``). The newest matching fault wins."""
        if route != "*" and route not in {r.pattern for r in self._routes}:
            raise ValueError(f"{type(self).__name__} has no route {route!r}")
        with self._changed:
            self._faults.insert(0, _ArmedFault(fault, method.upper(), route, fault.times))

    def clear_faults(self) -> None:
        with self._changed:
            self._faults.clear()

    # -- what tests assert on ------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since the last reset, oldest first (a copy)."""
        with self._changed:
            return list(self._requests)

    def requests_to(self, method: str, path: str | None = None) -> list[RecordedRequest]:
        """The requests with ``method`` whose path is ``path`` or matches it as a route
        pattern (``/api/models/{repo_id:path}``)."""
        regex = None if path is None else _compile(path)
        return [
            r
            for r in self.requests
            if r.method == method.upper() and (regex is None or regex.fullmatch(r.path))
        ]

    def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool], *, timeout: float = 5.0
    ) -> RecordedRequest:
        """The first recorded request matching ``predicate``, waiting up to ``timeout``."""
        with self._changed:
            found: list[RecordedRequest] = []

            def seen() -> bool:
                found[:] = [r for r in self._requests if predicate(r)][:1]
                return bool(found)

            if not self._changed.wait_for(seen, timeout=timeout):
                raise AssertionError(
                    f"no matching request reached {type(self).__name__} within {timeout:g} s "
                    f"({len(self._requests)} other(s) did)"
                )
            return found[0]

    @property
    def errors(self) -> list[str]:
        """Tracebacks of handlers that crashed (answered 500): a bug in the double."""
        with self._changed:
            return list(self._errors)

    def check_errors(self) -> None:
        """Raise AssertionError if a handler crashed since the last reset."""
        errors = self.errors
        if errors:
            raise AssertionError(
                f"{type(self).__name__} crashed on {len(errors)} request(s):\n" + errors[0]
            )

    # -- serving (called on the server's threads) ----------------------------------------

    def _handle(self, raw: _RawRequest) -> Reply | None:
        """The reply to send, or None to drop the connection."""
        matched: tuple[_Route, dict[str, str]] | None = None
        for candidate in self._routes:
            found = candidate.regex.fullmatch(raw.path)
            if found is not None and candidate.method == raw.method:
                matched = candidate, {k: unquote(v) for k, v in found.groupdict().items()}
                break
        request = RecordedRequest(
            method=raw.method,
            path=raw.path,
            query=raw.query,
            headers=raw.headers,
            body=raw.body,
            json=_parse_json(raw.body, raw.headers),
            received_at=utcnow(),
            route=matched[0].pattern if matched else None,
        )
        with self._changed:
            self._requests.append(request)
            fault = self._take_fault(request)
            self._changed.notify_all()
        if fault is not None:
            if fault.delay > 0:
                self._stopping.wait(fault.delay)
            if fault.drop_connection:
                return None
            if fault.reply is not None:
                return fault.reply
        if matched is None:
            return self.not_found(request)
        handler, params = matched[0].handler, matched[1]
        try:
            return _as_reply(handler(request, **params))
        except ToolError as error:
            return error.reply
        except Exception:
            with self._changed:
                self._errors.append(traceback.format_exc())
            return json_reply(
                {"error": f"{type(self).__name__} crashed; see its errors"}, status=500
            )

    def _take_fault(self, request: RecordedRequest) -> Fault | None:
        for armed in self._faults:
            if armed.method not in ("*", request.method):
                continue
            if armed.route not in ("*", request.route):
                continue
            if armed.remaining is not None:
                armed.remaining -= 1
                if armed.remaining <= 0:
                    self._faults.remove(armed)
            return armed.fault
        return None


# -------------------------------------------------------------------------------------
# A fixture started once per test session
# -------------------------------------------------------------------------------------


def double_fixture(factory: Callable[[], D], *, name: str | None = None) -> Any:
    """A pytest fixture that starts ``factory()`` once per session and resets it before
    each test, so every test sees an empty request log, no faults and fresh tool state::

        # conftest.py
        hub = double_fixture(HubDouble)

        def test_import(hub: HubDouble) -> None: ...

    The fixture is named after the variable it is assigned to, or ``name``. The double
    stops when the session ends.
    """
    import pytest

    key: pytest.StashKey[D] = pytest.StashKey()

    def started(request: pytest.FixtureRequest) -> D:
        double = request.config.stash.get(key, None)
        if double is None:
            double = factory().start()
            request.config.stash[key] = double
            request.config.add_cleanup(double.stop)
        double.reset()
        return double

    started.__doc__ = f"A started {getattr(factory, '__name__', 'tool double')}, reset."
    return pytest.fixture(started, name=name)


# -------------------------------------------------------------------------------------
# Internals
# -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RawRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


def _compile(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    position = 0
    for found in _PARAM.finditer(pattern):
        parts.append(re.escape(pattern[position : found.start()]))
        body = ".+" if found["kind"] == "path" else "[^/]+"
        parts.append(f"(?P<{found['name']}>{body})")
        position = found.end()
    parts.append(re.escape(pattern[position:]))
    return re.compile("".join(parts))


def _parse_json(body: bytes, headers: Mapping[str, str]) -> Any:
    if not body or "json" not in headers.get("content-type", "json"):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _as_reply(value: Any) -> Reply:
    if isinstance(value, Reply):
        return value
    if value is None:
        return Reply(status=204)
    return json_reply(value)


def _handler_class(double: ToolDouble) -> type[BaseHTTPRequestHandler]:
    class DoubleRequestHandler(BaseHTTPRequestHandler):
        protocol_version = double.protocol_version

        def _dispatch(self) -> None:
            split = urlsplit(self.path)
            raw = _RawRequest(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self._read_body(),
            )
            reply = double._handle(raw)
            if reply is None:
                self.close_connection = True
                return
            try:
                self._send(reply)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (its timeout): fine

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if "content-length" not in {k.lower() for k in reply.headers}:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD" and reply.status not in (204, 304):
                self.wfile.write(reply.body)

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return b"".join(self._chunks())
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _chunks(self) -> Iterator[bytes]:
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return
                yield self.rfile.read(size)
                self.rfile.readline()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the request log is where requests are read."""

    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        setattr(DoubleRequestHandler, f"do_{method}", DoubleRequestHandler._dispatch)
    return DoubleRequestHandler
