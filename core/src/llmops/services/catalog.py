"""The catalog: models and datasets, and files uploaded into platform storage."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llmops.db.models import CatalogModel, Dataset, utcnow
from llmops.errors import Conflict, InvalidRequest, NotFound
from llmops.services import storage
from llmops.services.pagination import Page, paginate

MODEL_SORTS = {
    "name": CatalogModel.name,
    "createdAt": CatalogModel.created_at,
    "updatedAt": CatalogModel.updated_at,
}
DATASET_SORTS = {
    "name": Dataset.name,
    "createdAt": Dataset.created_at,
    "updatedAt": Dataset.updated_at,
}


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# -- models ---------------------------------------------------------------------------


def create_model(*, session: Session, **fields: Any) -> CatalogModel:
    model = CatalogModel(**fields)
    session.add(model)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"a model named {fields.get('name')!r} already exists") from exc
    return model


def get_model(*, session: Session, model_id: str) -> CatalogModel:
    model = session.get(CatalogModel, model_id)
    if model is None:
        raise NotFound(f"no model with id {model_id!r}", resource="model", id=model_id)
    return model


def list_models(
    *,
    session: Session,
    q: str | None = None,
    task: str | None = None,
    framework: str | None = None,
    status: str | None = None,
    sort: str = "-createdAt",
    limit: int = 50,
    cursor: str | None = None,
) -> Page[CatalogModel]:
    stmt: Select[tuple[CatalogModel]] = select(CatalogModel)
    if q:
        pattern = _like(q)
        stmt = stmt.where(
            or_(
                CatalogModel.name.ilike(pattern, escape="\\"),
                CatalogModel.description.ilike(pattern, escape="\\"),
            )
        )
    if task:
        stmt = stmt.where(CatalogModel.task == task)
    if framework:
        stmt = stmt.where(CatalogModel.framework == framework)
    if status:
        stmt = stmt.where(CatalogModel.status == status)
    return paginate(
        session,
        stmt,
        sort=sort,
        columns=MODEL_SORTS,
        id_column=CatalogModel.id,
        limit=limit,
        cursor=cursor,
    )


#: a model's statuses while a registry import brings its files, and after it failed: set
#: by services/registry.py only, and only it may change them
IMPORTING = "importing"
IMPORT_FAILED = "failed"
IMPORT_STATUSES = frozenset({IMPORTING, IMPORT_FAILED})


def update_model(*, session: Session, model_id: str, changes: dict[str, Any]) -> CatalogModel:
    """Apply ``changes``; 409 for a status change of a model whose import is under way
    or failed (it is ready when its files are, and a failed import is imported again),
    and for setting one of those statuses by hand."""
    model = get_model(session=session, model_id=model_id)
    status = changes.get("status")
    if status is not None and status != model.status:
        if model.status in IMPORT_STATUSES:
            raise Conflict(
                f"model {model.name} is {model.status} (a registry import): its status "
                "follows the import; import it again to retry a failed one",
                id=model.id,
            )
        if status in IMPORT_STATUSES:
            raise Conflict(f"status {status!r} is set by a registry import only", id=model.id)
    for key, value in changes.items():
        setattr(model, key, value)
    model.updated_at = utcnow()
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"a model named {changes.get('name')!r} already exists") from exc
    return model


def delete_model(*, session: Session, model_id: str) -> None:
    model = get_model(session=session, model_id=model_id)
    session.delete(model)
    session.flush()


# -- datasets -------------------------------------------------------------------------


def dataset_dir(storage_root: Path, dataset_id: str) -> Path:
    return storage_root / "datasets" / dataset_id / "files"


def create_dataset(*, session: Session, **fields: Any) -> Dataset:
    dataset = Dataset(**fields)
    session.add(dataset)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"a dataset named {fields.get('name')!r} already exists") from exc
    return dataset


def get_dataset(*, session: Session, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset with id {dataset_id!r}", resource="dataset", id=dataset_id)
    return dataset


def list_datasets(
    *,
    session: Session,
    q: str | None = None,
    sort: str = "-createdAt",
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Dataset]:
    stmt: Select[tuple[Dataset]] = select(Dataset)
    if q:
        pattern = _like(q)
        stmt = stmt.where(
            or_(
                Dataset.name.ilike(pattern, escape="\\"),
                Dataset.description.ilike(pattern, escape="\\"),
            )
        )
    return paginate(
        session,
        stmt,
        sort=sort,
        columns=DATASET_SORTS,
        id_column=Dataset.id,
        limit=limit,
        cursor=cursor,
    )


def delete_dataset(*, session: Session, dataset_id: str, storage_root: Path) -> None:
    dataset = get_dataset(session=session, dataset_id=dataset_id)
    session.execute(delete(Dataset).where(Dataset.id == dataset.id))
    session.flush()
    shutil.rmtree(storage_root / "datasets" / dataset_id, ignore_errors=True)


def list_dataset_files(*, storage_root: Path, dataset_id: str) -> list[dict[str, Any]]:
    root = dataset_dir(storage_root, dataset_id)
    if not root.exists():
        return []
    return [
        {"path": p.relative_to(root).as_posix(), "sizeBytes": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".upload-")
    ]


def upload_dataset_file(
    *,
    session: Session,
    dataset_id: str,
    filename: str,
    source: BinaryIO,
    storage_root: Path,
    max_bytes: int,
    extract: bool,
    max_archive_members: int,
    max_archive_bytes: int,
) -> tuple[Dataset, list[str]]:
    """Store an uploaded file (or a checked archive's contents) in the dataset's folder.

    Nothing is left behind when the upload is refused: the partial file is removed and
    the dataset row is unchanged.
    """
    dataset = get_dataset(session=session, dataset_id=dataset_id)
    name = storage.safe_filename(filename)
    root = dataset_dir(storage_root, dataset.id)
    tmp, _size = storage.stream_to_file(source, root.parent / "incoming", limit=max_bytes)
    try:
        if extract:
            if not storage.is_archive(name):
                raise InvalidRequest(
                    f"{name!r} is not an archive (.zip or .tar[.gz|.bz2|.xz])", parameter="extract"
                )
            storage.check_archive(
                tmp, name, max_members=max_archive_members, max_bytes=max_archive_bytes
            )
            staging = root.parent / "incoming" / f"extract-{tmp.name}"
            try:
                stored = storage.extract_archive(tmp, name, staging)
                for rel in stored.files:
                    target = storage.ensure_inside(root, root / rel)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    (staging / rel).replace(target)
                written = stored.files
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        else:
            root.mkdir(parents=True, exist_ok=True)
            target = storage.ensure_inside(root, root / name)
            tmp.replace(target)
            written = [name]
    finally:
        tmp.unlink(missing_ok=True)
    refresh_dataset_stats(dataset, root)
    session.flush()
    return dataset, written


def refresh_dataset_stats(dataset: Dataset, folder: Path) -> None:
    """The dataset's file count and size as its folder holds them now."""
    dataset.file_count, dataset.size_bytes = storage.directory_stats(folder)
    dataset.updated_at = utcnow()
