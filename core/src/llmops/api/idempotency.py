"""``Idempotency-Key`` on mutating POSTs (the IETF httpapi draft's semantics).

The first request with a key runs and its answer is stored; the same key with the same
request replays that answer (``Idempotent-Replayed: true``); the same key with another
body or path is refused with 422; a request whose twin is still running gets 409. Keys are
scoped to the caller's credential and kept for 24 hours. A 5xx or 429 answer is not
kept, so the client may try again with the same key. A request without a valid key runs
without its key: the app refuses it (401, or 429 for a blocked source, whose keys are not
even looked up) and nothing is stored or replayed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from typing import Any

import anyio
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.api.errors import PROBLEM, TYPE_BASE
from llmops.api.security import authentication_of
from llmops.db.models import IdempotencyRecord, utcnow
from llmops.platform import Platform

HEADER = b"idempotency-key"
MAX_KEY = 200
MAX_BODY = 10 * 1024 * 1024
TTL = timedelta(hours=24)
KEPT_HEADERS = {b"content-type", b"location"}


def _problem(status: int, slug: str, title: str, detail: str, path: str) -> tuple[int, bytes]:
    body = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": path,
    }
    return status, json.dumps(body).encode()


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw_key = headers.get(HEADER)
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        key = raw_key.decode("latin-1").strip()
        if not key or len(key) > MAX_KEY:
            await _answer(
                send,
                *_problem(
                    422,
                    "invalid-idempotency-key",
                    "Invalid Idempotency-Key",
                    f"an Idempotency-Key has 1 to {MAX_KEY} characters",
                    path,
                ),
            )
            return
        body = await _read_body(receive)
        if body is None:
            await _answer(
                send,
                *_problem(
                    413,
                    "payload-too-large",
                    "Payload too large",
                    f"requests with an Idempotency-Key carry at most {MAX_BODY} bytes",
                    path,
                ),
            )
            return
        authentication = await authentication_of(scope)  # the app's own check reuses it
        if authentication is None or authentication.failure is not None:
            await self.app(scope, _replaying(body), send)  # refused: nothing is replayed
            return
        platform: Platform = scope["app"].state.platform
        scope_hash = hashlib.sha256(headers.get(b"authorization", b"")).hexdigest()
        request_hash = hashlib.sha256(path.encode() + b"\0" + body).hexdigest()
        verdict = await anyio.to_thread.run_sync(
            _begin, platform, scope_hash, key, path, request_hash
        )
        if isinstance(verdict, tuple):
            status, stored_headers, stored_body = verdict
            await _replay(send, status, stored_headers, stored_body)
            return
        if verdict == "conflict":
            await _answer(
                send,
                *_problem(
                    409,
                    "idempotency-key-in-use",
                    "Request in progress",
                    "a request with this Idempotency-Key is still being processed",
                    path,
                ),
            )
            return
        if verdict == "mismatch":
            await _answer(
                send,
                *_problem(
                    422,
                    "idempotency-key-reused",
                    "Idempotency-Key reused",
                    "this Idempotency-Key was used for a different request",
                    path,
                ),
            )
            return
        record_id = verdict
        captured: dict[str, Any] = {"status": 500, "headers": [], "body": b""}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = message.get("headers", [])
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, _replaying(body), capture)
        finally:
            await anyio.to_thread.run_sync(_finish, platform, record_id, captured)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _begin(
    platform: Platform, scope_hash: str, key: str, path: str, request_hash: str
) -> str | tuple[int, dict[str, str], bytes]:
    """Claim the key (the record's id), or the stored answer, or 'conflict'/'mismatch'."""
    now = utcnow()
    with platform.sessions() as session:
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < now))
        existing = session.scalars(
            select(IdempotencyRecord).where(
                IdempotencyRecord.scope == scope_hash, IdempotencyRecord.key == key
            )
        ).first()
        if existing is None:
            record = IdempotencyRecord(
                scope=scope_hash,
                key=key,
                method="POST",
                path=path,
                request_hash=request_hash,
                expires_at=now + TTL,
            )
            session.add(record)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return "conflict"  # a twin claimed it a moment ago
            return record.id
        session.commit()
        if existing.request_hash != request_hash:
            return "mismatch"
        if existing.state != "done" or existing.response_status is None:
            return "conflict"
        body = base64.b64decode(existing.response_body or "")
        return existing.response_status, dict(existing.response_headers), body


def _finish(platform: Platform, record_id: str, captured: dict[str, Any]) -> None:
    with platform.sessions() as session, session.begin():
        record = session.get(IdempotencyRecord, record_id)
        if record is None:
            return
        if captured["status"] >= 500 or captured["status"] == 429:
            session.delete(record)  # not an answer worth keeping: the client may retry
            return
        record.state = "done"
        record.response_status = captured["status"]
        record.response_headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in captured["headers"]
            if name.lower() in KEPT_HEADERS
        }
        record.response_body = base64.b64encode(captured["body"]).decode()


async def _replay(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw += [(b"idempotent-replayed", b"true"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
