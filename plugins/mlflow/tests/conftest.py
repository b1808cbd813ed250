"""One MLflow tracking server for the whole test session (llmops_mlflow.testing), and a
fake one that records the requests it gets and answers them all alike."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmops_mlflow.testing import MlflowServer, running_mlflow_server


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[MlflowServer]:
    with running_mlflow_server() as server:
        yield server


@dataclass
class FakeMlflow:
    """An HTTP server on 127.0.0.1 that records ``"METHOD /path"`` of every request (and
    its Authorization header, None when it had none, in ``authorizations``) and answers
    each with ``status``, ``body`` and ``content_type``."""

    url: str = ""
    requests: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"


@pytest.fixture
def fake_mlflow() -> Iterator[FakeMlflow]:
    fake = FakeMlflow()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            with lock:
                fake.requests.append(f"{self.command} {self.path.split('?')[0]}")
                fake.authorizations.append(self.headers.get("Authorization"))
            self.send_response(fake.status)
            self.send_header("Content-Type", fake.content_type)
            self.send_header("Content-Length", str(len(fake.body)))
            self.end_headers()
            self.wfile.write(fake.body)

        do_GET = do_POST = do_PATCH = do_DELETE = _answer  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-mlflow", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
