"""Turning whatever a tool's client raised into the core's error types."""

from __future__ import annotations

from collections.abc import Callable

from llmops.errors import (
    Conflict,
    IntegrationRejected,
    IntegrationUnavailable,
    InvalidRequest,
    LlmopsError,
    NotFound,
)

#: A provider may offer ``translate_error(exc) -> LlmopsError | None`` for its tool's
#: own exception types; the generic rules below apply when it returns None.
Translator = Callable[[BaseException], LlmopsError | None]

_UNAVAILABLE_NAMES = ("Timeout", "Connect", "Connection", "Network", "Unavailable", "Protocol")


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, whichever client raised it."""
    for candidate in (exc, getattr(exc, "response", None)):
        for attribute in ("status_code", "status", "code"):
            value = getattr(candidate, attribute, None)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
    return None


def translate(
    exc: BaseException, *, where: str, translator: Translator | None = None
) -> LlmopsError:
    """The core error for ``exc``; ``where`` names the plugin and operation in messages."""
    if isinstance(exc, LlmopsError):
        return exc
    if translator is not None:
        translated = translator(exc)
        if translated is not None:
            return translated
    detail = f"{where}: {type(exc).__name__}: {exc}"
    status = http_status(exc)
    if status is not None:
        if status == 404:
            return NotFound(detail)
        if status == 409:
            return Conflict(detail)
        if status == 422 or status == 400:
            return InvalidRequest(detail)
        if status in (408, 429) or status >= 500:
            return IntegrationUnavailable(detail, upstream_status=status)
        return IntegrationRejected(detail, upstream_status=status)
    if isinstance(exc, OSError | TimeoutError | ConnectionError):
        return IntegrationUnavailable(detail)
    if any(part in type(exc).__name__ for part in _UNAVAILABLE_NAMES):
        return IntegrationUnavailable(detail)
    # an unknown failure may be transient: retrying it is safer than dropping the write
    return IntegrationUnavailable(detail)


def retryable(error: LlmopsError) -> bool:
    """Whether the same call may succeed later (the tool was away, not refusing)."""
    return isinstance(error, IntegrationUnavailable)
