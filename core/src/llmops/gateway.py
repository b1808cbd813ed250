"""The inference gateway: one OpenAI-compatible surface for every serving endpoint.

``model`` in an OpenAI request names a serving endpoint. The gateway finds the endpoint's
inference target (its backend's base URL, where the OpenAI routes sit: Ray Serve's
``/<app>/v1``, KServe's ``/openai/v1``), rewrites ``model`` to the name the backend
serves, and forwards the body with headers of its own: the caller's platform key never
goes upstream. A stream is passed on chunk by chunk as it arrives, with no buffering; a
client that goes away closes the upstream request, so the backend stops generating.

When the primary endpoint fails before the first byte (unreachable, timed out, a 5xx, or
not ready), its configured fallback endpoint is tried. When no backend answers, the
answer is 502 (a backend answered with an error) or 503 (none could be reached), with
``Retry-After``, in OpenAI's error shape: never a hang, never a 500. Latency, outcomes
and token usage are counted per endpoint in Prometheus.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse, Response, StreamingResponse

from llmops.capabilities.common import Capability
from llmops.capabilities.serving import DeploymentState, InferenceProtocol, InferenceTarget
from llmops.db.models import ServingEndpoint
from llmops.errors import LlmopsError
from llmops.integrations import IntegrationRuntime
from llmops.services import serving

log = logging.getLogger(__name__)

#: How long a backend may take to accept the connection, whatever the endpoint's timeout.
CONNECT_TIMEOUT = 5.0
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

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return JSONResponse(body, status_code=self.status, headers=headers)


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

    def usage(self, endpoint: str, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for kind in ("prompt", "completion"):
            value = usage.get(f"{kind}_tokens")
            if isinstance(value, int) and value >= 0:
                self.tokens.labels(endpoint, kind).inc(value)


#: How long a resolved route is reused: a change made through this process is seen at
#: once (its writes call :meth:`Gateway.forget`), one made elsewhere within this time.
ROUTE_TTL_SECONDS = 2.0


@dataclass
class Gateway:
    runtime: IntegrationRuntime
    metrics: GatewayMetrics
    _client: httpx.AsyncClient | None = field(default=None, init=False)
    _routes: dict[str, tuple[float, Route]] = field(default_factory=dict, init=False)

    # -- the route cache: no database round trip per request --------------------------

    def cached(self, model: str) -> Route | None:
        entry = self._routes.get(model)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def remember(self, model: str, route: Route) -> None:
        if len(self._routes) > 10_000:  # names are the caller's: keep the cache bounded
            self._routes.clear()
        self._routes[model] = (time.monotonic() + ROUTE_TTL_SECONDS, route)

    def forget(self) -> None:
        """Drop every cached route (an endpoint or deployment changed)."""
        self._routes.clear()

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
        if deployment.state != DeploymentState.READY.value:
            return unavailable(f"endpoint {endpoint.name!r} is {deployment.state}, not ready")
        stored = (deployment.status or {}).get("target")
        try:
            if stored:
                target = InferenceTarget.model_validate(stored)
            else:
                _, backend = self.runtime.provider(Capability.SERVING, deployment.provider)
                target = backend.inference_target(deployment.external_id)
        except LlmopsError as exc:
            return unavailable(f"endpoint {endpoint.name!r}: {exc.detail}")
        if target.protocol is not InferenceProtocol.OPENAI:
            return unavailable(
                f"endpoint {endpoint.name!r} speaks {target.protocol.value}, not OpenAI's API"
            )
        return Upstream(endpoint.id, endpoint.name, target, timeout)

    def models(self, session: Session) -> dict[str, Any]:
        endpoints = session.scalars(
            select(ServingEndpoint)
            .where(ServingEndpoint.status == DeploymentState.READY.value)
            .order_by(ServingEndpoint.name)
        )
        return {
            "object": "list",
            "data": [
                {
                    "id": e.name,
                    "object": "model",
                    "created": int(e.created_at.timestamp()),
                    "owned_by": e.framework or "llmops",
                }
                for e in endpoints
            ],
        }

    # -- forwarding --------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
                follow_redirects=False,
                trust_env=False,  # no proxy from the environment between us and a backend
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def forward(
        self,
        route: Route,
        path: str,
        body: dict[str, Any],
        *,
        label: str,
        on_done: Callable[[], None] | None = None,
    ) -> Response:
        """Send ``body`` to the route's first backend that answers before its first byte."""
        stream = bool(body.get("stream"))
        started = time.perf_counter()
        answered_error: str | None = None
        unreachable: list[str] = []
        for index, upstream in enumerate(route.upstreams):
            if upstream.target is None:
                unreachable.append(upstream.unavailable or f"{upstream.endpoint_name} is away")
                continue
            try:
                response = await self._send(upstream, path, body, stream=stream)
            except httpx.TimeoutException:
                unreachable.append(
                    f"endpoint {upstream.endpoint_name!r} did not answer within "
                    f"{upstream.timeout:g} s"
                )
                continue
            except httpx.TransportError as exc:
                unreachable.append(f"endpoint {upstream.endpoint_name!r} is unreachable: {exc}")
                continue
            if response.status_code >= 500:
                text = (await response.aread())[:300].decode("utf-8", "replace")
                await response.aclose()
                answered_error = (
                    f"endpoint {upstream.endpoint_name!r} answered {response.status_code}: {text}"
                )
                continue
            endpoint = route.primary.endpoint_name
            self.metrics.first_byte.labels(endpoint).observe(time.perf_counter() - started)
            outcome = "ok" if response.status_code < 400 else "client_error"
            if index > 0:
                outcome = "fallback"
            self.metrics.requests.labels(endpoint, label, outcome).inc()
            headers = {"x-llmops-endpoint": upstream.endpoint_name}
            if stream and response.status_code < 400:
                return StreamingResponse(
                    self._relay(response, endpoint, started, on_done),
                    status_code=response.status_code,
                    media_type=response.headers.get("content-type", "text/event-stream"),
                    headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
                )
            try:
                content = await response.aread()
            finally:
                await response.aclose()
            self.metrics.duration.labels(endpoint).observe(time.perf_counter() - started)
            if response.status_code < 400:
                self._count_usage(endpoint, content)
            return Response(
                content,
                status_code=response.status_code,
                media_type=response.headers.get("content-type", "application/json"),
                headers=headers,
            )
        endpoint = route.primary.endpoint_name
        if answered_error is not None:
            self.metrics.requests.labels(endpoint, label, "upstream_error").inc()
            reasons = "; ".join([answered_error, *unreachable])
            raise GatewayError(
                502,
                f"no backend could answer: {reasons}",
                type_="api_error",
                code="upstream_error",
                retry_after=RETRY_AFTER_SECONDS,
            )
        self.metrics.requests.labels(endpoint, label, "unavailable").inc()
        raise GatewayError(
            503,
            f"no backend could answer: {'; '.join(unreachable)}",
            type_="api_error",
            code="endpoint_unavailable",
            retry_after=RETRY_AFTER_SECONDS,
        )

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
                content = await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            return Probe(False, f"the backend did not answer: {exc or type(exc).__name__}", took())
        if response.status_code != 200:
            text = content[:200].decode("utf-8", "replace")
            return Probe(False, f"the backend answered {response.status_code}: {text}", took())
        try:
            choices = json.loads(content).get("choices")
        except (ValueError, AttributeError):
            choices = None
        if not choices:
            return Probe(False, "the backend answered without a completion", took())
        return Probe(True, "a one-token chat completion succeeded", took())

    async def _send(
        self, upstream: Upstream, path: str, body: dict[str, Any], *, stream: bool
    ) -> httpx.Response:
        assert upstream.target is not None
        target = upstream.target
        payload = json.dumps({**body, "model": target.model_name}).encode()
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            **target.headers,  # the backend's own credentials, never the caller's key
        }
        request = self.client.build_request(
            "POST",
            target.base_url.rstrip("/") + path,
            content=payload,
            headers=headers,
            timeout=httpx.Timeout(upstream.timeout, connect=min(CONNECT_TIMEOUT, upstream.timeout)),
        )
        return await self.client.send(request, stream=True)

    async def _relay(
        self,
        response: httpx.Response,
        endpoint: str,
        started: float,
        on_done: Callable[[], None] | None,
    ) -> AsyncIterator[bytes]:
        """The backend's bytes as they come; closing the stream (the client left, or it
        ended) closes the backend's."""
        usage = _UsageScanner()
        try:
            async for chunk in response.aiter_raw():
                usage.feed(chunk)
                yield chunk
        except httpx.HTTPError as exc:  # the backend broke off mid-stream: end ours too
            log.warning("stream from endpoint %s broke off: %s", endpoint, exc)
        finally:
            await response.aclose()
            self.metrics.duration.labels(endpoint).observe(time.perf_counter() - started)
            self.metrics.usage(endpoint, usage.usage)
            if on_done is not None:
                on_done()

    def _count_usage(self, endpoint: str, content: bytes) -> None:
        try:
            answer = json.loads(content)
        except ValueError:
            return
        if isinstance(answer, dict):
            self.metrics.usage(endpoint, answer.get("usage"))


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
