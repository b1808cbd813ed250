"""The Hub's answers: JSON bodies, its error shape (see :mod:`.errors`), the storage
host's S3-style errors, and the small parsers of what requests carry (query values,
pagination cursors, byte ranges)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from llmops.testing.hf.errors import HubError
from llmops.testing.hf.server import Answer, Incoming

__all__ = [
    "TEXT_TYPES",
    "byte_range",
    "content_type",
    "decode_cursor",
    "disposition",
    "encode_cursor",
    "error_answer",
    "iso",
    "json_answer",
    "json_body",
    "query_flag",
    "query_int",
    "query_value",
    "s3_error",
]

#: Extensions served as text (the rest of named files as octet streams).
TEXT_TYPES = (".json", ".md", ".txt", ".py", ".yaml", ".yml", ".gitattributes", ".jinja")


def iso(moment: datetime) -> str:
    """A time as the Hub writes it: ``2024-05-01T12:00:00.000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def json_answer(
    value: Any,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json; charset=utf-8",
) -> Answer:
    return Answer(
        status=status,
        headers={"Content-Type": content_type, **(headers or {})},
        body=json.dumps(value, separators=(",", ":")).encode(),
    )


def error_answer(error: HubError) -> Answer:
    headers = {"X-Error-Message": error.message, **error.headers}
    if error.code:
        headers["X-Error-Code"] = error.code
    return json_answer({"error": error.message}, status=error.status, headers=headers)


def s3_error(status: int, code: str, message: str) -> Answer:
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Answer(status=status, headers={"Content-Type": "application/xml"}, body=body.encode())


def json_body(request: Incoming) -> dict[str, Any]:
    raw = request.read()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise HubError(400, "Invalid JSON body") from None
    if not isinstance(value, dict):
        raise HubError(400, "The body must be a JSON object")
    return value


def query_value(query: Mapping[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


def query_flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def query_int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        raise HubError(400, f"Invalid integer: {value}") from None


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_cursor(value: str | None) -> int:
    if not value:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(value.encode()))["offset"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise HubError(400, "Invalid cursor") from None


def byte_range(header: str | None, total: int) -> tuple[int, int] | None:
    """The one byte range a ``Range`` header asks for (inclusive end), None for the whole
    body (no header, or several ranges: answered whole, as RFC 9110 allows).

    :raises HubError: 416 when the range lies outside the body.
    """
    if not header:
        return None
    found = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if found is None:
        return None
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0:
            raise HubError(
                416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{total}"}
            )
        return max(0, total - suffix), total - 1
    start = int(first)
    end = min(int(last), total - 1) if last else total - 1
    if start >= total or start > end:
        raise HubError(416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{total}"})
    return start, end


def disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "")
    return f"inline; filename*=UTF-8''{quote(filename)}; filename=\"{ascii_name}\";"


def content_type(filename: str) -> str:
    if filename.endswith(".json"):
        return "application/json; charset=utf-8"
    if filename.endswith(TEXT_TYPES) or "." not in filename:
        return "text/plain; charset=utf-8"
    return "application/octet-stream"
