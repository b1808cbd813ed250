"""The operations overview: health now and its history, the outbox, calls to the tools,
throughput and inference traffic, in one answer (read-only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from llmops.api.deps import PlatformDep, SessionDep, get_runtime
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.schemas_observability import OverviewOut
from llmops.services import overview

router = APIRouter(route_class=AnswerKeepingRoute, prefix="/observability", tags=["observability"])


@router.get(
    "/overview",
    response_model=OverviewOut,
    summary="Operations overview",
    dependencies=[Depends(get_runtime)],  # the plugins as the stored configuration says
)
def get_overview(session: SessionDep, platform: PlatformDep) -> OverviewOut:
    """Every live provider's health now (from the background checks) with its changes in
    the last ``historyHours`` (``LLMOPS_STATUS_HISTORY_HOURS``); the outbox's depth and
    the age of its oldest waiting write; calls, errors and latency per plugin and
    capability; training jobs and pipelines finished per hour over the last 24 hours, by
    outcome; requests, errors and latency per serving endpoint. Calls and traffic are the
    answering process's Prometheus counters since ``metricsSince``."""
    return OverviewOut.model_validate(overview.build(session=session, platform=platform))
