"""Who is calling, and what they may do.

Every route needs ``Authorization: Bearer <API key>`` unless the policy below calls it
public. A key names a :class:`Principal` (its id, name, role and, for a training job's own
token, the job), which is kept in a context variable for the length of the request so
that services can say who acted (the audit log does).

Access is decided here, in one table, not in the routers: :data:`POLICY` lists the routes
that differ from the default, which is that reading (``GET``) needs a viewer and anything
else an editor. Roles are ranked admin > editor > viewer; a training job's token
(:attr:`Role.JOB`) ranks nowhere and may call only :data:`JOB_ROUTES`, with its own job
id. A test enumerates every route of the OpenAPI document against this table.

Nothing here speaks HTTP: :mod:`llmops.api.security` applies it to requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmops.db.models import ApiKey, utcnow
from llmops.services.api_keys import KEY_PREFIX, Role, hash_key

API = "/llm-ops/v1"

READS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EVERY = READS | WRITES

#: how stale ``api_keys.last_used_at`` may get: at most one write per key and minute
LAST_USED_RESOLUTION = timedelta(minutes=1)

RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: an API key's identity, never the key itself."""

    key_id: str | None
    name: str
    role: Role | None
    training_job_id: str | None = None


#: the actor of work that no request asked for (the worker, start-up)
SYSTEM = Principal(key_id=None, name="system", role=None)
#: the actor of a request without a valid key
ANONYMOUS = Principal(key_id=None, name="anonymous", role=None)

current_principal: ContextVar[Principal | None] = ContextVar("llmops_principal", default=None)
current_request_id: ContextVar[str | None] = ContextVar("llmops_request_id", default=None)


# -- the policy ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """``role`` (``None``: public, no key needed) may call ``path`` with ``methods``.

    ``path`` is a route template (``/llm-ops/v1/api-keys/{keyId}``) or a prefix ending
    in ``/*``, which covers the prefix itself and every route under it. ``audited`` is
    false for writes that are telemetry rather than actions; a denied write is audited
    regardless.
    """

    methods: frozenset[str]
    path: str
    role: Role | None
    audited: bool = True

    def matches(self, method: str, template: str) -> bool:
        if method not in self.methods:
            return False
        if self.path.endswith("/*"):
            prefix = self.path[:-2]
            return template == prefix or template.startswith(prefix + "/")
        return template == self.path


PUBLIC = None

#: The routes whose access differs from the default; the first rule that matches wins.
POLICY: tuple[Rule, ...] = (
    # probes and metrics: for load balancers and Prometheus, which hold no key
    Rule(frozenset({"GET"}), "/healthz", PUBLIC),
    Rule(frozenset({"GET"}), "/readyz", PUBLIC),
    Rule(frozenset({"GET"}), "/metrics", PUBLIC),
    # administration: keys, the retry queue, the audit log, integration settings
    Rule(EVERY, f"{API}/api-keys/*", Role.ADMIN),
    Rule(EVERY, f"{API}/operations/*", Role.ADMIN),
    # governance: everyone signed in reads the policies, the prices and the costs
    Rule(READS, f"{API}/governance/policies", Role.VIEWER),
    Rule(READS, f"{API}/governance/prices", Role.VIEWER),
    Rule(READS, f"{API}/governance/costs", Role.VIEWER),
    Rule(EVERY, f"{API}/governance/*", Role.ADMIN),
    Rule(WRITES, f"{API}/integrations/*", Role.ADMIN),
    # a read that travels as a POST because its query is a body
    Rule(frozenset({"POST"}), f"{API}/experiments/search", Role.VIEWER, audited=False),
    Rule(frozenset({"POST"}), f"{API}/experiments/compare", Role.VIEWER, audited=False),
    # inference is not a change: an app that only calls models needs no more than a viewer
    # key (and its many calls are counted in Prometheus, not written to the audit log)
    Rule(frozenset({"POST"}), f"{API}/openai/v1/*", Role.VIEWER, audited=False),
    Rule(
        frozenset({"POST"}),
        f"{API}/serving/endpoints/{{endpointId}}/chat/completions",
        Role.VIEWER,
        audited=False,
    ),
    # telemetry: a job logs metrics many times a minute; creating its run is audited
    Rule(
        frozenset({"POST"}),
        f"{API}/training/jobs/{{jobId}}/experiment-run/metrics",
        Role.EDITOR,
        audited=False,
    ),
    # a job's tracker proxy: for the job's own token (JOB_ROUTES) and admins, who may look
    # at what a job sees; editors write runs through the metrics route. Telemetry too.
    Rule(
        frozenset({"GET", "POST"}),
        f"{API}/training/jobs/{{jobId}}/experiment-run/tracker/{{path}}",
        Role.ADMIN,
        audited=False,
    ),
)

#: What a training job's own token may call, and only with its own ``jobId``.
JOB_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", f"{API}/training/jobs/{{jobId}}"),
        ("GET", f"{API}/training/jobs/{{jobId}}/experiment-run"),
        ("POST", f"{API}/training/jobs/{{jobId}}/experiment-run"),
        ("POST", f"{API}/training/jobs/{{jobId}}/experiment-run/metrics"),
        ("GET", f"{API}/training/jobs/{{jobId}}/logs"),
        ("GET", f"{API}/training/jobs/{{jobId}}/experiment-run/tracker/{{path}}"),
        ("POST", f"{API}/training/jobs/{{jobId}}/experiment-run/tracker/{{path}}"),
    }
)


def rule_for(method: str, template: str) -> Rule:
    """The rule for a route: the first of :data:`POLICY` that matches, else the default."""
    method = method.upper()
    for rule in POLICY:
        if rule.matches(method, template):
            return rule
    if method in READS:
        return Rule(READS, template, Role.VIEWER)
    return Rule(frozenset({method}), template, Role.EDITOR)


def is_write(method: str) -> bool:
    return method.upper() not in READS


def refusal(
    principal: Principal, method: str, template: str, path_params: Mapping[str, str]
) -> str | None:
    """Why ``principal`` may not call the route, or ``None`` when it may."""
    rule = rule_for(method, template)
    if rule.role is None:
        return None
    if principal.role is Role.JOB:
        if (method.upper(), template) not in JOB_ROUTES:
            return "a training job's token may call only its own job's routes"
        if path_params.get("jobId") != principal.training_job_id:
            return "a training job's token may call only its own job's routes"
        return None
    if principal.role is None or RANK[principal.role] < RANK[rule.role]:
        have = principal.role.value if principal.role else "no role"
        return f"{method.upper()} {template} needs the {rule.role.value} role; this key has {have}"
    return None


# -- authentication --------------------------------------------------------------------


@dataclass(frozen=True)
class Authentication:
    """The outcome of presenting a key: who it belongs to (known even when the key is
    revoked, so a refusal can be attributed) and why it is refused, if it is."""

    principal: Principal | None
    failure: str | None


def authenticate(*, session: Session, token: str, now: datetime | None = None) -> Authentication:
    """Look the key up by its hash; note when it was used, at most once a minute."""
    if not token.startswith(f"{KEY_PREFIX}_") or len(token) > 200:
        return Authentication(None, "the API key is not valid")
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(token))).one_or_none()
    if row is None:
        return Authentication(None, "the API key is not valid")
    principal = Principal(
        key_id=row.id, name=row.name, role=Role(row.role), training_job_id=row.training_job_id
    )
    if row.revoked_at is not None:
        return Authentication(principal, "the API key was revoked")
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
    return Authentication(principal, None)
