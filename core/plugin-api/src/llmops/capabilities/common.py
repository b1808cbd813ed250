"""Types shared by every capability."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import LlmopsError


class Capability(StrEnum):
    """The capabilities a plugin can offer; each has one hook and one Protocol."""

    TRACKING = "tracking"
    SERVING = "serving"
    ORCHESTRATION = "orchestration"
    REGISTRY = "registry"
    VERSIONING = "versioning"


class Value(BaseModel):
    """Base of capability value types: immutable, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def utcnow() -> datetime:
    return datetime.now(UTC)


class HealthStatus(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"


class Health(Value):
    """The result of a real check against the tool behind a provider."""

    status: HealthStatus
    latency_ms: float | None = None
    detail: str = ""
    checked_at: datetime = Field(default_factory=utcnow)


@runtime_checkable
class Provider(Protocol):
    """What every provider of every capability offers."""

    def health(self) -> Health:
        """Check the tool for real (a request, a file system probe) and say how it went.

        Must return within the provider's request timeout and never raise: a failure is
        reported as ``HealthStatus.DOWN`` with the reason in ``detail``.
        """
        ...


# -------------------------------------------------------------------------------------
# Optional abilities: a provider of any capability may offer these; the core looks for
# them with isinstance() and works without them.
# -------------------------------------------------------------------------------------


@runtime_checkable
class HonoursDeadline(Protocol):
    """A provider whose every tool call keeps to :func:`llmops.deadlines.deadline_remaining`.

    Set ``honours_deadline = True`` on the class. The core then calls it on the caller's
    thread; a provider without it runs in a small thread pool and is abandoned at the
    deadline (a thread hand-off per call).
    """

    honours_deadline: bool


@runtime_checkable
class TranslatesErrors(Protocol):
    """A provider that knows its tool's exceptions better than the core's generic rules."""

    def translate_error(self, exc: BaseException) -> LlmopsError | None:
        """The core error for ``exc`` (:class:`~llmops.errors.NotFound`,
        :class:`~llmops.errors.IntegrationRejected`, ...), or None for the generic rules
        (HTTP status codes, connection errors: retryable)."""
        ...


@runtime_checkable
class ReportsActiveWork(Protocol):
    """A provider that runs work inside the platform's process (the local executor)."""

    def active_work(self) -> int:
        """How many operations are in progress that rebuilding the provider would stop;
        the core refuses a settings change (409) while it is above zero."""
        ...


@runtime_checkable
class Closable(Protocol):
    """A provider that holds threads, connections or processes."""

    def close(self) -> None:
        """Release them; called when the plugin is disabled, reconfigured or stopped.
        Must not raise: a failure is logged and the shutdown goes on."""
        ...


def honours_deadline(provider: object) -> bool:
    """Whether ``provider`` declares :class:`HonoursDeadline` with a true value."""
    return isinstance(provider, HonoursDeadline) and provider.honours_deadline is True
