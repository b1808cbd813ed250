"""The platform's lineage graph, walked from any node over the platform's own rows: a
dataset's versions (parents, restores), the training jobs that pinned one, their pipeline
and experiment run, the model a job produced and the endpoints serving it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session, sessionmaker

from llmops.db.migrate import upgrade
from llmops.db.models import (
    CatalogModel,
    Dataset,
    DatasetVersion,
    ExperimentRun,
    ServingEndpoint,
    TrainingJob,
    WorkflowPipeline,
)
from llmops.db.session import make_engine
from llmops.errors import InvalidRequest, NotFound
from llmops.services import lineage
from llmops.services.training import JOB_LABEL


@dataclass(frozen=True)
class Story:
    """dataset -> v1 -> v2 (v3 restores v1) -> job (on v2, base model) -> pipeline, run,
    trained model -> endpoint."""

    dataset: str
    v1: str
    v2: str
    v3: str
    base: str
    job: str
    pipeline: str
    run: str
    trained: str
    endpoint: str
    other_endpoint: str


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = make_engine(database_url)
    upgrade(engine)
    with sessionmaker(engine)() as opened:
        yield opened
    engine.dispose()


@pytest.fixture
def story(session: Session) -> Story:
    dataset = Dataset(name="reviews")
    session.add(dataset)
    session.flush()
    v1 = DatasetVersion(dataset_id=dataset.id, number=1, provider="mem", external_id="c1")
    session.add(v1)
    session.flush()
    v2 = DatasetVersion(
        dataset_id=dataset.id, number=2, provider="mem", external_id="c2", parent_id=v1.id
    )
    session.add(v2)
    session.flush()
    v3 = DatasetVersion(
        dataset_id=dataset.id,
        number=3,
        provider="mem",
        external_id="c3",
        parent_id=v2.id,
        restored_from_id=v1.id,
    )
    base = CatalogModel(name="gpt2", version="1")
    session.add_all([v3, base])
    session.flush()
    pipeline = WorkflowPipeline(name="training-tune", provider="local", spec={}, stages=[])
    session.add(pipeline)
    session.flush()
    job = TrainingJob(
        name="tune",
        model_id=base.id,
        dataset_id=dataset.id,
        dataset_version_id=v2.id,
        pipeline_id=pipeline.id,
    )
    session.add(job)
    session.flush()
    run = ExperimentRun(training_job_id=job.id, experiment_name="tune", run_name="tune-1")
    trained = CatalogModel(name="tune", version="1", labels={JOB_LABEL: job.id})
    session.add_all([run, trained])
    session.flush()
    endpoint = ServingEndpoint(name="tune-chat", model_id=trained.id, framework="rayserve")
    other = ServingEndpoint(name="gpt2-chat", model_id=base.id, framework="rayserve")
    session.add_all([endpoint, other])
    session.commit()
    return Story(
        dataset.id, v1.id, v2.id, v3.id, base.id, job.id, pipeline.id, run.id, trained.id,
        endpoint.id, other.id,
    )  # fmt: skip


def edges(graph: lineage.Graph) -> set[tuple[str, str, str]]:
    return {(e.source, e.target, e.relation) for e in graph.edges}


def test_from_an_endpoint_the_graph_reaches_back_to_the_dataset_version_it_was_trained_on(
    session: Session, story: Story
) -> None:
    graph = lineage.lineage(session=session, node=f"serving-endpoint:{story.endpoint}")

    assert graph.root == f"serving-endpoint:{story.endpoint}"
    assert {
        (f"model:{story.trained}", f"serving-endpoint:{story.endpoint}", "served-by"),
        (f"training-job:{story.job}", f"model:{story.trained}", "produced"),
        (f"dataset-version:{story.v2}", f"training-job:{story.job}", "trained"),
        (f"training-job:{story.job}", f"pipeline:{story.pipeline}", "ran-as"),
        (f"training-job:{story.job}", f"experiment-run:{story.run}", "tracked-by"),
        (f"model:{story.base}", f"training-job:{story.job}", "fine-tuned"),
        (f"dataset-version:{story.v2}", f"dataset-version:{story.v1}", "derived-from"),
        (f"dataset-version:{story.v3}", f"dataset-version:{story.v1}", "restored-from"),
        (f"dataset-version:{story.v2}", f"dataset:{story.dataset}", "version-of"),
    } <= edges(graph)
    keys = {n.key for n in graph.nodes}
    # the base model's other endpoint is reached too: the graph is walked both ways
    assert f"serving-endpoint:{story.other_endpoint}" in keys
    assert graph.truncated is False
    for edge in graph.edges:
        assert {edge.source, edge.target} <= keys


def test_every_node_carries_a_label_and_the_page_that_shows_it(
    session: Session, story: Story
) -> None:
    graph = lineage.lineage(session=session, node=f"dataset-version:{story.v2}")

    by_key = {n.key: n for n in graph.nodes}
    assert by_key[f"dataset-version:{story.v2}"].label == "reviews v2"
    assert by_key[f"dataset-version:{story.v2}"].page == (
        f"/datasets/{story.dataset}?version={story.v2}"
    )
    assert by_key[f"training-job:{story.job}"].page == f"/training/{story.job}"
    assert by_key[f"model:{story.trained}"].label == "tune 1"
    assert by_key[f"serving-endpoint:{story.endpoint}"].page == f"/serving/{story.endpoint}"
    assert by_key[f"experiment-run:{story.run}"].label == "tune / tune-1"
    assert by_key[f"experiment-run:{story.run}"].page is None  # shown on its job's page
    assert by_key[f"model:{story.trained}"].page == f"/models/{story.trained}"


def test_a_graph_larger_than_the_limit_is_cut_and_says_so(session: Session, story: Story) -> None:
    graph = lineage.lineage(session=session, node=f"dataset:{story.dataset}", max_nodes=3)

    assert len(graph.nodes) == 3
    assert graph.truncated is True
    keys = {n.key for n in graph.nodes}
    for edge in graph.edges:
        assert {edge.source, edge.target} <= keys


def test_the_produced_models_of_a_job_are_the_ones_registered_from_its_output(
    session: Session, story: Story
) -> None:
    assert [m.id for m in lineage.produced_models(session, story.job)] == [story.trained]


@pytest.mark.parametrize("node", ["dataset", "cluster:x", "model:", ":abc"])
def test_a_node_that_is_not_kind_and_id_is_refused(session: Session, node: str) -> None:
    with pytest.raises(InvalidRequest, match="<kind>:<id>"):
        lineage.lineage(session=session, node=node)


def test_an_unknown_node_is_not_found(session: Session) -> None:
    with pytest.raises(NotFound):
        lineage.lineage(session=session, node="model:nope")
