"""Governance: policies an admin sets and the services enforce, and the cost of what
endpoints and training jobs used, at admin-set prices.

Policies (one document, ``governance_settings`` row ``policies``):

* ``model_imports.allowed_licenses``: the licenses an import from a registry may carry,
  compared case-insensitively with the SPDX id the registry gives (``apache-2.0``); an
  import whose license the registry does not say is refused while the list is set.
  ``None``: any license.
* ``model_imports.allowed_sources``: glob patterns (``Qwen/*``) one of which the
  repository id must match, case-insensitively. ``None``: any repository.
* ``endpoints.max_replicas``: the most replicas an endpoint's autoscaling may ask for
  (its ``maxReplicas``).
* ``endpoints.max_gpus_per_replica``: the most GPUs one replica may ask for
  (``resources.gpus``).
* ``endpoints.max_gpus``: the most GPUs an endpoint may ask for in all: its
  ``maxReplicas`` times its GPUs per replica.
* ``endpoints.deploy_roles``: the roles that may create, change and delete endpoints and
  their deployments (canaries included); admin and editor unless set.

The checks run in the services when the change is asked for, before anything is
recorded. A violation raises :class:`~llmops.errors.PolicyViolation` (403
``policy-violation``, naming the policy, the value asked for and the limit); the API's
audit middleware records the refused request as ``denied`` in a transaction of its own,
with the policy's details (:mod:`llmops.api.errors`).

Costs: an endpoint's use is kept as intervals (``endpoint_usage``) opened, closed or
rotated whenever the platform learns its deployment's replicas or GPUs changed
(:func:`observe_deployment`), and closed when it fails or is deleted
(:func:`close_usage`). A training job's use is its run from ``started_at`` to
``finished_at`` (to now while it runs) at one replica; jobs declare no GPUs, so their
GPU-hours are 0. Cost = replica-hours x ``replica_hour`` + GPU-hours x ``gpu_hour``,
where GPU-hours = hours x replicas x GPUs per replica.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, object_session

from llmops.auth import current_principal
from llmops.capabilities.orchestration import PipelineState
from llmops.capabilities.serving import (
    AutoscalingSpec,
    DeploymentSpec,
    DeploymentState,
    DeploymentStatus,
    ResourceSpec,
)
from llmops.db.governance import EndpointUsage, GovernanceSetting
from llmops.db.models import ServingDeployment, ServingEndpoint, TrainingJob, utcnow
from llmops.errors import InvalidRequest, PolicyViolation
from llmops.services.api_keys import Role

POLICIES = "policies"
PRICES = "prices"

#: the roles a deploy policy may name (a viewer may not write, a job token only its job)
DEPLOY_ROLES = (Role.ADMIN, Role.EDITOR)

#: the clock of usage intervals and cost reports (tests set it)
clock: Callable[[], datetime] = utcnow


# -- policies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelImportPolicy:
    allowed_licenses: tuple[str, ...] | None = None
    allowed_sources: tuple[str, ...] | None = None


@dataclass(frozen=True)
class EndpointPolicy:
    max_replicas: int | None = None
    max_gpus_per_replica: int | None = None
    max_gpus: int | None = None
    deploy_roles: tuple[Role, ...] = DEPLOY_ROLES


@dataclass(frozen=True)
class Policies:
    model_imports: ModelImportPolicy = field(default_factory=ModelImportPolicy)
    endpoints: EndpointPolicy = field(default_factory=EndpointPolicy)
    version: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None


@dataclass(frozen=True)
class Prices:
    replica_hour: float = 0.0
    gpu_hour: float = 0.0
    currency: str = "USD"
    version: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None


def _strings(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


def _policies_from(row: GovernanceSetting | None) -> Policies:
    if row is None:
        return Policies()
    imports = row.value.get("model_imports") or {}
    endpoints = row.value.get("endpoints") or {}
    roles = endpoints.get("deploy_roles")
    return Policies(
        model_imports=ModelImportPolicy(
            allowed_licenses=_strings(imports.get("allowed_licenses")),
            allowed_sources=_strings(imports.get("allowed_sources")),
        ),
        endpoints=EndpointPolicy(
            max_replicas=endpoints.get("max_replicas"),
            max_gpus_per_replica=endpoints.get("max_gpus_per_replica"),
            max_gpus=endpoints.get("max_gpus"),
            deploy_roles=DEPLOY_ROLES if roles is None else tuple(Role(r) for r in roles),
        ),
        version=row.version,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def get_policies(session: Session) -> Policies:
    """The policies in force; the defaults (nothing limited, admin and editor deploy)
    until an admin sets them."""
    return _policies_from(session.get(GovernanceSetting, POLICIES))


def _actor() -> str | None:
    principal = current_principal.get()
    return principal.name if principal is not None else None


def _store(session: Session, name: str, value: dict[str, Any]) -> GovernanceSetting:
    row = session.get(GovernanceSetting, name, with_for_update=True)
    if row is None:
        row = GovernanceSetting(name=name, value=value, version=1)
        session.add(row)
    else:
        row.value = value
        row.version += 1
    row.updated_at = utcnow()
    row.updated_by = _actor()
    session.flush()
    return row


def set_policies(
    session: Session, model_imports: ModelImportPolicy, endpoints: EndpointPolicy
) -> Policies:
    """Replace the policies (the caller commits)."""
    licenses = model_imports.allowed_licenses
    value = {
        "model_imports": {
            "allowed_licenses": None
            if licenses is None
            else sorted({license.strip().lower() for license in licenses}),
            "allowed_sources": None
            if model_imports.allowed_sources is None
            else list(dict.fromkeys(s.strip() for s in model_imports.allowed_sources)),
        },
        "endpoints": {
            "max_replicas": endpoints.max_replicas,
            "max_gpus_per_replica": endpoints.max_gpus_per_replica,
            "max_gpus": endpoints.max_gpus,
            "deploy_roles": [r.value for r in DEPLOY_ROLES if r in endpoints.deploy_roles],
        },
    }
    unknown = [r.value for r in endpoints.deploy_roles if r not in DEPLOY_ROLES]
    if unknown:
        raise InvalidRequest(
            f"deployRoles may name {', '.join(r.value for r in DEPLOY_ROLES)}, not "
            f"{', '.join(unknown)}",
            parameter="endpoints.deployRoles",
        )
    return _policies_from(_store(session, POLICIES, value))


def _prices_from(row: GovernanceSetting | None) -> Prices:
    if row is None:
        return Prices()
    return Prices(
        replica_hour=float(row.value.get("replica_hour", 0.0)),
        gpu_hour=float(row.value.get("gpu_hour", 0.0)),
        currency=str(row.value.get("currency", "USD")),
        version=row.version,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def get_prices(session: Session) -> Prices:
    return _prices_from(session.get(GovernanceSetting, PRICES))


def set_prices(session: Session, replica_hour: float, gpu_hour: float, currency: str) -> Prices:
    value = {"replica_hour": float(replica_hour), "gpu_hour": float(gpu_hour), "currency": currency}
    return _prices_from(_store(session, PRICES, value))


# -- enforcement ------------------------------------------------------------------------


def check_import(session: Session, repo_id: str) -> ModelImportPolicy:
    """Refuse an import from a repository no allowed source matches; returns the policy
    for :func:`check_import_license`, which needs the registry's answer."""
    policy = get_policies(session).model_imports
    sources = policy.allowed_sources
    if sources is not None and not any(
        fnmatch.fnmatchcase(repo_id.lower(), pattern.lower()) for pattern in sources
    ):
        raise PolicyViolation(
            f"the policy modelImports.allowedSources allows imports from "
            f"{_listed(sources)} only; {repo_id!r} matches none of them",
            policy="modelImports.allowedSources",
            requested=repo_id,
            limit=list(sources),
        )
    return policy


def check_import_license(policy: ModelImportPolicy, repo_id: str, license: str | None) -> None:
    allowed = policy.allowed_licenses
    if allowed is None:
        return
    if not license or not license.strip():
        raise PolicyViolation(
            f"the policy modelImports.allowedLicenses allows {_listed(allowed)} only, and "
            f"the registry does not say which license {repo_id!r} has",
            policy="modelImports.allowedLicenses",
            requested=None,
            limit=list(allowed),
        )
    if license.strip().lower() not in {a.lower() for a in allowed}:
        raise PolicyViolation(
            f"the policy modelImports.allowedLicenses allows {_listed(allowed)} only; "
            f"{repo_id!r} has the license {license!r}",
            policy="modelImports.allowedLicenses",
            requested=license,
            limit=list(allowed),
        )


def check_deploy_role(session: Session, what: str) -> None:
    """Refuse the request's principal unless its role may deploy (work the platform does
    of its own, with no principal, always may)."""
    principal = current_principal.get()
    if principal is None or principal.role is None:
        return
    roles = get_policies(session).endpoints.deploy_roles
    if principal.role not in roles:
        raise PolicyViolation(
            f"the policy endpoints.deployRoles lets {_listed([r.value for r in roles])} "
            f"{what}; this key has the {principal.role.value} role",
            policy="endpoints.deployRoles",
            requested=principal.role.value,
            limit=[r.value for r in roles],
        )


def check_endpoint(session: Session, autoscaling: AutoscalingSpec, resources: ResourceSpec) -> None:
    """Refuse replicas or GPUs over the policy's limits (the most an endpoint may ask
    for: its autoscaling's ``maxReplicas``)."""
    policy = get_policies(session).endpoints
    replicas, gpus = autoscaling.max_replicas, resources.gpus
    if policy.max_replicas is not None and replicas > policy.max_replicas:
        raise PolicyViolation(
            f"the policy endpoints.maxReplicas allows at most {policy.max_replicas} "
            f"replicas per endpoint; this one asks for up to {replicas}",
            policy="endpoints.maxReplicas",
            requested=replicas,
            limit=policy.max_replicas,
            parameter="autoscaling.maxReplicas",
        )
    if policy.max_gpus_per_replica is not None and gpus > policy.max_gpus_per_replica:
        raise PolicyViolation(
            f"the policy endpoints.maxGpusPerReplica allows at most "
            f"{policy.max_gpus_per_replica} GPUs per replica; this endpoint asks for {gpus}",
            policy="endpoints.maxGpusPerReplica",
            requested=gpus,
            limit=policy.max_gpus_per_replica,
            parameter="resources.gpus",
        )
    total = replicas * gpus
    if policy.max_gpus is not None and total > policy.max_gpus:
        raise PolicyViolation(
            f"the policy endpoints.maxGpus allows at most {policy.max_gpus} GPUs per "
            f"endpoint (maxReplicas x GPUs per replica); this one asks for up to {total} "
            f"({replicas} x {gpus})",
            policy="endpoints.maxGpus",
            requested=total,
            limit=policy.max_gpus,
            parameter="resources.gpus",
        )


def _listed(values: Iterable[str]) -> str:
    return ", ".join(values) or "nothing"


# -- usage ------------------------------------------------------------------------------

#: the states in which a deployment holds no replicas
IDLE_STATES = frozenset({DeploymentState.FAILED.value, DeploymentState.DELETING.value})


def _open(session: Session, endpoint_id: str) -> list[EndpointUsage]:
    return list(
        session.scalars(
            select(EndpointUsage).where(
                EndpointUsage.endpoint_id == endpoint_id, EndpointUsage.ended_at.is_(None)
            )
        )
    )


def observe_deployment(
    endpoint: ServingEndpoint, deployment: ServingDeployment, status: DeploymentStatus
) -> None:
    """Keep the endpoint's open usage interval in step with what its framework said:
    the replicas it wants (``desired_replicas``, else the spec's ``minReplicas``) and the
    spec's GPUs per replica; none while it failed or is being deleted."""
    session = object_session(deployment)
    if session is None:
        return
    spec = DeploymentSpec.model_validate(deployment.spec)
    if status.state.value in IDLE_STATES:
        replicas = 0
    elif status.desired_replicas is not None:
        replicas = status.desired_replicas
    else:
        replicas = spec.autoscaling.min_replicas
    record_usage(
        session,
        endpoint_id=endpoint.id,
        endpoint_name=endpoint.name,
        replicas=replicas,
        gpus_per_replica=spec.resources.gpus,
    )


def record_usage(
    session: Session,
    *,
    endpoint_id: str,
    endpoint_name: str,
    replicas: int,
    gpus_per_replica: int,
    at: datetime | None = None,
) -> EndpointUsage | None:
    """The endpoint holds ``replicas`` x ``gpus_per_replica`` from ``at`` (default: now):
    nothing changes when its open interval says so already; else that one ends and,
    unless ``replicas`` is 0, a new one starts. Returns the open interval."""
    replicas, gpus_per_replica = max(0, replicas), max(0, gpus_per_replica)

    def unchanged(current: list[EndpointUsage]) -> bool:
        return len(current) == 1 and (current[0].replicas, current[0].gpus_per_replica) == (
            replicas,
            gpus_per_replica,
        )

    current = _open(session, endpoint_id)
    if unchanged(current):
        return current[0]
    if not current and replicas == 0:
        return None
    # a change: hold the endpoint's row (PostgreSQL) so that two processes observing the
    # same change do not both open an interval, then look again
    session.execute(
        select(ServingEndpoint.id).where(ServingEndpoint.id == endpoint_id).with_for_update()
    )
    current = _open(session, endpoint_id)
    if unchanged(current):
        return current[0]
    now = at or clock()
    for row in current:
        row.ended_at = max(now, row.started_at)
    opened = None
    if replicas > 0:
        opened = EndpointUsage(
            endpoint_id=endpoint_id,
            endpoint_name=endpoint_name[:63],
            replicas=replicas,
            gpus_per_replica=gpus_per_replica,
            started_at=now,
        )
        session.add(opened)
    session.flush()
    return opened


def close_usage(session: Session, endpoint_id: str, at: datetime | None = None) -> None:
    """The endpoint holds nothing from ``at`` on (it failed, was deleted, or its framework
    lost it)."""
    now = at or clock()
    for row in _open(session, endpoint_id):
        row.ended_at = max(now, row.started_at)
    session.flush()


# -- costs ------------------------------------------------------------------------------


class Bucket(StrEnum):
    HOUR = "hour"
    DAY = "day"


BUCKET_SIZES = {Bucket.HOUR: timedelta(hours=1), Bucket.DAY: timedelta(days=1)}
#: the most buckets one report may hold
MAX_BUCKETS = 1000
#: the window of a report that names none
DEFAULT_WINDOW = timedelta(days=7)
#: decimals kept of hours and costs
DECIMALS = 6

TERMINAL_JOB_STATES = frozenset(s.value for s in PipelineState if s.terminal)


@dataclass
class Usage:
    replica_hours: float = 0.0
    gpu_hours: float = 0.0

    def add(self, seconds: float, replicas: int, gpus_per_replica: int) -> None:
        hours = seconds / 3600
        self.replica_hours += hours * replicas
        self.gpu_hours += hours * replicas * gpus_per_replica

    def cost(self, prices: Prices) -> float:
        return self.replica_hours * prices.replica_hour + self.gpu_hours * prices.gpu_hour

    def priced(self, prices: Prices) -> dict[str, float]:
        """Its hours and cost, rounded: the figures of a bucket, an item and a report."""
        return {
            "replica_hours": _round(self.replica_hours),
            "gpu_hours": _round(self.gpu_hours),
            "cost": _round(self.cost(prices)),
        }

    @classmethod
    def sum(cls, usages: Iterable[Usage]) -> Usage:
        total = cls()
        for usage in usages:
            total.replica_hours += usage.replica_hours
            total.gpu_hours += usage.gpu_hours
        return total


@dataclass(frozen=True)
class BucketCost:
    start: datetime
    end: datetime
    replica_hours: float
    gpu_hours: float
    cost: float


@dataclass(frozen=True)
class ItemCost:
    """An endpoint's or a job's use in the window."""

    id: str
    name: str
    replica_hours: float
    gpu_hours: float
    cost: float
    series: list[BucketCost]
    #: an endpoint: whether it still exists; a job: its status
    state: str


@dataclass(frozen=True)
class CostReport:
    since: datetime
    until: datetime
    bucket: Bucket
    prices: Prices
    replica_hours: float
    gpu_hours: float
    cost: float
    series: list[BucketCost]
    endpoints: list[ItemCost]
    jobs: list[ItemCost]

    @property
    def currency(self) -> str:
        return self.prices.currency


@dataclass(frozen=True)
class _Interval:
    start: datetime
    end: datetime
    replicas: int
    gpus_per_replica: int


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _floor(value: datetime, bucket: Bucket) -> datetime:
    value = value.replace(minute=0, second=0, microsecond=0)
    return value.replace(hour=0) if bucket is Bucket.DAY else value


def _buckets(since: datetime, until: datetime, bucket: Bucket) -> list[tuple[datetime, datetime]]:
    """The report's buckets, aligned to whole UTC hours or days, the first and the last
    clipped to the window."""
    size = BUCKET_SIZES[bucket]
    out = []
    start = _floor(since, bucket)
    while start < until:
        out.append((max(start, since), min(start + size, until)))
        start += size
    return out


def _round(value: float) -> float:
    return round(value, DECIMALS) + 0.0  # no -0.0


def _by_bucket(
    intervals: Sequence[_Interval], buckets: Sequence[tuple[datetime, datetime]]
) -> list[Usage]:
    """The use ``intervals`` make of each bucket."""
    usages = []
    for start, end in buckets:
        usage = Usage()
        for interval in intervals:
            overlap = (min(end, interval.end) - max(start, interval.start)).total_seconds()
            if overlap > 0:
                usage.add(overlap, interval.replicas, interval.gpus_per_replica)
        usages.append(usage)
    return usages


def _priced(
    usages: Sequence[Usage], buckets: Sequence[tuple[datetime, datetime]], prices: Prices
) -> tuple[Usage, list[BucketCost]]:
    """The use in all and per bucket, rounded and priced."""
    total = Usage.sum(usages)
    series = [
        BucketCost(start=start, end=end, **usage.priced(prices))
        for (start, end), usage in zip(buckets, usages, strict=True)
    ]
    return total, series


def _item_cost(
    item_id: str,
    name: str,
    state: str,
    usages: Sequence[Usage],
    buckets: Sequence[tuple[datetime, datetime]],
    prices: Prices,
) -> ItemCost:
    usage, series = _priced(usages, buckets, prices)
    return ItemCost(
        id=item_id,
        name=name,
        series=series,
        state=state,
        **usage.priced(prices),
    )


def cost_report(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: Bucket = Bucket.DAY,
    now: datetime | None = None,
) -> CostReport:
    """Replica-hours, GPU-hours and their estimated cost per endpoint and per training
    job within [``since``, ``until``) (default: the 7 days up to now), and per bucket.
    Intervals are clipped to the window; one still open counts up to ``now``, and
    nothing counts after it."""
    now = _utc(now or clock())
    until = _utc(until) if until is not None else now
    since = _utc(since) if since is not None else until - DEFAULT_WINDOW
    if since >= until:
        raise InvalidRequest("since must be before until", parameter="since")
    buckets = _buckets(since, until, bucket)
    if len(buckets) > MAX_BUCKETS:
        raise InvalidRequest(
            f"the window holds {len(buckets)} {bucket.value}s; a report holds at most "
            f"{MAX_BUCKETS} buckets: choose a shorter window or bucket=day",
            parameter="bucket",
        )
    prices = get_prices(session)
    horizon = min(until, now)

    endpoints: dict[str, list[_Interval]] = {}
    names: dict[str, str] = {}
    rows = session.scalars(
        select(EndpointUsage)
        .where(
            EndpointUsage.started_at < horizon,
            or_(EndpointUsage.ended_at.is_(None), EndpointUsage.ended_at > since),
        )
        .order_by(EndpointUsage.started_at, EndpointUsage.id)
    )
    for row in rows:
        end = row.ended_at or horizon
        endpoints.setdefault(row.endpoint_id, []).append(
            _Interval(row.started_at, end, row.replicas, row.gpus_per_replica)
        )
        names[row.endpoint_id] = row.endpoint_name  # the newest name it had
    existing = set(
        session.scalars(select(ServingEndpoint.id).where(ServingEndpoint.id.in_(list(endpoints))))
    )

    jobs: dict[str, list[_Interval]] = {}
    job_rows: dict[str, TrainingJob] = {}
    for job in session.scalars(
        select(TrainingJob)
        .where(
            TrainingJob.started_at.is_not(None),
            TrainingJob.started_at < horizon,
            or_(TrainingJob.finished_at.is_(None), TrainingJob.finished_at > since),
        )
        .order_by(TrainingJob.started_at, TrainingJob.id)
    ):
        assert job.started_at is not None
        if job.finished_at is not None:
            end = job.finished_at
        elif job.status in TERMINAL_JOB_STATES:
            end = job.updated_at  # ended without saying when: when it was last changed
        else:
            end = horizon
        jobs[job.id] = [_Interval(job.started_at, min(end, horizon), 1, 0)]
        job_rows[job.id] = job

    endpoint_usage = {e: _by_bucket(intervals, buckets) for e, intervals in endpoints.items()}
    job_usage = {j: _by_bucket(intervals, buckets) for j, intervals in jobs.items()}
    endpoint_costs = [
        _item_cost(e, names[e], "active" if e in existing else "deleted", usages, buckets, prices)
        for e, usages in endpoint_usage.items()
    ]
    job_costs = [
        _item_cost(j, job_rows[j].name, job_rows[j].status, usages, buckets, prices)
        for j, usages in job_usage.items()
    ]
    every = [*endpoint_usage.values(), *job_usage.values()]
    total, series = _priced(
        [Usage.sum(usages[i] for usages in every) for i in range(len(buckets))], buckets, prices
    )
    endpoint_costs.sort(key=lambda c: (-c.cost, -c.replica_hours, c.name))
    job_costs.sort(key=lambda c: (-c.cost, -c.replica_hours, c.name))
    return CostReport(
        since=since,
        until=until,
        bucket=bucket,
        prices=prices,
        series=series,
        endpoints=endpoint_costs,
        jobs=job_costs,
        **total.priced(prices),
    )
