"""The access policy of :mod:`llmops.auth` applied to HTTP, and the audit of every write.

* :func:`authorize` is a dependency of the whole app (``FastAPI(dependencies=...)``), so
  every route, the plugins' included, passes through it: public routes answer without a
  key, the others need ``Authorization: Bearer <key>`` (401) of a role the policy allows
  (403). It puts the caller's :class:`~llmops.auth.Principal` in the request's context.
  Routes served below FastAPI (the inference gateway's) call :func:`check_access`, the
  same check.
* A key's lookup is remembered for :data:`PRINCIPAL_TTL_SECONDS` (:class:`PrincipalCache`):
  no database round trip per request. Revoking a key or changing its role in this process
  forgets every remembered key at once (:mod:`llmops.services.api_keys`); when the key was
  last used is still recorded, at most once a minute, by a write the request does not
  wait for.
* Failed authentications are counted per source address (:class:`AuthenticationLimiter`):
  too many within a window block the source for a while, in which it gets 429 with
  ``Retry-After`` and the keys it presents are not looked up, except the keys this process
  accepted before. One audit entry records each block.
* :class:`AuditMiddleware` gives each request an id (``X-Request-ID``, taken from the
  request when it sends a sane one) and records each write, refused ones included, in
  its own short transaction once the status is known and before the answer leaves. For a
  ``201`` it reads the created resource's id from the answer. It never reads the request
  body, so nothing a client sends (keys, plugin settings) reaches the log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import re
import threading
import time
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache, partial
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.auth import (
    ANONYMOUS,
    API,
    LAST_USED_RESOLUTION,
    Authentication,
    authenticate,
    current_principal,
    current_request_id,
    is_write,
    refusal,
    rule_for,
)
from llmops.db.models import ApiKey, utcnow
from llmops.errors import Forbidden, TooManyRequests, Unauthenticated
from llmops.platform import Platform
from llmops.services import api_keys, audit
from llmops.services.audit import Outcome

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,64}$")
#: a created resource's answer is read up to this size for its id
_MAX_CREATED_BODY = 256 * 1024
_STATE = "llmops.access"

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    bearerFormat="llmops_<prefix>_<secret>",
    description="An API key: POST /llm-ops/v1/api-keys, or `llmops api-keys create`.",
)


@dataclass
class _Access:
    """What the request's handling learnt about its caller, shared through the scope."""

    authentication: Authentication | None = None
    looked_up: bool = False
    refusal: str | None = None
    #: what the route adds to its audit entry (:func:`add_audit_details`)
    details: dict[str, Any] | None = None
    #: seconds until the request's source may present unknown keys again (it is blocked)
    retry_after: int | None = None


def _access(scope: Scope) -> _Access:
    state: dict[str, Any] = scope.setdefault("state", {})
    access = state.get(_STATE)
    if not isinstance(access, _Access):
        access = state[_STATE] = _Access()
    return access


def add_audit_details(request: Request, **details: Any) -> None:
    """Add ``details`` to the audit entry of this request's write (what a route learnt
    while acting: names of what it changed, never values a client sent)."""
    access = _access(request.scope)
    access.details = {**(access.details or {}), **details}


#: The policy's rule for a route, looked up once: routes are few (an unmatched URL is a
#: template of its own, hence the bound).
_rule = lru_cache(maxsize=2048)(rule_for)


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


# -- remembered keys -------------------------------------------------------------------

#: How long a key's lookup is reused: a revocation or role change made in this process is
#: seen at once, one made by another process (another server, the command line run
#: elsewhere) within this time.
PRINCIPAL_TTL_SECONDS = 5.0


@dataclass
class _Known:
    authentication: Authentication
    key_id: str
    #: the last use the database holds, or will once the write under way is done
    last_used: datetime | None


class PrincipalCache:
    """The keys a platform looked up recently, by hash: a request whose key is known
    costs no database round trip. Only accepted keys are kept; a refused one is looked up
    every time. A use is written to ``last_used_at`` at most once per ``resolution``
    (as :func:`llmops.auth.authenticate` does), off the request's path."""

    def __init__(
        self,
        platform: Platform,
        *,
        ttl: float = PRINCIPAL_TTL_SECONDS,
        resolution: timedelta = LAST_USED_RESOLUTION,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.platform = platform
        self.keys: api_keys.KeyCache[_Known] = api_keys.KeyCache(ttl)
        self.resolution = resolution
        self.now = now
        self._writes: set[asyncio.Future[None]] = set()
        #: lookups under way, by key hash, with the generation they started in
        self._pending: dict[str, tuple[int, asyncio.Future[Authentication]]] = {}

    async def authenticate(self, token: str, key_hash: str | None = None) -> Authentication:
        """The key's authentication: remembered, or looked up once however many requests
        present it at the same time (a lookup that started before a key changed is not
        shared with the requests that come after the change). ``key_hash``: the token's
        hash, when the caller has it already."""
        key_hash = key_hash or api_keys.hash_key(token)
        known = self.keys.get(key_hash)
        if known is not None:
            self._note_use(known)
            return known.authentication
        generation = self.keys.generation
        pending = self._pending.get(key_hash)
        if (
            pending is None
            or pending[0] != generation
            or pending[1].get_loop() is not asyncio.get_running_loop()
        ):
            future = asyncio.ensure_future(self._look_up(token, key_hash, generation))
            pending = self._pending[key_hash] = (generation, future)
            future.add_done_callback(partial(self._looked_up, key_hash))
        return await asyncio.shield(pending[1])  # a caller that leaves cancels only itself

    async def _look_up(self, token: str, key_hash: str, generation: int) -> Authentication:
        authentication, known = await anyio.to_thread.run_sync(partial(self._lookup, token))
        if known is not None:
            self.keys.put(key_hash, known, generation)
        return authentication

    def _looked_up(self, key_hash: str, future: asyncio.Future[Authentication]) -> None:
        pending = self._pending.get(key_hash)
        if pending is not None and pending[1] is future:
            del self._pending[key_hash]
        if not future.cancelled():
            future.exception()  # the callers have it; none left is no error to report

    def _lookup(self, token: str) -> tuple[Authentication, _Known | None]:
        with self.platform.transaction() as session:
            authentication = authenticate(session=session, token=token)
            principal = authentication.principal
            if authentication.failure is not None or principal is None or not principal.key_id:
                return authentication, None
            row = session.get(ApiKey, principal.key_id)
            last_used = row.last_used_at if row is not None else None
            return authentication, _Known(authentication, principal.key_id, last_used)

    def _note_use(self, known: _Known) -> None:
        now = self.now()
        if known.last_used is not None and now - known.last_used < self.resolution:
            return
        known.last_used = now
        future = asyncio.get_running_loop().run_in_executor(
            None, partial(self._write_use, known.key_id, now)
        )
        self._writes.add(future)
        future.add_done_callback(self._written)

    def _write_use(self, key_id: str, at: datetime) -> None:
        with self.platform.transaction() as session:
            api_keys.note_use(session=session, key_id=key_id, at=at)

    def _written(self, future: asyncio.Future[None]) -> None:
        self._writes.discard(future)
        if not future.cancelled() and (error := future.exception()) is not None:
            log.warning("could not record the last use of an API key: %s", error)


_PRINCIPALS: weakref.WeakKeyDictionary[Platform, PrincipalCache] = weakref.WeakKeyDictionary()


def principals(platform: Platform) -> PrincipalCache:
    """The platform's remembered keys."""
    cache = _PRINCIPALS.get(platform)
    if cache is None:
        cache = _PRINCIPALS[platform] = PrincipalCache(platform)
    return cache


# -- failed authentications -------------------------------------------------------------

#: How long a key this process accepted still passes a block of its source: the console of
#: a loopback deployment (every client is 127.0.0.1) is not locked out by a script that
#: retries a stale key, however long the console was left open.
REMEMBERED_KEY_SECONDS = 24 * 3600.0


def source_of(scope: Scope) -> str:
    """The source failed authentications are counted against: the client address the ASGI
    server put in the scope (behind a reverse proxy, the proxy's, unless the server trusts
    its X-Forwarded-For: ``trusted_proxies``). An IPv6 address counts as its /64 network,
    which one host commonly holds whole."""
    client = scope.get("client")
    host = client[0] if client else None
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return str(host)[:100]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class AuthenticationLimiter:
    """Failed authentications per source: ``limit`` of them within ``window`` seconds
    block the source for ``block`` seconds; the failures are then forgotten, so a source
    whose block ended is counted afresh. During a block the source's keys are not looked
    up (a right guess must look like a wrong one) unless this process accepted them before
    (:meth:`remember`). Every table is bounded: the least recently used entry goes first,
    and failures never push a block out (blocks have a table of their own)."""

    def __init__(
        self,
        *,
        limit: int,
        window: float,
        block: float,
        max_sources: int = 10_000,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.block = block
        self.max_sources = max_sources
        self.max_keys = max_keys
        self.clock = clock
        #: the times of each source's recent failures, least recently failed first
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        #: when each blocked source's block ends, soonest first
        self._blocked: OrderedDict[str, float] = OrderedDict()
        #: the hashes of the keys accepted, and until when they pass a block
        self._keys: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()  # a platform may serve from several event loops

    def blocked_for(self, source: str) -> float | None:
        """The seconds left of the source's block; ``None`` when it is not blocked."""
        with self._lock:
            return self._left(source, self.clock())

    def _left(self, source: str, now: float) -> float | None:
        ends = self._blocked.get(source)
        if ends is None:
            return None
        if ends > now:
            return ends - now
        del self._blocked[source]
        return None

    def failed(self, source: str) -> bool:
        """Count a failed authentication of ``source``; true when it starts a block."""
        now = self.clock()
        with self._lock:
            if self._left(source, now) is not None:
                return False  # a remembered key that is refused now: the block holds
            failures = self._failures.pop(source, None) or deque(maxlen=self.limit)
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            failures.append(now)
            if len(failures) >= self.limit:
                self._blocked[source] = now + self.block
                if len(self._blocked) > self.max_sources:
                    self._blocked.popitem(last=False)
                return True
            self._failures[source] = failures
            if len(self._failures) > self.max_sources:
                self._failures.popitem(last=False)
            return False

    def remember(self, key_hash: str) -> None:
        """Note that the key was accepted: it passes its source's blocks for a while."""
        with self._lock:
            self._keys[key_hash] = self.clock() + REMEMBERED_KEY_SECONDS
            self._keys.move_to_end(key_hash)
            if len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)

    def remembers(self, key_hash: str) -> bool:
        until = self._keys.get(key_hash)
        return until is not None and until > self.clock()

    def remembered_keys(self) -> int:
        return len(self._keys)

    def __len__(self) -> int:
        """The sources known: failing or blocked."""
        return len(self._failures) + len(self._blocked)


_LIMITERS = weakref.WeakKeyDictionary[Platform, AuthenticationLimiter]()


def limiter(platform: Platform) -> AuthenticationLimiter:
    """The platform's count of failed authentications, as its settings say."""
    limits = _LIMITERS.get(platform)
    if limits is None:
        settings = platform.settings
        limits = _LIMITERS[platform] = AuthenticationLimiter(
            limit=settings.auth_failure_limit,
            window=settings.auth_failure_window_seconds,
            block=settings.auth_block_seconds,
        )
    return limits


async def _record_block(platform: Platform, limits: AuthenticationLimiter, source: str) -> None:
    """The one audit entry of a block (the refusals during it are counted in the metrics)."""
    details = {
        "source": source,
        "failures": limits.limit,
        "windowSeconds": limits.window,
        "blockSeconds": limits.block,
    }
    log.warning(
        "blocked %s for %s s: %d failed authentications within %s s",
        source,
        limits.block,
        limits.limit,
        limits.window,
    )

    def write() -> None:
        with platform.transaction() as session:
            audit.record(
                session=session,
                action="block_authentication_source",
                resource_type="authentication",
                resource_id=source,
                outcome=Outcome.DENIED,
                details=details,
                principal=ANONYMOUS,
            )

    try:
        await anyio.to_thread.run_sync(write)
    except SQLAlchemyError:
        platform.metrics.audit_failures.inc()
        log.exception("could not write the audit entry of the block of %s", source)


async def authentication_of(scope: Scope) -> Authentication | None:
    """The request's key, looked up once: ``None`` when it sends none, or when its source
    is blocked and the key is not one this process accepted before (the scope's access
    then says for how long)."""
    access = _access(scope)
    if access.looked_up:
        return access.authentication
    access.looked_up = True
    token = _bearer_token(scope)
    platform: Platform | None = getattr(scope["app"].state, "platform", None)
    if token is None or platform is None:
        return None
    limits = limiter(platform)
    key_hash = api_keys.hash_key(token)
    if not limits.remembers(key_hash):
        left = limits.blocked_for(source_of(scope))
        if left is not None:
            access.retry_after = math.ceil(left)
            platform.metrics.authentication_refusals.labels("blocked").inc()
            return None
    authentication = await principals(platform).authenticate(token, key_hash)
    access.authentication = authentication
    if authentication.failure is None:
        limits.remember(key_hash)
        return authentication
    platform.metrics.authentication_refusals.labels("invalid").inc()
    source = source_of(scope)
    if limits.failed(source):
        await _record_block(platform, limits, source)
    return authentication


def route_template(scope: Scope) -> str | None:
    """The matched route's whole template (``/llm-ops/v1/catalog/models/{modelId}``), as
    the OpenAPI document names it: the route in the scope knows only its own part, without
    the prefixes of the routers that include it (the API's, and a plugin's)."""
    route = scope.get("route")
    if not isinstance(route, APIRoute):
        return None
    path = route.path_format
    url = str(scope["path"])
    if url.startswith(f"{API}/plugins/") and not path.startswith(f"{API}/plugins/"):
        plugin = url[len(API) + len("/plugins/") :].split("/", 1)[0]
        return f"{API}/plugins/{plugin}{path}"
    if url.startswith(f"{API}/") and not path.startswith(f"{API}/"):
        return f"{API}{path}"
    return path


async def authorize(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Refuse the request unless the policy lets its key call the route."""
    template = route_template(request.scope) or request.url.path
    await check_access(request.scope, request.method, template, request.path_params)


async def check_access(
    scope: Scope, method: str, template: str, path_params: Mapping[str, Any]
) -> None:
    """Raise :class:`Unauthenticated` (401) or :class:`Forbidden` (403) unless the policy
    lets the request's key call ``method template``; note the caller in the context."""
    if _rule(method, template).role is None:
        return
    access = _access(scope)
    authentication = await authentication_of(scope)
    if access.retry_after is not None:
        access.refusal = "too many failed authentications from this address"
        raise TooManyRequests(
            "too many failed authentications from this address: only keys this server "
            f"accepted before are checked for the next {access.retry_after} s",
            retry_after=access.retry_after,
        )
    if authentication is None:
        access.refusal = "no API key"
        raise Unauthenticated(
            "send an API key as 'Authorization: Bearer <key>'; an admin creates keys with "
            "POST /llm-ops/v1/api-keys or `llmops api-keys create`"
        )
    principal = authentication.principal
    if authentication.failure is not None or principal is None:
        access.refusal = authentication.failure
        raise Unauthenticated(authentication.failure or "invalid API key", invalid_token=True)
    current_principal.set(principal)  # seen by the handler, which runs in this context
    reason = refusal(principal, method, template, path_params)
    if reason is not None:
        access.refusal = reason
        raise Forbidden(reason)


def document_access(app: FastAPI) -> None:
    """Make the OpenAPI document say what :func:`authorize` does: the bearer scheme on
    every route except the public ones, which need no key and are never refused."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        document = generate()
        if fresh:
            for path, item in document.get("paths", {}).items():
                for method, operation in item.items():
                    if isinstance(operation, dict) and rule_for(method, path).role is None:
                        operation.pop("security", None)
                        for status in ("401", "403", "429"):
                            operation.get("responses", {}).pop(status, None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


# -- the audit -------------------------------------------------------------------------


def request_id_of(scope: Scope) -> str:
    given = Headers(scope=scope).get(REQUEST_ID_HEADER)
    if given is not None and _SANE_REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


def resource_of(template: str, path_params: dict[str, Any]) -> tuple[str, str | None]:
    """The resource a route acts on: its type is the collection's path below the API
    prefix, at most two segments (``catalog/models``, ``integrations``), its id the
    first path parameter. A sub-resource (a dataset's version, an endpoint's deployment)
    is recorded against its parent; the action and the path in the details say more."""
    segments = template.removeprefix(API).strip("/").split("/")
    collection: list[str] = []
    for segment in segments:
        if segment.startswith("{") and segment.endswith("}"):
            value = path_params.get(segment[1:-1])
            return "/".join(collection[:2]), None if value is None else str(value)
        collection.append(segment)
    return "/".join(collection[:2]), None


def _created_id(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    value = document.get("id") if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


class AuditMiddleware:
    """Request ids for every request; an audit entry for every write (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        reset = current_request_id.set(request_id)
        held: Message | None = None  # a 201's start, held until its body shows the id
        body = bytearray()
        recorded = False

        async def send_audited(message: Message) -> None:
            nonlocal held, recorded
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
                status = int(message["status"])
                if recorded or not self._audited(scope, status):
                    await send(message)
                    return
                content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
                if status == 201 and content_type.startswith("application/json"):
                    held = message
                    return
                recorded = True
                await self._record(scope, status, request_id, created_id=None)
                await send(message)
                return
            if message["type"] == "http.response.body" and held is not None:
                body.extend(message.get("body", b""))
                more = bool(message.get("more_body", False))
                if more and len(body) <= _MAX_CREATED_BODY:
                    return
                start, held = held, None
                recorded = True
                created = None if more else _created_id(bytes(body))
                await self._record(scope, int(start["status"]), request_id, created_id=created)
                await send(start)
                await send({"type": "http.response.body", "body": bytes(body), "more_body": more})
                return
            await send(message)

        try:
            await self.app(scope, receive, send_audited)
        except Exception:
            if not recorded and self._audited(scope, 500):
                await self._record(scope, 500, request_id, created_id=None)
            raise
        finally:
            current_request_id.reset(reset)

    @staticmethod
    def _audited(scope: Scope, status: int) -> bool:
        route = scope.get("route")
        template = route_template(scope)
        method = str(scope["method"]).upper()
        if (
            not isinstance(route, APIRoute)
            or template is None
            or method not in (route.methods or ())
        ):
            return False  # requests that reached no route, or a route without this method
        if not is_write(method) or _access(scope).retry_after is not None:
            return False  # a blocked source's refusals: its block has one entry
        rule = _rule(method, template)
        return rule.audited or audit.outcome_of(status) is Outcome.DENIED

    async def _record(
        self, scope: Scope, status: int, request_id: str, *, created_id: str | None
    ) -> None:
        platform: Platform | None = getattr(scope["app"].state, "platform", None)
        route = scope["route"]
        template = route_template(scope)
        if not isinstance(route, APIRoute) or template is None:
            raise RuntimeError(f"no API route matched {scope.get('path')!r}")
        if platform is None:
            return
        authentication = await authentication_of(scope)
        principal = (authentication.principal if authentication else None) or ANONYMOUS
        resource_type, resource_id = resource_of(template, scope.get("path_params", {}))
        details: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
        }
        if created_id is not None:
            if resource_id is None:
                resource_id = created_id
            else:
                details["createdId"] = created_id
        reason = _access(scope).refusal
        if reason is not None:
            details["reason"] = reason
        details.update(_access(scope).details or {})

        def write() -> None:
            with platform.transaction() as session:
                audit.record(
                    session=session,
                    action=route.name,
                    resource_type=resource_type,
                    resource_id=resource_id,
                    outcome=audit.outcome_of(status),
                    details=details,
                    principal=principal,
                    request_id=request_id,
                )

        try:
            await anyio.to_thread.run_sync(write)
        except SQLAlchemyError:
            # the request's own change is committed: answering an error would invite a
            # retry, so the failure is logged and counted instead
            platform.metrics.audit_failures.inc()
            log.exception(
                "could not write the audit entry of %s %s (request %s)",
                scope["method"],
                scope["path"],
                request_id,
            )
