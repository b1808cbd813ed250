"""Dataset versions (US5): a version on every upload and on demand, listed, compared file
by file and row by row, restored (as a new version: history is never rewritten).

The versioning plugin (DVC, ...) keeps the content; the platform keeps one row per version
(``dataset_versions``: its number, parent, author, message, tags, file count, size,
checksum, and where its push to the tool's remote is). A version is made in the request
that asks for it (the tool commits locally); pushing it to the tool's remote is a write to
the outbox (:data:`PUSH`), so a remote that is away delays the push and loses nothing, and
the idempotency key of the operation keeps a retried push from uploading twice.

Versions of one dataset are made one at a time in this process (a lock per dataset around
the tool's commit and the row's number); versions of different datasets in parallel.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmops.auth import current_principal
from llmops.capabilities.common import Capability
from llmops.capabilities.versioning import (
    ChangeKind,
    PushesVersions,
    VersionDiff,
    VersioningProvider,
    VersionSpec,
)
from llmops.db.models import DatasetVersion, Operation, WorkflowPipeline, utcnow
from llmops.errors import Conflict, InvalidRequest, NotFound
from llmops.integrations import IntegrationRuntime
from llmops.resilience.outbox import Delivery, enqueue
from llmops.services import catalog

if TYPE_CHECKING:
    from llmops.rowdiff import RowDiff

#: the outbox operation that pushes a version to the tool's remote
PUSH = "dataset.push"
RESOURCE = "dataset-version"
#: a version's ``status``
READY = "ready"
#: a version's ``push_state``
PUSH_PENDING, PUSHED, PUSH_FAILED = "pending", "pushed", "failed"

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def _one_at_a_time(dataset_id: str) -> Iterator[None]:
    with _locks_guard:
        lock = _locks.setdefault(dataset_id, threading.Lock())
    with lock:
        yield


@dataclass(frozen=True)
class MadeVersion:
    """A version a request asked for: ``created`` False when the tool found the same
    content already versioned (or the same idempotency key) and returned that version."""

    version: DatasetVersion
    push: Operation | None
    created: bool


def versioning_enabled(runtime: IntegrationRuntime) -> bool:
    return runtime.has_provider(Capability.VERSIONING)


def _deadline(runtime: IntegrationRuntime) -> float:
    """A versioning call's deadline: a version, a restore, a diff or a push of a large
    dataset takes as long as its files need, not a request's few seconds."""
    return runtime.settings.long_work_timeout_seconds


def check_pipeline(session: Session, pipeline_id: str | None) -> None:
    """:raises InvalidRequest: ``pipeline_id`` (a version's writer) names no pipeline."""
    if pipeline_id is not None and session.get(WorkflowPipeline, pipeline_id) is None:
        raise InvalidRequest(f"there is no pipeline {pipeline_id}", parameter="pipelineId")


def latest_version(session: Session, dataset_id: str) -> DatasetVersion | None:
    return session.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset_id)
        .order_by(DatasetVersion.number.desc())
        .limit(1)
    ).first()


def create_version(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    storage_root: Path,
    dataset_id: str,
    message: str = "",
    tags: dict[str, str] | None = None,
    idempotency_key: str | None = None,
    restored_from: DatasetVersion | None = None,
    pipeline_id: str | None = None,
) -> MadeVersion:
    """Version the dataset's files as they are now and commit the row (with its push in
    the outbox when the tool keeps a remote). The caller delivers ``push``.

    :param pipeline_id: the pipeline whose stage makes it (the version records that the
        pipeline wrote it; files that did not change give back the version they are).
    :raises NoProviderEnabled: no versioning plugin is on (409).
    :raises InvalidRequest: ``pipeline_id`` names no pipeline.
    """
    dataset = catalog.get_dataset(session=session, dataset_id=dataset_id)
    check_pipeline(session, pipeline_id)
    provider_name, provider = runtime.versioning_provider(deadline=_deadline(runtime))
    source = catalog.dataset_dir(storage_root, dataset.id)
    source.mkdir(parents=True, exist_ok=True)
    with _one_at_a_time(dataset.id):
        info = provider.create_version(
            VersionSpec(
                dataset_id=dataset.id,
                source_path=source,
                message=message,
                tags=dict(tags or {}),
                idempotency_key=idempotency_key,
            )
        )
        known = session.scalars(
            select(DatasetVersion).where(
                DatasetVersion.dataset_id == dataset.id,
                DatasetVersion.provider == provider_name,
                DatasetVersion.external_id == info.version_id,
            )
        ).first()
        if known is not None:
            session.commit()
            return MadeVersion(known, None, False)
        parent = latest_version(session, dataset.id)
        principal = current_principal.get()
        row = DatasetVersion(
            dataset_id=dataset.id,
            number=(parent.number + 1) if parent is not None else 1,
            provider=provider_name,
            external_id=info.version_id,
            message=message,
            status=READY,
            file_count=info.file_count,
            size_bytes=info.size_bytes,
            checksum=info.checksum,
            parent_id=parent.id if parent is not None else None,
            created_at=utcnow(),
            author=principal.name if principal is not None else "system",
            author_key_id=principal.key_id if principal is not None else None,
            tags=dict(tags or {}),
            restored_from_id=restored_from.id if restored_from is not None else None,
            pipeline_id=pipeline_id,
        )
        session.add(row)
        session.flush()
        push = None
        if isinstance(provider, PushesVersions):
            push = enqueue(
                session,
                kind=PUSH,
                provider=provider_name,
                capability=Capability.VERSIONING.value,
                idempotency_key=f"dataset-version-{row.id}-push",
                payload={"versionId": row.id},
                resource_type=RESOURCE,
                resource_id=row.id,
            )
            row.push_state, row.push_operation_id = PUSH_PENDING, push.id
        session.commit()  # under the lock: the next version's number follows this one
    return MadeVersion(row, push, True)


def list_versions(*, session: Session, dataset_id: str) -> list[DatasetVersion]:
    """Newest first."""
    catalog.get_dataset(session=session, dataset_id=dataset_id)
    return list(
        session.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset_id)
            .order_by(DatasetVersion.number.desc())
        )
    )


def get_version(*, session: Session, dataset_id: str, version_id: str) -> DatasetVersion:
    """A version by its id or its number (``3``, ``v3``)."""
    catalog.get_dataset(session=session, dataset_id=dataset_id)
    row = session.get(DatasetVersion, version_id)
    if row is None:
        number = version_id.removeprefix("v")
        if number.isdigit():
            row = session.scalars(
                select(DatasetVersion).where(
                    DatasetVersion.dataset_id == dataset_id,
                    DatasetVersion.number == int(number),
                )
            ).first()
    if row is None or row.dataset_id != dataset_id:
        raise NotFound(f"dataset {dataset_id} has no version {version_id!r}", id=version_id)
    return row


def _provider(runtime: IntegrationRuntime, row: DatasetVersion) -> VersioningProvider:
    _, provider = runtime.versioning_provider(row.provider, deadline=_deadline(runtime))
    return provider


# -- restore ---------------------------------------------------------------------------------


def restore_version(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    storage_root: Path,
    dataset_id: str,
    version_id: str,
) -> MadeVersion:
    """Put the version's files back in the dataset (its folder then holds exactly them)
    and make a new version of that content, ``restoredFromId`` naming the old one. The
    versions in between stay: history is never rewritten."""
    old = get_version(session=session, dataset_id=dataset_id, version_id=version_id)
    provider = _provider(runtime, old)
    dataset = catalog.get_dataset(session=session, dataset_id=dataset_id)
    target = catalog.dataset_dir(storage_root, dataset.id)
    staging = target.with_name(f".{target.name}.restore-{uuid.uuid4().hex[:8]}")
    with _one_at_a_time(dataset.id):
        try:
            provider.restore(dataset.id, str(old.external_id), staging)
            staging.mkdir(parents=True, exist_ok=True)
            _swap(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    catalog.refresh_dataset_stats(dataset, target)
    return create_version(
        session=session,
        runtime=runtime,
        storage_root=storage_root,
        dataset_id=dataset.id,
        message=f"Restore version {old.number}",
        tags={"llmops.restored_from": f"v{old.number}"},
        restored_from=old,
    )


def _swap(staging: Path, target: Path) -> None:
    """``target`` replaced by ``staging`` (two renames: a reader sees the old folder or
    the new one, not a mix)."""
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        if old.exists():
            old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


# -- diff ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileDiffView:
    path: str
    change: ChangeKind
    size_before: int | None
    size_after: int | None
    rows: RowDiff | None


@dataclass(frozen=True)
class VersionDiffView:
    before: DatasetVersion
    after: DatasetVersion
    files: list[FileDiffView]
    key: str | None


def diff_versions(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    dataset_id: str,
    version_id: str,
    against: str,
    key: str | None = None,
    path: str | None = None,
    offset: int = 0,
    limit: int = 50,
    work_dir: Path,
) -> VersionDiffView:
    """What changed from ``against`` to ``version_id``: the files added, removed and
    modified (with sizes), and for JSONL and CSV files the rows added, removed and changed
    (matched by ``key``, else the dataset's row key, else by row content), a page of
    them (``offset``/``limit``; with ``path`` only that file's rows)."""
    after = get_version(session=session, dataset_id=dataset_id, version_id=version_id)
    before = get_version(session=session, dataset_id=dataset_id, version_id=against)
    if before.provider != after.provider:
        raise Conflict("the two versions were made by different versioning plugins")
    dataset = catalog.get_dataset(session=session, dataset_id=dataset_id)
    key = key or dataset.row_key
    provider = _provider(runtime, after)
    diff: VersionDiff = provider.diff(dataset_id, str(before.external_id), str(after.external_id))
    changes = sorted(diff.changes, key=lambda c: c.path)
    if path is not None:
        changes = [c for c in changes if c.path == path]
        if not changes:
            raise InvalidRequest(f"{path!r} did not change between the two versions", path=path)
    from llmops.rowdiff import diff_rows, row_format  # the diff's rows only when asked

    tabular = [c for c in changes if row_format(c.path) is not None]
    rows: dict[str, RowDiff] = {}
    if tabular:
        sides = work_dir / f"diff-{uuid.uuid4().hex[:12]}"
        try:
            provider.restore(dataset_id, str(before.external_id), sides / "before")
            provider.restore(dataset_id, str(after.external_id), sides / "after")
            for change in tabular:
                fmt = row_format(change.path)
                assert fmt is not None
                old = sides / "before" / change.path
                new = sides / "after" / change.path
                rows[change.path] = diff_rows(
                    old if change.change is not ChangeKind.ADDED else None,
                    new if change.change is not ChangeKind.REMOVED else None,
                    fmt,
                    key=key,
                    offset=offset,
                    limit=limit,
                    work_dir=sides,
                )
        finally:
            shutil.rmtree(sides, ignore_errors=True)
    return VersionDiffView(
        before=before,
        after=after,
        files=[
            FileDiffView(c.path, c.change, c.size_before, c.size_after, rows.get(c.path))
            for c in changes
        ],
        key=key,
    )


# -- push ------------------------------------------------------------------------------------


def deliver_push(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, Any] | None:
    """The outbox handler of :data:`PUSH`: the version's data to the tool's remote (a
    version already there is not sent again)."""
    session = delivery.session
    row = session.get(DatasetVersion, delivery.payload["versionId"])
    if row is None:
        return {"skipped": "the dataset was deleted"}
    dataset_id, external_id, provider_name, row_id = (
        row.dataset_id,
        str(row.external_id),
        row.provider,
        row.id,
    )
    session.commit()
    _, provider = runtime.versioning_provider(provider_name, deadline=_deadline(runtime))
    if not isinstance(provider, PushesVersions):
        return {"skipped": f"{provider_name} keeps no remote"}
    result = provider.push_version(dataset_id, external_id)
    row = session.get(DatasetVersion, row_id)
    if row is not None:
        row.push_state = PUSHED
    return result.model_dump(mode="json")


def push_dead(delivery: Delivery, reason: str) -> None:
    row = delivery.session.get(DatasetVersion, delivery.payload["versionId"])
    if row is not None:
        row.push_state = PUSH_FAILED
