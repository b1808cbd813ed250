"""KServe's serverless mode as its status shows it: Knative revisions of the predictor,
the Knative Service's conditions and traffic, and how KServe's controller copies them into
the InferenceService (``PropagateStatus``, ``PropagateModelStatus``, the cross-component
conditions and the ingress reconciler), ported from their Go sources closely enough that
a plugin reading a real KServe status reads this one the same way.

Nothing here locks, starts or loads: the double calls it under its lock.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# revision states
PENDING = "Pending"  # created, waiting for the ready delay (pod starting)
LOADING = "Loading"  # pulling storage and loading the model
READY = "Ready"
FAILED = "Failed"
RETIRED = "Retired"  # superseded before it became ready, or its service went away

#: KServe's ClusterServingRuntime for Hugging Face models: the only runtime the double has.
RUNTIME = "kserve-huggingfaceserver"
MODEL_FORMATS = frozenset({"huggingface"})
#: Annotations KServe does not copy into the Knative revision template.
_NOT_PROPAGATED = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
#: Turns on the ``latest``/``prev`` traffic tags (KServe's EnableRoutingTagAnnotationKey).
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"


def timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 to the second, as Kubernetes writes times."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Revision:
    """A Knative revision of the predictor: one predictor template, one model."""

    name: str
    number: int
    template: dict[str, Any]
    served_name: str
    storage_uri: str | None
    created: float
    due: float
    state: str = PENDING
    reason: str = ""
    message: str = ""
    failed_at: str | None = None
    app: Any = None
    #: an injected failure to apply when the revision would start loading
    injected: tuple[str, str] | None = None

    def fail(self, reason: str, message: str) -> None:
        self.state, self.reason, self.message = FAILED, reason, message
        self.failed_at = timestamp()
        self.app = None


class ConditionSet:
    """knative.dev/pkg's condition manager for a living condition set: a happy condition
    (``Ready``) that follows its dependents, severity ``Info`` on the other conditions,
    ``lastTransitionTime`` moved only by a change, conditions sorted by type."""

    def __init__(self, happy: str, dependents: tuple[str, ...]) -> None:
        self.happy = happy
        self.dependents = dependents
        self.conditions: dict[str, dict[str, Any]] = {}

    def initialize(self) -> None:
        for kind in (self.happy, *self.dependents):
            if kind not in self.conditions:
                self._set(kind, "Unknown")

    def get(self, kind: str) -> dict[str, Any] | None:
        return self.conditions.get(kind)

    def status(self, kind: str) -> str:
        condition = self.conditions.get(kind)
        return "Unknown" if condition is None else str(condition["status"])

    def is_happy(self) -> bool:
        return self.status(self.happy) == "True"

    def _set(self, kind: str, status: str, reason: str = "", message: str = "") -> None:
        new: dict[str, Any] = {"type": kind, "status": status}
        if kind != self.happy and kind not in self.dependents:
            new["severity"] = "Info"
        if reason:
            new["reason"] = reason
        if message:
            new["message"] = message
        old = self.conditions.get(kind)
        if old is not None and {k: v for k, v in old.items() if k != "lastTransitionTime"} == new:
            return
        new["lastTransitionTime"] = timestamp()
        self.conditions[kind] = new

    def mark_true(self, kind: str) -> None:
        self._set(kind, "True")
        if all(self.status(d) == "True" for d in self.dependents):
            self._set(self.happy, "True")

    def mark_false(self, kind: str, reason: str, message: str) -> None:
        self._set(kind, "False", reason, message)
        if kind in self.dependents:
            self._set(self.happy, "False", reason, message)

    def mark_unknown(self, kind: str, reason: str, message: str) -> None:
        self._set(kind, "Unknown", reason, message)
        for dependent in self.dependents:
            if self.status(dependent) == "False":
                if self.status(self.happy) != "False":
                    self.mark_false(self.happy, reason, message)
                return
        if kind in self.dependents:
            self._set(self.happy, "Unknown", reason, message)

    def set_from(self, kind: str, condition: Mapping[str, Any] | None) -> None:
        """KServe's ``SetCondition``: copy another condition's status (and, unless True,
        its reason and message)."""
        if condition is None:
            return
        status = condition.get("status")
        reason, message = str(condition.get("reason", "")), str(condition.get("message", ""))
        if status == "True":
            self.mark_true(kind)
        elif status == "False":
            self.mark_false(kind, reason, message)
        else:
            self.mark_unknown(kind, reason, message)

    def listing(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(self.conditions[k]) for k in sorted(self.conditions)]


class WeightedRotation:
    """Smooth weighted round robin: with weights 20 and 80, every 5 consecutive picks hold
    exactly one of the first; restarts whenever the weights change."""

    def __init__(self) -> None:
        self._weights: dict[str, int] = {}
        self._current: dict[str, int] = {}

    def pick(self, weights: Mapping[str, int]) -> str | None:
        live = {k: v for k, v in weights.items() if v > 0}
        if not live:
            return None
        if live != self._weights:
            self._weights = dict(live)
            self._current = dict.fromkeys(live, 0)
        total = sum(live.values())
        for name, weight in live.items():
            self._current[name] += weight
        chosen = max(live, key=lambda name: self._current[name])
        self._current[chosen] -= total
        return chosen


@dataclass
class ServiceState:
    """What KServe, Knative and the double know about one InferenceService."""

    namespace: str
    name: str
    uid: str
    revisions: list[Revision] = field(default_factory=list)
    latest_ready: str | None = None
    rolled_out: str | None = None
    previous_rolled_out: str | None = None
    #: the Knative service's URL once it was Ready (KServe's components.predictor.url)
    predictor_url: str | None = None
    #: status.url once the ingress was created
    url: str | None = None
    traffic: list[dict[str, Any]] = field(default_factory=list)
    ksvc: ConditionSet = field(
        default_factory=lambda: ConditionSet("Ready", ("ConfigurationsReady", "RoutesReady"))
    )
    isvc: ConditionSet = field(
        default_factory=lambda: ConditionSet("Ready", ("PredictorReady", "IngressReady"))
    )
    model_status: dict[str, Any] = field(default_factory=dict)
    observed_generation: int | None = None
    #: a spec KServe cannot serve (no runtime): (FailureInfo reason, message)
    invalid: tuple[str, str] | None = None
    down: bool = False
    fail_latest: tuple[str, str] | None = None
    ingress: Any = None
    ingress_starting: bool = False
    deleting_since: float | None = None
    cleaned: bool = False
    rotation: WeightedRotation = field(default_factory=WeightedRotation)
    probe_rotation: WeightedRotation = field(default_factory=WeightedRotation)

    @property
    def configuration(self) -> str:
        return f"{self.name}-predictor"

    @property
    def latest(self) -> Revision | None:
        return self.revisions[-1] if self.revisions else None

    def revision(self, name: str | None) -> Revision | None:
        return next((r for r in self.revisions if r.name == name), None)

    def weights(self) -> dict[str, int]:
        shares: dict[str, int] = {}
        for entry in self.traffic:
            name = str(entry["revisionName"])
            shares[name] = shares.get(name, 0) + int(entry.get("percent", 0))
        return shares

    def tagged(self, tag: str) -> str | None:
        return next((str(e["revisionName"]) for e in self.traffic if e.get("tag") == tag), None)

    def needed(self) -> set[str]:
        """Revisions that may take traffic (the others are scaled to zero)."""
        names = {self.latest_ready, self.rolled_out, self.previous_rolled_out}
        if self.latest is not None:
            names.add(self.latest.name)
        return {n for n in names if n}


# -------------------------------------------------------------------------------------
# The predictor spec -> revisions
# -------------------------------------------------------------------------------------


def template(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What KServe puts into the Knative revision template: a change here is a new
    revision. canaryTrafficPercent goes to the traffic block instead."""
    predictor = copy.deepcopy(dict(obj.get("spec", {}).get("predictor") or {}))
    predictor.pop("canaryTrafficPercent", None)
    metadata = obj.get("metadata") or {}
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k not in _NOT_PROPAGATED
    }
    return {
        "predictor": predictor,
        "labels": dict(metadata.get("labels") or {}),
        "annotations": annotations,
    }


def served_model_name(model: Mapping[str, Any], default: str) -> str:
    """``--model_name=X`` or ``--model_name X`` in the container's args, else ``default``
    (KServe's Hugging Face runtime is started with ``--model_name={{.Name}}``)."""
    args = [str(a) for a in model.get("args") or []]
    for index, arg in enumerate(args):
        if arg.startswith("--model_name="):
            return arg.split("=", 1)[1]
        if arg == "--model_name" and index + 1 < len(args):
            return args[index + 1]
    return default


def runtime_problem(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why KServe would find no runtime for this spec here: (reason, message)."""
    spec = obj.get("spec") or {}
    for component in ("transformer", "explainer"):
        if spec.get(component) is not None:
            return (
                "InvalidPredictorSpec",
                f"the Kubernetes API double does not run a {component}",
            )
    model = (spec.get("predictor") or {}).get("model")
    if not isinstance(model, dict):
        return (
            "NoSupportingRuntime",
            "no runtime found to support the predictor: the Kubernetes API double runs "
            f"predictor.model with modelFormat {sorted(MODEL_FORMATS)} only",
        )
    runtime = model.get("runtime")
    if runtime and runtime != RUNTIME:
        return ("RuntimeNotRecognized", f"specified runtime {runtime} does not exist")
    model_format = str((model.get("modelFormat") or {}).get("name", ""))
    if model_format.lower() not in MODEL_FORMATS:
        return (
            "NoSupportingRuntime",
            f"no runtime found to support predictor with model type: {model_format or '<none>'}",
        )
    return None


# -------------------------------------------------------------------------------------
# Status
# -------------------------------------------------------------------------------------


def _traffic(state: ServiceState, canary: int | None, tags: bool) -> list[dict[str, Any]]:
    """The Knative route's resolved traffic for the targets KServe writes into the
    Knative service: ``latestRevision`` resolves to the latest ready revision."""
    if state.latest_ready is None:
        return []
    targets: list[tuple[str, str, bool, int]] = []
    if canary is not None and state.rolled_out:
        targets.append(("latest", state.latest_ready, True, canary))
        if canary < 100:
            targets.append(("prev", state.rolled_out, False, 100 - canary))
    else:
        targets.append(("latest", state.latest_ready, True, 100))
    entries: list[dict[str, Any]] = []
    for tag, revision, latest, percent in targets:
        entry: dict[str, Any] = {
            "revisionName": revision,
            "latestRevision": latest,
            "percent": percent,
        }
        if tags:
            entry["tag"] = tag
            entry["url"] = f"http://{tag}-{state.configuration}.{state.namespace}.example.com"
        entries.append(entry)
    return entries


def _propagate_rollout(state: ServiceState, traffic: list[dict[str, Any]]) -> None:
    """KServe's PropagateStatus: track the revision rolled out to 100%, and roll back."""
    latest = state.latest
    by_revision: dict[str, int] = {}
    for entry in traffic:
        by_revision[entry["revisionName"]] = by_revision.get(entry["revisionName"], 0) + int(
            entry["percent"]
        )
    for entry in traffic:
        if entry["revisionName"] != state.latest_ready or not entry.get("latestRevision"):
            continue
        if state.rolled_out != state.latest_ready:
            if entry["percent"] == 100:
                state.previous_rolled_out = state.rolled_out
                state.rolled_out = state.latest_ready
        elif (
            latest is not None
            and state.latest_ready == latest.name
            and entry["percent"] < 100
            and by_revision.get(entry["revisionName"]) == 100
            and state.previous_rolled_out
        ):
            state.rolled_out = state.previous_rolled_out


def _knative(state: ServiceState) -> None:
    """The Knative service's ConfigurationsReady, RoutesReady and Ready."""
    latest = state.latest
    assert latest is not None
    ksvc = state.ksvc
    ksvc.initialize()
    if latest.state == READY:
        ksvc.mark_true("ConfigurationsReady")
    elif latest.state == FAILED:
        ksvc.mark_false(
            "ConfigurationsReady",
            "RevisionFailed",
            f'Revision "{latest.name}" failed with message: {latest.message}.',
        )
    else:
        ksvc.mark_unknown("ConfigurationsReady", "", "")
    if state.latest_ready is not None:
        ksvc.mark_true("RoutesReady")
    elif latest.state == FAILED:
        ksvc.mark_false(
            "RoutesReady",
            "RevisionMissing",
            f'Configuration "{state.configuration}" does not have any ready Revision.',
        )
    else:
        ksvc.mark_unknown(
            "RoutesReady",
            "RevisionMissing",
            f'Configuration "{state.configuration}" is waiting for a Revision to become ready.',
        )


def _update_model_states(
    state: ServiceState, model_state: str, info: dict[str, Any] | None
) -> None:
    """KServe's UpdateModelRevisionStates."""
    status = state.model_status
    states = status.setdefault("states", {"activeModelState": "Pending"})
    states["targetModelState"] = model_state
    if model_state in ("Pending", "Loading"):
        status["transitionStatus"] = "InProgress"
    elif model_state == "Loaded":
        status["transitionStatus"] = "UpToDate"
        states["activeModelState"] = "Loaded"
    elif model_state == "FailedToLoad":
        status["transitionStatus"] = "BlockedByFailedLoad"
    if info is not None:
        status["lastFailureInfo"] = info


def _model_status(state: ServiceState) -> None:
    """KServe's PropagateModelStatus for the latest revision's pod."""
    latest = state.latest
    assert latest is not None
    copies: dict[str, Any] = {"failedCopies": 0}
    if latest.state == READY:
        copies["totalCopies"] = 1
    state.model_status["copies"] = copies
    if latest.state == FAILED:
        info = {
            "reason": "ModelLoadFailed",
            "message": latest.message,
            "modelRevisionName": latest.name,
            "time": latest.failed_at or timestamp(),
        }
        _update_model_states(state, "FailedToLoad", info)
    elif latest.state == READY and state.isvc.is_happy() and state.latest_ready == latest.name:
        _update_model_states(state, "Loaded", None)
    elif latest.state == LOADING:
        _update_model_states(state, "Loading", None)
    else:
        _update_model_states(state, "Pending", None)


def _cross_component(state: ServiceState) -> None:
    for summary, component in (
        ("RoutesReady", "PredictorRouteReady"),
        ("LatestDeploymentReady", "PredictorConfigurationReady"),
    ):
        status = state.isvc.status(component)
        if status == "True":
            state.isvc.mark_true(summary)
        elif status == "False":
            state.isvc.mark_false(summary, f"{component} not ready", "")
        else:
            state.isvc.mark_unknown(summary, f"{component} not ready", "")


def _ingress(state: ServiceState, ingress_url: str | None) -> None:
    """KServe's ingress reconciler: nothing before the predictor has a URL; the ingress
    follows PredictorReady."""
    if state.predictor_url is None or ingress_url is None:
        return
    predictor = state.isvc.status("PredictorReady")
    if predictor != "True":
        state.isvc.set_from(
            "IngressReady", {"status": predictor, "reason": "Predictor ingress not created"}
        )
        return
    state.url = ingress_url
    state.isvc.mark_true("IngressReady")


def _pass(state: ServiceState, obj: Mapping[str, Any], ingress_url: str | None) -> None:
    """One reconcile of KServe's controller (with Knative's state as of now)."""
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    canary = predictor.get("canaryTrafficPercent")
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    tags = annotations.get(TAG_ROUTING_ANNOTATION) == "true"
    state.isvc.initialize()
    if state.latest is not None:
        _knative(state)
        state.traffic = _traffic(state, canary if isinstance(canary, int) else None, tags)
        _propagate_rollout(state, state.traffic)
        if state.ksvc.is_happy() and ingress_url is not None:
            state.predictor_url = ingress_url
        state.isvc.set_from("PredictorReady", state.ksvc.get("Ready"))
        state.isvc.set_from("PredictorRouteReady", state.ksvc.get("RoutesReady"))
        state.isvc.set_from("PredictorConfigurationReady", state.ksvc.get("ConfigurationsReady"))
        if state.invalid is None:
            state.observed_generation = int(obj["metadata"].get("generation", 1))
            _model_status(state)
        _cross_component(state)
    if state.invalid is not None:
        reason, message = state.invalid
        model_status = state.model_status
        model_status["transitionStatus"] = "InvalidSpec"
        model_status.setdefault("states", {"activeModelState": "Pending"})
        model_status["states"]["targetModelState"] = "FailedToLoad"
        model_status["lastFailureInfo"] = {"reason": reason, "message": message}
    _ingress(state, ingress_url)


def reconcile_status(
    state: ServiceState, obj: Mapping[str, Any], ingress_url: str | None
) -> dict[str, Any]:
    """The InferenceService's status after KServe has reconciled until nothing changes."""
    for _ in range(4):
        before = (state.rolled_out, state.isvc.listing(), copy.deepcopy(state.model_status))
        _pass(state, obj, ingress_url)
        if before == (state.rolled_out, state.isvc.listing(), state.model_status):
            break
    return _document(state)


def _document(state: ServiceState) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if state.url is not None:
        status["url"] = state.url
        status["address"] = {"url": f"http://{state.name}.{state.namespace}.svc.cluster.local"}
    if state.latest is not None:
        predictor: dict[str, Any] = {"latestCreatedRevision": state.latest.name}
        for key, value in (
            ("latestReadyRevision", state.latest_ready),
            ("latestRolledoutRevision", state.rolled_out),
            ("previousRolledoutRevision", state.previous_rolled_out),
        ):
            if value:
                predictor[key] = value
        if state.traffic:
            predictor["traffic"] = copy.deepcopy(state.traffic)
        if state.predictor_url is not None:
            predictor["url"] = state.predictor_url
            predictor["address"] = {
                "url": f"http://{state.configuration}.{state.namespace}.svc.cluster.local"
            }
        status["components"] = {"predictor": predictor}
    status["conditions"] = state.isvc.listing()
    if state.model_status:
        status["modelStatus"] = copy.deepcopy(state.model_status)
    if state.observed_generation is not None:
        status["observedGeneration"] = state.observed_generation
    status["deploymentMode"] = "Serverless"
    return status
