"""The way into an InferenceService: one small HTTP server per InferenceService (uvicorn on
127.0.0.1, in a thread) standing in for the Istio gateway and Knative's routing, with the
routes of KServe's Hugging Face runtime in front of the predictor's ASGI app.

Routes: ``/openai/v1/chat/completions``, ``/openai/v1/completions``,
``/openai/v1/embeddings``, ``/openai/v1/models`` (handed in-process to the chosen
revision's app as ``/v1/...``, streams passed through piece by piece);
``GET /v1/models/{name}`` (KServe's v1 readiness), ``GET /v2/health/ready``,
``GET /v2/health/live``. Each answer from a revision carries
``x-llmops-double-revision: <revision>``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

REVISION_HEADER = "x-llmops-double-revision"

OPENAI_ROUTES = {
    "/openai/v1/chat/completions": ("POST", "/v1/chat/completions"),
    "/openai/v1/completions": ("POST", "/v1/completions"),
    "/openai/v1/embeddings": ("POST", "/v1/embeddings"),
    "/openai/v1/models": ("GET", "/v1/models"),
}


@dataclass(frozen=True)
class Upstream:
    """The revision a request goes to."""

    revision: str
    app: Any
    served_name: str


@dataclass(frozen=True)
class MeshAnswer:
    """An answer from the mesh itself (no revision involved)."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain"


#: Envoy's answer when the route has no live endpoint.
NO_HEALTHY_UPSTREAM = MeshAnswer(503, b"no healthy upstream")
#: Istio's answer for a host no VirtualService routes.
NO_ROUTE = MeshAnswer(404)

#: (host header, is a probe) -> where the request goes
Router = Callable[[str, bool], Upstream | MeshAnswer]


class IngressApp:
    """The ASGI app of one InferenceService's ingress."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        path: str = scope["path"]
        method: str = scope["method"]
        openai = OPENAI_ROUTES.get(path)
        probe = openai is None
        known = (
            openai is not None
            or path in ("/", "/v2/health/ready", "/v2/health/live")
            or (path.startswith("/v1/models/") and path.count("/") == 3)
        )
        target = self._router(host, probe)
        if isinstance(target, MeshAnswer):
            await _answer(send, target.status, target.body, target.content_type)
            return
        tag = [(REVISION_HEADER.encode(), target.revision.encode())]
        if openai is not None:
            expected, rewritten = openai
            if method != expected:
                await _json(send, 405, {"detail": "Method Not Allowed"}, tag)
                return
            inner = dict(scope)
            inner["path"] = rewritten
            inner["raw_path"] = rewritten.encode()
            inner["root_path"] = ""

            async def tagged(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = dict(message)
                    message["headers"] = [*message.get("headers", []), *tag]
                await send(message)

            await target.app(inner, receive, tagged)
            return
        if method != "GET" or not known:
            status = 405 if known else 404
            detail = "Method Not Allowed" if known else "Not Found"
            await _json(send, status, {"detail": detail}, tag)
        elif path == "/":
            await _json(send, 200, {"status": "alive"}, tag)
        elif path == "/v2/health/ready":
            await _json(send, 200, {"ready": True}, tag)
        elif path == "/v2/health/live":
            await _json(send, 200, {"live": True}, tag)
        else:
            name = path.rsplit("/", 1)[1]
            if name == target.served_name:
                await _json(send, 200, {"name": name, "ready": True}, tag)
            else:
                await _json(send, 404, {"error": f"Model with name {name} does not exist."}, tag)


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", content_type.encode()))
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, value: Any, extra: list[tuple[bytes, bytes]]) -> None:
    await _answer(send, status, json.dumps(value).encode(), "application/json", extra)


class IngressServer:
    """uvicorn on 127.0.0.1 in a thread, on a socket bound before it starts (so its URL
    is known at once and connections made early wait in the backlog)."""

    def __init__(self, app: IngressApp, *, host: str = "127.0.0.1", name: str = "ingress") -> None:
        import uvicorn

        self.host = host
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self._socket.listen(128)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"kserve-ingress-{name}-{self.port}",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()
