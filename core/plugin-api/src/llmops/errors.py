"""The core's error types.

Services and providers raise these; one exception handler in :mod:`llmops.api.errors`
maps them to RFC 9457 problem+json responses. Each class carries its HTTP status and a
stable problem ``type`` slug so clients can branch on it.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LlmopsError(Exception):
    """Base class of every error the core turns into a problem response."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class NotFound(LlmopsError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(LlmopsError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class NoProviderEnabled(Conflict):
    """No enabled plugin offers the capability a request needs."""

    slug = "no-provider-enabled"
    title = "No provider enabled"


class ProviderChoiceNeeded(Conflict):
    """Several enabled plugins offer the capability with the same priority and no admin
    has chosen which one serves it: the platform does not guess."""

    slug = "provider-choice-needed"
    title = "A provider must be chosen"


class InvalidRequest(LlmopsError):
    """The request is well-formed JSON but breaks a domain rule (a cycle, a bad name)."""

    status = 422
    slug = "invalid-request"
    title = "Invalid request"


class PayloadTooLarge(LlmopsError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class TooManyRequests(LlmopsError):
    """The caller must wait ``retry_after`` seconds (answered with ``Retry-After``)."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.retry_after = max(1, retry_after)


class IntegrationUnavailable(LlmopsError):
    """The tool behind a provider could not be reached or timed out."""

    status = 503
    slug = "integration-unavailable"
    title = "Integration unavailable"


class IntegrationRejected(LlmopsError):
    """The tool answered, and refused the request."""

    status = 502
    slug = "integration-rejected"
    title = "Integration rejected the request"


class Unauthenticated(LlmopsError):
    """No API key, or one that is unknown or revoked. Answered with a Bearer challenge."""

    status = 401
    slug = "unauthenticated"
    title = "Authentication required"

    def __init__(self, detail: str, *, invalid_token: bool = False, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        # RFC 6750 section 3: name the error only when a token was sent
        self.challenge = (
            'Bearer realm="llmops", error="invalid_token"'
            if invalid_token
            else 'Bearer realm="llmops"'
        )


class Forbidden(LlmopsError):
    """A valid key whose role may not call this route."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


class PolicyViolation(LlmopsError):
    """A request that breaks a governance policy an admin set (an import of a license or
    source not allowed, an endpoint asking for more replicas or GPUs than allowed, a role
    that may not deploy). Its extensions name the ``policy`` (``endpoints.maxReplicas``),
    the value ``requested`` and the ``limit``; nothing was changed."""

    status = 403
    slug = "policy-violation"
    title = "Policy violation"

    def __init__(
        self, detail: str, *, policy: str, requested: Any, limit: Any, **extensions: Any
    ) -> None:
        super().__init__(detail, policy=policy, requested=requested, limit=limit, **extensions)
        self.policy = policy
        self.requested = requested
        self.limit = limit
