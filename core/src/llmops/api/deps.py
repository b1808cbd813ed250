"""Request-scoped dependencies: the platform, a session per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from llmops.api.idempotency import attach
from llmops.errors import InvalidRequest
from llmops.integrations import IntegrationRuntime
from llmops.platform import Platform


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def get_session(request: Request) -> Iterator[Session]:
    """A session per request, committed when the handler returns, else rolled back.

    A handler may commit earlier itself: writes to tools commit their outbox operation
    before they try to deliver it (:mod:`llmops.services.writes`).
    """
    platform = get_platform(request)
    with platform.sessions() as session:
        attach(session, request.scope)  # an Idempotency-Key's request records its writes
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def get_runtime(request: Request) -> IntegrationRuntime:
    platform = get_platform(request)
    platform.runtime.sync_if_stale(platform.sessions)
    return platform.runtime


PlatformDep = Annotated[Platform, Depends(get_platform)]
#: scope="function": the commit happens before the response is sent, so a 2xx answer
#: means the change is durable, and a failed commit is answered as an error.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
RuntimeDep = Annotated[IntegrationRuntime, Depends(get_runtime)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[
    str | None, Query(max_length=2000, description="nextCursor of the previous page")
]


def sort_param(allowed: list[str], default: str) -> str:
    choices = ", ".join(f"{a}, -{a}" for a in allowed)
    return f"one of {choices}; default {default}"


def check_sort(sort: str, allowed: list[str]) -> str:
    if sort.lstrip("-") not in allowed:
        raise InvalidRequest(f"cannot sort by {sort!r}; use {', '.join(allowed)}", parameter="sort")
    return sort
