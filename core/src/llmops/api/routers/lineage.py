"""One lineage graph for the whole platform: from any dataset version, training job,
pipeline, experiment run, model or endpoint to everything it came from and went into."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from llmops.api.deps import SessionDep
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.schemas_datasets import LineageEdgeOut, LineageNodeOut, LineageOut
from llmops.services import lineage

router = APIRouter(route_class=AnswerKeepingRoute, tags=["lineage"])


@router.get("/lineage", response_model=LineageOut, summary="The lineage graph around a node")
def get_lineage(
    session: SessionDep,
    node: Annotated[
        str,
        Query(
            max_length=120,
            description="<kind>:<id>, kind one of " + ", ".join(lineage.KINDS),
            examples=["dataset-version:0f3c...", "serving-endpoint:9a1b..."],
        ),
    ],
    max_nodes: Annotated[
        int, Query(alias="maxNodes", ge=1, le=lineage.MAX_NODES, description="at most")
    ] = lineage.MAX_NODES,
) -> LineageOut:
    """Every node reachable from ``node`` through the platform's records, either way,
    and the edges between them, pointing the way data flows: a dataset version
    ``trained`` a job, which ``ran-as`` a pipeline, was ``tracked-by`` an experiment run
    and ``produced`` a model, ``served-by`` an endpoint; versions are ``derived-from``
    their parents (a restore also ``restored-from`` the version it brought back)."""
    graph = lineage.lineage(session=session, node=node, max_nodes=max_nodes)
    return LineageOut(
        root=graph.root,
        nodes=[
            LineageNodeOut(id=n.key, kind=n.kind, entity_id=n.id, label=n.label, page=n.page)
            for n in graph.nodes
        ],
        edges=[
            LineageEdgeOut(source=e.source, target=e.target, relation=e.relation)
            for e in graph.edges
        ],
        truncated=graph.truncated,
    )
