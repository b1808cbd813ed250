"""Kubernetes ``Status`` answers, the shapes kube-apiserver sends for failures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmops.testing.doubles import Reply

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
PLURAL = "inferenceservices"
#: The resource as kube-apiserver names it in messages.
QUALIFIED = f"{PLURAL}.{GROUP}"
#: The validating webhook KServe registers; its denials are 403 Forbidden.
WEBHOOK = "inferenceservice.kserve-webhook-server.validator"


@dataclass(frozen=True)
class Cause:
    """One ``details.causes`` entry: ``FieldValueInvalid`` and the like."""

    reason: str
    message: str
    field: str

    def as_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    def line(self) -> str:
        """The cause as kube-apiserver joins it into a message: ``field: message``."""
        return f"{self.field}: {self.message}" if self.field else self.message


class ApiStatusError(Exception):
    """A failure answered as a Kubernetes ``Status``."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            status["details"] = self.details
        status["code"] = self.code
        return status

    def reply(self) -> Reply:
        return status_reply(self.body(), self.code)


def status_reply(body: dict[str, Any], code: int, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status=code,
        body=json.dumps(body, separators=(",", ":")).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _details(name: str | None, kind: str = PLURAL, group: str = GROUP) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def not_found(name: str) -> ApiStatusError:
    return ApiStatusError(
        404, "NotFound", f'{QUALIFIED} "{name}" not found', details=_details(name)
    )


def namespace_not_found(namespace: str) -> ApiStatusError:
    return ApiStatusError(
        404,
        "NotFound",
        f'namespaces "{namespace}" not found',
        details={"name": namespace, "kind": "namespaces"},
    )


def path_not_found() -> ApiStatusError:
    return ApiStatusError(
        404, "NotFound", "the server could not find the requested resource", details={}
    )


def already_exists(name: str, *, being_deleted: bool = False) -> ApiStatusError:
    prefix = "object is being deleted: " if being_deleted else ""
    return ApiStatusError(
        409,
        "AlreadyExists",
        f'{prefix}{QUALIFIED} "{name}" already exists',
        details=_details(name),
    )


def conflict(name: str, why: str) -> ApiStatusError:
    return ApiStatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {QUALIFIED} "{name}": {why}',
        details=_details(name),
    )


STALE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def invalid(name: str, causes: Sequence[Cause]) -> ApiStatusError:
    """422: ``InferenceService.serving.kserve.io "name" is invalid: ...`` with causes."""
    lines = [c.line() for c in causes]
    joined = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    return ApiStatusError(
        422,
        "Invalid",
        f'{KIND}.{GROUP} "{name}" is invalid: {joined}',
        details={**_details(name, kind=KIND), "causes": [c.as_json() for c in causes]},
    )


def rejected_patch(message: str) -> ApiStatusError:
    """422 for a JSON patch that does not apply (kube-apiserver's generic answer)."""
    return ApiStatusError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        details={"causes": [{"reason": "UnexpectedServerResponse", "message": message}]},
    )


def bad_request(message: str) -> ApiStatusError:
    return ApiStatusError(400, "BadRequest", message)


def forbidden_by_webhook(message: str) -> ApiStatusError:
    """What kube-apiserver answers when KServe's validating webhook denies a write."""
    return ApiStatusError(
        403, "Forbidden", f'admission webhook "{WEBHOOK}" denied the request: {message}'
    )


def unauthorized() -> ApiStatusError:
    return ApiStatusError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiStatusError:
    return ApiStatusError(405, "MethodNotAllowed", message, details={})


def unsupported_media_type(accepted: Sequence[str]) -> ApiStatusError:
    return ApiStatusError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )
