"""Catalog models as the API shows them: with where an import came from, how far its
files are, and the model's exports (the catalog and registry routes share these)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from llmops.api.schemas import ImportProgressOut, ImportStatusOut, ModelOut, ModelRegistryOut
from llmops.api.schemas_registry import (
    ModelDetail,
    ModelExportOut,
    RegistryFileOut,
    UpdateCheckOut,
)
from llmops.db.models import CatalogModel, RegistryModel
from llmops.resilience.outbox import OperationStatus
from llmops.services import registry
from llmops.services.registry import RegistryView, UpdateView


def registry_out(link: RegistryModel) -> ModelRegistryOut:
    details = link.details
    degraded = details.get("degraded")
    check = link.last_check or {}
    return ModelRegistryOut(
        provider=link.provider,
        repo_id=link.external_id,
        revision=link.revision,
        branch=link.branch,
        requested_revision=details.get("requested_revision"),
        url=link.url,
        license=details.get("license"),
        pipeline_tag=details.get("pipeline_tag"),
        library=details.get("library"),
        degraded=bool(degraded),
        degraded_reason=degraded or None,
        imported_at=link.imported_at if link.state == registry.SUCCEEDED else None,
        last_checked_at=link.last_checked_at,
        update_available=check.get("update_available") if check else None,
    )


def import_status_out(model: CatalogModel, view: RegistryView) -> ImportStatusOut:
    operation = view.operation
    progress = operation.progress if operation is not None else None
    reason: str | None = view.link.details.get("error")
    if model.status == registry.IMPORTING and operation is not None:
        reason = operation.last_error
    waiting = operation is not None and operation.status == OperationStatus.PENDING.value
    return ImportStatusOut(
        state=model.status,
        operation_id=view.link.operation_id,
        operation_status=operation.status if operation is not None else None,
        progress=ImportProgressOut.model_validate(progress) if progress else None,
        reason=reason,
        attempts=operation.attempts if operation is not None else 0,
        next_attempt_at=operation.next_attempt_at if waiting and operation else None,
    )


def _base(model: CatalogModel, view: RegistryView | None) -> dict[str, Any]:
    fields = ModelOut.model_validate(model).model_dump()
    if view is not None:
        link = view.link
        fields["source"] = registry.source_of(link.provider, link.external_id, link.revision)
        fields["imported_from"] = registry_out(link)
        fields["import_status"] = import_status_out(model, view)
    return fields


def model_out(model: CatalogModel, view: RegistryView | None) -> ModelOut:
    return ModelOut.model_validate(_base(model, view))


def models_out(session: Session, models: Sequence[CatalogModel]) -> list[ModelOut]:
    """A page of models, their registry links read in two queries."""
    views = registry.registry_views(session, models)
    return [model_out(m, views.get(m.id)) for m in models]


def export_out(link: RegistryModel) -> ModelExportOut:
    details = link.details
    return ModelExportOut(
        id=link.id,
        provider=link.provider,
        repo_id=link.external_id,
        state=link.state,
        commit=link.revision,
        url=link.url if link.state == registry.SUCCEEDED else None,
        private=bool(details.get("private", True)),
        create_pr=bool(details.get("create_pr", False)),
        operation_id=link.operation_id,
        reason=details.get("error"),
        created_at=link.imported_at,
    )


def detail_fields(session: Session, model: CatalogModel) -> dict[str, Any]:
    """What :class:`ModelDetail` shows of ``model``, as fields."""
    view = registry.registry_views(session, [model]).get(model.id)
    fields = _base(model, view)
    if view is not None:
        details = view.link.details
        fields["files"] = [RegistryFileOut.model_validate(f) for f in details.get("files") or []]
        fields["skipped_files"] = list(details.get("skipped") or [])
        fields["card"] = details.get("card")
    fields["exports"] = [export_out(e) for e in registry.exports_of(session, model.id)]
    return fields


def model_detail(session: Session, model: CatalogModel) -> ModelDetail:
    return ModelDetail.model_validate(detail_fields(session, model))


def update_check_out(model_id: str, view: UpdateView) -> UpdateCheckOut:
    check: Mapping[str, Any] = view.check
    return UpdateCheckOut.model_validate(
        {
            **{k: v for k, v in check.items() if k in UpdateCheckOut.model_fields},
            "model_id": model_id,
            "provider": view.link.provider,
            "repo_id": view.link.external_id,
            "checked_at": view.checked_at,
            "degraded": view.stale_reason is not None,
            "degraded_reason": (
                f"the registry could not be asked: showing the last check: {view.stale_reason}"
                if view.stale_reason is not None
                else None
            ),
        }
    )
