"""The inference gateway: one OpenAI-compatible surface for every serving endpoint.

``model`` in an OpenAI request names a serving endpoint. The gateway finds the endpoint's
inference target (its backend's base URL, where the OpenAI routes sit: Ray Serve's
``/<app>/v1``, KServe's ``/openai/v1``), rewrites ``model`` to the name the backend
serves, and forwards the body with headers of its own: the caller's platform key never
goes upstream. A stream is passed on chunk by chunk as it arrives, with no buffering: an
HTTP chunk of the backend's is one of ours (our headers wait for its first chunk, and
leave with it). A client that goes away closes the upstream request, so the backend
stops generating.

The gateway answers through ASGI itself (:meth:`Gateway.serve`), below FastAPI, and
speaks to backends with one keep-alive aiohttp session: a request through it costs a
fraction of a millisecond of CPU (``bench/gateway_overhead.py`` measures it). Routes are
remembered for a moment and resolved once however many requests ask at the same time.

When the primary endpoint fails before the first byte (unreachable, timed out, a 5xx, a
stream that breaks off before its first chunk, or not ready), its configured fallback
endpoint is tried. When no backend answers, the
answer is 502 (a backend answered with an error) or 503 (none could be reached), with
``Retry-After``, in OpenAI's error shape: never a hang, never a 500. Latency, outcomes
and token usage are counted per endpoint in Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
import anyio.to_thread
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.types import Receive, Send

from llmops.capabilities.serving import DeploymentState, InferenceProtocol, InferenceTarget
from llmops.db.models import ServingEndpoint
from llmops.errors import LlmopsError
from llmops.integrations import IntegrationRuntime
from llmops.services import serving

log = logging.getLogger(__name__)

#: How long a backend may take to accept the connection, whatever the endpoint's timeout.
CONNECT_TIMEOUT = 5.0
#: How long an idle connection to a backend is kept: less than the 5 s after which uvicorn
#: (Ray Serve's proxy, vLLM, the model runtime) closes it, so a request seldom takes one
#: that the backend is closing.
KEEPALIVE_SECONDS = 4.0
#: What a caller is told to wait before trying again when no backend answered.
RETRY_AFTER_SECONDS = 5
#: Request bodies the gateway passes on (1 MiB of prompt is plenty; a larger one is a 413).
MAX_BODY_BYTES = 8 * 1024 * 1024


class GatewayError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str,
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.retry_after = retry_after

    async def send(self, send: Send) -> None:
        """Answer with this error through an ASGI ``send``."""
        body = json.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "param": self.param,
                    "code": self.code,
                }
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if self.retry_after:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Upstream:
    endpoint_id: str
    endpoint_name: str
    target: InferenceTarget | None
    timeout: float
    unavailable: str | None = None  # why it cannot take requests now


@dataclass
class Route:
    """The endpoint a request names, and the one to try when it fails."""

    primary: Upstream
    fallback: Upstream | None = None

    @property
    def upstreams(self) -> list[Upstream]:
        return [self.primary] + ([self.fallback] if self.fallback else [])


@dataclass(frozen=True)
class Probe:
    healthy: bool
    detail: str
    latency_ms: float | None


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "llmops_inference_requests",
            "Inference requests by endpoint, route and outcome (ok, client_error, "
            "upstream_error, unavailable, fallback)",
            ["endpoint", "route", "outcome"],
            registry=registry,
        )
        self.first_byte = Histogram(
            "llmops_inference_time_to_first_byte_seconds",
            "From the request to the backend's first byte, by endpoint",
            ["endpoint"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.duration = Histogram(
            "llmops_inference_duration_seconds",
            "Whole inference requests, streams included, by endpoint",
            ["endpoint"],
            registry=registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.tokens = Counter(
            "llmops_inference_tokens",
            "Tokens the backends reported (usage), by endpoint and kind (prompt, completion)",
            ["endpoint", "kind"],
            registry=registry,
        )

        self._endpoints: dict[str, EndpointMetrics] = {}

    def of(self, endpoint: str) -> EndpointMetrics:
        """One endpoint's series (``labels()`` takes a lock and a lookup: done once)."""
        found = self._endpoints.get(endpoint)
        if found is None:
            found = self._endpoints[endpoint] = EndpointMetrics(self, endpoint)
        return found


class EndpointMetrics:
    def __init__(self, metrics: GatewayMetrics, endpoint: str) -> None:
        self._metrics = metrics
        self.endpoint = endpoint
        self.first_byte = metrics.first_byte.labels(endpoint)
        self.duration = metrics.duration.labels(endpoint)
        self._tokens = {kind: metrics.tokens.labels(endpoint, kind) for kind in TOKEN_KINDS}
        self._requests: dict[tuple[str, str], Any] = {}

    def request(self, route: str, outcome: str) -> None:
        counter = self._requests.get((route, outcome))
        if counter is None:
            counter = self._requests[(route, outcome)] = self._metrics.requests.labels(
                self.endpoint, route, outcome
            )
        counter.inc()

    def usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for kind, counter in self._tokens.items():
            value = usage.get(f"{kind}_tokens")
            if isinstance(value, int) and value >= 0:
                counter.inc(value)


TOKEN_KINDS = ("prompt", "completion")


#: How long a resolved route is reused: a change made through this process is seen at
#: once (its writes call :meth:`Gateway.forget`), one made elsewhere within this time.
ROUTE_TTL_SECONDS = 2.0


@dataclass
class Gateway:
    runtime: IntegrationRuntime
    metrics: GatewayMetrics
    _session: aiohttp.ClientSession | None = field(default=None, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _routes: dict[str, tuple[float, Route]] = field(default_factory=dict, init=False)
    _resolving: dict[str, asyncio.Future[Route]] = field(default_factory=dict, init=False)
    _generation: int = field(default=0, init=False)

    # -- the route cache: no database round trip per request --------------------------

    async def find(
        self, model: str, sessions: Callable[[], AbstractContextManager[Session]]
    ) -> Route:
        """The route ``model`` names: remembered, or resolved (in a thread: database
        reads) once however many requests ask for it at the same time."""
        cached = self._cached(model)
        if cached is not None:
            return cached
        pending = self._resolving.get(model)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            pending = asyncio.ensure_future(self._resolve(model, sessions))
            self._resolving[model] = pending
            pending.add_done_callback(partial(self._resolved, model))
        return await asyncio.shield(pending)  # a caller that leaves cancels only itself

    async def _resolve(
        self, model: str, sessions: Callable[[], AbstractContextManager[Session]]
    ) -> Route:
        generation = self._generation

        def resolve() -> Route:
            with sessions() as session:
                return self.route(session, model)

        route = await anyio.to_thread.run_sync(resolve)
        if generation == self._generation:  # no endpoint changed meanwhile
            self._remember(model, route)
        return route

    def _resolved(self, model: str, future: asyncio.Future[Route]) -> None:
        if self._resolving.get(model) is future:
            del self._resolving[model]
        if not future.cancelled():
            future.exception()  # the callers have it; none left is no error to report

    def _cached(self, model: str) -> Route | None:
        entry = self._routes.get(model)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def _remember(self, model: str, route: Route) -> None:
        if len(self._routes) > 10_000:  # names are the caller's: keep the cache bounded
            self._routes.clear()
        self._routes[model] = (time.monotonic() + ROUTE_TTL_SECONDS, route)

    def forget(self) -> None:
        """Drop every cached route (an endpoint or deployment changed)."""
        self._generation += 1
        self._routes.clear()
        self._resolving.clear()

    # -- resolving ---------------------------------------------------------------------

    def route(self, session: Session, model: str) -> Route:
        """The endpoint ``model`` names (by name or id), and its fallback."""
        endpoint = serving.find_endpoint(session, model)
        if endpoint is None:
            raise GatewayError(
                404,
                f"The model `{model}` does not exist: name a serving endpoint "
                "(GET /llm-ops/v1/openai/v1/models lists them)",
                type_="invalid_request_error",
                code="model_not_found",
                param="model",
            )
        primary = self._upstream(session, endpoint)
        fallback = None
        if endpoint.fallback_endpoint_id:
            other = session.get(ServingEndpoint, endpoint.fallback_endpoint_id)
            if other is not None and other.id != endpoint.id:
                fallback = self._upstream(session, other)
        return Route(primary, fallback)

    def _upstream(self, session: Session, endpoint: ServingEndpoint) -> Upstream:
        timeout = float(endpoint.request_timeout_seconds or 60.0)
        deployment = serving.latest_deployment(session, endpoint.id)

        def unavailable(why: str) -> Upstream:
            return Upstream(endpoint.id, endpoint.name, None, timeout, why)

        if deployment is None or deployment.external_id is None:
            return unavailable(f"endpoint {endpoint.name!r} is not deployed yet")
        # a rollout in progress (or one that failed) may still be served by the previous
        # revision: the framework says so with ready=True
        serving_now = (deployment.status or {}).get("ready") is True
        if deployment.state != DeploymentState.READY.value and not serving_now:
            return unavailable(f"endpoint {endpoint.name!r} is {deployment.state}, not ready")
        try:
            found = serving.inference_target(self.runtime, deployment)
            if found is not None:
                target = found
            else:
                _, backend = self.runtime.serving_provider(deployment.provider)
                target = backend.inference_target(deployment.external_id)
        except LlmopsError as exc:
            return unavailable(f"endpoint {endpoint.name!r}: {exc.detail}")
        if target.protocol is not InferenceProtocol.OPENAI:
            return unavailable(
                f"endpoint {endpoint.name!r} speaks {target.protocol.value}, not OpenAI's API"
            )
        return Upstream(endpoint.id, endpoint.name, target, timeout)

    def models(self, session: Session) -> dict[str, Any]:
        """Every endpoint as an OpenAI model, those not serving yet among them: ``ready``
        says whether the gateway routes to it now (a rollout still served by the previous
        revision is ready), ``state`` where its deployment stands (``deploying``,
        ``failed``, ...). Fields OpenAI's clients do not know are ignored by them."""
        endpoints = session.scalars(select(ServingEndpoint).order_by(ServingEndpoint.name))
        data = []
        for e in endpoints:
            deployment = serving.latest_deployment(session, e.id)
            ready = e.status == DeploymentState.READY.value or (
                deployment is not None and (deployment.status or {}).get("ready") is True
            )
            data.append(
                {
                    "id": e.name,
                    "object": "model",
                    "created": int(e.created_at.timestamp()),
                    "owned_by": e.framework or "llmops",
                    "ready": ready,
                    "state": e.status,
                }
            )
        return {"object": "list", "data": data}

    # -- forwarding ---------------------------------------------------------------------

    def session(self) -> aiohttp.ClientSession:
        """The client of every backend: keep-alive connections, no cookies shared between
        callers, no proxy from the environment. One per event loop."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=512, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                # no Accept-Encoding: backends answer uncompressed, bytes pass as they are
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                trust_env=False,
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None
        self._loop = None

    async def serve(
        self,
        route: Route,
        path: str,
        body: dict[str, Any],
        *,
        label: str,
        receive: Receive,
        send: Send,
    ) -> None:
        """Answer an ASGI request whose ``body`` was read: from the route's first backend
        that answers before its first byte, else with a 502 or 503. A client that goes
        away (``http.disconnect``) closes the backend's request at once."""
        watch = _ClientWatch(receive)
        try:
            try:
                await self._answer(route, path, body, label, send, watch)
            except GatewayError as exc:
                watch.finish()
                await exc.send(send)
            finally:
                watch.finish()
        except asyncio.CancelledError:
            if not watch.gone:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the cancel was ours: the client left, nobody to answer

    async def _answer(
        self,
        route: Route,
        path: str,
        body: dict[str, Any],
        label: str,
        send: Send,
        watch: _ClientWatch,
    ) -> None:
        stream = bool(body.get("stream"))
        started = time.perf_counter()
        metrics = self.metrics.of(route.primary.endpoint_name)
        answered_error: str | None = None
        unreachable: list[str] = []
        for index, upstream in enumerate(route.upstreams):
            if upstream.target is None:
                unreachable.append(upstream.unavailable or f"{upstream.endpoint_name} is away")
                continue
            name = upstream.endpoint_name
            try:
                response = await self._send(upstream, path, body, stream=stream)
            except TimeoutError:
                unreachable.append(
                    f"endpoint {name!r} did not answer within {upstream.timeout:g} s"
                )
                continue
            except aiohttp.ClientError as exc:
                unreachable.append(f"endpoint {name!r} is unreachable: {exc or type(exc).__name__}")
                continue
            if response.status >= 500:
                try:
                    head = await response.content.read(300)
                except (TimeoutError, aiohttp.ClientError):
                    head = b""
                finally:
                    response.close()
                answered_error = f"endpoint {name!r} answered {response.status}: " + head.decode(
                    "utf-8", "replace"
                )
                continue
            chunks: AsyncGenerator[bytes] | None = None
            first = b""
            if stream and response.status < 400:
                # the first chunk before our headers: both leave in one write, and a backend
                # that breaks off before it still has a fallback
                chunks = _chunks(response)
                try:
                    first = await anext(chunks, b"")
                except BaseException as exc:
                    await chunks.aclose()
                    response.close()
                    if isinstance(exc, TimeoutError):
                        unreachable.append(
                            f"endpoint {name!r} sent no first chunk within {upstream.timeout:g} s"
                        )
                        continue
                    if isinstance(exc, aiohttp.ClientError):
                        unreachable.append(
                            f"endpoint {name!r} broke off before its first chunk: "
                            f"{exc or type(exc).__name__}"
                        )
                        continue
                    raise
            metrics.first_byte.observe(time.perf_counter() - started)
            outcome = "ok" if response.status < 400 else "client_error"
            if index > 0:
                outcome = "fallback"
            metrics.request(label, outcome)
            endpoint = name.encode("latin-1", "replace")
            if chunks is not None:
                await self._relay(response, chunks, first, endpoint, metrics, started, send, watch)
                return
            try:
                content = await response.read()
            except BaseException as exc:
                response.close()
                if isinstance(exc, (TimeoutError, aiohttp.ClientError)):
                    raise GatewayError(
                        502,
                        f"endpoint {name!r} broke off its answer: {exc or type(exc).__name__}",
                        type_="api_error",
                        code="upstream_error",
                        retry_after=RETRY_AFTER_SECONDS,
                    ) from exc
                raise
            metrics.duration.observe(time.perf_counter() - started)
            if response.status < 400:
                metrics.usage(_usage_of(content))
            content_type = response.headers.get("Content-Type", "application/json")
            watch.finish()
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (b"content-type", content_type.encode("latin-1", "replace")),
                        (b"content-length", str(len(content)).encode()),
                        (b"x-llmops-endpoint", endpoint),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": content})
            return
        if answered_error is not None:
            metrics.request(label, "upstream_error")
            reasons = "; ".join([answered_error, *unreachable])
            raise GatewayError(
                502,
                f"no backend could answer: {reasons}",
                type_="api_error",
                code="upstream_error",
                retry_after=RETRY_AFTER_SECONDS,
            )
        metrics.request(label, "unavailable")
        raise GatewayError(
            503,
            f"no backend could answer: {'; '.join(unreachable)}",
            type_="api_error",
            code="endpoint_unavailable",
            retry_after=RETRY_AFTER_SECONDS,
        )

    async def _relay(
        self,
        response: aiohttp.ClientResponse,
        chunks: AsyncGenerator[bytes],
        first: bytes,
        endpoint: bytes,
        metrics: EndpointMetrics,
        started: float,
        send: Send,
        watch: _ClientWatch,
    ) -> None:
        """The backend's stream, passed on chunk for chunk as each arrives."""
        content_type = response.headers.get("Content-Type", "text/event-stream")
        usage = _UsageScanner()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (b"content-type", content_type.encode("latin-1", "replace")),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                        (b"x-llmops-endpoint", endpoint),
                    ],
                }
            )
            if first:
                usage.feed(first)
                await send({"type": "http.response.body", "body": first, "more_body": True})
                async for data in chunks:
                    usage.feed(data)
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        except (TimeoutError, aiohttp.ClientError) as exc:  # the backend broke off: so do we
            log.warning("stream from endpoint %s broke off: %s", metrics.endpoint, exc)
        finally:
            await chunks.aclose()
            response.close()  # a client that left: the backend's request ends with ours
            metrics.duration.observe(time.perf_counter() - started)
            metrics.usage(usage.usage)
        watch.finish()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def probe(self, upstream: Upstream) -> Probe:
        """A real one-token chat through the data path: the only proof an endpoint serves."""
        started = time.perf_counter()

        def took() -> float:
            return (time.perf_counter() - started) * 1000

        if upstream.target is None:
            return Probe(False, upstream.unavailable or "not deployed", None)
        body = {
            "messages": [{"role": "user", "content": "ping"}],
            "max_tokens": 1,
            "temperature": 0,
        }
        try:
            response = await self._send(upstream, "/chat/completions", body, stream=False)
            try:
                content = await response.read()
            finally:
                response.release()
        except TimeoutError:
            return Probe(False, f"the backend did not answer within {upstream.timeout:g} s", took())
        except aiohttp.ClientError as exc:
            return Probe(False, f"the backend did not answer: {exc or type(exc).__name__}", took())
        if response.status != 200:
            text = content[:200].decode("utf-8", "replace")
            return Probe(False, f"the backend answered {response.status}: {text}", took())
        try:
            choices = json.loads(content).get("choices")
        except (ValueError, AttributeError):
            choices = None
        if not choices:
            return Probe(False, "the backend answered without a completion", took())
        return Probe(True, "a one-token chat completion succeeded", took())

    async def _send(
        self, upstream: Upstream, path: str, body: dict[str, Any], *, stream: bool
    ) -> aiohttp.ClientResponse:
        target = upstream.target
        if target is None:
            raise RuntimeError(f"endpoint {upstream.endpoint_name!r} has no inference target")
        send = partial(
            self.session().post,
            target.base_url.rstrip("/") + path,
            data=json.dumps({**body, "model": target.model_name}).encode(),
            headers={
                "Content-Type": "application/json",
                "Accept": "text/event-stream" if stream else "application/json",
                **target.headers,  # the backend's own credentials, never the caller's key
            },
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=upstream.timeout,
                sock_connect=min(CONNECT_TIMEOUT, upstream.timeout),
                sock_read=upstream.timeout,
            ),
        )
        try:
            return await send()
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            if isinstance(exc, aiohttp.ClientConnectorError):
                raise  # no connection at all: nothing to try again
            # A kept-alive connection the backend closed as it was taken (aiohttp retries
            # only idempotent methods): once more, on another. An inference changes nothing,
            # so a request that reached the backend after all costs only its compute.
            log.debug(
                "endpoint %s dropped a kept-alive connection: %s", upstream.endpoint_name, exc
            )
            return await send()


async def _chunks(response: aiohttp.ClientResponse) -> AsyncGenerator[bytes]:
    """A response's body as the backend framed it: an HTTP chunk at a time (one that
    arrives in parts is put together first); not chunked, the bytes as they come."""
    chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
    part = b""
    async for data, whole in response.content.iter_chunks():
        if chunked and not whole:
            part += data
            continue
        if part:
            data, part = part + data, b""
        if data:
            yield data
    if part:
        yield part


class _ClientWatch:
    """Cancels the request's task when its client goes away (ASGI's ``http.disconnect``
    once the body is read), so that waiting on the backend stops and its request is
    closed; :meth:`finish` before the last message, after which a disconnect is normal."""

    def __init__(self, receive: Receive) -> None:
        self.gone = False
        self._finished = False
        self._task = asyncio.current_task()
        self._watcher = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except OSError:
            pass  # the connection broke: the client is gone just the same
        if not self._finished and self._task is not None:
            self.gone = True
            self._task.cancel()

    def finish(self) -> None:
        self._finished = True
        self._watcher.cancel()


def _usage_of(content: bytes) -> Any:
    """The ``usage`` of an OpenAI answer, read from its end without decoding the whole
    answer (an embedding's numbers, a long completion): OpenAI servers write it last."""
    at = content.rfind(b'"usage"')
    if at < 0:
        return None
    tail = content[at + len(b'"usage"') :].decode("utf-8", "replace").lstrip()
    if not tail.startswith(":"):
        return None
    try:
        usage, _ = _DECODER.raw_decode(tail[1:].lstrip())
    except ValueError:
        return None
    return usage


_DECODER = json.JSONDecoder()


class _UsageScanner:
    """Finds the ``usage`` of a server-sent event stream without parsing every chunk:
    only a line that mentions it is decoded."""

    def __init__(self) -> None:
        self._tail = b""
        self.usage: Any = None

    def feed(self, chunk: bytes) -> None:
        if b'"usage"' not in chunk and not self._tail:
            return
        data = self._tail + chunk
        lines = data.split(b"\n")
        self._tail = lines.pop() if b'"usage"' in lines[-1] else b""
        for line in lines:
            if b'"usage"' in line and line.startswith(b"data:"):
                try:
                    event = json.loads(line[5:])
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("usage"):
                    self.usage = event["usage"]
