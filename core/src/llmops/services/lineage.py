"""One lineage graph for the whole platform (US5): dataset versions, the training jobs
that trained on them, the jobs' pipelines and experiment runs, the models they produced,
the endpoints serving those models, and the pipelines that read or wrote a version, read
from the platform's own rows.

A node is named ``<kind>:<id>``; the graph is walked both ways from the node asked for,
breadth first, up to a number of nodes. Edges point the way data flows:

* ``dataset-version`` -> ``dataset``: ``version-of``; a version -> its parent:
  ``derived-from``; a restore -> the version it brought back: ``restored-from``
* ``dataset-version`` -> ``training-job``: ``trained`` (the version the job pinned)
* ``model`` -> ``training-job``: ``fine-tuned`` (the job's base model)
* ``training-job`` -> ``pipeline``: ``ran-as``; -> ``experiment-run``: ``tracked-by``;
  -> ``model``: ``produced`` (the model registered from the job's output)
* ``model`` -> ``serving-endpoint``: ``served-by``
* ``dataset-version`` -> ``pipeline``: ``read-by`` (an input the pipeline pinned);
  ``pipeline`` -> ``dataset-version``: ``wrote`` (a version its stage made)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmops.db.models import (
    CatalogModel,
    Dataset,
    DatasetVersion,
    ExperimentRun,
    PipelineInput,
    ServingEndpoint,
    TrainingJob,
    WorkflowPipeline,
)
from llmops.errors import InvalidRequest, NotFound
from llmops.services.training import JOB_LABEL

KINDS = (
    "dataset",
    "dataset-version",
    "training-job",
    "pipeline",
    "experiment-run",
    "model",
    "serving-endpoint",
)
#: the console page of each kind's node (an experiment run has none of its own: its
#: training job's page shows it)
PAGES = {
    "dataset": "/datasets/{id}",
    "training-job": "/training/{id}",
    "pipeline": "/pipelines/{id}",
    "model": "/models/{id}",
    "serving-endpoint": "/serving/{id}",
}
T = TypeVar("T")

#: the most nodes one answer holds
MAX_NODES = 500


@dataclass(frozen=True)
class Node:
    kind: str
    id: str
    label: str
    page: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    relation: str


@dataclass(frozen=True)
class Graph:
    root: str
    nodes: list[Node]
    edges: list[Edge]
    truncated: bool


def parse_node(text: str) -> tuple[str, str]:
    kind, _, entity = text.partition(":")
    if kind not in KINDS or not entity:
        raise InvalidRequest(
            f"node must be <kind>:<id> with kind one of {', '.join(KINDS)}", parameter="node"
        )
    return kind, entity


def lineage(*, session: Session, node: str, max_nodes: int = MAX_NODES) -> Graph:
    """The graph around ``node`` (``<kind>:<id>``), every edge between the nodes found."""
    kind, entity = parse_node(node)
    start = _load(session, kind, entity)
    if start is None:
        raise NotFound(f"no {kind} {entity!r}", node=node)
    nodes: dict[str, Node] = {start.key: start}
    edges: dict[tuple[str, str, str], Edge] = {}
    queue = deque([start])
    truncated = False
    while queue:
        current = queue.popleft()
        for edge, other in _neighbours(session, current):
            if other.key not in nodes:
                if len(nodes) >= max_nodes:
                    truncated = True
                    continue
                nodes[other.key] = other
                queue.append(other)
            edges.setdefault((edge.source, edge.target, edge.relation), edge)
    return Graph(start.key, list(nodes.values()), list(edges.values()), truncated)


# -- nodes -------------------------------------------------------------------------------------


def _node(kind: str, entity: str, label: str) -> Node:
    page = PAGES.get(kind)
    return Node(kind, entity, label, page.format(id=entity) if page else None)


def _dataset(row: Dataset) -> Node:
    return _node("dataset", row.id, row.name)


def _version(row: DatasetVersion, dataset_name: str | None = None) -> Node:
    label = f"{dataset_name} v{row.number}" if dataset_name else f"v{row.number}"
    return Node("dataset-version", row.id, label, f"/datasets/{row.dataset_id}?version={row.id}")


def _job(row: TrainingJob) -> Node:
    return _node("training-job", row.id, row.name)


def _model(row: CatalogModel) -> Node:
    return _node("model", row.id, f"{row.name} {row.version}")


def _endpoint(row: ServingEndpoint) -> Node:
    return _node("serving-endpoint", row.id, row.name)


def _run(row: ExperimentRun) -> Node:
    return _node("experiment-run", row.id, f"{row.experiment_name} / {row.run_name}")


def _pipeline(row: WorkflowPipeline) -> Node:
    return _node("pipeline", row.id, row.name)


def _load(session: Session, kind: str, entity: str) -> Node | None:
    loaders: dict[str, Callable[[], Node | None]] = {
        "dataset": lambda: _maybe(session.get(Dataset, entity), _dataset),
        "dataset-version": lambda: _maybe(
            session.get(DatasetVersion, entity), lambda v: _version(v, _dataset_name(session, v))
        ),
        "training-job": lambda: _maybe(session.get(TrainingJob, entity), _job),
        "pipeline": lambda: _maybe(session.get(WorkflowPipeline, entity), _pipeline),
        "experiment-run": lambda: _maybe(session.get(ExperimentRun, entity), _run),
        "model": lambda: _maybe(session.get(CatalogModel, entity), _model),
        "serving-endpoint": lambda: _maybe(session.get(ServingEndpoint, entity), _endpoint),
    }
    return loaders[kind]()


def _maybe(row: T | None, make: Callable[[T], Node]) -> Node | None:
    return make(row) if row is not None else None


def _dataset_name(session: Session, version: DatasetVersion) -> str | None:
    dataset = session.get(Dataset, version.dataset_id)
    return dataset.name if dataset is not None else None


# -- edges -------------------------------------------------------------------------------------


def _neighbours(session: Session, node: Node) -> Iterable[tuple[Edge, Node]]:
    walk = {
        "dataset": _from_dataset,
        "dataset-version": _from_version,
        "training-job": _from_job,
        "pipeline": _from_pipeline,
        "experiment-run": _from_run,
        "model": _from_model,
        "serving-endpoint": _from_endpoint,
    }[node.kind]
    return walk(session, node)


def _out(node: Node, other: Node, relation: str) -> tuple[Edge, Node]:
    return Edge(node.key, other.key, relation), other


def _in(node: Node, other: Node, relation: str) -> tuple[Edge, Node]:
    return Edge(other.key, node.key, relation), other


def _from_dataset(session: Session, node: Node) -> Iterable[tuple[Edge, Node]]:
    dataset = session.get(Dataset, node.id)
    name = dataset.name if dataset is not None else None
    for version in session.scalars(
        select(DatasetVersion).where(DatasetVersion.dataset_id == node.id)
    ):
        yield _in(node, _version(version, name), "version-of")


def _from_version(session: Session, node: Node) -> Iterable[tuple[Edge, Node]]:
    version = session.get(DatasetVersion, node.id)
    if version is None:
        return
    dataset = session.get(Dataset, version.dataset_id)
    if dataset is not None:
        yield _out(node, _dataset(dataset), "version-of")
    name = dataset.name if dataset is not None else None
    for relation, other_id in (
        ("derived-from", version.parent_id),
        ("restored-from", version.restored_from_id),
    ):
        other = session.get(DatasetVersion, other_id) if other_id else None
        if other is not None:
            yield _out(node, _version(other, name), relation)
    for child in session.scalars(
        select(DatasetVersion).where(DatasetVersion.parent_id == version.id)
    ):
        yield _in(node, _version(child, name), "derived-from")
    for restore in session.scalars(
        select(DatasetVersion).where(DatasetVersion.restored_from_id == version.id)
    ):
        yield _in(node, _version(restore, name), "restored-from")
    for job in session.scalars(
        select(TrainingJob).where(TrainingJob.dataset_version_id == version.id)
    ):
        yield _out(node, _job(job), "trained")
    for pipeline in session.scalars(
        select(WorkflowPipeline)
        .join(PipelineInput, PipelineInput.pipeline_id == WorkflowPipeline.id)
        .where(PipelineInput.dataset_version_id == version.id)
    ):
        yield _out(node, _pipeline(pipeline), "read-by")
    writer = session.get(WorkflowPipeline, version.pipeline_id) if version.pipeline_id else None
    if writer is not None:
        yield _in(node, _pipeline(writer), "wrote")


def _from_job(session: Session, node: Node) -> Iterable[tuple[Edge, Node]]:
    job = session.get(TrainingJob, node.id)
    if job is None:
        return
    version = (
        session.get(DatasetVersion, job.dataset_version_id) if job.dataset_version_id else None
    )
    if version is not None:
        yield _in(node, _version(version, _dataset_name(session, version)), "trained")
    base = session.get(CatalogModel, job.model_id) if job.model_id else None
    if base is not None:
        yield _in(node, _model(base), "fine-tuned")
    pipeline = session.get(WorkflowPipeline, job.pipeline_id) if job.pipeline_id else None
    if pipeline is not None:
        yield _out(node, _pipeline(pipeline), "ran-as")
    for run in session.scalars(
        select(ExperimentRun).where(ExperimentRun.training_job_id == job.id)
    ):
        yield _out(node, _run(run), "tracked-by")
    for model in produced_models(session, job.id):
        yield _out(node, _model(model), "produced")


def produced_models(session: Session, job_id: str) -> list[CatalogModel]:
    """The catalog models registered from the job's output."""
    return list(
        session.scalars(
            select(CatalogModel).where(CatalogModel.labels[JOB_LABEL].as_string() == job_id)
        )
    )


def _from_pipeline(session: Session, node: Node) -> Iterable[tuple[Edge, Node]]:
    for job in session.scalars(select(TrainingJob).where(TrainingJob.pipeline_id == node.id)):
        yield _in(node, _job(job), "ran-as")
    for read in session.scalars(
        select(DatasetVersion)
        .join(PipelineInput, PipelineInput.dataset_version_id == DatasetVersion.id)
        .where(PipelineInput.pipeline_id == node.id)
    ):
        yield _in(node, _version(read, _dataset_name(session, read)), "read-by")
    for written in session.scalars(
        select(DatasetVersion).where(DatasetVersion.pipeline_id == node.id)
    ):
        yield _out(node, _version(written, _dataset_name(session, written)), "wrote")


def _from_run(session: Session, node: Node) -> Iterable[tuple[Edge, Node]]:
    run = session.get(ExperimentRun, node.id)
    job = session.get(TrainingJob, run.training_job_id) if run and run.training_job_id else None
    if job is not None:
        yield _in(node, _job(job), "tracked-by")


def _from_model(session: Session, node: Node) -> Iterable[tuple[Edge, Node]]:
    model = session.get(CatalogModel, node.id)
    if model is None:
        return
    job_id = (model.labels or {}).get(JOB_LABEL)
    job = session.get(TrainingJob, job_id) if isinstance(job_id, str) else None
    if job is not None:
        yield _in(node, _job(job), "produced")
    for tuned in session.scalars(select(TrainingJob).where(TrainingJob.model_id == model.id)):
        yield _out(node, _job(tuned), "fine-tuned")
    for endpoint in session.scalars(
        select(ServingEndpoint).where(ServingEndpoint.model_id == model.id)
    ):
        yield _out(node, _endpoint(endpoint), "served-by")


def _from_endpoint(session: Session, node: Node) -> Iterable[tuple[Edge, Node]]:
    endpoint = session.get(ServingEndpoint, node.id)
    model = session.get(CatalogModel, endpoint.model_id) if endpoint and endpoint.model_id else None
    if model is not None:
        yield _in(node, _model(model), "served-by")
