"""Who the caller is: the console signs in by asking this with the key it was given."""

from __future__ import annotations

from fastapi import APIRouter

from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.schemas import PrincipalOut
from llmops.auth import current_principal
from llmops.errors import Unauthenticated

router = APIRouter(route_class=AnswerKeepingRoute, tags=["api-keys"])


@router.get("/me", response_model=PrincipalOut, summary="The calling API key's identity and role")
def get_current_principal() -> PrincipalOut:
    """The key's id, name and role (never the key). A viewer may call it."""
    principal = current_principal.get()
    if principal is None or principal.role is None:  # authorize() lets no such request in
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
    return PrincipalOut(key_id=principal.key_id, name=principal.name, role=principal.role.value)
