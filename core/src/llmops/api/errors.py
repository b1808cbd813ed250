"""RFC 9457 problem+json for every error the API returns."""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from llmops.api.console import route_path
from llmops.api.security import add_audit_details
from llmops.errors import LlmopsError, PolicyViolation, TooManyRequests, Unauthenticated

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
TYPE_BASE = "https://llmops.dev/problems/"

#: Documented on every route so clients and schemathesis know the error shape.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str,
    *,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extensions,
    }
    headers = dict(headers or {})
    if status == 503:
        headers["Retry-After"] = "5"
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _allow_header(request: Request, exc: StarletteHTTPException) -> dict[str, str]:
    """The methods the OpenAPI document gives the path (Starlette's own Allow names one
    route's only): those of the first template that matches it, as routes match in order,
    so ``/integrations/defaults`` allows its own GET, not the PATCH of
    ``/integrations/{name}``. Plugins' routes and the inference routes served below
    FastAPI are in the document too. A 405 raised elsewhere (the console's files) keeps
    the Allow it came with."""
    path = route_path(request.scope)
    for template, item in request.app.openapi().get("paths", {}).items():
        if _template_regex(template).match(path):
            return {"Allow": ", ".join(sorted(m.upper() for m in item if m.upper() in _METHODS))}
    if exc.headers and "Allow" in exc.headers:
        return {"Allow": exc.headers["Allow"]}
    return {"Allow": ""}


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


@lru_cache(maxsize=1024)
def _template_regex(template: str) -> re.Pattern[str]:
    return compile_path(template)[0]


#: The longest map key a 422 repeats in its locations: the key is the caller's own input,
#: and an oversized one (the reason for the 422) is not sent back whole.
LOCATION_PART_LENGTH = 100


def _location_part(part: object) -> str:
    text = str(part)
    return text if len(text) <= LOCATION_PART_LENGTH else text[:LOCATION_PART_LENGTH] + "…"


def error_headers(exc: LlmopsError) -> dict[str, str] | None:
    """The headers an error's answer carries: a 401's Bearer challenge, a 429's
    Retry-After."""
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": exc.challenge}
    if isinstance(exc, TooManyRequests):
        return {"Retry-After": str(exc.retry_after)}
    return None


def install(app: FastAPI) -> None:
    @app.exception_handler(LlmopsError)
    async def _domain(request: Request, exc: LlmopsError) -> JSONResponse:
        if isinstance(exc, PolicyViolation):  # the denied request's audit entry says why
            add_audit_details(
                request,
                reason=exc.detail,
                policy=exc.policy,
                requested=exc.requested,
                limit=exc.limit,
            )
        return problem(
            exc.status,
            exc.slug,
            exc.title,
            exc.detail,
            request.url.path,
            headers=error_headers(exc),
            **exc.extensions,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "location": [_location_part(p) for p in err.get("loc", ())],
                "message": err.get("msg", ""),
                "type": err.get("type", ""),
            }
            for err in exc.errors()
        ]
        return problem(
            422,
            "validation-error",
            "Invalid request",
            "; ".join(f"{'.'.join(e['location'])}: {e['message']}" for e in errors),
            request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem(
            exc.status_code,
            slug,
            str(exc.detail),
            str(exc.detail),
            request.url.path,
            headers=_allow_header(request, exc)
            if exc.status_code == 405
            else (dict(exc.headers) if exc.headers else None),
        )

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        """A deadlock, a serialization failure or a lost connection: nothing was changed
        (the transaction was rolled back) and the same request may well succeed again."""
        log.warning("database refused %s %s: %s", request.method, request.url.path, exc.orig)
        return problem(
            503,
            "database-busy",
            "Database busy",
            "the database could not complete the request and nothing was changed; send it again",
            request.url.path,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500,
            "internal-error",
            "Internal error",
            "the server failed to handle the request; the error was logged",
            request.url.path,
        )
