"""Models from registries (US4): imports at a pinned commit, exports, registry links,
update checks, the search of the catalog and a registry together, and a repository's
metadata before it is imported.

An import is decided when it is asked for and done later. The request resolves the
revision to its commit and has the provider run its checks (names that would land
outside the folder, pickle-only weights, remote code: ``ChecksImports``; a provider
without them is asked for the metadata only), so a refusal is a 422 with nothing
recorded. Then the catalog model (``importing``, its ``source`` naming the commit), its
registry link (the pin and the branch to follow) and an outbox operation are committed
together, and the answer is 202. The worker's long-work lane downloads the commit into
the platform's storage (``<data dir>/storage/models/<model id>``, the folder the model's
``uri`` names once it is ``ready``), reporting progress on the operation; a registry
that is away makes it wait and retry with backoff (the model stays ``importing`` and
says why); one that refuses it, or an attempt budget spent, makes it ``failed``.

Exports go the same way (long work, once per idempotency key); update checks and links
are asked of the provider at once, and an update check the provider cannot answer shows
the last one recorded, marked degraded. Nothing here ever moves an import's pin.
"""

from __future__ import annotations

import fnmatch
import logging
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmops.capabilities.common import Capability
from llmops.capabilities.registry import (
    ChecksImports,
    ExportRequest,
    ImportPhase,
    ImportPlan,
    ImportProgress,
    ImportRequest,
    ListsRevisions,
    RegistryLink,
    RegistryModelMetadata,
    RegistryModelSummary,
    RegistryProvider,
    RegistryRevision,
)
from llmops.db.models import CatalogModel, Operation, RegistryModel, utcnow
from llmops.errors import (
    Conflict,
    IntegrationRejected,
    IntegrationUnavailable,
    LlmopsError,
    NoProviderEnabled,
)
from llmops.integrations import IntegrationRuntime
from llmops.resilience.outbox import Delivery, enqueue
from llmops.services import catalog, governance

log = logging.getLogger(__name__)

T = TypeVar("T")

IMPORT = "model.import"
EXPORT = "model.export"
#: the resource type of the operations (and audit entries of tool actions)
RESOURCE = "model"

#: a catalog model's states while it is imported (the catalog's, which guards them)
IMPORTING = catalog.IMPORTING
READY = "ready"
FAILED = catalog.IMPORT_FAILED

#: a registry link's kinds and states
KIND_IMPORT = "import"
KIND_EXPORT = "export"
PENDING = "pending"
SUCCEEDED = "succeeded"

#: how often long work renews its claim and records its progress
HEARTBEAT_SECONDS = 1.0
#: the most of a model card kept with the catalog model
MAX_CARD_CHARS = 256 * 1024
#: tags kept from the registry (the catalog's limit)
MAX_TAGS = 50


def model_dir(storage_root: Path, model_id: str) -> Path:
    """Where an imported model's files are: the folder its ``uri`` names."""
    return storage_root / "models" / model_id


def default_name(repo_id: str) -> str:
    """A catalog name from a repository id: ``acme/tiny-model`` is ``acme-tiny-model``."""
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in repo_id.replace("/", "-"))
    name = name.lstrip("._-")[:200]
    return name or "model"


#: the ``source`` column of an imported model (its link holds the pin: :func:`source_of`)
SOURCE = "registry"


def source_of(provider: str, repo_id: str, revision: str | None) -> str:
    """An imported model's ``source`` as the API shows it: ``hf://acme/tiny@<commit>``."""
    return f"{provider}://{repo_id}@{revision or ''}"


# -- views ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryView:
    """A catalog model's import link and the operation that brings its files."""

    link: RegistryModel
    operation: Operation | None


def import_link(session: Session, model_id: str) -> RegistryModel | None:
    return session.scalars(
        select(RegistryModel)
        .where(RegistryModel.model_id == model_id, RegistryModel.kind == KIND_IMPORT)
        .order_by(RegistryModel.imported_at.desc())
    ).first()


def registry_views(session: Session, models: Sequence[CatalogModel]) -> dict[str, RegistryView]:
    """The import links of ``models`` (two queries for a whole page)."""
    ids = [m.id for m in models]
    if not ids:
        return {}
    links = session.scalars(
        select(RegistryModel)
        .where(RegistryModel.model_id.in_(ids), RegistryModel.kind == KIND_IMPORT)
        .order_by(RegistryModel.imported_at)
    ).all()
    by_model = {link.model_id: link for link in links}  # the newest wins
    operation_ids = [link.operation_id for link in by_model.values() if link.operation_id]
    operations = {
        op.id: op
        for op in session.scalars(select(Operation).where(Operation.id.in_(operation_ids)))
    }
    return {
        model_id: RegistryView(link, operations.get(link.operation_id or ""))
        for model_id, link in by_model.items()
    }


def exports_of(session: Session, model_id: str) -> list[RegistryModel]:
    return list(
        session.scalars(
            select(RegistryModel)
            .where(RegistryModel.model_id == model_id, RegistryModel.kind == KIND_EXPORT)
            .order_by(RegistryModel.imported_at.desc())
        )
    )


# -- import ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportAccepted:
    model: CatalogModel
    link: RegistryModel
    operation: Operation
    degraded: str | None


def plan_import(
    registry: RegistryProvider, repo_id: str, revision: str, allow_patterns: Sequence[str]
) -> ImportPlan:
    """The provider's plan (its checks ran: a refusal raises), or, from a provider that
    cannot check up front, its metadata at the revision (its checks then run in the
    import, and a refusal fails it)."""
    if isinstance(registry, ChecksImports):
        return registry.check_import(repo_id, revision, allow_patterns=list(allow_patterns))
    metadata = registry.metadata(repo_id, revision)
    files = [
        f
        for f in metadata.files
        if not allow_patterns or any(fnmatch.fnmatch(f.path, p) for p in allow_patterns)
    ]
    return ImportPlan(
        repo_id=repo_id,
        revision=metadata.revision,
        branch=revision if revision != metadata.revision else None,
        files=files,
        metadata=metadata,
        degraded=metadata.degraded,
    )


def start_import(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    repo_id: str,
    revision: str,
    name: str | None,
    allow_patterns: Sequence[str],
    provider: str | None,
) -> ImportAccepted:
    """Check the import with the registry and record it: the model (``importing``), its
    link and the operation that brings its files (the caller commits; the worker
    delivers it). A refusal raises before anything is recorded, a governance policy's
    (the repository's source, its license) too."""
    policy = governance.check_import(session, repo_id)
    provider_name, registry = runtime.registry_provider(provider)
    plan = plan_import(registry, repo_id, revision, allow_patterns)
    metadata = plan.metadata
    governance.check_import_license(policy, repo_id, metadata.license)
    model = catalog.create_model(
        session=session,
        name=name or default_name(repo_id),
        description=f"Imported from {provider_name} {repo_id} at {plan.revision}.",
        task=_cut(metadata.pipeline_tag, 64),
        framework=_cut(metadata.library, 64),
        source=SOURCE,
        status=IMPORTING,
        tags=[t[:256] for t in metadata.tags[:MAX_TAGS]],
    )
    link = RegistryModel(
        model_id=model.id,
        provider=provider_name,
        external_id=repo_id,
        kind=KIND_IMPORT,
        state=PENDING,
        revision=plan.revision,
        branch=plan.branch,
        url=metadata.url,
        details={
            "requested_revision": revision,
            "allow_patterns": list(allow_patterns),
            **_metadata_details(metadata),
            "files": [f.model_dump(mode="json") for f in plan.files],
            "skipped": list(plan.skipped),
            "degraded": plan.degraded,
        },
    )
    operation = _queue_long_work(session, link, IMPORT, f"model-{model.id}-import")
    return ImportAccepted(model, link, operation, plan.degraded)


def deliver_import(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, Any] | None:
    """The outbox handler of :data:`IMPORT`: the pinned commit's files into the model's
    folder, then the model ``ready`` with its files. Holds no database transaction while
    the files travel (SQLite would be locked for minutes)."""
    session = delivery.session
    model_id = str(delivery.payload["modelId"])
    model = session.get(CatalogModel, model_id)
    link = session.get(RegistryModel, delivery.payload["linkId"])
    if model is None or link is None or link.revision is None:
        remove_model_files(runtime.settings.storage_dir, model_id)
        return {"skipped": "the model was deleted"}
    if model.status != IMPORTING or link.state != PENDING:  # an import retried after it failed
        model.status, link.state = IMPORTING, PENDING
    provider, repo_id, revision = link.provider, link.external_id, link.revision
    patterns = list(link.details.get("allow_patterns") or [])
    link_id = link.id
    destination = model_dir(runtime.settings.storage_dir, model_id)
    session.commit()
    _, registry = runtime.registry_provider(
        provider, deadline=runtime.settings.long_work_timeout_seconds
    )

    def run(sink: Callable[[ImportProgress], None]) -> Any:
        request = ImportRequest(
            repo_id=repo_id,
            revision=revision,
            allow_patterns=patterns,
            destination=destination,
            progress=sink,
        )
        return registry.import_model(request)

    result, progress = _long_call(delivery, run, what=f"the import of {repo_id}@{revision}")
    model = session.get(CatalogModel, model_id)
    link = session.get(RegistryModel, link_id)
    if model is None or link is None:  # deleted while its files travelled
        remove_model_files(runtime.settings.storage_dir, model_id)
        return {"skipped": "the model was deleted"}
    if result.revision != revision:
        raise IntegrationRejected(
            f"{provider} imported {repo_id} at {result.revision}, not at the pinned commit "
            f"{revision}"
        )
    now = utcnow()
    model.status = READY
    model.uri = destination.resolve().as_uri()
    model.updated_at = now
    link.state = SUCCEEDED
    link.imported_at = now
    link.details = {
        **link.details,
        **_metadata_details(result.metadata),
        "files": [f.model_dump(mode="json") for f in result.files],
        "skipped": list(result.skipped),
        "degraded": result.degraded,
        "error": None,
    }
    total = sum(f.size_bytes or 0 for f in result.files)
    files = len(result.files)
    delivery.operation.progress = progress or _progress_json(
        ImportProgress(
            phase=ImportPhase.DONE,
            files_total=files,
            files_done=files,
            bytes_total=total,
            bytes_done=total,
        )
    )
    return {
        "revision": result.revision,
        "files": files,
        "bytes": total,
        "uri": model.uri,
        "degraded": result.degraded,
    }


def import_dead(runtime: IntegrationRuntime, delivery: Delivery, reason: str) -> None:
    """The import will not happen (refused, out of attempts, discarded): the model is
    ``failed`` with why, and the files it had placed are removed."""
    session = delivery.session
    model_id = str(delivery.payload["modelId"])
    model = session.get(CatalogModel, model_id)
    link = session.get(RegistryModel, delivery.payload["linkId"])
    if model is not None:
        model.status = FAILED
        model.uri = None
        model.updated_at = utcnow()
    if link is not None:
        link.state = FAILED
        link.details = {**link.details, "error": reason}
    remove_model_files(runtime.settings.storage_dir, model_id)


def remove_model_files(storage_root: Path, model_id: str) -> None:
    """Remove the folder an import placed a model's files in (nothing else)."""
    folder = model_dir(storage_root, model_id)
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)


# -- export ---------------------------------------------------------------------------


def local_folder(storage_root: Path, model: CatalogModel) -> Path | None:
    """The folder of the model's files, when its ``uri`` names one under the platform's
    storage holding a file (an imported or trained model); an export never reads
    anywhere else on the server."""
    if not model.uri:
        return None
    parsed = urlparse(model.uri)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme == "" and model.uri.startswith("/"):
        path = Path(model.uri)
    else:
        return None
    root = storage_root.resolve()
    try:
        folder = path.resolve()
    except OSError:
        return None
    if not folder.is_relative_to(root) or not folder.is_dir():
        return None
    if not any(p.is_file() for p in folder.rglob("*")):
        return None
    return folder


def start_export(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    model_id: str,
    repo_id: str,
    private: bool,
    create_pr: bool,
    commit_message: str,
    provider: str | None,
) -> tuple[RegistryModel, Operation]:
    """Record an export of the model's files (the caller commits; the worker delivers
    it under an idempotency key of its own, so a retry never commits twice).

    :raises Conflict: the model has no files on the platform's disk (yet)."""
    model = catalog.get_model(session=session, model_id=model_id)
    if model.status == IMPORTING:
        raise Conflict(f"model {model.name} is still being imported: export it once it is ready")
    folder = local_folder(runtime.settings.storage_dir, model)
    if folder is None:
        raise Conflict(
            f"model {model.name} has no files on the platform's disk to export (its uri "
            f"{model.uri!r} names no folder of the platform's storage holding files)",
            id=model.id,
        )
    provider_name, _ = runtime.registry_provider(provider)
    link = RegistryModel(
        model_id=model.id,
        provider=provider_name,
        external_id=repo_id,
        kind=KIND_EXPORT,
        state=PENDING,
        details={
            "private": private,
            "create_pr": create_pr,
            "commit_message": commit_message,
            "folder": str(folder),
        },
    )
    operation = _queue_long_work(
        session, link, EXPORT, f"model-{model.id}-export-{uuid.uuid4().hex}"
    )
    return link, operation


def _queue_long_work(session: Session, link: RegistryModel, kind: str, key: str) -> Operation:
    """``link`` recorded with the operation that does its import or export, due at once
    (no request delivers long work: the worker's lane takes it)."""
    session.add(link)
    session.flush()
    operation = enqueue(
        session,
        kind=kind,
        provider=link.provider,
        capability=Capability.REGISTRY.value,
        idempotency_key=key,
        payload={"modelId": link.model_id, "linkId": link.id},
        resource_type=RESOURCE,
        resource_id=link.model_id,
    )
    operation.next_attempt_at = utcnow()
    link.operation_id = operation.id
    session.flush()
    return operation


def deliver_export(runtime: IntegrationRuntime, delivery: Delivery) -> dict[str, Any] | None:
    """The outbox handler of :data:`EXPORT`; the provider finds the commit an earlier
    delivery made by the operation's idempotency key."""
    session = delivery.session
    link = session.get(RegistryModel, delivery.payload["linkId"])
    if link is None:
        return {"skipped": "the model was deleted"}
    details = dict(link.details)
    request = ExportRequest(
        repo_id=link.external_id,
        local_path=Path(details["folder"]),
        commit_message=str(details.get("commit_message") or "Upload from llmops"),
        private=bool(details.get("private", True)),
        create_pr=bool(details.get("create_pr", False)),
        idempotency_key=delivery.operation.idempotency_key,
    )
    provider, link_id = link.provider, link.id
    session.commit()
    _, registry = runtime.registry_provider(
        provider, deadline=runtime.settings.long_work_timeout_seconds
    )
    result, _ = _long_call(
        delivery,
        lambda _sink: registry.export_model(request),
        what=f"the export to {request.repo_id}",
    )
    link = session.get(RegistryModel, link_id)
    if link is None:
        return {"skipped": "the model was deleted", "commit": result.commit}
    link.state = SUCCEEDED
    link.revision = result.commit
    link.url = result.url
    link.imported_at = utcnow()
    link.details = {**link.details, "error": None}
    return {"repoId": result.repo_id, "commit": result.commit, "url": result.url}


def export_dead(delivery: Delivery, reason: str) -> None:
    link = delivery.session.get(RegistryModel, delivery.payload["linkId"])
    if link is not None:
        link.state = FAILED
        link.details = {**link.details, "error": reason}


# -- long calls -----------------------------------------------------------------------


class _Interrupted(Exception):
    """Raised by the progress sink to stop a provider call whose delivery stopped."""


@dataclass
class _Heartbeat:
    """Keeps a long delivery's claim alive and its progress recorded, once a second, from
    a thread of its own; says when the work should stop."""

    delivery: Delivery
    latest: dict[str, Any] | None = None
    stopped: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    _done: threading.Event = field(default_factory=threading.Event)

    def sink(self, progress: ImportProgress) -> None:
        self.latest = _progress_json(progress)
        if self.stopped.is_set():
            raise _Interrupted(self.reason)

    def stop(self, reason: str) -> None:
        self.reason = reason
        self.stopped.set()

    def run(self) -> None:
        while not self._done.wait(HEARTBEAT_SECONDS):
            try:
                alive = self.delivery.heartbeat(self.latest)
            except Exception:  # a failed beat is retried at the next one; the lease is long
                log.warning("could not renew the claim of a long delivery", exc_info=True)
                continue
            if not alive:
                self.stop("its worker stopped, or lost its claim")

    def __enter__(self) -> _Heartbeat:
        self._thread = threading.Thread(target=self.run, name="llmops-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


def _long_call(
    delivery: Delivery, call: Callable[[Callable[[ImportProgress], None]], T], *, what: str
) -> tuple[T, dict[str, Any] | None]:
    """``call(progress_sink)`` with the delivery's claim kept alive; the last progress it
    reported. A call the worker stopped (shutting down, or the claim lost) is an outage:
    the operation is tried again later. A call past its deadline is stopped too (the
    guard gave up on it, its thread would go on)."""
    with _Heartbeat(delivery) as beat:
        try:
            result = call(beat.sink)
        except BaseException as exc:
            reason = beat.reason
            beat.stop("the platform gave up on it")  # an abandoned call stops at its next report
            if isinstance(exc, Exception) and _caused_by_interruption(exc):
                raise IntegrationUnavailable(
                    f"{what} was interrupted ({reason}); it goes on at its next delivery"
                ) from exc
            raise
    return result, beat.latest


def _caused_by_interruption(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _Interrupted):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _progress_json(progress: ImportProgress) -> dict[str, Any]:
    """An import's progress as the API shows it (camelCase)."""
    return {
        "phase": ImportPhase(progress.phase).value,
        "filesTotal": progress.files_total,
        "filesDone": progress.files_done,
        "bytesTotal": progress.bytes_total,
        "bytesDone": progress.bytes_done,
    }


# -- update checks ----------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateView:
    link: RegistryModel
    check: Mapping[str, Any]
    checked_at: datetime | None
    stale_reason: str | None = None


def check_updates(*, session: Session, runtime: IntegrationRuntime, model_id: str) -> UpdateView:
    """Compare the model's pinned commit with the head of the branch its import followed
    (the provider's default branch for a commit), record the result on the model's link,
    and never move the pin. When the registry cannot be asked, the last result recorded,
    marked stale; none recorded: the outage (503)."""
    model = catalog.get_model(session=session, model_id=model_id)
    link = import_link(session, model.id)
    if link is None or link.revision is None:
        raise Conflict(
            f"model {model.name} was not imported from a registry: it has no pinned commit "
            "to compare",
            id=model.id,
        )
    try:
        _, registry = runtime.registry_provider(link.provider)
        check = registry.check_update(link.external_id, link.revision, branch=link.branch)
    except (IntegrationUnavailable, NoProviderEnabled) as exc:
        if link.last_check is None:
            raise
        return UpdateView(link, link.last_check, link.last_checked_at, exc.detail)
    now = utcnow()
    link.last_check = check.model_dump(mode="json")
    link.last_checked_at = now
    session.flush()
    return UpdateView(link, link.last_check, now)


# -- links ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkView:
    row: RegistryModel
    link: RegistryLink


def registry_links(
    *, session: Session, runtime: IntegrationRuntime, model_id: str
) -> tuple[list[LinkView], str | None]:
    """The provider's links for the model's import (at its pinned commit) and for each
    export that made a commit, and why some are only the page recorded (the provider is
    off or failed), or None."""
    model = catalog.get_model(session=session, model_id=model_id)
    rows = [
        row
        for row in session.scalars(
            select(RegistryModel)
            .where(RegistryModel.model_id == model.id)
            .order_by(RegistryModel.kind.desc(), RegistryModel.imported_at)
        )
        if row.kind == KIND_IMPORT or (row.state == SUCCEEDED and row.revision)
    ]
    views: list[LinkView] = []
    reasons: list[str] = []
    for row in rows:
        try:
            _, registry = runtime.registry_provider(row.provider)
            links = registry.links(row.external_id, row.revision)
        except LlmopsError as exc:
            reasons.append(exc.detail)
            links = (
                [RegistryLink(kind="model-page", url=row.url, label=row.external_id)]
                if row.url
                else []
            )
        views += [LinkView(row, link) for link in links]
    return views, "; ".join(dict.fromkeys(reasons)) or None


# -- search and metadata ----------------------------------------------------------------


@dataclass(frozen=True)
class SearchView:
    catalog: list[CatalogModel]
    registry: list[RegistryModelSummary]
    provider: str | None
    imported: dict[str, list[str]]
    reason: str | None


def search(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    q: str,
    limit: int,
    provider: str | None,
    include_registry: bool,
) -> SearchView:
    """Catalog models matching ``q`` (name, description) and the registry's search for
    it. The registry's part is empty, with why, when it cannot be asked: the catalog's
    part never fails with it."""
    found = catalog.list_models(session=session, q=q, limit=limit).items
    if not include_registry:
        return SearchView(found, [], None, {}, None)
    if provider is None and not runtime.has_provider(Capability.REGISTRY):
        return SearchView(found, [], None, {}, None)
    name: str | None = provider
    try:
        name, registry = runtime.registry_provider(provider)
        hits = registry.search(q, limit=limit)
    except LlmopsError as exc:
        return SearchView(found, [], name, {}, exc.detail)
    imported: dict[str, list[str]] = {}
    repos = sorted({hit.repo_id for hit in hits})
    if repos:
        for repo_id, model_id in session.execute(
            select(RegistryModel.external_id, RegistryModel.model_id).where(
                RegistryModel.provider == name,
                RegistryModel.kind == KIND_IMPORT,
                RegistryModel.external_id.in_(repos),
            )
        ):
            imported.setdefault(repo_id, []).append(model_id)
    return SearchView(found, hits, name, imported, None)


def registry_metadata(
    *, runtime: IntegrationRuntime, provider: str, repo_id: str, revision: str | None
) -> tuple[RegistryModelMetadata, list[RegistryLink]]:
    """A repository at a revision as the registry describes it (card, license, files),
    with its links at the commit the revision named."""
    _, registry = runtime.registry_provider(provider)
    metadata = registry.metadata(repo_id, revision)
    return metadata, registry.links(repo_id, metadata.revision)


def registry_revisions(
    *, runtime: IntegrationRuntime, provider: str, repo_id: str
) -> list[RegistryRevision]:
    """The repository's branches and tags, for a revision picker: empty when the
    registry does not list them (:class:`ListsRevisions`) or cannot be asked now (the
    picker then takes a revision typed in)."""
    _, registry = runtime.registry_provider(provider)
    if not isinstance(registry, ListsRevisions):
        return []
    try:
        return registry.revisions(repo_id)
    except (IntegrationUnavailable, IntegrationRejected) as exc:
        log.info("no revisions of %s from %s: %s", repo_id, provider, exc)
        return []


# -- helpers --------------------------------------------------------------------------


def _metadata_details(metadata: RegistryModelMetadata) -> dict[str, Any]:
    card = metadata.card
    return {
        "license": metadata.license,
        "pipeline_tag": metadata.pipeline_tag,
        "library": metadata.library,
        "tags": list(metadata.tags),
        "last_modified": metadata.last_modified.isoformat() if metadata.last_modified else None,
        "card": card[:MAX_CARD_CHARS] if card is not None else None,
    }


def _cut(value: str | None, length: int) -> str | None:
    return value[:length] if value is not None else None
