"""Types shared by every capability."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


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
