"""The Workflow the plugin builds for a pipeline, checked against Argo's published JSON
schema (strict: an unknown field anywhere is an error) and field by field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmops.capabilities.orchestration import PipelineSpec
from llmops.errors import InvalidRequest
from llmops.testing.argo.errors import ArgoApiError
from llmops.testing.argo.schema import (
    argo_schemas,
    check_workflow_metadata,
    check_workflow_semantics,
)
from llmops_argo.workflow import (
    KEY_ANNOTATION,
    KEY_HASH_LABEL,
    MANAGED_LABEL,
    PIPELINE_LABEL,
    SECRET_ANNOTATION,
    STAGES_ANNOTATION,
    build_workflow,
    key_hash,
)


def _valid(workflow: dict[str, Any]) -> dict[str, Any]:
    """``workflow`` once it passes what Argo checks: its published JSON schema (strict:
    no unknown field), Argo's own validation, and the Kubernetes API's on its metadata."""
    argo_schemas().check_workflow(workflow, strict=True)
    check_workflow_semantics(workflow, runnable=False)
    check_workflow_metadata(workflow)
    return workflow


def _spec(**fields: Any) -> PipelineSpec:
    values: dict[str, Any] = {
        "name": "Nightly Train",
        "stages": [
            {"name": "fetch", "command": ["sh", "-c", "echo fetch"], "env": {"A": "1"}},
            {
                "name": "train_model",
                "command": ["python", "-m", "train"],
                "depends_on": ["fetch"],
                "retries": 2,
                "timeout_seconds": 0.5,
                "working_dir": "/work",
                "image": "ghcr.io/acme/train:1",
            },
            {"name": "report", "command": ["true"], "depends_on": ["train_model", "fetch"]},
        ],
    }
    values.update(fields)
    return PipelineSpec.model_validate(values)


def _build(spec: PipelineSpec, **options: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"namespace": "argo", "default_image": "python:3.12-slim"}
    values.update(options)
    return _valid(build_workflow(spec, **values).to_dict())


def _templates(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in workflow["spec"]["templates"]}


def test_a_pipeline_becomes_one_dag_and_one_container_template_per_stage() -> None:
    workflow = _build(_spec(max_parallel=2), service_account="pipelines")

    spec = workflow["spec"]
    assert spec["entrypoint"] == "pipeline"
    assert spec["parallelism"] == 2
    assert spec["serviceAccountName"] == "pipelines"
    templates = _templates(workflow)
    stages = json.loads(workflow["metadata"]["annotations"][STAGES_ANNOTATION])
    train = next(task for task, stage in stages.items() if stage == "train_model")
    assert list(stages.values()) == ["fetch", "train_model", "report"]
    assert set(templates) == {"pipeline", "fetch", train, "report"}
    tasks = {t["name"]: t for t in templates["pipeline"]["dag"]["tasks"]}
    assert tasks["fetch"] == {"name": "fetch", "template": "fetch"}
    assert tasks[train]["dependencies"] == ["fetch"]
    assert tasks["report"]["dependencies"] == [train, "fetch"]
    fetch = templates["fetch"]
    assert fetch["container"] == {
        "image": "python:3.12-slim",
        "command": ["sh"],
        "args": ["-c", "echo fetch"],
        "env": [{"name": "A", "value": "1"}],
    }
    assert "retryStrategy" not in fetch
    assert "activeDeadlineSeconds" not in fetch
    trained = templates[train]
    assert trained["container"]["image"] == "ghcr.io/acme/train:1"
    assert trained["container"]["workingDir"] == "/work"
    assert trained["retryStrategy"] == {"limit": 2}
    assert trained["activeDeadlineSeconds"] == 1, "a timeout is rounded up to whole seconds"


def test_a_stage_name_argo_refuses_as_a_task_name_gets_a_safe_one_mapped_back() -> None:
    spec = _spec(
        stages=[
            {"name": "pipeline", "command": ["true"]},
            {"name": "a.b_c", "command": ["true"], "depends_on": ["pipeline"]},
        ]
    )

    workflow = _build(spec)

    stages = json.loads(workflow["metadata"]["annotations"][STAGES_ANNOTATION])
    assert sorted(stages.values()) == ["a.b_c", "pipeline"]
    for task in stages:
        assert task != "pipeline", "the entrypoint's name is the DAG's alone"
        assert all(c.isalnum() or c == "-" for c in task), task
        assert len(task) <= 63


def test_the_idempotency_key_names_the_workflow_and_is_labelled_by_its_hash() -> None:
    key = "pipeline-" + "k" * 200  # longer than a label value may be
    first = _build(_spec(idempotency_key=key))
    again = _build(_spec(idempotency_key=key))
    other = _build(_spec(idempotency_key=key + "-other"))

    metadata = first["metadata"]
    assert metadata["name"] == again["metadata"]["name"] != other["metadata"]["name"]
    assert len(metadata["name"]) <= 63
    assert metadata["name"].startswith("nightly-train-")
    assert metadata["labels"][KEY_HASH_LABEL] == key_hash(key)
    assert len(key_hash(key)) <= 63
    assert metadata["annotations"][KEY_ANNOTATION] == key
    assert metadata["labels"][MANAGED_LABEL] == "llmops"
    assert metadata["labels"][PIPELINE_LABEL] == "nightly-train"


def test_without_a_key_each_build_has_its_own_name() -> None:
    names = {_build(_spec())["metadata"]["name"] for _ in range(3)}

    assert len(names) == 3


def test_the_specs_labels_become_labels_where_kubernetes_takes_them_and_all_are_kept() -> None:
    labels = {
        "llmops.training-job": "0f3a",
        "team": "nlp",
        "not a key": "x",
        "long": "v" * 63 + "w",
        "llmops.dev/managed-by": "someone-else",
    }

    workflow = _build(_spec(labels=labels))

    metadata = workflow["metadata"]
    assert metadata["labels"]["llmops.training-job"] == "0f3a"
    assert metadata["labels"]["team"] == "nlp"
    assert "not a key" not in metadata["labels"]
    assert "long" not in metadata["labels"]
    assert metadata["labels"]["llmops.dev/managed-by"] == "llmops", "the plugin's own labels win"
    assert json.loads(metadata["annotations"]["llmops.dev/labels"]) == labels


def test_the_secret_environment_is_a_secret_reference_and_never_a_value() -> None:
    secret = "s3cret-value-never-in-the-spec"
    spec = _spec(secret_env={"LLMOPS_JOB_TOKEN": secret}, idempotency_key="pipeline-1")

    built = build_workflow(spec, namespace="argo", default_image="busybox")
    workflow = _valid(built.to_dict())

    assert secret not in json.dumps(workflow)
    assert built.secret is not None
    assert workflow["metadata"]["annotations"][SECRET_ANNOTATION] == built.secret
    for template in _templates(workflow).values():
        if "container" not in template:
            continue
        [variable] = [e for e in template["container"]["env"] if e["name"] == "LLMOPS_JOB_TOKEN"]
        assert variable == {
            "name": "LLMOPS_JOB_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": built.secret, "key": "LLMOPS_JOB_TOKEN"}},
        }


def test_an_environment_name_kubernetes_refuses_is_refused_before_argo_is_asked() -> None:
    spec = _spec(stages=[{"name": "a", "command": ["true"], "env": {"1BAD NAME": "x"}}])

    with pytest.raises(InvalidRequest, match="1BAD NAME"):
        build_workflow(spec, namespace="argo", default_image="busybox")


def test_the_schema_check_catches_a_misspelt_field() -> None:
    workflow = _build(_spec())
    workflow["spec"]["templates"][0]["container"]["workdir"] = "/oops"

    with pytest.raises(ArgoApiError, match="workdir"):
        _valid(workflow)
