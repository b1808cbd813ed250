"""Bodies of the governance routes: policies, prices and costs (camelCase on the wire,
like schemas.py). The answers are read from the service's objects as they are
(``model_validate``, ``from_attributes``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from llmops.api.schemas import ApiModel, Input
from llmops.services import governance
from llmops.services.api_keys import Role

#: the most entries of an allow-list, and the longest entry
MAX_ALLOWED = 200
LICENSE_LENGTH = 100
SOURCE_LENGTH = 300

License = Annotated[str, Field(min_length=1, max_length=LICENSE_LENGTH, pattern=r"\S")]
Source = Annotated[str, Field(min_length=1, max_length=SOURCE_LENGTH, pattern=r"\S")]
DeployRole = Literal["admin", "editor"]
DEFAULT_DEPLOY_ROLES: tuple[DeployRole, ...] = ("admin", "editor")


class ModelImportPolicyIn(Input):
    allowed_licenses: list[License] | None = Field(
        default=None,
        max_length=MAX_ALLOWED,
        description="the licenses an imported model may carry, SPDX ids such as apache-2.0 or "
        "mit, compared case-insensitively; an import whose license the registry does not say "
        "is refused while this is set. null: any license",
    )
    allowed_sources: list[Source] | None = Field(
        default=None,
        max_length=MAX_ALLOWED,
        description="glob patterns on the repository id (Qwen/*, meta-llama/Llama-3*), "
        "compared case-insensitively: an import must match one. null: any repository",
    )


class EndpointPolicyIn(Input):
    max_replicas: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="the most replicas an endpoint may ask for: its autoscaling.maxReplicas. "
        "null: no limit",
    )
    max_gpus_per_replica: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="the most GPUs one replica may ask for (resources.gpus). null: no limit",
    )
    max_gpus: int | None = Field(
        default=None,
        ge=0,
        le=100_000,
        description="the most GPUs an endpoint may ask for in all: autoscaling.maxReplicas x "
        "resources.gpus. null: no limit",
    )
    deploy_roles: list[DeployRole] = Field(
        default_factory=lambda: list(DEFAULT_DEPLOY_ROLES),
        min_length=1,
        max_length=2,
        description="the roles that may create, change (deployments, canaries included) and "
        "delete endpoints",
    )


class PoliciesIn(Input):
    model_imports: ModelImportPolicyIn = ModelImportPolicyIn()
    endpoints: EndpointPolicyIn = EndpointPolicyIn()

    def to_service(self) -> tuple[governance.ModelImportPolicy, governance.EndpointPolicy]:
        imports, endpoints = self.model_imports, self.endpoints
        return (
            governance.ModelImportPolicy(
                allowed_licenses=None
                if imports.allowed_licenses is None
                else tuple(imports.allowed_licenses),
                allowed_sources=None
                if imports.allowed_sources is None
                else tuple(imports.allowed_sources),
            ),
            governance.EndpointPolicy(
                max_replicas=endpoints.max_replicas,
                max_gpus_per_replica=endpoints.max_gpus_per_replica,
                max_gpus=endpoints.max_gpus,
                deploy_roles=tuple(Role(r) for r in endpoints.deploy_roles),
            ),
        )


class ModelImportPolicyOut(ApiModel):
    allowed_licenses: list[str] | None
    allowed_sources: list[str] | None


class EndpointPolicyOut(ApiModel):
    max_replicas: int | None
    max_gpus_per_replica: int | None
    max_gpus: int | None
    deploy_roles: list[str]


class Versioned(ApiModel):
    version: int = Field(description="how many times an admin set it; 0: never (the defaults)")
    updated_at: datetime | None
    updated_by: str | None = Field(description="the API key's name of the admin who set it")


class PoliciesOut(Versioned):
    model_imports: ModelImportPolicyOut
    endpoints: EndpointPolicyOut


class PricesIn(Input):
    replica_hour: float = Field(
        ge=0, le=1_000_000, description="the price of one replica for one hour"
    )
    gpu_hour: float = Field(
        ge=0, le=1_000_000, description="the price of one GPU for one hour, on top of its replica's"
    )
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", max_length=3)


class PricesOut(Versioned):
    replica_hour: float
    gpu_hour: float
    currency: str


class BucketCostOut(ApiModel):
    start: datetime
    end: datetime
    replica_hours: float
    gpu_hours: float
    cost: float


class ItemCostOut(ApiModel):
    id: str
    name: str
    state: str = Field(description="an endpoint: active or deleted; a training job: its status")
    replica_hours: float
    gpu_hours: float
    cost: float
    series: list[BucketCostOut] = Field(description="one entry per bucket of the window")


class CostReportOut(ApiModel):
    since: datetime
    until: datetime
    bucket: Literal["hour", "day"]
    prices: PricesOut
    currency: str
    replica_hours: float
    gpu_hours: float
    cost: float = Field(description="replicaHours x prices.replicaHour + gpuHours x prices.gpuHour")
    series: list[BucketCostOut] = Field(description="endpoints and jobs together, per bucket")
    endpoints: list[ItemCostOut] = Field(description="the costliest first")
    jobs: list[ItemCostOut] = Field(description="the costliest first")
