"""The inference gateway's routes (llmops.gateway): an OpenAI-compatible surface under
``/llm-ops/v1/openai/v1`` where ``model`` names a serving endpoint, so the official
OpenAI SDK works by changing its ``base_url``; and the per-endpoint chat route."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from llmops.api.schemas import EndpointHealthOut
from llmops.capabilities.common import utcnow
from llmops.gateway import MAX_BODY_BYTES, Gateway, GatewayError, Route
from llmops.platform import Platform
from llmops.services import serving

router = APIRouter(tags=["inference"])

OPENAI = "/openai/v1"
_BODY = {
    "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
    "required": True,
}
_ERROR = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        }
    }
}
_ANSWER = {
    200: {
        "description": "OpenAI's answer, or with `stream: true` server-sent events",
        "content": {"application/json": {}, "text/event-stream": {}},
    },
    400: {"description": "Bad input (OpenAI's error shape)", "content": _ERROR},
    404: {"description": "No endpoint by that name (OpenAI's error shape)", "content": _ERROR},
    413: {"description": "The body is too large", "content": _ERROR},
    422: {"description": "The backend refused the input", "content": _ERROR},
    502: {"description": "A backend answered with an error (Retry-After)", "content": _ERROR},
    503: {"description": "No backend could be reached (Retry-After)", "content": _ERROR},
}


def _gateway(request: Request) -> Gateway:
    platform: Platform = request.app.state.platform
    return platform.gateway


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise GatewayError(
            413,
            f"the request body is larger than {MAX_BODY_BYTES} bytes",
            type_="invalid_request_error",
        )
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise GatewayError(
            400, f"the body is not JSON: {exc}", type_="invalid_request_error"
        ) from exc
    if not isinstance(body, dict):
        raise GatewayError(400, "the body must be a JSON object", type_="invalid_request_error")
    return body


async def _route(request: Request, model: Any) -> Route:
    if not isinstance(model, str) or not model:
        raise GatewayError(
            400,
            "`model` must name a serving endpoint",
            type_="invalid_request_error",
            param="model",
            code="missing_model",
        )
    platform: Platform = request.app.state.platform
    cached = platform.gateway.cached(model)
    if cached is not None:
        return cached

    def resolve() -> Route:
        with platform.sessions() as session:
            return platform.gateway.route(session, model)

    route = await run_in_threadpool(resolve)
    platform.gateway.remember(model, route)
    return route


async def _forward(request: Request, path: str, label: str, model: Any = None) -> Response:
    try:
        body = await _body(request)
        route = await _route(request, body.get("model") if model is None else model)
        return await _gateway(request).forward(route, path, body, label=label)
    except GatewayError as exc:
        return exc.response()


@router.get(f"{OPENAI}/models", summary="The serving endpoints that are ready, as models")
async def openai_models(request: Request) -> JSONResponse:
    platform: Platform = request.app.state.platform

    def listed() -> dict[str, Any]:
        with platform.sessions() as session:
            return platform.gateway.models(session)

    return JSONResponse(await run_in_threadpool(listed))


@router.post(
    f"{OPENAI}/chat/completions",
    summary="Chat completions (streaming too) from the endpoint named by `model`",
    openapi_extra={"requestBody": _BODY},
    responses=_ANSWER,  # type: ignore[arg-type]
)
async def openai_chat_completions(request: Request) -> Response:
    return await _forward(request, "/chat/completions", "chat")


@router.post(
    f"{OPENAI}/completions",
    summary="Text completions from the endpoint named by `model`",
    openapi_extra={"requestBody": _BODY},
    responses=_ANSWER,  # type: ignore[arg-type]
)
async def openai_completions(request: Request) -> Response:
    return await _forward(request, "/completions", "completions")


@router.post(
    f"{OPENAI}/embeddings",
    summary="Embeddings from the endpoint named by `model`",
    openapi_extra={"requestBody": _BODY},
    responses=_ANSWER,  # type: ignore[arg-type]
)
async def openai_embeddings(request: Request) -> Response:
    return await _forward(request, "/embeddings", "embeddings")


@router.post(
    "/serving/endpoints/{endpointId}/chat/completions",
    summary="Chat with one endpoint (OpenAI's body; `model` may be left out)",
    openapi_extra={"requestBody": _BODY},
    responses=_ANSWER,  # type: ignore[arg-type]
)
async def endpoint_chat_completions(endpointId: str, request: Request) -> Response:
    return await _forward(request, "/chat/completions", "chat", model=endpointId)


@router.get(
    "/serving/endpoints/{endpointId}/health",
    response_model=EndpointHealthOut,
    summary="Whether the endpoint really serves: a one-token inference through the gateway",
)
async def endpoint_health(endpointId: str, request: Request) -> EndpointHealthOut:
    platform: Platform = request.app.state.platform

    def resolve() -> Route:
        with platform.sessions() as session:
            endpoint = serving.get_endpoint(session=session, endpoint_id=endpointId)
            return platform.gateway.route(session, endpoint.id)

    route = await run_in_threadpool(resolve)
    probe = await platform.gateway.probe(route.primary)
    return EndpointHealthOut(
        healthy=probe.healthy,
        detail=probe.detail,
        latency_ms=probe.latency_ms,
        endpoint=route.primary.endpoint_name,
        checked_at=utcnow(),
    )
