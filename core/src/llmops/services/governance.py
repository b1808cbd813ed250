"""Governance: policies an admin sets and the services enforce.

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
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from llmops.auth import current_principal
from llmops.capabilities.serving import AutoscalingSpec, ResourceSpec
from llmops.db.governance import GovernanceSetting
from llmops.db.models import utcnow
from llmops.errors import InvalidRequest, PolicyViolation
from llmops.services.api_keys import Role

POLICIES = "policies"

#: the roles a deploy policy may name (a viewer may not write, a job token only its job)
DEPLOY_ROLES = (Role.ADMIN, Role.EDITOR)


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
