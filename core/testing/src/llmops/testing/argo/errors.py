"""The Argo Server's failures as its clients see them: a gRPC status turned into HTTP by
grpc-gateway (v1, as Argo uses it), ``{"code": <grpc code>, "message": "..."}`` with the
HTTP status grpc-gateway maps that code to; on a streaming route (logs) the same failure
is a ``{"error": {...}}`` stream message."""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

from llmops.testing.doubles import Reply

#: The resource as the Kubernetes API, and so the Argo Server, names it in messages.
WORKFLOWS = "workflows.argoproj.io"
#: What the Argo Server answers for a missing, malformed or rejected bearer token (an
#: error message, not a credential).
TOKEN_NOT_VALID = "token not valid. see https://argo-workflows.readthedocs.io/en/latest/faq/"  # noqa: S105


class GrpcCode(IntEnum):
    """The gRPC status codes the Argo Server answers with."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


#: grpc-gateway's HTTPStatusFromCode.
HTTP_STATUS: dict[GrpcCode, int] = {
    GrpcCode.OK: 200,
    GrpcCode.CANCELLED: 408,
    GrpcCode.UNKNOWN: 500,
    GrpcCode.INVALID_ARGUMENT: 400,
    GrpcCode.DEADLINE_EXCEEDED: 504,
    GrpcCode.NOT_FOUND: 404,
    GrpcCode.ALREADY_EXISTS: 409,
    GrpcCode.PERMISSION_DENIED: 403,
    GrpcCode.RESOURCE_EXHAUSTED: 429,
    GrpcCode.FAILED_PRECONDITION: 400,
    GrpcCode.ABORTED: 409,
    GrpcCode.OUT_OF_RANGE: 400,
    GrpcCode.UNIMPLEMENTED: 501,
    GrpcCode.INTERNAL: 500,
    GrpcCode.UNAVAILABLE: 503,
    GrpcCode.DATA_LOSS: 500,
    GrpcCode.UNAUTHENTICATED: 401,
}

_HTTP_REASON = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ArgoApiError(Exception):
    """A failure the Argo Server answers as a gRPC status."""

    def __init__(self, code: GrpcCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def body(self) -> dict[str, Any]:
        return {"code": int(self.code), "message": self.message}

    def reply(self) -> Reply:
        return Reply(
            status=self.http_status,
            body=json.dumps(self.body(), separators=(",", ":")).encode(),
            headers={"Content-Type": "application/json"},
        )

    def stream_body(self) -> dict[str, Any]:
        """The failure as grpc-gateway writes it into a stream (its StreamError)."""
        status = self.http_status
        return {
            "error": {
                "grpc_code": int(self.code),
                "http_code": status,
                "message": self.message,
                "http_status": _HTTP_REASON.get(status, ""),
            }
        }


def invalid_argument(message: str) -> ArgoApiError:
    return ArgoApiError(GrpcCode.INVALID_ARGUMENT, message)


def unauthenticated() -> ArgoApiError:
    return ArgoApiError(GrpcCode.UNAUTHENTICATED, TOKEN_NOT_VALID)


def workflow_not_found(name: str) -> ArgoApiError:
    return ArgoApiError(GrpcCode.NOT_FOUND, f'{WORKFLOWS} "{name}" not found')


def workflow_exists(name: str) -> ArgoApiError:
    return ArgoApiError(GrpcCode.ALREADY_EXISTS, f'{WORKFLOWS} "{name}" already exists')


def forbidden(verb: str, namespace: str, user: str) -> ArgoApiError:
    """What the Kubernetes API answers, through the Argo Server, for a namespace the
    caller's service account holds no role in."""
    return ArgoApiError(
        GrpcCode.PERMISSION_DENIED,
        f'{WORKFLOWS} is forbidden: User "{user}" cannot {verb} resource "workflows" in API '
        f'group "argoproj.io" in the namespace "{namespace}"',
    )


def failed_precondition(message: str) -> ArgoApiError:
    return ArgoApiError(GrpcCode.FAILED_PRECONDITION, message)


def unimplemented(message: str) -> ArgoApiError:
    return ArgoApiError(GrpcCode.UNIMPLEMENTED, message)
