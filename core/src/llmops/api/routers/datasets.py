"""Catalog datasets, their files and their versions (with a versioning plugin: every
upload makes a version; versions are listed, compared file by file and row by row, and
restored as a new version)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, Response, UploadFile

from llmops.api.deps import Cursor, Limit, PlatformDep, RuntimeDep, SessionDep
from llmops.api.errors import PROBLEM, PROBLEM_SCHEMA
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.schemas import (
    DatasetCreate,
    DatasetDetail,
    DatasetFile,
    DatasetOut,
    ListPage,
)
from llmops.api.schemas_datasets import (
    DatasetVersionCreate,
    DatasetVersionDiffOut,
    DatasetVersionList,
    DatasetVersionOut,
    FileDiffOut,
    RowDiffOut,
    UploadResult,
)
from llmops.api.security import add_audit_details
from llmops.db.models import DatasetVersion
from llmops.errors import LlmopsError
from llmops.platform import Platform
from llmops.services import catalog, dataset_versions
from llmops.services.dataset_versions import MadeVersion
from llmops.services.writes import commit_and_deliver

router = APIRouter(route_class=AnswerKeepingRoute, prefix="/catalog/datasets", tags=["catalog"])


@router.post("", status_code=201, response_model=DatasetOut, summary="Create a dataset")
def create_dataset(body: DatasetCreate, session: SessionDep) -> DatasetOut:
    return DatasetOut.model_validate(catalog.create_dataset(session=session, **body.model_dump()))


@router.get("", response_model=ListPage[DatasetOut], summary="List datasets")
def list_datasets(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=200, description="in name or description")] = None,
    sort: Annotated[str, Query(pattern=r"^-?(name|createdAt|updatedAt)$")] = "-createdAt",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListPage[DatasetOut]:
    page = catalog.list_datasets(session=session, q=q, sort=sort, limit=limit, cursor=cursor)
    return ListPage[DatasetOut](
        items=[DatasetOut.model_validate(d) for d in page.items], next_cursor=page.next_cursor
    )


@router.get("/{datasetId}", response_model=DatasetDetail, summary="Get a dataset and its files")
def get_dataset(datasetId: str, session: SessionDep, platform: PlatformDep) -> DatasetDetail:
    dataset = catalog.get_dataset(session=session, dataset_id=datasetId)
    files = catalog.list_dataset_files(
        storage_root=platform.settings.storage_dir, dataset_id=dataset.id
    )
    return DatasetDetail(
        **DatasetOut.model_validate(dataset).model_dump(),
        files=[DatasetFile(path=f["path"], size_bytes=f["sizeBytes"]) for f in files],
    )


@router.delete("/{datasetId}", status_code=204, response_class=Response, summary="Delete a dataset")
def delete_dataset(datasetId: str, session: SessionDep, platform: PlatformDep) -> Response:
    catalog.delete_dataset(
        session=session, dataset_id=datasetId, storage_root=platform.settings.storage_dir
    )
    return Response(status_code=204)


@router.post(
    "/{datasetId}/files",
    status_code=201,
    response_model=UploadResult,
    summary="Upload a file into the dataset",
    responses={413: {"description": "Too large", "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}}}},
)
def upload_dataset_file(
    datasetId: str,
    session: SessionDep,
    platform: PlatformDep,
    file: Annotated[UploadFile, File(description="the file; an archive with extract=true")],
    extract: Annotated[bool, Query(description="unpack a .zip/.tar archive after checks")] = False,
    pipelineId: Annotated[
        str | None,
        Query(
            max_length=200,
            description="the pipeline whose stage uploads (its LLMOPS_PIPELINE_ID): the version "
            "the upload makes records that the pipeline wrote it",
        ),
    ] = None,
) -> UploadResult:
    settings = platform.settings
    dataset_versions.check_pipeline(session, pipelineId)  # refused before a byte is stored
    dataset, written = catalog.upload_dataset_file(
        session=session,
        dataset_id=datasetId,
        filename=file.filename or "upload",
        source=file.file,
        storage_root=settings.storage_dir,
        max_bytes=settings.max_upload_bytes,
        extract=extract,
        max_archive_members=settings.max_archive_members,
        max_archive_bytes=settings.max_archive_bytes,
    )
    if not dataset_versions.versioning_enabled(platform.runtime):
        return UploadResult(dataset=DatasetOut.model_validate(dataset), written=written)
    session.commit()  # the files are the dataset's now, whatever becomes of the version
    shown = DatasetOut.model_validate(dataset)
    try:
        made = dataset_versions.create_version(
            session=session,
            runtime=platform.runtime,
            storage_root=settings.storage_dir,
            dataset_id=dataset.id,
            message=f"Upload {', '.join(written[:3])}" + (" ..." if len(written) > 3 else ""),
            pipeline_id=pipelineId,
        )
    except LlmopsError as exc:
        session.rollback()
        return UploadResult(
            dataset=shown,
            written=written,
            degraded=True,
            degraded_reason=f"the files are stored but not versioned: {exc.detail}",
        )
    version = _delivered(made, session, platform)
    return UploadResult(
        dataset=shown,
        written=written,
        version=version,
        degraded=version.degraded,
        degraded_reason=version.degraded_reason,
    )


# -- versions --------------------------------------------------------------------------------


def version_out(row: DatasetVersion) -> DatasetVersionOut:
    return DatasetVersionOut.model_validate(row)


def _delivered(made: MadeVersion, session: SessionDep, platform: Platform) -> DatasetVersionOut:
    """The version, after its push was tried at once (``degraded`` while it waits)."""
    reason = None
    if made.push is not None:
        try:
            result = commit_and_deliver(
                session=session,
                outbox=platform.outbox,
                runtime=platform.runtime,
                operation=made.push,
            )
            reason = result.reason
        except LlmopsError as exc:  # refused for good: the version stays, its push failed
            reason = f"its push was refused: {exc.detail}"
        session.refresh(made.version)
    out = version_out(made.version)
    if reason is not None:
        out = out.model_copy(
            update={
                "degraded": True,
                "degraded_reason": f"versioned locally; the push to the remote {reason}",
                "operation_id": made.push.id if made.push is not None else None,
            }
        )
    return out


@router.post(
    "/{datasetId}/versions",
    status_code=201,
    response_model=DatasetVersionOut,
    summary="Make a version of the dataset as it is now",
    responses={200: {"model": DatasetVersionOut, "description": "Nothing changed: that version"}},
)
def create_dataset_version(
    datasetId: str,
    body: DatasetVersionCreate,
    session: SessionDep,
    platform: PlatformDep,
    request: Request,
    response: Response,
) -> DatasetVersionOut:
    """Version the dataset's files with the versioning plugin (committed by the tool at
    once; pushed to its remote through the retry queue: a remote that is away makes the
    answer ``degraded`` with the push pending, nothing lost). Files that did not change
    since a version give that version back, 200. 409 without a versioning plugin."""
    made = dataset_versions.create_version(
        session=session,
        runtime=platform.runtime,
        storage_root=platform.settings.storage_dir,
        dataset_id=datasetId,
        message=body.message,
        tags=body.tags,
        idempotency_key=request.headers.get("Idempotency-Key"),
        pipeline_id=body.pipeline_id,
    )
    add_audit_details(request, versionId=made.version.id, number=made.version.number)
    if not made.created:
        response.status_code = 200
    return _delivered(made, session, platform)


@router.get(
    "/{datasetId}/versions", response_model=DatasetVersionList, summary="List a dataset's versions"
)
def list_dataset_versions(datasetId: str, session: SessionDep) -> DatasetVersionList:
    """Newest first."""
    rows = dataset_versions.list_versions(session=session, dataset_id=datasetId)
    return DatasetVersionList(items=[version_out(r) for r in rows])


@router.get(
    "/{datasetId}/versions/{versionId}",
    response_model=DatasetVersionOut,
    summary="Get a dataset version",
)
def get_dataset_version(datasetId: str, versionId: str, session: SessionDep) -> DatasetVersionOut:
    """By its id or its number (``3`` or ``v3``)."""
    return version_out(
        dataset_versions.get_version(session=session, dataset_id=datasetId, version_id=versionId)
    )


@router.get(
    "/{datasetId}/versions/{versionId}/diff",
    response_model=DatasetVersionDiffOut,
    summary="Compare two versions of a dataset",
)
def diff_dataset_versions(
    datasetId: str,
    versionId: str,
    session: SessionDep,
    runtime: RuntimeDep,
    platform: PlatformDep,
    against: Annotated[
        str, Query(max_length=40, description="the version to compare with (id or number)")
    ],
    key: Annotated[
        str | None,
        Query(max_length=200, description="match rows by this field (default: the dataset's)"),
    ] = None,
    path: Annotated[
        str | None, Query(max_length=1000, description="only this file (to page its rows)")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="of the row changes")] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="row changes a page")] = 50,
) -> DatasetVersionDiffOut:
    """The files added, removed and modified from ``against`` to this version, with
    their sizes; for JSONL and CSV files also the rows added, removed and changed, counted
    in full, and a page of them (matched by ``key``, else the dataset's ``rowKey``, else
    by the rows' content: then a row is added or removed, never changed)."""
    with tempfile.TemporaryDirectory(prefix="llmops-diff-", dir=_scratch(platform)) as scratch:
        view = dataset_versions.diff_versions(
            session=session,
            runtime=runtime,
            dataset_id=datasetId,
            version_id=versionId,
            against=against,
            key=key,
            path=path,
            offset=offset,
            limit=limit,
            work_dir=Path(scratch),
        )
    files = [
        FileDiffOut(
            path=f.path,
            change=f.change.value,
            size_before=f.size_before,
            size_after=f.size_after,
            rows=RowDiffOut.model_validate(f.rows.model_dump()) if f.rows is not None else None,
        )
        for f in view.files
    ]
    return DatasetVersionDiffOut(
        dataset_id=datasetId,
        from_version=version_out(view.before),
        to_version=version_out(view.after),
        files=files,
        files_added=sum(f.change == "added" for f in files),
        files_removed=sum(f.change == "removed" for f in files),
        files_modified=sum(f.change == "modified" for f in files),
    )


def _scratch(platform: Platform) -> Path:
    folder = platform.settings.data_dir / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@router.post(
    "/{datasetId}/versions/{versionId}/restore",
    status_code=201,
    response_model=DatasetVersionOut,
    summary="Restore a dataset version",
)
def restore_dataset_version(
    datasetId: str,
    versionId: str,
    session: SessionDep,
    platform: PlatformDep,
    request: Request,
) -> DatasetVersionOut:
    """Put the version's files back in the dataset (its files are then exactly those)
    and record that as a new version, ``restoredFromId`` naming this one; the versions
    in between stay (history is never rewritten)."""
    made = dataset_versions.restore_version(
        session=session,
        runtime=platform.runtime,
        storage_root=platform.settings.storage_dir,
        dataset_id=datasetId,
        version_id=versionId,
    )
    add_audit_details(
        request, versionId=made.version.id, restoredFromId=made.version.restored_from_id
    )
    return _delivered(made, session, platform)
