"""Bodies of the API keys and audit log routes (camelCase on the wire, like schemas.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from llmops.api.schemas import ApiKeyOut, ApiModel, Input


class ApiKeyCreate(Input):
    name: str = Field(min_length=1, max_length=200, description="who or what the key is for")
    role: Literal["viewer", "editor", "admin"] = Field(
        default="viewer",
        description="viewer reads; editor also creates, runs and deploys; admin also manages "
        "integrations, API keys, the retry queue and reads the audit log",
    )


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(
        description="the key itself: shown in this answer only, stored as a hash; send it as "
        "Authorization: Bearer <key>"
    )


class AuditEntryOut(ApiModel):
    id: int
    at: datetime
    actor: str = Field(description="the API key's name, 'anonymous' or 'system'")
    role: str | None
    action: str = Field(description="the route's operation id, or a plugin's own action")
    resource_type: str | None = Field(
        description="the collection's path below /llm-ops/v1, e.g. catalog/models"
    )
    resource_id: str | None
    request_id: str | None
    outcome: Literal["success", "denied", "failed"]
    details: dict[str, Any] = Field(
        description="method, status, path, keyId, and the reason of a refusal; never a body"
    )
