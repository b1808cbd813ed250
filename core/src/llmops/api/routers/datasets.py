"""Catalog datasets and their files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Response, UploadFile

from llmops.api.deps import Cursor, Limit, PlatformDep, SessionDep
from llmops.api.errors import PROBLEM, PROBLEM_SCHEMA
from llmops.api.schemas import (
    DatasetCreate,
    DatasetDetail,
    DatasetFile,
    DatasetOut,
    ListPage,
    UploadResult,
)
from llmops.services import catalog

router = APIRouter(prefix="/catalog/datasets", tags=["catalog"])


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
) -> UploadResult:
    settings = platform.settings
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
    return UploadResult(dataset=DatasetOut.model_validate(dataset), written=written)
