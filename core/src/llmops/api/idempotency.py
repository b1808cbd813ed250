"""``Idempotency-Key`` on mutating POSTs (the IETF httpapi draft's semantics).

The first request with a key runs and its answer is stored; the same key with the same
request replays that answer (``Idempotent-Replayed: true``); the same key with another
body or path is refused with 422; a request whose twin is still running gets 409 with
``Retry-After``. Keys are scoped to the caller's credential and kept for 24 hours. A 5xx
or 429 answer is not kept, so the client may try again with the same key. A request
without a valid key runs without its key: the app refuses it (401, or 429 for a blocked
source, whose keys are not even looked up) and nothing is stored or replayed.

**Crashes.** A key in progress is held by its request (an owner token) under a lease of
``idempotency_lease_seconds``, which the request renews while it runs. A process that dies
renews nothing: once the lease has run out, a replay takes the key over. What it does then
depends on whether the dead request's write committed, which the request's own database
transaction says, since it records it in the key's row (:func:`attach`):

* nothing committed: the replay runs the request again, as if it were the first;
* the answer committed with the write (the route's final commit stores it): it is replayed;
* a write committed but not the answer (the process died between the two): the replay
  answers the written resource as it is now (a ``GET`` of it, with the status the route
  answers, ``Idempotent-Replayed: true``), and never runs the request a second time.

A request whose key was taken over (it stalled past its lease) cannot commit any more: its
transaction checks the owner token and is rolled back, so two holders never both write.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import delete, event, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.api.errors import PROBLEM, TYPE_BASE
from llmops.api.security import authentication_of
from llmops.db.models import (
    CatalogModel,
    Dataset,
    DatasetVersion,
    IdempotencyRecord,
    Operation,
    ServingEndpoint,
    TrainingJob,
    WorkflowPipeline,
    utcnow,
)
from llmops.errors import Conflict
from llmops.platform import Platform

log = logging.getLogger(__name__)

HEADER = b"idempotency-key"
MAX_KEY = 200
MAX_BODY = 10 * 1024 * 1024
TTL = timedelta(hours=24)
KEPT_HEADERS = {b"content-type", b"location"}
#: where the request scope carries its key's claim, and the answer its route built
CLAIM = "llmops.idempotency"
ANSWER = "llmops.idempotency.answer"

#: the collection each kind of resource a POST may create is listed in (``{field}`` from
#: the row), for reading the resource back after a crash
COLLECTIONS: dict[type[object], str] = {
    CatalogModel: "/catalog/models",
    Dataset: "/catalog/datasets",
    DatasetVersion: "/catalog/datasets/{dataset_id}/versions",
    TrainingJob: "/training/jobs",
    WorkflowPipeline: "/workflows/pipelines",
    ServingEndpoint: "/serving/endpoints",
    Operation: "/operations",
}


@dataclass
class Claim:
    """An idempotent request's hold on its key: the record, the owner token, and what its
    transactions wrote so far."""

    record_id: str
    token: str
    lease_seconds: float
    scope: Scope
    committed: bool = False
    #: ids of the rows this request inserted, with their collection paths
    created: list[tuple[str, str]] = field(default_factory=list)
    #: whether the open transaction has written something
    wrote: bool = False


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
        self._renewals: _Renewer | None = None

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
        lease = platform.settings.idempotency_lease_seconds
        token = secrets.token_hex(16)
        verdict = await anyio.to_thread.run_sync(
            _begin, platform, scope_hash, key, path, request_hash, token, lease
        )
        if isinstance(verdict, tuple):
            status, stored_headers, stored_body = verdict
            await _replay(send, status, stored_headers, stored_body)
            return
        if isinstance(verdict, _Recover):
            await self._recover(scope, verdict, send)
            return
        if isinstance(verdict, float):
            await _answer(
                send,
                *_problem(
                    409,
                    "idempotency-key-in-use",
                    "Request in progress",
                    "a request with this Idempotency-Key is still being processed",
                    path,
                ),
                retry_after=max(1, round(verdict)),
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
        claim = Claim(record_id=record_id, token=token, lease_seconds=lease, scope=scope)
        scope[CLAIM] = claim
        captured: dict[str, Any] = {"status": 500, "headers": [], "body": b""}
        capture = _capturing(captured, send)
        renewer = self._renewer(platform)
        renewer.hold(claim)
        try:
            await self.app(scope, _replaying(body), capture)
        finally:
            renewer.release(claim)
            await anyio.to_thread.run_sync(_finish, platform, claim, captured)

    def _renewer(self, platform: Platform) -> _Renewer:
        if self._renewals is None or self._renewals.platform is not platform:
            self._renewals = _Renewer(platform)
        return self._renewals

    async def _recover(self, scope: Scope, verdict: _Recover, send: Send) -> None:
        """Answer a key whose request died after its write committed: the resource it
        wrote, read back with the caller's credential, with the route's status."""
        platform: Platform = scope["app"].state.platform
        if verdict.path is None:
            await _answer(
                send,
                *_problem(
                    409,
                    "idempotency-outcome-unknown",
                    "Request committed, answer lost",
                    "the request with this Idempotency-Key committed its write, but its "
                    "process stopped before it answered, and its result cannot be read back "
                    "here: look the resource up instead of sending the request again",
                    scope["path"],
                ),
            )
            return
        read_scope = {
            **{k: v for k, v in scope.items() if k not in (CLAIM, ANSWER)},
            "method": "GET",
            "path": verdict.path,
            "raw_path": verdict.path.encode(),
            "query_string": b"",
            "headers": [(k, v) for k, v in scope["headers"] if k in READ_HEADERS],
        }
        captured: dict[str, Any] = {"status": 500, "headers": [], "body": b""}
        await self.app(read_scope, _replaying(b""), _capturing(captured))
        if captured["status"] != 200:  # gone since, or no longer readable by this caller
            raw = [(k, v) for k, v in captured["headers"] if k.lower() != b"content-length"]
            raw.append((b"content-length", str(len(captured["body"])).encode()))
            await send(
                {"type": "http.response.start", "status": captured["status"], "headers": raw}
            )
            await send({"type": "http.response.body", "body": captured["body"]})
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in captured["headers"]
            if name.lower() == b"content-type"
        }
        headers["location"] = verdict.location
        status = verdict.status or 200
        await anyio.to_thread.run_sync(
            _store_recovered, platform, verdict.record_id, status, headers, captured["body"]
        )
        await _replay(send, status, headers, captured["body"])


def _capturing(captured: dict[str, Any], send: Send | None = None) -> Send:
    """A ``send`` that records the answer's status, headers and body in ``captured`` (and
    passes it on to ``send``, when given)."""

    async def capture(message: Message) -> None:
        if message["type"] == "http.response.start":
            captured["status"] = message["status"]
            captured["headers"] = message.get("headers", [])
        elif message["type"] == "http.response.body":
            captured["body"] += message.get("body", b"")
        if send is not None:
            await send(message)

    return capture


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


#: what a read-back after a crash carries of the replay's request: its credential
READ_HEADERS = {b"authorization", b"host", b"x-forwarded-for", b"x-request-id"}


@dataclass(frozen=True)
class _Recover:
    """A key whose request died after its write committed: read the resource back."""

    record_id: str
    path: str | None
    status: int | None

    @property
    def location(self) -> str:
        return self.path or ""


def _begin(
    platform: Platform,
    scope_hash: str,
    key: str,
    path: str,
    request_hash: str,
    token: str,
    lease: float,
) -> str | float | _Recover | tuple[int, dict[str, str], bytes]:
    """Claim the key (the record's id); or the stored answer; or a read-back of what a
    dead request wrote (:class:`_Recover`); or 'mismatch'; or, while the key's request
    is still running, the seconds its lease has left (409)."""
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
                owner=token,
                lease_until=now + timedelta(seconds=lease),
            )
            session.add(record)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return lease  # a twin claimed it a moment ago
            return record.id
        session.commit()
        if existing.request_hash != request_hash:
            return "mismatch"
        if existing.state == "done" and existing.response_status is not None:
            body = base64.b64decode(existing.response_body or "")
            return existing.response_status, dict(existing.response_headers), body
        if existing.lease_until is not None and existing.lease_until > now:
            return (existing.lease_until - now).total_seconds()
        # the lease ran out: the request that held the key died with its process
        if existing.committed_at is not None:
            return _Recover(existing.id, existing.replay_path, existing.replay_status)
        taken = session.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.id == existing.id,
                IdempotencyRecord.committed_at.is_(None),
                IdempotencyRecord.lease_until.is_not_distinct_from(existing.lease_until),
            )
            .values(owner=token, lease_until=now + timedelta(seconds=lease))
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        session.commit()
        if taken != 1:  # another replay took it over a moment ago
            return lease
        return existing.id


class _Renewer:
    """Renews the leases of the keys this process's requests hold, every third of the
    lease, in one statement, from one thread that ends when no request holds a key."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.lease = platform.settings.idempotency_lease_seconds
        self._lock = threading.Lock()
        self._held: dict[str, Claim] = {}
        self._thread: threading.Thread | None = None

    def hold(self, claim: Claim) -> None:
        with self._lock:
            self._held[claim.token] = claim
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="llmops-idempotency-leases", daemon=True
                )
                self._thread.start()

    def release(self, claim: Claim) -> None:
        with self._lock:
            self._held.pop(claim.token, None)

    def _loop(self) -> None:
        while True:
            time.sleep(self.lease / 3)
            with self._lock:
                tokens = list(self._held)
                if not tokens:
                    self._thread = None
                    return
            try:
                _renew(self.platform, tokens, self.lease)
            except Exception:  # the next round tries again; a lost lease fails its commit
                log.exception("renewing idempotency leases failed")


def _renew(platform: Platform, tokens: list[str], lease: float) -> None:
    until = utcnow() + timedelta(seconds=lease)
    with platform.sessions() as session, session.begin():
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.owner.in_(tokens), IdempotencyRecord.state != "done")
            .values(lease_until=until)
            .execution_options(synchronize_session=False)
        )


def _finish(platform: Platform, claim: Claim, captured: dict[str, Any]) -> None:
    """Store the answer, unless the request's final commit stored it already."""
    with platform.sessions() as session, session.begin():
        record = session.get(IdempotencyRecord, claim.record_id)
        if record is None or record.owner != claim.token or record.state == "done":
            return
        if captured["status"] >= 500 or captured["status"] == 429:
            if record.committed_at is None:
                session.delete(record)  # not an answer worth keeping: the client may retry
            else:  # its write stands: a replay reads it back, and never writes it twice
                record.lease_until = utcnow()
            return
        record.state = "done"
        status, headers, body = _storable(
            claim.scope, captured["status"], _kept(captured["headers"]), captured["body"]
        )
        record.response_status = status
        record.response_headers = headers
        record.response_body = base64.b64encode(body).decode()


#: the routes (below the API prefix) whose answer shows a secret once: a new API key. The
#: key's record keeps no such answer (the database holds only the key's hash); a replay
#: answers 409 that the secret cannot be shown again.
SHOWN_ONCE = frozenset({"/api-keys"})


def _storable(
    scope: Scope, status: int, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    """The answer to keep for replays: the answer, or for a secret shown once, a 409."""
    path: str = scope["path"]
    prefix: str = getattr(getattr(scope.get("app"), "state", None), "api_prefix", "")
    if status >= 300 or path.removeprefix(prefix) not in SHOWN_ONCE:
        return status, headers, body
    problem_status, problem = _problem(
        409,
        "idempotency-secret-shown-once",
        "Secret shown once",
        "the request with this Idempotency-Key succeeded, and its answer showed a secret "
        "that is never shown again: list what it created, or send a new request",
        path,
    )
    return problem_status, {"content-type": PROBLEM}, problem


def _kept(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers
        if name.lower() in KEPT_HEADERS
    }


def _store_recovered(
    platform: Platform, record_id: str, status: int, headers: dict[str, str], body: bytes
) -> None:
    with platform.sessions() as session, session.begin():
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == record_id, IdempotencyRecord.state != "done")
            .values(
                state="done",
                response_status=status,
                response_headers=headers,
                response_body=base64.b64encode(body).decode(),
            )
            .execution_options(synchronize_session=False)
        )


# -- the request's own transactions ----------------------------------------------------


def attach(session: Session, scope: Scope) -> None:
    """Make ``session`` (a request's) record its writes in the request's key, in the same
    transaction: every commit that wrote something marks the key committed (with where the
    created resource is read back), and the route's final commit stores the answer too.
    A commit whose request no longer holds its key (taken over after its lease ran out)
    fails with 409 and writes nothing. A request without a key: nothing happens."""
    claim: Claim | None = scope.get(CLAIM)
    if claim is None:
        return

    @event.listens_for(session, "after_flush")
    def _flushed(session: Session, _context: object) -> None:
        if session.new or session.dirty or session.deleted:
            claim.wrote = True
        for row in session.new:
            template = COLLECTIONS.get(type(row))
            row_id = getattr(row, "id", None)
            if template is not None and isinstance(row_id, str):
                claim.created.append((template.format_map(vars(row)), row_id))

    @event.listens_for(session, "before_commit")
    def _committing(session: Session) -> None:
        session.flush()
        answer: Response | None = scope.get(ANSWER)
        if not (claim.wrote or claim.committed):
            return  # nothing written: a replay after a crash may run the request again
        now = utcnow()
        values: dict[str, Any] = {
            "committed_at": now,
            "lease_until": now + timedelta(seconds=claim.lease_seconds),
            "replay_path": _read_back_path(scope, claim),
            "replay_status": _route_status(scope),
        }
        body = getattr(answer, "body", None)
        if answer is not None and isinstance(body, bytes) and answer.status_code < 500:
            status, headers, kept = _storable(
                scope, answer.status_code, _kept(answer.raw_headers), body
            )
            values |= {
                "state": "done",
                "response_status": status,
                "response_headers": headers,
                "response_body": base64.b64encode(kept).decode(),
            }
        held = session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == claim.record_id, IdempotencyRecord.owner == claim.token)
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        if held != 1:
            raise Conflict(
                "this request's Idempotency-Key was taken over by a replay after the "
                "request outlived its lease; nothing was written"
            )
        claim.committed = True
        claim.wrote = False


def _read_back_path(scope: Scope, claim: Claim) -> str | None:
    """Where the request's result is read back: the resource it created in the collection
    it was posted to (or under it), else the resource the action was posted to."""
    path: str = scope["path"]
    app = scope.get("app")
    prefix: str = getattr(getattr(app, "state", None), "api_prefix", "")
    if not path.startswith(prefix):
        return None
    relative = path[len(prefix) :]
    created = [
        (collection, row_id)
        for collection, row_id in claim.created
        if relative == collection or relative.startswith(collection + "/")
    ]
    if created:
        collection, row_id = max(created, key=lambda item: len(item[0]))
        return f"{prefix}{collection}/{row_id}"
    parent = path.rsplit("/", 1)[0]
    if len(parent) > len(prefix) and _readable(scope, parent):
        return parent
    return None


def _readable(scope: Scope, path: str) -> bool:
    app = scope.get("app")
    if not isinstance(app, FastAPI):
        return False
    probe: Scope = {"type": "http", "method": "GET", "path": path, "root_path": ""}
    return any(
        isinstance(route, APIRoute) and route.matches(probe)[0] is Match.FULL
        for route in app.router.routes
    )


def _route_status(scope: Scope) -> int | None:
    route = scope.get("route")
    status = getattr(route, "status_code", None)
    return status if isinstance(status, int) else None


class AnswerKeepingRoute(APIRoute):
    """The route class of every router of the API: a POST's final commit sees the answer
    it built (see :func:`attach`). The answer is built before the request's dependencies
    close, so the commit that makes the write durable stores the answer with it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if "POST" not in (self.methods or ()):
            return handler

        async def keep(request: Request) -> Response:
            response = await handler(request)
            if CLAIM in request.scope:
                request.scope[ANSWER] = response
            return response

        return keep


async def _replay(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw += [(b"idempotent-replayed", b"true"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _answer(send: Send, status: int, body: bytes, *, retry_after: int | None = None) -> None:
    headers = [
        (b"content-type", PROBLEM.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
