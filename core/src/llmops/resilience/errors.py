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


class UnclassifiedFailure(IntegrationRejected):
    """A tool call failed with an exception that neither its provider nor the generic
    rules recognise (502, not retried, not counted by the circuit breaker).

    Every sign of an outage the core can see is recognised (connection and timeout
    errors, exception names that say so, HTTP 408, 429 and 5xx), and a provider whose
    tool raises its own transient types says so through ``translate_error``. What is left
    is mostly deterministic: a value the tool's client cannot encode, a bug. Retrying it
    fails the same way on every delivery, and counting it would let one caller's bad
    input pause the tool for everyone. A write that dies of it is not lost: it is listed
    in the dead letters with its reason, and an administrator may retry it."""

    slug = "integration-failed"
    title = "Integration failed"


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
    if any(_says_outage(cause) for cause in _chain(exc)):
        return IntegrationUnavailable(detail)
    return UnclassifiedFailure(detail)


def _says_outage(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | ConnectionError):
        return True
    return any(part in type(exc).__name__ for part in _UNAVAILABLE_NAMES)


def _chain(exc: BaseException, limit: int = 8) -> list[BaseException]:
    """``exc`` and what it was raised from or during (a client's wrapper of a refused
    connection, such as urllib3's MaxRetryError around a NewConnectionError)."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(found) < limit and current not in found:
        found.append(current)
        reason = getattr(current, "reason", None)  # urllib3 keeps its cause here
        current = (
            current.__cause__
            or current.__context__
            or (reason if isinstance(reason, BaseException) else None)
        )
    return found


def retryable(error: LlmopsError) -> bool:
    """Whether the same call may succeed later (the tool was away, not refusing): the only
    failures the outbox retries and a circuit breaker counts."""
    return isinstance(error, IntegrationUnavailable)


def unclassified(error: LlmopsError) -> bool:
    """Whether ``error`` says nothing about the tool (:class:`UnclassifiedFailure`)."""
    return isinstance(error, UnclassifiedFailure)
