"""Catalog models."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from llmops.api.deps import Cursor, Limit, PlatformDep, SessionDep
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.model_views import model_detail, models_out
from llmops.api.schemas import ListPage, ModelCreate, ModelOut, ModelUpdate
from llmops.api.schemas_registry import ModelDetail
from llmops.services import catalog, registry

router = APIRouter(route_class=AnswerKeepingRoute, prefix="/catalog/models", tags=["catalog"])


@router.post("", status_code=201, response_model=ModelOut, summary="Register a model")
def create_model(body: ModelCreate, session: SessionDep) -> ModelOut:
    return ModelOut.model_validate(catalog.create_model(session=session, **body.model_dump()))


@router.get("", response_model=ListPage[ModelOut], summary="List models")
def list_models(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=200, description="in name or description")] = None,
    task: Annotated[str | None, Query(max_length=64)] = None,
    framework: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    sort: Annotated[
        str, Query(pattern=r"^-?(name|createdAt|updatedAt)$", description="field, - for descending")
    ] = "-createdAt",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListPage[ModelOut]:
    page = catalog.list_models(
        session=session,
        q=q,
        task=task,
        framework=framework,
        status=status,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )
    return ListPage[ModelOut](items=models_out(session, page.items), next_cursor=page.next_cursor)


@router.get("/{modelId}", response_model=ModelDetail, summary="Get a model")
def get_model(modelId: str, session: SessionDep) -> ModelDetail:
    """The model; an imported one with where it came from, its files (on disk once
    ``ready``), how far its import is, its card and its exports."""
    return model_detail(session, catalog.get_model(session=session, model_id=modelId))


@router.patch("/{modelId}", response_model=ModelOut, summary="Update a model")
def update_model(modelId: str, body: ModelUpdate, session: SessionDep) -> ModelOut:
    changes = body.model_dump(exclude_unset=True)
    for key in ("name", "version", "tags", "labels", "description"):
        if key in changes and changes[key] is None:
            changes.pop(key)
    model = catalog.update_model(session=session, model_id=modelId, changes=changes)
    [shown] = models_out(session, [model])
    return shown


@router.delete("/{modelId}", status_code=204, response_class=Response, summary="Delete a model")
def delete_model(modelId: str, session: SessionDep, platform: PlatformDep) -> Response:
    """An imported model's files go with it."""
    catalog.delete_model(session=session, model_id=modelId)
    session.commit()
    registry.remove_model_files(platform.settings.storage_dir, modelId)
    return Response(status_code=204)
