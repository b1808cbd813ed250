"""Liveness, readiness, metrics and per-integration health."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llmops.api.deps import PlatformDep
from llmops.api.schemas import HealthOut, PlatformHealthOut, ProviderHealthOut
from llmops.capabilities.common import HealthStatus, utcnow
from llmops.observability.health import ProviderHealth, overall

probes = APIRouter(tags=["health"])
router = APIRouter(tags=["health"])


@probes.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@probes.get(
    "/readyz",
    summary="Readiness: the database answers",
    responses={503: {"description": "The database does not answer"}},
)
def readyz(platform: PlatformDep) -> JSONResponse:
    ok, detail = platform.database_ok()
    body = {"status": "ok" if ok else "down", "database": detail or "ok"}
    return JSONResponse(body, status_code=200 if ok else 503)


@probes.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(platform: PlatformDep) -> Response:
    for state in platform.runtime.states():
        platform.metrics.plugin_enabled.labels(state.installed.name).set(
            1 if state.enabled and state.loaded is not None and state.failure is None else 0
        )
    return Response(generate_latest(platform.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def provider_health_out(result: ProviderHealth) -> ProviderHealthOut:
    return ProviderHealthOut(
        plugin=result.plugin,
        capability=result.capability.value,
        provider=result.provider,
        circuit=result.circuit,
        status=result.health.status.value,
        latency_ms=result.health.latency_ms,
        detail=result.health.detail,
        checked_at=result.health.checked_at,
    )


@router.get("/health", response_model=PlatformHealthOut, summary="Platform and integration health")
def platform_health(platform: PlatformDep) -> PlatformHealthOut:
    """Each enabled provider's own health check (a real request to its tool), cached for a
    few seconds so this route cannot be used to hammer the tools."""
    ok, detail = platform.database_ok()
    results, cached = platform.health.check()
    for result in results:
        platform.metrics.integration_up.labels(
            result.plugin, result.capability.value, result.provider
        ).set(1 if result.health.status is HealthStatus.OK else 0)
    return PlatformHealthOut(
        status=overall(results, ok).value,
        database=HealthOut(
            status=HealthStatus.OK.value if ok else HealthStatus.DOWN.value,
            detail=detail,
            checked_at=utcnow(),
        ),
        integrations=[provider_health_out(r) for r in results],
        cached=cached,
    )
