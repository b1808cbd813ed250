"""A platform pipeline as an Argo Workflow, built with hera.

One DAG template (``pipeline``, the entrypoint) with one task per stage, and one
container template per stage: its command, env, image (or the plugin's default),
workingDir, ``retryStrategy.limit`` = retries and ``activeDeadlineSeconds`` = its timeout.

Argo names tasks and templates ``[a-zA-Z0-9][-a-zA-Z0-9]*`` (63 characters at most), while a
stage name may hold ``_`` and ``.``: such a stage's task is named after it with those
replaced and a short hash of the original name added, and the annotation
:data:`STAGES_ANNOTATION` maps every task back to its stage.

The workflow's labels tie it to the platform: :data:`MANAGED_LABEL`, the pipeline's name
(:data:`PIPELINE_LABEL`), the hash of its idempotency key (:data:`KEY_HASH_LABEL`: a key
may be longer than a label value allows; the key itself is in :data:`KEY_ANNOTATION`) and
every label of the spec that is a valid Kubernetes label. A workflow submitted with a key
is named from the key, so even two submissions racing each other make one workflow.

Secret values never appear here: a variable of ``secret_env`` is a ``secretKeyRef`` to the
Secret :func:`secret_name` names, which the provider creates through the Kubernetes API.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops.capabilities.orchestration import PipelineSpec, StageSpec
from llmops.errors import InvalidRequest

if TYPE_CHECKING:
    from hera.workflows import Workflow
    from hera.workflows.models import Workflow as WorkflowModel

#: The DAG template every workflow of the plugin starts at.
ENTRYPOINT = "pipeline"
#: Every workflow the plugin creates carries this label (value ``llmops``).
MANAGED_LABEL = "llmops.dev/managed-by"
MANAGED_BY = "llmops"
#: The pipeline's name, made a label value.
PIPELINE_LABEL = "llmops.dev/pipeline"
#: The first 32 hex digits of the SHA-256 of the idempotency key.
KEY_HASH_LABEL = "llmops.dev/idempotency-key-hash"
#: The idempotency key itself.
KEY_ANNOTATION = "llmops.dev/idempotency-key"
#: The pipeline's name as given (the label holds a label-safe form of it).
NAME_ANNOTATION = "llmops.dev/pipeline-name"
#: JSON: each task's name -> its stage's name, in the spec's order.
STAGES_ANNOTATION = "llmops.dev/stages"
#: JSON: the spec's labels, all of them (the valid ones are labels too).
LABELS_ANNOTATION = "llmops.dev/labels"
#: The name of the Secret holding the secret environment, when there is one.
SECRET_ANNOTATION = "llmops.dev/secret"  # noqa: S105 - a name, not a value
#: The label of a Secret naming the workflow it belongs to.
WORKFLOW_LABEL = "llmops.dev/workflow"

#: A workflow's name ends up in label values (workflows.argoproj.io/workflow on its pods).
MAX_NAME = 63
_TASK = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")
_NOT_TASK = re.compile(r"[^-a-zA-Z0-9]")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
#: A Kubernetes label value: 63 characters at most, alphanumerics at both ends.
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
#: What Kubernetes takes as an environment variable's name.
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def key_hash(key: str) -> str:
    """The label value that stands for an idempotency key."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _slug(text: str, length: int) -> str:
    """``text`` as the start of a DNS-1123 name: lower case, ``-`` for the rest."""
    slug = _NOT_DNS.sub("-", text.lower()).strip("-")[:length].strip("-")
    return slug or "pipeline"


def workflow_name(spec: PipelineSpec) -> str:
    """The workflow's name: the pipeline's name, then the key's hash (the same key, the
    same name) or, without a key, random digits."""
    key = spec.idempotency_key
    suffix = key_hash(key)[:12] if key is not None else secrets.token_hex(6)
    # short: Argo names pods <workflow>-<template>-<hash>, and labels them with the name
    return f"{_slug(spec.name, 40)}-{suffix}"


def secret_name(workflow: str) -> str:
    """The Secret that holds the secret environment of ``workflow``."""
    return f"{workflow}-env"


def task_names(stages: Sequence[StageSpec]) -> dict[str, str]:
    """Each stage's task (and template) name, in the spec's order."""
    names: dict[str, str] = {}
    for stage in stages:
        if _TASK.match(stage.name) and stage.name != ENTRYPOINT:
            task = stage.name
        else:
            digest = hashlib.sha256(stage.name.encode()).hexdigest()[:8]
            task = f"{_NOT_TASK.sub('-', stage.name)[:50].strip('-') or 'stage'}-{digest}"
        names[stage.name] = task
    if len(set(names.values())) != len(names):
        clashing = sorted(s for s, t in names.items() if list(names.values()).count(t) > 1)
        raise InvalidRequest(
            f"stages {', '.join(clashing)} map to the same Argo task name",
            stages=clashing,
            rule="argo-task-name",
        )
    return names


def _check_env(spec: PipelineSpec) -> None:
    bad = sorted(
        {f"{s.name}: {k}" for s in spec.stages for k in s.env if not _ENV_NAME.match(k)}
        | {f"secret: {k}" for k in spec.secret_env if not _ENV_NAME.match(k)}
    )
    if bad:
        raise InvalidRequest(
            "Kubernetes refuses these environment variable names (letters, digits, '_', "
            f"'-' and '.', not starting with a digit): {', '.join(bad)}",
            rule="env-name",
        )


def _labels(spec: PipelineSpec) -> tuple[dict[str, str], dict[str, str]]:
    """The workflow's labels and annotations for ``spec``."""
    labels = {
        key: value
        for key, value in spec.labels.items()
        if _valid_label(key, value) and not key.startswith("llmops.dev/")
    }
    labels[MANAGED_LABEL] = MANAGED_BY
    labels[PIPELINE_LABEL] = _slug(spec.name, 63)
    annotations = {NAME_ANNOTATION: spec.name}
    if spec.labels:
        annotations[LABELS_ANNOTATION] = json.dumps(spec.labels, sort_keys=True)
    if spec.idempotency_key is not None:
        labels[KEY_HASH_LABEL] = key_hash(spec.idempotency_key)
        annotations[KEY_ANNOTATION] = spec.idempotency_key
    return labels, annotations


def _valid_label(key: str, value: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and not (len(prefix) <= 253 and _DNS_SUBDOMAIN.match(prefix)):
        return False
    return bool(_LABEL_NAME.match(name)) and bool(_LABEL_VALUE.match(value))


@dataclass(frozen=True)
class BuiltWorkflow:
    """A workflow ready to lint and create, with what the provider needs to know of it."""

    name: str
    namespace: str
    model: WorkflowModel
    #: the Secret its stages read ``secret_env`` from, if any
    secret: str | None

    def to_dict(self) -> dict[str, Any]:
        """The Workflow as Argo receives it (camelCase, nothing unset)."""
        data: dict[str, Any] = self.model.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude_unset=True
        )
        return data


def build_workflow(
    spec: PipelineSpec,
    *,
    namespace: str,
    default_image: str,
    service_account: str | None = None,
) -> BuiltWorkflow:
    """The Argo Workflow for ``spec`` (validated first: :class:`InvalidRequest` for what
    Argo or Kubernetes would refuse)."""
    from hera.workflows.models import Workflow as WorkflowModel

    workflow = workflow_definition(
        spec, namespace=namespace, default_image=default_image, service_account=service_account
    )
    model = workflow.build()
    assert isinstance(model, WorkflowModel)
    name = model.metadata.name  # a spec without a key gets a random one: read it back
    assert name is not None
    secret = secret_name(name) if spec.secret_env else None
    return BuiltWorkflow(name=name, namespace=namespace, model=model, secret=secret)


def workflow_definition(
    spec: PipelineSpec,
    *,
    namespace: str,
    default_image: str,
    service_account: str | None = None,
) -> Workflow:
    """``spec`` as hera's :class:`~hera.workflows.Workflow`, not yet built: what a hera
    user would write for the same pipeline."""
    from hera.workflows import DAG, Container, Env, RetryStrategy, Task, Workflow
    from hera.workflows.models import EnvVar, EnvVarSource, SecretKeySelector

    _check_env(spec)
    tasks = task_names(spec.stages)
    name = workflow_name(spec)
    secret = secret_name(name) if spec.secret_env else None
    labels, annotations = _labels(spec)
    annotations[STAGES_ANNOTATION] = json.dumps({tasks[s.name]: s.name for s in spec.stages})
    if secret is not None:
        annotations[SECRET_ANNOTATION] = secret
    secret_vars: list[EnvVar] = [
        EnvVar(
            name=variable,
            value_from=EnvVarSource(secret_key_ref=SecretKeySelector(name=secret, key=variable)),
        )
        for variable in sorted(spec.secret_env)
    ]
    with Workflow(
        name=name,
        namespace=namespace,
        entrypoint=ENTRYPOINT,
        labels=labels,
        annotations=annotations,
        parallelism=spec.max_parallel,
        service_account_name=service_account,
    ) as workflow:
        templates: dict[str, Container] = {}
        for stage in spec.stages:
            env: list[Env | EnvVar] = [
                Env(name=k, value=v) for k, v in stage.env.items() if k not in spec.secret_env
            ]
            templates[stage.name] = Container(
                name=tasks[stage.name],
                image=stage.image or default_image,
                command=stage.command[:1],
                args=stage.command[1:] or None,
                env=[*env, *secret_vars] or None,
                working_dir=stage.working_dir,
                retry_strategy=RetryStrategy(limit=stage.retries) if stage.retries else None,
                active_deadline_seconds=(
                    max(1, math.ceil(stage.timeout_seconds)) if stage.timeout_seconds else None
                ),
            )
        with DAG(name=ENTRYPOINT):
            for stage in spec.stages:
                Task(
                    name=tasks[stage.name],
                    template=templates[stage.name],
                    dependencies=[tasks[d] for d in dict.fromkeys(stage.depends_on)] or None,
                )
    return workflow


def stage_names(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """Each task's stage, from a workflow's annotations (the spec's order)."""
    raw = (annotations or {}).get(STAGES_ANNOTATION)
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {str(task): str(stage) for task, stage in parsed.items()}
