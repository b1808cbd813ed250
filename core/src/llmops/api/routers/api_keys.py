"""API keys: created (the key is in that answer only), listed without keys, revoked."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from llmops.api.deps import Cursor, Limit, SessionDep
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.schemas import ApiKeyOut, ListPage
from llmops.api.schemas_auth import ApiKeyCreate, ApiKeyCreated
from llmops.auth import current_principal
from llmops.services import api_keys
from llmops.services.api_keys import Role

router = APIRouter(route_class=AnswerKeepingRoute, prefix="/api-keys", tags=["api-keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated, summary="Create an API key")
def create_api_key(body: ApiKeyCreate, session: SessionDep) -> ApiKeyCreated:
    """The answer holds the key; it is stored only as a hash and cannot be shown again."""
    row, key = api_keys.create_api_key(session=session, name=body.name, role=Role(body.role))
    return ApiKeyCreated.model_validate({**ApiKeyOut.model_validate(row).model_dump(), "key": key})


@router.get("", response_model=ListPage[ApiKeyOut], summary="List API keys (never the keys)")
def list_api_keys(
    session: SessionDep,
    role: Annotated[Role | None, Query()] = None,
    revoked: Annotated[bool | None, Query(description="true: only revoked; false: active")] = None,
    sort: Annotated[str, Query(pattern=r"^-?(name|createdAt)$")] = "createdAt",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListPage[ApiKeyOut]:
    page = api_keys.list_api_keys(
        session=session, role=role, revoked=revoked, sort=sort, limit=limit, cursor=cursor
    )
    return ListPage[ApiKeyOut](
        items=[ApiKeyOut.model_validate(k) for k in page.items], next_cursor=page.next_cursor
    )


@router.delete("/{keyId}", status_code=204, response_class=Response, summary="Revoke an API key")
def revoke_api_key(keyId: str, session: SessionDep) -> Response:
    """Takes effect with the next request that presents the key. A key cannot revoke
    itself, and the last admin key cannot be revoked (409)."""
    principal = current_principal.get()
    api_keys.revoke_api_key(
        session=session, key_id=keyId, by_key_id=principal.key_id if principal else None
    )
    return Response(status_code=204)
