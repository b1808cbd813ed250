"""InferenceService objects: what the plugin writes (built from a DeploymentSpec) and what
it reads back (the endpoint's status from conditions, revisions and traffic).

Every object the plugin writes carries
* labels ``app.kubernetes.io/managed-by: llmops``, ``llmops.dev/endpoint-id`` and
  ``llmops.dev/idempotency-key`` (a label-safe form of the key), which tie it to its
  platform endpoint and let the plugin find it by key;
* annotations ``llmops.dev/idempotency-key`` (the key itself), ``llmops.dev/spec`` (the
  platform's record of the deployment: the stable model, the canary, the settings) and
  ``llmops.dev/previous-model-uri`` (the model served before the last change, so the
  traffic a rollout still sends to the old revision is named truthfully).

Status is read the way kserve#1859 and kserve#4626 teach: ``Ready=True`` is not enough.
A spec generation the controller has not observed, or a newest revision that is not the
one serving, is a rollout in progress (UPDATING), and the caller still probes the
predictor before calling a deployment ready.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from llmops.capabilities.serving import (
    DeploymentSpec,
    DeploymentState,
    InferenceProtocol,
    InferenceTarget,
    RolloutState,
    RolloutStatus,
    TrafficSplit,
)
from llmops.errors import InvalidRequest

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
KIND = "InferenceService"
API_VERSION = f"{GROUP}/{VERSION}"

#: Every Kubernetes API verb the plugin uses on InferenceServices (and nothing else): the
#: RBAC Role in infra/k8s/platform grants exactly these, in the platform's namespace.
API_VERBS = frozenset({"get", "list", "create", "patch", "delete"})

MANAGED_BY = "app.kubernetes.io/managed-by"
ENDPOINT_LABEL = "llmops.dev/endpoint-id"
KEY_LABEL = "llmops.dev/idempotency-key"
KEY_ANNOTATION = "llmops.dev/idempotency-key"
SPEC_ANNOTATION = "llmops.dev/spec"
PREVIOUS_ANNOTATION = "llmops.dev/previous-model-uri"

#: What ``spec.options`` may hold, with its type.
OPTIONS: dict[str, type] = {
    "served_model_name": str,  # the `model` clients pass (default: the endpoint's name)
    "model_format": str,  # KServe's modelFormat.name (default: huggingface)
    "args": list,  # more arguments for the model server (e.g. --dtype=float16)
    "timeout_seconds": int,  # KServe's predictor timeout
}
#: Storage schemes KServe's storage initializer reads.
STORAGE_SCHEMES = frozenset(
    {"pvc", "s3", "gs", "hf", "https", "http", "oci", "hdfs", "webhdfs", "azure"}
)
#: Catalog model frameworks that KServe knows under another model format name.
MODEL_FORMATS = {
    None: "huggingface",
    "transformers": "huggingface",
    "huggingface": "huggingface",
    "pytorch": "huggingface",
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "onnx": "onnx",
    "tensorflow": "tensorflow",
}
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_value(value: str) -> str:
    """``value`` when it is a valid label value, else a stable digest of it."""
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    return "h-" + hashlib.sha256(value.encode()).hexdigest()[:40]


def key_selector(key: str) -> str:
    return f"{MANAGED_BY}=llmops,{KEY_LABEL}={label_value(key)}"


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InvalidRequest(
            f"unknown KServe option(s) {unknown}; known: {sorted(OPTIONS)}", parameter="options"
        )
    for key, value in options.items():
        kind = OPTIONS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InvalidRequest(
                f"option {key!r} must be a {kind.__name__}", parameter=f"options.{key}"
            )
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            raise InvalidRequest(
                f"option {key!r} must be a list of strings", parameter=f"options.{key}"
            )
        if isinstance(value, int) and value <= 0:
            raise InvalidRequest(f"option {key!r} must be positive", parameter=f"options.{key}")
    return dict(options)


def served_name(spec: DeploymentSpec) -> str:
    return str(spec.options.get("served_model_name") or spec.name)


@dataclass(frozen=True)
class Placement:
    """Where the objects go and what they may use, from the plugin's settings."""

    storage_uri_prefixes: dict[str, str]
    runtimes: list[str]
    service_account: str | None = None


def storage_uri(model_uri: str, placement: Placement, *, parameter: str = "modelUri") -> str:
    """The URI KServe's storage initializer reads ``model_uri`` from.

    Remote URIs pass as they are; a local folder (a path or ``file://``) must lie under one
    of ``storage_uri_prefixes``, a volume KServe mounts too."""
    parsed = urlparse(model_uri)
    if parsed.scheme in STORAGE_SCHEMES:
        return model_uri
    if parsed.scheme not in ("", "file"):
        raise InvalidRequest(
            f"KServe cannot read {model_uri!r}: its storage initializer reads "
            f"{', '.join(sorted(s + '://' for s in STORAGE_SCHEMES))}",
            parameter=parameter,
        )
    path = unquote(parsed.path) if parsed.scheme == "file" else model_uri
    matches = [
        prefix
        for prefix in placement.storage_uri_prefixes
        if path == prefix.rstrip("/") or path.startswith(prefix.rstrip("/") + "/")
    ]
    if not matches:
        raise InvalidRequest(
            f"KServe cannot read the local folder {path!r}: set the plugin's "
            "storage_uri_prefixes to a volume KServe mounts (e.g. {'/var/lib/llmops/models/': "
            "'pvc://llmops-models/'}), or register the model with an s3://, gs://, pvc:// or "
            "hf:// URI",
            parameter=parameter,
        )
    prefix = max(matches, key=len)
    rest = path[len(prefix.rstrip("/")) :].lstrip("/")
    remote = placement.storage_uri_prefixes[prefix].rstrip("/")
    return f"{remote}/{rest}" if rest else remote


def object_name(spec: DeploymentSpec) -> tuple[str | None, str | None]:
    """``(name, generateName)``: the endpoint's name when KServe takes it (a DNS-1035
    label), else a generated one that starts with it."""
    if _DNS_1035.match(spec.name):
        return spec.name, None
    stem = re.sub(r"[^a-z0-9-]", "", spec.name.lower())[:40].strip("-")
    return None, f"ep-{stem}-" if stem else "ep-"


def predictor(
    spec: DeploymentSpec,
    placement: Placement,
    *,
    model_uri: str | None = None,
    canary_percent: int | None = None,
) -> dict[str, Any]:
    """The predictor serving ``model_uri`` (default: the spec's stable model)."""
    options = check_options(spec.options)
    runtime = spec.runtime or placement.runtimes[0]
    if runtime not in placement.runtimes:
        raise InvalidRequest(
            f"KServe has no runtime {runtime!r} here; known: {', '.join(placement.runtimes)}",
            parameter="runtime",
        )
    model_format = str(options.get("model_format") or MODEL_FORMATS.get(spec.model_format, ""))
    if not model_format:
        raise InvalidRequest(
            f"KServe knows no model format for {spec.model_format!r}: set options.model_format",
            parameter="options.model_format",
        )
    uri = model_uri or spec.model_uri
    model: dict[str, Any] = {
        "modelFormat": {"name": model_format},
        "runtime": runtime,
        "storageUri": storage_uri(
            uri, placement, parameter="canary.modelUri" if model_uri else "modelUri"
        ),
        "args": [f"--model_name={served_name(spec)}", *options.get("args", [])],
    }
    if spec.env:
        model["env"] = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    resources = _resources(spec)
    if resources:
        model["resources"] = resources
    scaling = spec.autoscaling
    out: dict[str, Any] = {
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "model": model,
    }
    if scaling.scale_metric is not None:
        out["scaleMetric"] = scaling.scale_metric
    if scaling.scale_target is not None:
        out["scaleTarget"] = scaling.scale_target
    elif scaling.target_ongoing_requests is not None:
        out.setdefault("scaleMetric", "concurrency")
        out["scaleTarget"] = max(1, math.ceil(scaling.target_ongoing_requests))
    if canary_percent is not None:
        out["canaryTrafficPercent"] = canary_percent
    if placement.service_account:
        out["serviceAccountName"] = placement.service_account
    if "timeout_seconds" in options:
        out["timeout"] = int(options["timeout_seconds"])
    return out


def _resources(spec: DeploymentSpec) -> dict[str, Any]:
    requests: dict[str, str] = {}
    if spec.resources.cpu:
        requests["cpu"] = spec.resources.cpu
    if spec.resources.memory:
        requests["memory"] = spec.resources.memory
    limits = dict(requests)
    if spec.resources.gpus:
        # extended resources: requests equal limits (Kubernetes refuses anything else)
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(spec.resources.gpus)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def record_annotations(spec: DeploymentSpec, *, previous_model_uri: str | None) -> dict[str, str]:
    out = {SPEC_ANNOTATION: json.dumps(spec.model_dump(mode="json"), sort_keys=True)}
    if spec.idempotency_key is not None:
        out[KEY_ANNOTATION] = spec.idempotency_key
    if previous_model_uri is not None:
        out[PREVIOUS_ANNOTATION] = previous_model_uri
    return out


def labels(spec: DeploymentSpec) -> dict[str, str]:
    out = {MANAGED_BY: "llmops", ENDPOINT_LABEL: label_value(spec.endpoint_id)}
    if spec.idempotency_key is not None:
        out[KEY_LABEL] = label_value(spec.idempotency_key)
    return out


def inference_service(spec: DeploymentSpec, placement: Placement) -> dict[str, Any]:
    """The object for a first deployment of ``spec``: the stable model alone (a canary
    in the spec starts once the stable revision has rolled out; KServe sends all traffic
    to the only revision there is)."""
    name, generate_name = object_name(spec)
    metadata: dict[str, Any] = {
        "labels": labels(spec),
        "annotations": record_annotations(spec, previous_model_uri=None),
    }
    if name is not None:
        metadata["name"] = name
    else:
        metadata["generateName"] = generate_name
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {"predictor": predictor(spec, placement)},
    }


def record(obj: dict[str, Any]) -> DeploymentSpec | None:
    """The platform's record of ``obj``, or None when llmops did not deploy it."""
    metadata = obj.get("metadata") or {}
    if (metadata.get("labels") or {}).get(MANAGED_BY) != "llmops":
        return None
    raw = (metadata.get("annotations") or {}).get(SPEC_ANNOTATION)
    if not raw:
        return None
    try:
        return DeploymentSpec.model_validate_json(raw)
    except ValueError:
        return None


def adopted(obj: dict[str, Any], spec: DeploymentSpec) -> DeploymentSpec:
    """``spec`` as the record of ``obj``, an InferenceService llmops did not deploy: the
    model, runtime and replica range it runs."""
    predictor_spec = (obj.get("spec") or {}).get("predictor") or {}
    model = predictor_spec.get("model") or {}
    min_replicas = int(predictor_spec.get("minReplicas", 1))
    scaling = spec.autoscaling.model_copy(
        update={
            "min_replicas": min_replicas,
            "max_replicas": int(predictor_spec.get("maxReplicas", min_replicas) or 1),
        }
    )
    return spec.model_copy(
        update={
            "model_uri": model.get("storageUri") or spec.model_uri,
            "runtime": model.get("runtime") or spec.runtime,
            "autoscaling": scaling,
        }
    )


def previous_model_uri(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(PREVIOUS_ANNOTATION)


def effective(
    obj: dict[str, Any], recorded: DeploymentSpec, placement: Placement
) -> tuple[DeploymentSpec, str | None]:
    """The record as the object now stands, and the model the previous revision serves.

    KServe copies an InferenceService's labels and annotations into its revisions, so a
    change of the annotated record alone would roll out a new revision. The writes that
    only move traffic (a canary's share, a promotion) therefore change
    ``canaryTrafficPercent`` and nothing else, and the record is read through the object:
    the candidate named with no ``canaryTrafficPercent`` is promoted; with one, it is a
    canary at that share; the stable model named with 0% is a rolled-back canary."""
    previous = previous_model_uri(obj)
    canary = recorded.canary
    if canary is None:
        return recorded, previous
    predictor_spec = (obj.get("spec") or {}).get("predictor") or {}
    percent = predictor_spec.get("canaryTrafficPercent")
    storage = (predictor_spec.get("model") or {}).get("storageUri")
    try:
        candidate = storage_uri(canary.model_uri, placement)
        stable = storage_uri(recorded.model_uri, placement)
    except InvalidRequest:
        return recorded, previous
    if storage == candidate and storage != stable:
        if percent is None:
            promoted = recorded.model_copy(update={"model_uri": canary.model_uri, "canary": None})
            return promoted, recorded.model_uri
        if percent != canary.traffic_percent:
            moved = canary.model_copy(update={"traffic_percent": int(percent)})
            return recorded.model_copy(update={"canary": moved}), previous
    if storage == stable and percent == 0:
        return recorded.model_copy(update={"canary": None}), previous
    return recorded, previous


# -- reading status ---------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """What an InferenceService's status says, before the predictor is probed."""

    state: DeploymentState
    ready: bool
    message: str
    traffic: list[TrafficSplit]
    rollout: RolloutStatus
    #: the spec still names the stable model although the record wants a canary (the
    #: canary starts once the stable revision serves)
    canary_due: bool = False


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in status.get("conditions") or []}


def _why(condition: dict[str, Any] | None) -> str:
    if condition is None:
        return ""
    reason, message = condition.get("reason") or "", condition.get("message") or ""
    return f"{reason}: {message}" if reason and message else reason or message


def url(obj: dict[str, Any], *, in_cluster: bool = False) -> str | None:
    """Where the predictor answers: ``status.url`` (or the predictor component's), or,
    ``in_cluster``, ``status.address.url`` when KServe set it."""
    status = obj.get("status") or {}
    if in_cluster and (address := (status.get("address") or {}).get("url")):
        return str(address)
    found = status.get("url") or ((status.get("components") or {}).get("predictor") or {}).get(
        "url"
    )
    return str(found) if found else None


def observe(obj: dict[str, Any], spec: DeploymentSpec, previous: str | None = None) -> Observed:
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    predictor_status = (status.get("components") or {}).get("predictor") or {}
    conditions = _conditions(status)
    latest = predictor_status.get("latestCreatedRevision")
    ready_revision = predictor_status.get("latestReadyRevision")
    stable_revision = predictor_status.get("latestRolledoutRevision")
    traffic = _traffic(predictor_status, spec, previous or previous_model_uri(obj), latest)
    spec_predictor = (obj.get("spec") or {}).get("predictor") or {}
    # the record wants a canary the predictor does not run yet (it starts once the
    # stable revision serves)
    canary_due = spec.canary is not None and "canaryTrafficPercent" not in spec_predictor
    ready_condition = conditions.get("Ready")
    ready_now = (ready_condition or {}).get("status") == "True"
    failure = _failure(status, conditions)
    revisions = {
        "latest_revision": latest,
        "ready_revision": ready_revision,
        "stable_revision": stable_revision,
    }

    def seen(
        state: DeploymentState, ready: bool, message: str, rollout: RolloutState, why: str = ""
    ) -> Observed:
        return Observed(
            state=state,
            ready=ready,
            message=message,
            traffic=traffic,
            rollout=RolloutStatus(state=rollout, message=why or message, **revisions),
            canary_due=canary_due,
        )

    serving = any(split.percent > 0 for split in traffic) and url(obj) is not None
    if metadata.get("deletionTimestamp"):
        return seen(DeploymentState.DELETING, False, "being deleted", RolloutState.STABLE)
    generation = metadata.get("generation")
    observed_generation = status.get("observedGeneration")
    first = stable_revision is None and not serving
    moving = DeploymentState.DEPLOYING if first else DeploymentState.UPDATING
    if generation is not None and observed_generation != generation:
        return seen(
            moving,
            serving and not first,
            f"KServe's controller has not observed generation {generation} yet "
            f"(observed: {observed_generation})",
            RolloutState.PROGRESSING,
        )
    if failure is not None:
        if serving and not first:
            message = (
                f"the newest revision {latest or ''} failed ({failure}); "
                f"{stable_revision or 'the previous revision'} still serves"
            )
            return seen(DeploymentState.FAILED, True, message, RolloutState.FAILED)
        return seen(DeploymentState.FAILED, False, failure, RolloutState.FAILED)
    if latest is not None and ready_revision != latest:
        message = f"revision {latest} is rolling out" + (
            f"; {stable_revision} still serves" if serving and stable_revision else ""
        )
        return seen(moving, serving and not first, message, RolloutState.PROGRESSING)
    if not ready_now:
        why = _why(ready_condition) or "KServe's controller has not reported Ready yet"
        return seen(moving, False, why, RolloutState.PROGRESSING)
    if canary_due:
        return seen(
            DeploymentState.UPDATING,
            True,
            "the canary starts once the stable revision serves",
            RolloutState.PROGRESSING,
        )
    if spec.canary is not None and any(s.tag == "canary" and s.percent > 0 for s in traffic):
        canary = next(s for s in traffic if s.tag == "canary")
        return seen(
            DeploymentState.READY,
            True,
            "Ready",
            RolloutState.CANARY,
            f"canary {latest} takes {canary.percent}% of the traffic",
        )
    return seen(DeploymentState.READY, True, "Ready", RolloutState.STABLE)


def _failure(status: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> str | None:
    """Why the newest revision failed, or None while nothing did."""
    model_status = status.get("modelStatus") or {}
    failure_info = model_status.get("lastFailureInfo") or {}
    blocked = model_status.get("transitionStatus") in ("BlockedByFailedLoad", "InvalidSpec")
    if blocked or (model_status.get("states") or {}).get("activeModelState") == "FailedToLoad":
        detail = _why(failure_info) or model_status.get("transitionStatus", "")
        return f"the model failed to load: {detail}"
    for kind in ("LatestDeploymentReady", "PredictorConfigurationReady", "PredictorReady"):
        condition = conditions.get(kind)
        if condition is None or condition.get("status") != "False":
            continue
        reason = condition.get("reason") or ""
        # False with a reason of a revision that is only on its way is not a failure
        if reason in ("", "Deploying", "RevisionMissing", "PredictorConfigurationReady"):
            continue
        return f"{kind}: {_why(condition)}"
    return None


def _traffic(
    predictor_status: dict[str, Any],
    spec: DeploymentSpec,
    previous: str | None,
    latest: str | None,
) -> list[TrafficSplit]:
    """The traffic split by model: the newest revision serves the canary when there is
    one (else the stable model); any other revision serves what was stable before."""
    shares: dict[tuple[str, str], int] = {}
    for entry in predictor_status.get("traffic") or []:
        percent = int(entry.get("percent") or 0)
        if percent <= 0:
            continue
        newest = bool(entry.get("latestRevision")) or (
            latest is not None and entry.get("revisionName") == latest
        )
        if newest:
            tag, uri = (
                ("canary", spec.canary.model_uri) if spec.canary else ("stable", spec.model_uri)
            )
        elif spec.canary is not None:
            tag, uri = "stable", spec.model_uri
        else:
            tag, uri = "stable", previous or spec.model_uri
        shares[(tag, uri)] = shares.get((tag, uri), 0) + percent
    return [
        TrafficSplit(tag=tag, model_uri=uri, percent=percent)
        for (tag, uri), percent in sorted(shares.items())
    ]


def target(spec: DeploymentSpec, url: str) -> InferenceTarget:
    """The Hugging Face runtime's OpenAI routes under ``url``."""
    return InferenceTarget(
        base_url=f"{url.rstrip('/')}/openai/v1",
        protocol=InferenceProtocol.OPENAI,
        model_name=served_name(spec),
    )
