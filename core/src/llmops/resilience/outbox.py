"""The outbox: the spec's retry queue for writes to tools.

A write is recorded as an ``operations`` row in the same transaction as the domain change
it belongs to. After the commit, the request tries to deliver it at once (unless the
tool's circuit is open); whatever is not delivered then, a worker delivers later, at least
once, with exponential backoff and jitter. Each operation carries an idempotency key that
the provider hands to the tool, so a repeated delivery never makes a second object.

Claiming is a conditional UPDATE (``WHERE status = 'pending' ...``), atomic on every
database; on PostgreSQL the candidates are also read ``FOR UPDATE SKIP LOCKED`` so several
workers and API replicas do not contend. A claim carries a lease: a worker that dies
mid-delivery loses its claim when the lease expires, and the operation is tried again. The
attempt is counted when it is claimed, so a crash counts too and nothing is tried more
than ``max_attempts`` times; then the operation is dead-lettered.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, event, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from llmops.auth import current_principal, current_request_id
from llmops.db.models import Operation, utcnow
from llmops.errors import Conflict, LlmopsError, NoProviderEnabled, NotFound
from llmops.resilience.errors import retryable, translate

log = logging.getLogger(__name__)


class OperationStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    DISCARDED = "discarded"


@dataclass(frozen=True)
class OutboxPolicy:
    max_attempts: int = 10
    base_delay: float = 1.0
    max_delay: float = 300.0
    lease_seconds: float = 60.0
    #: A new operation is left to the request that made it for this long before a
    #: worker may take it, so the two do not race for the first delivery.
    first_delivery_grace: float = 5.0

    def backoff(self, attempts: int, rng: random.Random) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random."""
        ceiling = min(self.max_delay, self.base_delay * float(2 ** max(0, attempts - 1)))
        return ceiling / 2 + rng.random() * ceiling / 2


def _no_heartbeat(progress: Mapping[str, Any] | None = None) -> bool:
    return True


@dataclass
class Delivery:
    """What a handler gets: the operation, a session in the delivery's transaction."""

    operation: Operation
    session: Session
    payload: Mapping[str, Any] = field(default_factory=dict)
    #: Other pending operations whose writes this delivery carried (coalesced metric
    #: points): id -> (status, result, reason). They are recorded with this delivery's
    #: own outcome, whether it succeeds or fails: their part reached the tool, or was
    #: refused by it, either way.
    settled: dict[str, tuple[OperationStatus, dict[str, Any] | None, str | None]] = field(
        default_factory=dict
    )
    #: For long work (:attr:`HandlerSpec.long`): ``heartbeat(progress)`` renews the
    #: delivery's claim (its lease) and records ``progress`` on the operation, in a
    #: transaction of its own; call it more often than the lease lasts. False when the
    #: work should stop: the claim was lost (it expired and another worker took it), or
    #: the worker is stopping.
    heartbeat: Callable[[Mapping[str, Any] | None], bool] = _no_heartbeat

    def took_along(self, operation_id: str, result: dict[str, Any]) -> None:
        """Another pending operation's write reached the tool with this one."""
        self.settled[operation_id] = (OperationStatus.SUCCEEDED, result, None)

    def refused(self, operation_id: str, reason: str) -> None:
        """The tool refused another pending operation's write for good: it is
        dead-lettered with ``reason``, as if delivered on its own."""
        self.settled[operation_id] = (OperationStatus.DEAD, None, reason)


#: A handler performs the tool call of one kind of operation (through a guarded
#: provider) and applies its result to the domain rows in ``delivery.session``. It
#: returns a JSON-able result, stored on the operation.
Handler = Callable[[Delivery], dict[str, Any] | None]
#: Called, in the same transaction, when an operation is dead-lettered or discarded,
#: so the domain row can say the write did not happen.
DeadHandler = Callable[[Delivery, str], None]


@dataclass(frozen=True)
class HandlerSpec:
    deliver: Handler
    on_dead: DeadHandler | None = None
    #: False for telemetry (metric points): delivered without an audit entry each time
    audited: bool = True
    #: True for work that takes minutes by nature (a model import or export): delivered
    #: by the worker's long-work lane, never on a request's path, keeping its claim alive
    #: with :attr:`Delivery.heartbeat` (see :meth:`Outbox.run_once`)
    long: bool = False


#: The payload key that says for whom the write is made (who, role, request id): the
#: audit log records the tool action under that name, whichever process delivers it.
ON_BEHALF_OF = "_onBehalfOf"
#: how often an operation whose plugin is disabled checks whether it is enabled again
DISABLED_RECHECK_SECONDS = 30.0

#: Called in the delivery's transaction once an operation succeeded or was given up on.
Recorder = Callable[[Session, Operation, str, str | None], None]


#: How often an operation that waits on another write (``waits_on``) looks again.
WAITS_ON_RECHECK_SECONDS = 10.0


def _unattempted_wait(error: LlmopsError) -> tuple[float, str] | None:
    """For a refusal that kept the write from its tool, how long to wait and what to say:
    an open circuit (until it half-opens), the operation's plugin disabled by an admin
    (a choice, not a failure: it waits until the plugin is enabled again or is discarded),
    or a write it depends on that has not reached its own tool yet (``waits_on``).
    ``None`` for a failure that counts as an attempt."""
    retry_after = error.extensions.get("retry_after")
    if retry_after is not None and error.extensions.get("circuit") is not None:
        return max(1.0, float(retry_after)), error.detail
    if error.extensions.get("waits_on"):  # another write must reach its tool first
        return max(1.0, float(retry_after or WAITS_ON_RECHECK_SECONDS)), error.detail
    if isinstance(error, NoProviderEnabled) and error.extensions.get("provider"):
        reason = f"{error.detail}; waiting until it is enabled again (or discard this)"
        return DISABLED_RECHECK_SECONDS, reason
    return None


class OutcomeKind(StrEnum):
    DELIVERED = "delivered"
    RETRY_LATER = "retry-later"
    DEAD = "dead"
    NOT_CLAIMED = "not-claimed"


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    error: LlmopsError | None = None


def enqueue(
    session: Session,
    *,
    kind: str,
    provider: str,
    capability: str,
    idempotency_key: str,
    payload: Mapping[str, Any] | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    max_attempts: int | None = None,
    policy: OutboxPolicy | None = None,
) -> Operation:
    """Record a write in the caller's transaction; the caller commits."""
    principal = current_principal.get()
    on_behalf_of = {
        "keyId": principal.key_id if principal else None,
        "name": principal.name if principal else "system",
        "role": principal.role.value if principal and principal.role else None,
        "requestId": current_request_id.get(),
    }
    operation = Operation(
        kind=kind,
        provider=provider,
        capability=capability,
        idempotency_key=idempotency_key,
        payload={**(payload or {}), ON_BEHALF_OF: on_behalf_of},
        status=OperationStatus.PENDING.value,
        attempts=0,
        max_attempts=max_attempts or (policy or OutboxPolicy()).max_attempts,
        next_attempt_at=utcnow()
        + timedelta(seconds=(policy or OutboxPolicy()).first_delivery_grace),
        resource_type=resource_type,
        resource_id=resource_id,
    )
    session.add(operation)
    session.flush()
    return operation


def requeue(operation: Operation, *, now: datetime, attempts: int, grace: float = 0.0) -> None:
    """Put an operation back in line, with ``attempts`` more tries than it has had. A
    request that delivers it at once passes the first-delivery ``grace``, so the background
    worker leaves it to that request."""
    operation.status = OperationStatus.PENDING.value
    operation.next_attempt_at = now + timedelta(seconds=grace)
    operation.max_attempts = operation.attempts + attempts
    operation.last_error = None
    operation.updated_at = now


def _due(now: datetime) -> Any:
    return or_(
        and_(Operation.status == OperationStatus.PENDING.value, Operation.next_attempt_at <= now),
        and_(Operation.status == OperationStatus.RUNNING.value, Operation.lease_until < now),
    )


class Outbox:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        handlers: Mapping[str, HandlerSpec],
        *,
        policy: OutboxPolicy | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = utcnow,
        recorder: Recorder | None = None,
    ) -> None:
        self.recorder = recorder
        self.sessions = sessions
        self.handlers = dict(handlers)
        self.policy = policy or OutboxPolicy()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._rng = rng or random.Random()
        self._clock = clock
        self._long_work_due = threading.Event()

    # -- waking the long-work lane -----------------------------------------------------

    def long_work_enqueued(self) -> None:
        """Long work was committed: the lane that delivers it (waiting in
        :meth:`wait_for_long_work`) looks now instead of at its next round."""
        self._long_work_due.set()

    def wake_after_commit(self, session: Session) -> None:
        """Call :meth:`long_work_enqueued` once ``session``'s transaction commits (not
        before: the lane would not see the operation yet)."""
        event.listen(session, "after_commit", lambda _: self.long_work_enqueued(), once=True)

    def wait_for_long_work(self, timeout: float) -> None:
        """Until long work is enqueued in this process, or ``timeout`` seconds (work
        another process enqueued is found then)."""
        self._long_work_due.wait(timeout)
        self._long_work_due.clear()

    # -- claiming ------------------------------------------------------------------

    def claim(self, operation_id: str, *, early: bool = False) -> bool:
        """Claim one operation if it is due (or its lease expired); ``early`` also takes a
        pending one whose first-delivery grace has not passed (the request's fast path)."""
        now = self._clock()
        with self.sessions() as session, session.begin():
            return self._claim(session, operation_id, now, early=early)

    def _claim(
        self, session: Session, operation_id: str, now: datetime, *, early: bool = False
    ) -> bool:
        row = session.get(Operation, operation_id)
        if row is None:
            return False
        if row.status == OperationStatus.RUNNING.value and row.attempts >= row.max_attempts:
            # its last attempt died with its worker: no more tries
            result = session.execute(
                update(Operation)
                .where(Operation.id == operation_id, _due(now))
                .values(
                    status=OperationStatus.DEAD.value,
                    lease_until=None,
                    locked_by=None,
                    last_error=f"the last of {row.max_attempts} attempts never finished "
                    f"(its worker stopped); last error: {row.last_error}",
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                self._dead(session, operation_id, "its last attempt never finished")
            return False
        due = _due(now)
        if early:
            due = or_(due, Operation.status == OperationStatus.PENDING.value)
        result = session.execute(
            update(Operation)
            .where(Operation.id == operation_id, due)
            .values(
                status=OperationStatus.RUNNING.value,
                locked_by=self.worker_id,
                lease_until=now + timedelta(seconds=self.policy.lease_seconds),
                attempts=Operation.attempts + 1,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    @property
    def long_kinds(self) -> frozenset[str]:
        """The kinds of operation that are long work (:attr:`HandlerSpec.long`)."""
        return frozenset(kind for kind, spec in self.handlers.items() if spec.long)

    def claim_due(
        self,
        limit: int = 20,
        *,
        skip_providers: frozenset[str] = frozenset(),
        kinds: frozenset[str] | None = None,
        skip_kinds: frozenset[str] = frozenset(),
    ) -> list[str]:
        """Claim up to ``limit`` due operations, oldest first: of ``kinds`` only (all
        when None), none of ``skip_kinds``."""
        now = self._clock()
        with self.sessions() as session, session.begin():
            stmt = (
                select(Operation.id)
                .where(_due(now))
                .order_by(Operation.next_attempt_at)
                .limit(limit)
            )
            if skip_providers:
                stmt = stmt.where(Operation.provider.not_in(sorted(skip_providers)))
            if kinds is not None:
                stmt = stmt.where(Operation.kind.in_(sorted(kinds)))
            if skip_kinds:
                stmt = stmt.where(Operation.kind.not_in(sorted(skip_kinds)))
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            candidates = list(session.scalars(stmt))
            return [op_id for op_id in candidates if self._claim(session, op_id, now)]

    # -- delivering ----------------------------------------------------------------

    def deliver(self, operation_id: str, *, stop: Callable[[], bool] | None = None) -> Outcome:
        """Run the handler of an operation this worker has claimed and record the outcome.
        ``stop``: whether the worker is stopping (long work's heartbeat says so)."""
        with self.sessions() as session:
            operation = session.get(Operation, operation_id)
            if operation is None:
                return Outcome(OutcomeKind.NOT_CLAIMED)
            spec = self.handlers.get(operation.kind)

            def heartbeat(progress: Mapping[str, Any] | None = None) -> bool:
                alive = self.heartbeat(operation_id, progress)
                return alive and not (stop is not None and stop())

            delivery = Delivery(operation, session, operation.payload, heartbeat=heartbeat)
            try:
                if spec is None:
                    raise Conflict(f"no handler for operations of kind {operation.kind!r}")
                result = spec.deliver(delivery)
            except Exception as exc:  # translated, recorded on the operation, and counted
                session.rollback()
                error = translate(exc, where=f"{operation.provider} {operation.kind}")
                return self._failed(operation_id, error, delivery.settled)
            self._settle(session, delivery.settled)
            operation.status = OperationStatus.SUCCEEDED.value
            operation.result = result
            operation.lease_until = None
            operation.locked_by = None
            operation.last_error = None
            operation.updated_at = self._clock()
            if self.recorder is not None and spec is not None and spec.audited:
                self.recorder(session, operation, "success", None)
            session.commit()
            return Outcome(OutcomeKind.DELIVERED)

    def _failed(
        self,
        operation_id: str,
        error: LlmopsError,
        settled: Mapping[str, tuple[OperationStatus, dict[str, Any] | None, str | None]],
    ) -> Outcome:
        """Record a failed delivery: put the operation back in line when the failure is
        transient (or kept the write from its tool), else dead-letter it at once: a
        refusal is refused again on every delivery."""
        now = self._clock()
        with self.sessions() as session, session.begin():
            self._settle(session, settled)
            operation = session.get(Operation, operation_id)
            if operation is None or operation.status != OperationStatus.RUNNING.value:
                return Outcome(OutcomeKind.NOT_CLAIMED, error)
            operation.last_error = error.detail
            operation.lease_until = None
            operation.locked_by = None
            operation.updated_at = now
            waiting = _unattempted_wait(error)
            if waiting is not None:  # the write never reached its tool: not an attempt
                delay, reason = waiting
                operation.attempts -= 1
                operation.status = OperationStatus.PENDING.value
                operation.last_error = reason
                operation.next_attempt_at = now + timedelta(seconds=delay)
                return Outcome(OutcomeKind.RETRY_LATER, error)
            if retryable(error) and operation.attempts < operation.max_attempts:
                delay = self.policy.backoff(operation.attempts, self._rng)
                operation.status = OperationStatus.PENDING.value
                operation.next_attempt_at = now + timedelta(seconds=delay)
                return Outcome(OutcomeKind.RETRY_LATER, error)
            operation.status = OperationStatus.DEAD.value
            session.flush()
            self._dead(session, operation_id, error.detail)
            return Outcome(OutcomeKind.DEAD, error)

    def _settle(
        self,
        session: Session,
        settled: Mapping[str, tuple[OperationStatus, dict[str, Any] | None, str | None]],
    ) -> None:
        """Record what became of the other operations a delivery carried; one that a
        worker claimed meanwhile (no longer pending) is left to it."""
        now = self._clock()
        for operation_id, (status, result, reason) in settled.items():
            pending = Operation.status == OperationStatus.PENDING.value
            done = session.execute(
                update(Operation)
                .where(Operation.id == operation_id, pending)
                .values(status=status.value, result=result, last_error=reason, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if done.rowcount == 1 and status is OperationStatus.DEAD:  # type: ignore[attr-defined]
                self._dead(session, operation_id, reason or "refused by its tool")

    def _dead(self, session: Session, operation_id: str, reason: str) -> None:
        operation = session.get(Operation, operation_id)
        if operation is None:
            return
        spec = self.handlers.get(operation.kind)
        if spec is not None and spec.on_dead is not None:
            spec.on_dead(Delivery(operation, session, operation.payload), reason)
        if self.recorder is not None:  # a write that did not happen is always recorded
            self.recorder(session, operation, "failed", reason)
        log.warning("operation %s (%s) dead-lettered: %s", operation_id, operation.kind, reason)

    def heartbeat(self, operation_id: str, progress: Mapping[str, Any] | None = None) -> bool:
        """Renew this worker's claim of a running operation for another lease, and record
        its ``progress`` (when given), in a transaction of its own; False when the claim
        is no longer this worker's."""
        now = self._clock()
        values: dict[str, Any] = {"lease_until": now + timedelta(seconds=self.policy.lease_seconds)}
        if progress is not None:
            values["progress"] = dict(progress)
        with self.sessions() as session, session.begin():
            result = session.execute(
                update(Operation)
                .where(
                    Operation.id == operation_id,
                    Operation.status == OperationStatus.RUNNING.value,
                    Operation.locked_by == self.worker_id,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def deliver_now(self, operation_id: str) -> Outcome:
        """The request's fast path: claim and deliver at once."""
        if not self.claim(operation_id, early=True):
            return Outcome(OutcomeKind.NOT_CLAIMED)
        return self.deliver(operation_id)

    def run_once(
        self,
        limit: int = 20,
        *,
        skip_providers: frozenset[str] = frozenset(),
        kinds: frozenset[str] | None = None,
        skip_kinds: frozenset[str] = frozenset(),
        stop: Callable[[], bool] | None = None,
    ) -> int:
        """Claim and deliver what is due (of ``kinds``, none of ``skip_kinds``: the worker
        delivers long work in a lane of its own, so a model import does not hold up the
        other writes); returns how many were delivered."""
        delivered = 0
        claimed = self.claim_due(
            limit, skip_providers=skip_providers, kinds=kinds, skip_kinds=skip_kinds
        )
        for operation_id in claimed:
            if self.deliver(operation_id, stop=stop).kind is OutcomeKind.DELIVERED:
                delivered += 1
        return delivered

    # -- administration --------------------------------------------------------------

    def retry(self, operation_id: str) -> Operation:
        """Put a dead or pending operation back in line, now, with a fresh attempt budget."""
        with self.sessions() as session, session.begin():
            operation = self._get(session, operation_id)
            if operation.status not in {OperationStatus.DEAD.value, OperationStatus.PENDING.value}:
                raise Conflict(f"operation {operation_id} is {operation.status}: nothing to retry")
            requeue(operation, now=self._clock(), attempts=self.policy.max_attempts)
            return operation

    def discard(self, operation_id: str) -> Operation:
        """Give up on a pending or dead operation; the domain row says so."""
        with self.sessions() as session, session.begin():
            operation = self._get(session, operation_id)
            if operation.status not in {OperationStatus.DEAD.value, OperationStatus.PENDING.value}:
                raise Conflict(
                    f"operation {operation_id} is {operation.status}: only pending or dead "
                    "operations can be discarded"
                )
            was_dead = operation.status == OperationStatus.DEAD.value
            operation.status = OperationStatus.DISCARDED.value
            operation.updated_at = self._clock()
            session.flush()
            if not was_dead:
                self._dead(session, operation_id, "discarded by an administrator")
            return operation

    @staticmethod
    def _get(session: Session, operation_id: str) -> Operation:
        operation = session.get(Operation, operation_id)
        if operation is None:
            raise NotFound(f"no operation with id {operation_id!r}", resource="operation")
        return operation
