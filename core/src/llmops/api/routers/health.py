"""Liveness, readiness, metrics and per-integration health."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llmops.api.deps import PlatformDep
from llmops.api.schemas import ChoiceNeededOut, HealthOut, PlatformHealthOut, ProviderHealthOut
from llmops.capabilities.common import HealthStatus
from llmops.observability.health import ProviderHealth, bounded_detail, overall
from llmops.services import integrations

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
    """From the last background check of the database (a ``SELECT 1`` every
    ``health_cache_seconds``, the first before the app serves): answers at once, 503 while
    the database fails or gives no answer within ``health_check_timeout_seconds``."""
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
    """Answers at once from the background checks: each enabled provider's own health
    check (a real request to its tool) and the database's, run every
    ``health_cache_seconds``, each given ``health_check_timeout_seconds`` (a check that
    does not answer in time is down, "no answer within N s"). ``checkedAt`` says when
    each check finished; a provider not checked yet is ``unknown``. The circuit breaker is
    the one of now: a provider whose calls are paused is ``degraded``. ``cached`` is true
    when the answer comes from the background results (this route never checks itself)."""
    database = platform.health.database()
    results, cached = platform.health.check()
    choices = [ChoiceNeededOut(**c) for c in integrations.choices_needed(platform.runtime)]
    status = overall(results, database.status is HealthStatus.OK)
    if choices and status is HealthStatus.OK:
        status = HealthStatus.DEGRADED  # a request that names no provider gets a 409
    return PlatformHealthOut(
        status=status.value,
        database=HealthOut(
            status=database.status.value,
            latency_ms=database.latency_ms,
            detail=bounded_detail(database.detail),
            checked_at=database.checked_at,
        ),
        integrations=[provider_health_out(r) for r in results],
        cached=cached,
        choices_needed=choices,
    )
