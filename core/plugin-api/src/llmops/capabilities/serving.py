"""Model serving (US2): deployments with autoscaling and canaries, inference targets."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pydantic import Field

from llmops.capabilities.common import Health, Value, utcnow


class InferenceProtocol(StrEnum):
    OPENAI = "openai"  # /v1/chat/completions, /v1/completions, /v1/embeddings
    KSERVE_V1 = "kserve-v1"  # /v1/models/{name}:predict
    OPEN_INFERENCE_V2 = "open-inference-v2"  # /v2/models/{name}/infer


class FrameworkInfo(Value):
    name: str
    display_name: str
    protocols: list[InferenceProtocol]
    supports_autoscaling: bool = False
    supports_canary: bool = False
    supports_gpu: bool = False
    supports_scale_to_zero: bool = False
    scale_metrics: list[str] = Field(
        default_factory=list,
        description="the metrics AutoscalingSpec.scale_metric may name (empty: none)",
    )
    runtimes: list[str] = Field(
        default_factory=list,
        description="the model servers DeploymentSpec.runtime may name, the default first "
        "(empty: the framework has one)",
    )


class AutoscalingSpec(Value):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float | None = Field(default=None, gt=0)
    scale_metric: str | None = Field(default=None, description="concurrency, rps, cpu, memory")
    scale_target: int | None = Field(default=None, gt=0)


class ResourceSpec(Value):
    cpu: str | None = None
    memory: str | None = None
    gpus: int = Field(default=0, ge=0)


class CanarySpec(Value):
    model_uri: str
    traffic_percent: int = Field(ge=0, le=100)


class DeploymentSpec(Value):
    endpoint_id: str
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    model_uri: str
    model_format: str | None = None
    runtime: str | None = None
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    resources: ResourceSpec = ResourceSpec()
    canary: CanarySpec | None = None
    env: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict, description="framework specific")
    idempotency_key: str | None = None


class DeploymentUpdate(Value):
    model_uri: str | None = None
    autoscaling: AutoscalingSpec | None = None
    resources: ResourceSpec | None = None
    canary: CanarySpec | None = None
    promote_canary: bool = False
    rollback_canary: bool = False


class DeploymentState(StrEnum):
    PENDING = "pending"
    DEPLOYING = "deploying"
    READY = "ready"
    UPDATING = "updating"
    FAILED = "failed"
    DELETING = "deleting"
    UNKNOWN = "unknown"


class ReplicaStatus(Value):
    name: str
    state: str
    message: str = ""


class TrafficSplit(Value):
    tag: str  # "stable" or "canary"
    model_uri: str
    percent: int = Field(ge=0, le=100)


class InferenceTarget(Value):
    """Where the gateway sends inference requests for a deployment."""

    base_url: str
    protocol: InferenceProtocol
    model_name: str
    headers: dict[str, str] = Field(default_factory=dict)


class RolloutState(StrEnum):
    STABLE = "stable"  # the desired configuration serves all traffic
    PROGRESSING = "progressing"  # a new configuration is on its way; the old one serves
    CANARY = "canary"  # a canary takes its share, the stable one the rest
    FAILED = "failed"  # the newest configuration failed; the last good one still serves


class RolloutStatus(Value):
    """Where a rollout stands, for frameworks that keep revisions (KServe)."""

    state: RolloutState
    message: str = ""
    latest_revision: str | None = Field(default=None, description="the newest created")
    ready_revision: str | None = Field(default=None, description="the newest ready")
    stable_revision: str | None = Field(default=None, description="the last rolled out")


class DeploymentStatus(Value):
    external_id: str
    state: DeploymentState
    ready: bool = False
    message: str = ""
    desired_replicas: int | None = None
    replicas: list[ReplicaStatus] = Field(default_factory=list)
    traffic: list[TrafficSplit] = Field(default_factory=list)
    target: InferenceTarget | None = None
    rollout: RolloutStatus | None = None
    ui_url: str | None = None
    observed_at: datetime = Field(default_factory=utcnow)


@runtime_checkable
class ServingProvider(Protocol):
    """A serving framework (KServe, Ray Serve, ...).

    * ``deploy`` may return before the deployment is ready (DEPLOYING); ``status`` says
      READY only when a request through the framework's data path would be answered.
    * ``status``, ``update``, ``delete`` and ``inference_target`` raise ``NotFound`` when
      the framework has no deployment under ``external_id``. The platform holds the
      desired state: its background worker deploys again, from the stored spec, an
      endpoint whose deployment ``status`` no longer finds, so ``deploy`` must accept the
      same spec (same idempotency key) again once the first is gone.
    * ``InferenceTarget.headers`` are the backend's own credentials for the gateway to
      send; they are kept out of every API answer.
    * Optionally also :class:`ChecksDeployments`: bad input answered before anything is
      recorded.
    """

    def framework(self) -> FrameworkInfo: ...
    def deploy(self, spec: DeploymentSpec) -> DeploymentStatus: ...
    def status(self, external_id: str) -> DeploymentStatus: ...
    def update(self, external_id: str, update: DeploymentUpdate) -> DeploymentStatus: ...
    def delete(self, external_id: str) -> None: ...
    def inference_target(self, external_id: str) -> InferenceTarget: ...
    def health(self) -> Health: ...


@runtime_checkable
class ChecksDeployments(Protocol):
    """A serving provider that can tell a spec its framework would refuse, up front."""

    def check(self, spec: DeploymentSpec) -> None:
        """Raise :class:`~llmops.errors.InvalidRequest` (with ``parameter``) for a spec the
        framework would refuse. The core calls it before it records an endpoint or a
        change, so bad input is answered at once (422) and nothing is recorded."""
        ...


@runtime_checkable
class AdoptsDeployments(Protocol):
    """A serving provider that can take over a deployment made outside the platform (by
    hand-written scripts), when endpoints move onto it (``llmops <plugin> migrate``)."""

    def adoptable(self, spec: DeploymentSpec) -> DeploymentSpec | None:
        """Reads only. When the framework runs a deployment named ``spec.name`` that the
        platform did not make: ``spec`` changed to describe what that deployment runs.
        None when there is none, or when it is the one the platform made for this spec
        (``deploy`` finds it by the idempotency key). Raises
        :class:`~llmops.errors.Conflict` when the name belongs to another endpoint."""
        ...

    def adopt(self, spec: DeploymentSpec) -> DeploymentStatus:
        """Make the deployment named ``spec.name`` the endpoint's (``spec`` as
        :meth:`adoptable` returned it), leaving what it runs as it is."""
        ...
