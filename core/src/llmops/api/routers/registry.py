"""Catalog models and model registries: import, export, registry links, update checks,
the search of the catalog and a registry together, and a repository's metadata.

Included before the catalog router: ``/catalog/models/search`` and ``/import`` must not
be read as a model id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select

from llmops.api.deps import PlatformDep, RuntimeDep, SessionDep
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.model_views import detail_fields, export_out, models_out, update_check_out
from llmops.api.schemas_registry import (
    REPO_ID_LENGTH,
    REVISION_LENGTH,
    ExportAcceptedOut,
    ModelExportIn,
    ModelImportAccepted,
    ModelImportIn,
    ModelSearchHitOut,
    ModelSearchOut,
    RegistryFileOut,
    RegistryLinkOut,
    RegistryLinksOut,
    RegistryMetadataOut,
    RegistryModelSummaryOut,
    RegistryRevisionOut,
    UpdateCheckOut,
)
from llmops.api.security import add_audit_details
from llmops.db.models import RegistryModel
from llmops.errors import InvalidRequest
from llmops.services import registry

router = APIRouter(route_class=AnswerKeepingRoute, prefix="/catalog", tags=["catalog"])

ACCEPTED = "Accepted: the work is on its way; poll the operation"


def _accepted(response: Response, operation_id: str) -> None:
    response.headers["Location"] = f"/llm-ops/v1/operations/{operation_id}"


@router.post(
    "/models/import",
    status_code=202,
    response_model=ModelImportAccepted,
    summary="Import a model from a registry",
    responses={202: {"description": ACCEPTED}, 503: {"description": "The registry is away"}},
)
def import_model(
    body: ModelImportIn,
    session: SessionDep,
    runtime: RuntimeDep,
    platform: PlatformDep,
    request: Request,
    response: Response,
) -> ModelImportAccepted:
    """Resolve the revision to its commit and check the import with the registry (file
    names that would land outside the model's folder, pickle-only weights, remote code:
    422 at once, nothing recorded); then record the model, ``importing``, with
    ``source`` ``<provider>://<repo>@<commit>``, and answer 202 with the operation that
    downloads the files into the platform's storage. The model is ``ready``, its ``uri``
    the folder, once they are on disk; ``failed``, with why, when the registry refuses.
    A registry that is away makes the import wait and retry; when the registry cannot be
    asked now and the commit is not in its cache, 503."""
    accepted = registry.start_import(
        session=session,
        runtime=runtime,
        repo_id=body.repo_id,
        revision=body.revision,
        name=body.name,
        allow_patterns=body.allow_patterns,
        provider=body.provider,
    )
    platform.outbox.wake_after_commit(session)
    add_audit_details(
        request,
        modelId=accepted.model.id,
        provider=accepted.link.provider,
        repoId=accepted.link.external_id,
        revision=accepted.link.revision,
        operationId=accepted.operation.id,
    )
    _accepted(response, accepted.operation.id)
    fields = detail_fields(session, accepted.model)
    return ModelImportAccepted.model_validate(
        {
            **fields,
            "operation_id": accepted.operation.id,
            "degraded": accepted.degraded is not None,
            "degraded_reason": accepted.degraded,
        }
    )


@router.get(
    "/models/search",
    response_model=ModelSearchOut,
    summary="Search the catalog and a registry together",
)
def search_models(
    session: SessionDep,
    runtime: RuntimeDep,
    q: Annotated[
        str, Query(max_length=200, description="what to look for (empty: the newest models)")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=100, description="of each part")] = 20,
    registry_part: Annotated[
        bool,
        Query(alias="registry", description="also search the registry (false: the catalog)"),
    ] = True,
    provider: Annotated[
        str | None, Query(max_length=80, description="the registry (default: hf)")
    ] = None,
) -> ModelSearchOut:
    """Catalog models whose name or description holds ``q``, then the registry's search
    for it, each item marked with its ``source`` (``catalog`` or the registry's name); a
    registry hit lists the catalog models already imported from it. When the registry
    cannot be asked its part is empty and the answer ``degraded``, with why: the
    catalog's part never fails with it."""
    found = registry.search(
        session=session,
        runtime=runtime,
        q=q,
        limit=limit,
        provider=provider,
        include_registry=registry_part,
    )
    items = [
        ModelSearchHitOut(source="catalog", model=m) for m in models_out(session, found.catalog)
    ]
    items += [
        ModelSearchHitOut(
            source=found.provider or "registry",
            registry_model=RegistryModelSummaryOut.model_validate(hit.model_dump()),
            catalog_model_ids=found.imported.get(hit.repo_id, []),
        )
        for hit in found.registry
    ]
    return ModelSearchOut(
        items=items,
        registry_provider=found.provider,
        degraded=found.reason is not None,
        degraded_reason=(
            f"no registry results: {found.reason}" if found.reason is not None else None
        ),
    )


@router.post(
    "/models/{modelId}/export",
    status_code=202,
    response_model=ExportAcceptedOut,
    summary="Export a model to a registry",
    responses={202: {"description": ACCEPTED}},
)
def export_model(
    modelId: str,
    body: ModelExportIn,
    session: SessionDep,
    runtime: RuntimeDep,
    platform: PlatformDep,
    request: Request,
    response: Response,
) -> ExportAcceptedOut:
    """Push the model's files (its folder in the platform's storage: imported or trained)
    to a repository of the registry, as a commit or a pull request, private by default:
    202 with the operation, delivered once whatever the retries (an idempotency key of
    its own goes with the commit). 409 when the model has no files on disk. The commit
    and its URL are recorded on the operation and in the model's ``exports``."""
    link, operation = registry.start_export(
        session=session,
        runtime=runtime,
        model_id=modelId,
        repo_id=body.repo_id,
        private=body.private,
        create_pr=body.create_pr,
        commit_message=body.commit_message,
        provider=body.provider,
    )
    platform.outbox.wake_after_commit(session)
    add_audit_details(
        request, provider=link.provider, repoId=link.external_id, operationId=operation.id
    )
    _accepted(response, operation.id)
    return ExportAcceptedOut(model_id=modelId, export=export_out(link), operation_id=operation.id)


@router.get(
    "/models/{modelId}/registry-links",
    response_model=RegistryLinksOut,
    summary="A model's links to its registry",
)
def get_model_registry_links(
    modelId: str, session: SessionDep, runtime: RuntimeDep
) -> RegistryLinksOut:
    """The registry's pages for the repository the model was imported from, at its pinned
    commit (the model page, the files, the commit), and for each commit an export made;
    empty for a model that never met a registry. When the registry's plugin cannot make
    them, the pages recorded, ``degraded``."""
    views, reason = registry.registry_links(session=session, runtime=runtime, model_id=modelId)
    return RegistryLinksOut(
        model_id=modelId,
        links=[
            RegistryLinkOut(
                kind=v.link.kind,
                url=v.link.url,
                label=v.link.label,
                provider=v.row.provider,
                repo_id=v.row.external_id,
                revision=v.row.revision,
                origin=v.row.kind,
            )
            for v in views
        ],
        degraded=reason is not None,
        degraded_reason=reason,
    )


@router.post(
    "/models/{modelId}/check-updates",
    response_model=UpdateCheckOut,
    summary="Check a model's registry for updates",
)
def check_model_updates(
    modelId: str, session: SessionDep, runtime: RuntimeDep, request: Request
) -> UpdateCheckOut:
    """Compare the pinned commit with the head of the branch the import followed: the
    files added, removed and modified (with sizes), the commits in between, and
    ``updateAvailable``. Never moves the pin (import the new commit to take it). The
    result is recorded on the model. When the registry cannot be asked: the last check
    recorded, ``degraded``, with ``checkedAt``; none recorded: 503. 409 for a model that
    was not imported."""
    view = registry.check_updates(session=session, runtime=runtime, model_id=modelId)
    add_audit_details(
        request,
        repoId=view.link.external_id,
        revision=view.link.revision,
        updateAvailable=view.check.get("update_available"),
        degraded=view.stale_reason is not None,
    )
    return update_check_out(modelId, view)


@router.get(
    "/registry/{provider}/models/{repoId:path}",
    response_model=RegistryMetadataOut,
    summary="A registry's model, before importing it",
)
def get_registry_model(
    provider: str,
    repoId: str,
    session: SessionDep,
    runtime: RuntimeDep,
    revision: Annotated[
        str | None,
        Query(max_length=REVISION_LENGTH, description="branch, tag or commit (default branch)"),
    ] = None,
) -> RegistryMetadataOut:
    """The repository at the revision as the registry describes it: the commit it names,
    card, license, pipeline tag, library, tags, files with sizes (and sha256 where the
    registry lists one), its links, its branches and tags (for a revision picker), and
    the catalog models already imported from it.
    From the provider's cache, ``degraded``, when the registry cannot be asked."""
    if len(repoId) > REPO_ID_LENGTH:
        raise InvalidRequest(f"a repository id is at most {REPO_ID_LENGTH} characters")
    metadata, links = registry.registry_metadata(
        runtime=runtime, provider=provider, repo_id=repoId, revision=revision
    )
    revisions = (
        []
        if metadata.degraded is not None
        else registry.registry_revisions(runtime=runtime, provider=provider, repo_id=repoId)
    )
    imported = list(
        session.scalars(
            select(RegistryModel.model_id).where(
                RegistryModel.provider == provider,
                RegistryModel.kind == registry.KIND_IMPORT,
                RegistryModel.external_id == repoId,
            )
        )
    )
    return RegistryMetadataOut(
        provider=provider,
        repo_id=metadata.repo_id,
        revision=metadata.revision,
        requested_revision=revision,
        license=metadata.license,
        pipeline_tag=metadata.pipeline_tag,
        library=metadata.library,
        tags=list(metadata.tags),
        card=metadata.card,
        files=[RegistryFileOut.model_validate(f.model_dump()) for f in metadata.files],
        last_modified=metadata.last_modified,
        url=metadata.url,
        links=[
            RegistryLinkOut(
                kind=link.kind,
                url=link.url,
                label=link.label,
                provider=provider,
                repo_id=metadata.repo_id,
                revision=metadata.revision,
                origin="registry",
            )
            for link in links
        ],
        revisions=[RegistryRevisionOut.model_validate(r.model_dump()) for r in revisions],
        catalog_model_ids=imported,
        degraded=metadata.degraded is not None,
        degraded_reason=metadata.degraded,
    )
