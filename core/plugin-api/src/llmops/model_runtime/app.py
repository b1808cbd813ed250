"""The OpenAI-compatible HTTP surface of an :class:`~llmops.model_runtime.engine.Engine`.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions`` (both
with ``stream``: server-sent events, one event per piece of text the model produced, then
``data: [DONE]``), ``POST /v1/embeddings`` and ``GET /health`` (200 once a real one-token
generation has succeeded). Errors have OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``.

Generation runs in a worker thread; its pieces reach the event loop through a queue, so a
piece is sent as soon as it exists, and a client that goes away sets the cancel flag that
stops the decoding loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmops.model_runtime.engine import (
    Engine,
    Finished,
    GenerationError,
    SamplingParams,
    TextPiece,
)

#: How often a non-streamed request checks whether its client is still there.
DISCONNECT_POLL_SECONDS = 0.25

# -- requests -------------------------------------------------------------------------------


class _Request(BaseModel):
    # fields of OpenAI's API that change nothing here (user, metadata...) are accepted
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Request):
    include_usage: bool = False


Stop = str | Annotated[list[str], Field(max_length=4)] | None


class _GenerationRequest(_Request):
    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1)
    seed: int | None = None
    stop: Stop = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    #: vLLM's extension: go on past the end-of-text token (fixed-length answers)
    ignore_eos: bool = False

    def sampling(self, max_tokens: int | None = None) -> SamplingParams:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=tuple(s for s in stops if s),
            ignore_eos=self.ignore_eos,
        )

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: Literal[False] | None = None


class CompletionRequest(_GenerationRequest):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    echo: Literal[False] = False
    logprobs: None = None
    suffix: None = None

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class EmbeddingRequest(_Request):
    model: str
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if any(not text for text in texts):
            raise ValueError("an input is an empty string")
        return value


# -- errors ---------------------------------------------------------------------------------


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def response(self) -> JSONResponse:
        return JSONResponse(
            {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "param": self.param,
                    "code": self.code,
                }
            },
            status_code=self.status,
        )


def _validation_error(exc: RequestValidationError) -> OpenAIError:
    errors = exc.errors()
    first = errors[0] if errors else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    message = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
        for e in errors
    )
    return OpenAIError(400, message or "invalid request", param=param, code="invalid_value")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, exc: OpenAIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return OpenAIError(exc.status_code, str(exc.detail), type=kind).response()

    @app.exception_handler(GenerationError)
    async def generation_error(request: Request, exc: GenerationError) -> JSONResponse:
        return OpenAIError(400, str(exc), param=exc.param, code=exc.code).response()

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return OpenAIError(
            500, f"the model runtime failed: {type(exc).__name__}: {exc}", type="server_error"
        ).response()


# -- the bridge from the worker thread to the event loop ------------------------------------


async def _events(
    start: Callable[[threading.Event], Iterator[TextPiece | Finished]],
    *,
    request: Request | None = None,
) -> AsyncIterator[TextPiece | Finished]:
    """Run ``start(cancel)`` in a thread and yield its events as they come. Leaving early
    (the client went away, the task was cancelled) sets ``cancel``. With ``request``, a
    client that disconnects while nothing comes is noticed too (for answers that are not
    streamed: a streamed answer's disconnect cancels this generator)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[TextPiece | Finished | BaseException] = asyncio.Queue()
    cancel = threading.Event()

    def deliver(item: TextPiece | Finished | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        try:
            for event in start(cancel):
                deliver(event)
        except BaseException as exc:  # handed to the event loop, raised there
            deliver(exc)

    threading.Thread(target=work, name="model-runtime-generation", daemon=True).start()
    try:
        while True:
            if request is None:
                item = await queue.get()
            else:
                try:
                    item = await asyncio.wait_for(queue.get(), DISCONNECT_POLL_SECONDS)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, Finished):
                return
    finally:
        cancel.set()


async def _run_to_end(
    engine: Engine, prompt: list[int], params: SamplingParams, request: Request
) -> Finished:
    async for event in _events(
        lambda cancel: engine.generate(prompt, params, cancel=cancel), request=request
    ):
        if isinstance(event, Finished):
            return event
    raise OpenAIError(499, "the client went away", type="cancelled")


async def _guarded(
    start: Callable[[threading.Event], Iterator[TextPiece | Finished]],
) -> AsyncIterator[TextPiece | Finished | str]:
    """:func:`_events` for a stream: an error after the answer started is sent as an
    OpenAI error event (the status line is gone already), and the stream ends."""
    try:
        async for event in _events(start):
            yield event
    except Exception as exc:
        yield _sse(
            {
                "error": {
                    "message": f"the generation failed: {type(exc).__name__}: {exc}",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
        )


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def _usage(finished: Finished) -> dict[str, int]:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
    }


def _prompt(call: Callable[[], list[int]]) -> list[int]:
    try:
        return call()
    except GenerationError:
        raise
    except Exception as exc:  # a template that cannot render these messages
        raise OpenAIError(400, f"the prompt cannot be built: {exc}", param="messages") from exc


# -- the app --------------------------------------------------------------------------------


def create_app(engine: Engine, *, served_model_name: str) -> FastAPI:
    """The OpenAI-compatible app serving ``engine`` as ``served_model_name``. It warms the
    engine up when it starts (when the server runs its lifespan) or at the first
    ``/health`` otherwise."""
    warm_up_lock = asyncio.Lock()
    created = int(time.time())

    async def warm_up() -> None:
        async with warm_up_lock:
            if not engine.warmed_up:
                await asyncio.to_thread(engine.warm_up)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await warm_up()
        yield

    app = FastAPI(title="llmops model runtime", lifespan=lifespan, docs_url=None, redoc_url=None)
    _install_error_handlers(app)

    def check_model(name: str) -> None:
        if name != served_model_name:
            raise OpenAIError(
                404,
                f"The model `{name}` does not exist; this server serves `{served_model_name}`",
                type="invalid_request_error",
                param="model",
                code="model_not_found",
            )

    @app.get("/health")
    async def health() -> JSONResponse:
        try:
            await warm_up()
        except Exception as exc:
            return JSONResponse(
                {"status": "unhealthy", "error": f"{type(exc).__name__}: {exc}"}, 503
            )
        return JSONResponse({"status": "ok", "model": served_model_name})

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": served_model_name,
                    "object": "model",
                    "created": created,
                    "owned_by": "llmops",
                    "max_model_len": engine.context_length,
                }
            ],
        }

    @app.get("/v1/models/{name}")
    async def model(name: str) -> dict[str, Any]:
        check_model(name)
        return {"id": name, "object": "model", "created": created, "owned_by": "llmops"}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatCompletionRequest, request: Request
    ) -> JSONResponse | StreamingResponse:
        check_model(body.model)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        prompt = _prompt(lambda: engine.chat_prompt(messages))
        params = body.sampling(body.max_completion_tokens or body.max_tokens)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        if not body.stream:
            finished = await _run_to_end(engine, prompt, params, request)
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": now,
                    "model": served_model_name,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": finished.text},
                            "logprobs": None,
                            "finish_reason": finished.reason,
                        }
                    ],
                    "usage": _usage(finished),
                }
            )
        _check_room(engine, prompt)

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
            return _sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": now,
                    "model": served_model_name,
                    "choices": [
                        {
                            "index": 0,
                            "delta": delta,
                            "logprobs": None,
                            "finish_reason": finish_reason,
                        }
                    ],
                }
            )

        async def stream() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            async for event in _guarded(
                lambda cancel: engine.generate(prompt, params, cancel=cancel)
            ):
                if isinstance(event, str):  # an error event
                    yield event
                    return
                if isinstance(event, TextPiece):
                    yield chunk({"content": event.text})
                else:
                    yield chunk({}, event.reason)
                    if body.include_usage():
                        yield _sse(
                            {
                                "id": completion_id,
                                "object": "chat.completion.chunk",
                                "created": now,
                                "model": served_model_name,
                                "choices": [],
                                "usage": _usage(event),
                            }
                        )
            yield "data: [DONE]\n\n"

        return _event_stream(stream())

    @app.post("/v1/completions", response_model=None)
    async def completions(
        body: CompletionRequest, request: Request
    ) -> JSONResponse | StreamingResponse:
        check_model(body.model)
        prompt = _prompt(lambda: engine.text_prompt(body.text()))
        params = body.sampling()
        completion_id = f"cmpl-{uuid.uuid4().hex}"
        now = int(time.time())

        def answer(text: str, finish_reason: str | None) -> dict[str, Any]:
            return {
                "id": completion_id,
                "object": "text_completion",
                "created": now,
                "model": served_model_name,
                "choices": [
                    {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
                ],
            }

        if not body.stream:
            finished = await _run_to_end(engine, prompt, params, request)
            return JSONResponse(
                {**answer(finished.text, finished.reason), "usage": _usage(finished)}
            )
        _check_room(engine, prompt)

        async def stream() -> AsyncIterator[str]:
            async for event in _guarded(
                lambda cancel: engine.generate(prompt, params, cancel=cancel)
            ):
                if isinstance(event, str):  # an error event
                    yield event
                    return
                if isinstance(event, TextPiece):
                    yield _sse(answer(event.text, None))
                else:
                    yield _sse(answer("", event.reason))
                    if body.include_usage():
                        yield _sse({**answer("", None), "choices": [], "usage": _usage(event)})
            yield "data: [DONE]\n\n"

        return _event_stream(stream())

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> JSONResponse:
        check_model(body.model)
        if body.dimensions is not None and body.dimensions != engine.hidden_size:
            raise OpenAIError(
                400,
                f"this model's embeddings have {engine.hidden_size} dimensions",
                param="dimensions",
                code="invalid_value",
            )
        texts = [body.input] if isinstance(body.input, str) else body.input
        vectors, tokens = await asyncio.to_thread(engine.embed, texts)
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": _encode_vector(vector, body.encoding_format),
            }
            for index, vector in enumerate(vectors)
        ]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": served_model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    return app


def _check_room(engine: Engine, prompt: list[int]) -> None:
    """Refuse, before a stream starts (while an error status can still be sent), a prompt
    that is empty or leaves no room for an answer."""
    if not prompt:
        raise GenerationError("the prompt is empty", param="prompt")
    if len(prompt) >= engine.context_length:
        raise GenerationError(
            f"the prompt has {len(prompt)} tokens; this model's context holds "
            f"{engine.context_length}",
            param="messages",
            code="context_length_exceeded",
        )


def _event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
