"""The inference gateway's routes (llmops.gateway): an OpenAI-compatible surface under
``/llm-ops/v1/openai/v1`` where ``model`` names a serving endpoint, so the official
OpenAI SDK works by changing its ``base_url``; and the per-endpoint chat route.

The inference POSTs sit on the path of every call an application makes to a model, so
they are served below FastAPI: :class:`InferenceRoutes`, the innermost of the app's plain
ASGI middleware, answers them itself (no walk through every router, no dependency
injection, no response model), with the same access check as every route
(:func:`llmops.api.security.check_access`) and the matched route in the scope, as the
audit and the metrics expect. The FastAPI routes document them in the OpenAPI document,
and answer the same way should a request reach them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from llmops.api.errors import error_headers, problem
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.schemas import EndpointHealthOut
from llmops.api.security import check_access, route_template
from llmops.capabilities.common import utcnow
from llmops.errors import LlmopsError
from llmops.gateway import MAX_BODY_BYTES, GatewayError, Route
from llmops.platform import Platform
from llmops.services import serving

router = APIRouter(route_class=AnswerKeepingRoute, tags=["inference"])

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


@dataclass(frozen=True)
class Inference:
    """What an inference route does: the backend's path it calls, its label in the
    metrics, and whether the endpoint comes from the URL (``endpointId``) instead of the
    body's ``model``."""

    path: str
    label: str
    endpoint_in_path: bool = False


#: The inference routes, by their handler's name.
INFERENCE = {
    "openai_chat_completions": Inference("/chat/completions", "chat"),
    "openai_completions": Inference("/completions", "completions"),
    "openai_embeddings": Inference("/embeddings", "embeddings"),
    "endpoint_chat_completions": Inference("/chat/completions", "chat", endpoint_in_path=True),
}


async def serve_inference(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    template: str,
    path_params: dict[str, Any],
    inference: Inference,
) -> None:
    """Check the caller, read the body, find the endpoint and let the gateway answer."""
    platform: Platform = scope["app"].state.platform
    try:
        await check_access(scope, "POST", template, path_params)
    except LlmopsError as exc:  # 401, 403 and 429, as every route answers them
        answer = problem(
            exc.status,
            exc.slug,
            exc.title,
            exc.detail,
            scope["path"],
            headers=error_headers(exc),
            **exc.extensions,
        )
        await answer(scope, receive, send)
        return
    try:
        body = await _body(receive)
        if body is None:
            return  # the client left before it sent the whole body
        model = path_params["endpointId"] if inference.endpoint_in_path else body.get("model")
        route = await _route(platform, model)
    except GatewayError as exc:
        await exc.send(send)
        return
    await platform.gateway.serve(
        route, inference.path, body, label=inference.label, receive=receive, send=send
    )


async def _body(receive: Receive) -> dict[str, Any] | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise GatewayError(
                413,
                f"the request body is larger than {MAX_BODY_BYTES} bytes",
                type_="invalid_request_error",
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        body = json.loads(chunks[0] if len(chunks) == 1 else b"".join(chunks))
    except ValueError as exc:
        raise GatewayError(
            400, f"the body is not JSON: {exc}", type_="invalid_request_error"
        ) from exc
    if not isinstance(body, dict):
        raise GatewayError(400, "the body must be a JSON object", type_="invalid_request_error")
    return body


async def _route(platform: Platform, model: Any) -> Route:
    if not isinstance(model, str) or not model:
        raise GatewayError(
            400,
            "`model` must name a serving endpoint",
            type_="invalid_request_error",
            param="model",
            code="missing_model",
        )
    return await platform.gateway.find(model, platform.sessions)


@dataclass(frozen=True)
class _Matched:
    route: APIRoute
    template: str
    inference: Inference


class InferenceRoutes:
    """ASGI middleware that serves the inference POSTs itself (see the module), and
    passes everything else on."""

    def __init__(self, app: ASGIApp, *, prefix: str) -> None:
        self.app = app
        self.exact: dict[str, _Matched] = {}
        self.patterns: list[tuple[re.Pattern[str], dict[str, Convertor[Any]], _Matched]] = []
        for route in router.routes:
            if not isinstance(route, APIRoute) or route.name not in INFERENCE:
                continue
            template = prefix + route.path_format
            matched = _Matched(route, template, INFERENCE[route.name])
            regex, _, convertors = compile_path(template)
            if convertors:
                self.patterns.append((regex, convertors, matched))
            else:
                self.exact[template] = matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            params: dict[str, Any] = {}
            matched = self.exact.get(path)
            if matched is None:
                for regex, convertors, candidate in self.patterns:
                    found = regex.match(path)
                    if found is not None:
                        params = {
                            name: convertors[name].convert(value)
                            for name, value in found.groupdict().items()
                        }
                        matched = candidate
                        break
            if matched is not None:
                scope["route"] = matched.route
                scope["endpoint"] = matched.route.endpoint
                scope["path_params"] = params
                await serve_inference(
                    scope,
                    receive,
                    send,
                    template=matched.template,
                    path_params=params,
                    inference=matched.inference,
                )
                return
        await self.app(scope, receive, send)


class _Served(Response):
    """The answer of an inference route reached through FastAPI: served as
    :class:`InferenceRoutes` serves it."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.inference = INFERENCE[name]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_inference(
            scope,
            receive,
            send,
            template=route_template(scope) or scope["path"],
            path_params=dict(scope.get("path_params", {})),
            inference=self.inference,
        )


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
    return _Served("openai_chat_completions")


@router.post(
    f"{OPENAI}/completions",
    summary="Text completions from the endpoint named by `model`",
    openapi_extra={"requestBody": _BODY},
    responses=_ANSWER,  # type: ignore[arg-type]
)
async def openai_completions(request: Request) -> Response:
    return _Served("openai_completions")


@router.post(
    f"{OPENAI}/embeddings",
    summary="Embeddings from the endpoint named by `model`",
    openapi_extra={"requestBody": _BODY},
    responses=_ANSWER,  # type: ignore[arg-type]
)
async def openai_embeddings(request: Request) -> Response:
    return _Served("openai_embeddings")


@router.post(
    "/serving/endpoints/{endpointId}/chat/completions",
    summary="Chat with one endpoint (OpenAI's body; `model` may be left out)",
    openapi_extra={"requestBody": _BODY},
    responses=_ANSWER,  # type: ignore[arg-type]
)
async def endpoint_chat_completions(endpointId: str, request: Request) -> Response:
    return _Served("endpoint_chat_completions")


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
