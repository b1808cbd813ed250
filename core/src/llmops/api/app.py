"""The FastAPI app factory. Nothing happens at import time: the platform (database,
plugins, worker) is built and started in the app's lifespan."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops import __version__
from llmops.api import errors
from llmops.api.console import CONSOLE_DIR, console_built, console_route
from llmops.api.errors import PROBLEM_SCHEMA
from llmops.api.idempotency import IdempotencyMiddleware
from llmops.api.routers import (
    api_keys,
    catalog,
    datasets,
    experiments,
    governance,
    health,
    integrations,
    lineage,
    me,
    observability,
    openai,
    operations,
    plugin_routes,
    registry,
    serving,
    training,
    workflows,
)
from llmops.api.security import AuditMiddleware, authorize, document_access
from llmops.config import CoreSettings
from llmops.observability.metrics import PlatformMetrics
from llmops.platform import Platform
from llmops.worker import BackgroundWorker

API_PREFIX = "/llm-ops/v1"


def route_template(scope: Scope) -> str:
    """The matched route's template with its router prefix ("/llm-ops/v1/x/{id}"), so
    metrics are labelled by route and not by every distinct URL."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "unmatched"
    url: str = scope["path"]
    if url.startswith(f"{API_PREFIX}/plugins/"):
        plugin = url[len(API_PREFIX) + len("/plugins/") :].split("/", 1)[0]
        return f"{API_PREFIX}/plugins/{plugin}{path}"
    if url.startswith(API_PREFIX) and not path.startswith(API_PREFIX):
        return f"{API_PREFIX}{path}"
    return str(path)


class BodyLimitMiddleware:
    """Refuse a body announced larger than the upload limit before reading it (the limit
    leaves room for multipart framing)."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                    allowed = self.limit - 1024 * 1024
                    response = errors.problem(
                        413,
                        "payload-too-large",
                        "Payload too large",
                        f"the request body is larger than the limit of {allowed} bytes",
                        scope["path"],
                    )
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class MetricsMiddleware:
    """Requests by route template, method and status, and the time until the answer's
    headers (a stream's first byte, not its end)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        #: the labelled series, looked up once (``labels()`` takes a lock and a lookup)
        self._series: dict[tuple[PlatformMetrics, str, str, int], tuple[Any, Any]] = {}

    def _observe(self, metrics: PlatformMetrics, scope: Scope, status: int, took: float) -> None:
        key = (metrics, scope["method"], route_template(scope), status)
        series = self._series.get(key)
        if series is None:
            if len(self._series) > 10_000:
                self._series.clear()
            _, method, template, _ = key
            series = self._series[key] = (
                metrics.requests.labels(method, template, str(status)),
                metrics.latency.labels(method, template),
            )
        series[0].inc()
        series[1].observe(took)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                platform: Platform | None = getattr(scope["app"].state, "platform", None)
                if platform is not None:
                    took = time.perf_counter() - started
                    self._observe(platform.metrics, scope, int(message["status"]), took)
            await send(message)

        await self.app(scope, receive, counted)


def operation_id(route: APIRoute) -> str:
    """Stable operation ids: the handler's name (unique; a test checks it)."""
    return route.name


def create_app(
    settings: CoreSettings | None = None,
    *,
    start_worker: bool = True,
    console_dir: Path | None = None,
    hand_over_runs: bool = False,
) -> FastAPI:
    """``hand_over_runs`` (``llmops up``): when the app stops, the runs its executor drives
    go on for another process to take over (:meth:`Platform.stop`)."""
    settings = settings or CoreSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        platform = Platform(settings)
        platform.start()
        app.state.platform = platform
        plugin_routes.mount_enabled(app, platform, API_PREFIX)
        platform.runtime.add_configured_listener(
            lambda name: plugin_routes.mount(app, platform, API_PREFIX, name)
        )
        worker = BackgroundWorker(platform, interval=settings.sync_interval_seconds)
        if start_worker:
            worker.start()
        try:
            yield
        finally:
            worker.stop()
            await platform.gateway.close()
            platform.stop(hand_over_runs=hand_over_runs)

    problem = {"content": {errors.PROBLEM: {"schema": PROBLEM_SCHEMA}}}
    app = FastAPI(
        title="llmops",
        version=__version__,
        summary="The LLM Ops platform: catalog, training, serving, pipelines, integrations.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # one spelling per path: /catalog/models/ is a 404, not a redirect built from the
        # caller's Host header
        redirect_slashes=False,
        # every route, plugins' included, passes the access policy (llmops.auth)
        dependencies=[Depends(authorize)],
        responses={
            400: {
                "description": "The body could not be read (not JSON, broken multipart)",
                **problem,
            },
            401: {"description": "No API key, or an invalid or revoked one", **problem},
            403: {"description": "The key's role may not call this route", **problem},
            422: {"description": "Invalid request", **problem},
            429: {
                "description": "Too many failed authentications from this address: retry "
                "after Retry-After",
                **problem,
            },
            500: {"description": "Internal error", **problem},
            503: {
                "description": "A tool or the database is busy: retry after Retry-After",
                **problem,
            },
        },
    )
    errors.install(app)
    document_access(app)

    # plain ASGI middleware (no BaseHTTPMiddleware: it costs a task and a stream copy per
    # request, and per chunk of a streamed answer); the innermost serves the inference
    # POSTs below FastAPI's routing and dependency injection (llmops.api.routers.openai)
    app.add_middleware(openai.InferenceRoutes, prefix=API_PREFIX)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes + 1024 * 1024)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(IdempotencyMiddleware)  # replays see the same audit and request id
    app.add_middleware(AuditMiddleware)  # outermost: request ids on every answer

    app.include_router(health.probes)
    for module in (
        registry,  # before catalog: /catalog/models/search is no model id
        catalog,
        datasets,
        lineage,
        training,
        experiments,
        workflows,
        serving,
        integrations,
        api_keys,
        governance,
        operations,
        observability,
        me,
        openai,
    ):
        app.include_router(
            module.router,
            prefix=API_PREFIX,
            responses={
                404: {"description": "Not found", **problem},
                409: {"description": "Conflict", **problem},
            },
        )
    app.include_router(health.router, prefix=API_PREFIX)
    app.state.api_prefix = API_PREFIX

    console = console_dir or CONSOLE_DIR
    if console_built(console):
        app.router.routes.append(console_route(console))
    return app
