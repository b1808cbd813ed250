"""A Hypothesis state machine over the outbox: enqueue, claim, succeed, fail, crash with
the lease held, lease expiry, restart, admin retry and discard. In no reachable state is
an operation lost, delivered twice without a retry, or tried more than its maximum."""

from __future__ import annotations

import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import select

from llmops.db.models import Base, Operation
from llmops.db.session import make_engine, make_session_factory
from llmops.resilience.outbox import (
    Delivery,
    HandlerSpec,
    OperationStatus,
    Outbox,
    OutboxPolicy,
    enqueue,
)

POLICY = OutboxPolicy(max_attempts=3, base_delay=1.0, max_delay=8.0, lease_seconds=30.0)


class Tool:
    """The tool behind the provider: dedups by idempotency key, counts every call."""

    def __init__(self) -> None:
        self.up = True
        self.calls: dict[str, int] = {}
        self.objects: set[str] = set()

    def write(self, delivery: Delivery) -> dict[str, Any]:
        key = delivery.operation.idempotency_key
        if not self.up:
            raise ConnectionRefusedError("tool down")
        self.calls[key] = self.calls.get(key, 0) + 1
        self.objects.add(key)
        return {"key": key}


class OutboxMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.folder = tempfile.TemporaryDirectory()
        engine = make_engine(f"sqlite:///{Path(self.folder.name) / 'q.db'}")
        Base.metadata.create_all(engine)
        self.engine = engine
        self.sessions = make_session_factory(engine)
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.tool = Tool()
        self.enqueued: list[str] = []
        self.discarded: set[str] = set()
        self.abandoned: list[str] = []
        self.workers = 0
        self.outbox = self.new_outbox()

    def new_outbox(self) -> Outbox:
        self.workers += 1
        return Outbox(
            self.sessions,
            {"write": HandlerSpec(self.tool.write)},
            policy=POLICY,
            worker_id=f"worker-{self.workers}",
            rng=random.Random(self.workers),
            clock=lambda: self.now,
        )

    def rows(self) -> dict[str, Operation]:
        with self.sessions() as session:
            return {op.id: op for op in session.scalars(select(Operation))}

    @rule(count=st.integers(1, 3))
    def enqueue_writes(self, count: int) -> None:
        with self.sessions() as session, session.begin():
            for _ in range(count):
                key = f"write-{len(self.enqueued)}"
                op = enqueue(
                    session,
                    kind="write",
                    provider="tool",
                    capability="tracking",
                    idempotency_key=key,
                    policy=POLICY,
                )
                op.next_attempt_at = self.now
                self.enqueued.append(op.id)

    @rule(up=st.booleans())
    def tool_goes(self, up: bool) -> None:
        self.tool.up = up

    @rule()
    def worker_runs(self) -> None:
        self.outbox.run_once(limit=5)

    @precondition(lambda self: bool(self.enqueued))
    @rule(data=st.data())
    def request_delivers_at_once(self, data: st.DataObject) -> None:
        self.outbox.deliver_now(data.draw(st.sampled_from(self.enqueued)))

    @rule()
    def worker_crashes_holding_a_claim(self) -> None:
        """Claims work, then dies before delivering (SIGKILL): the lease stays behind."""
        self.abandoned += self.outbox.claim_due(limit=2)
        self.outbox = self.new_outbox()

    @rule()
    def two_workers_claim_at_once(self) -> None:
        """A live claim is never taken by another worker; both then deliver theirs."""
        other = self.new_outbox()
        mine = self.outbox.claim_due(limit=3)
        theirs = other.claim_due(limit=3)
        assert not set(mine) & set(theirs)
        for op_id in mine:
            self.outbox.deliver(op_id)
        for op_id in theirs:
            other.deliver(op_id)

    @rule(seconds=st.sampled_from([0.5, 2, 10, 31, 120]))
    def time_passes(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def process_restarts(self) -> None:
        self.outbox = self.new_outbox()

    @precondition(lambda self: bool(self.enqueued))
    @rule(data=st.data())
    def admin_retries(self, data: st.DataObject) -> None:
        op_id = data.draw(st.sampled_from(self.enqueued))
        if self.rows()[op_id].status == OperationStatus.DEAD.value:
            self.outbox.retry(op_id)

    @precondition(lambda self: bool(self.enqueued))
    @rule(data=st.data())
    def admin_discards(self, data: st.DataObject) -> None:
        op_id = data.draw(st.sampled_from(self.enqueued))
        if self.rows()[op_id].status in {OperationStatus.DEAD.value, OperationStatus.PENDING.value}:
            self.outbox.discard(op_id)
            self.discarded.add(op_id)

    @invariant()
    def nothing_is_lost(self) -> None:
        if not hasattr(self, "sessions"):
            return
        rows = self.rows()
        assert set(self.enqueued) <= set(rows)
        for op in rows.values():
            assert op.status in {s.value for s in OperationStatus}

    @invariant()
    def never_tried_more_than_the_maximum(self) -> None:
        if not hasattr(self, "sessions"):
            return
        for op in self.rows().values():
            assert op.attempts <= op.max_attempts
            assert self.tool.calls.get(op.idempotency_key, 0) <= op.attempts

    @invariant()
    def no_second_delivery_without_a_retry(self) -> None:
        if not hasattr(self, "sessions"):
            return
        for op in self.rows().values():
            if self.tool.calls.get(op.idempotency_key, 0) > 1:
                assert op.attempts > 1

    @invariant()
    def succeeded_means_the_tool_has_it(self) -> None:
        if not hasattr(self, "sessions"):
            return
        for op in self.rows().values():
            if op.status == OperationStatus.SUCCEEDED.value:
                assert op.idempotency_key in self.tool.objects

    def teardown(self) -> None:
        if not hasattr(self, "sessions"):
            return
        try:
            # the tool comes back and time passes: everything not given up on arrives
            self.tool.up = True
            for _ in range(POLICY.max_attempts * 3):
                self.now += timedelta(seconds=POLICY.lease_seconds + POLICY.max_delay + 1)
                self.outbox.run_once(limit=100)
            for op in self.rows().values():
                if op.id in self.discarded or op.status == OperationStatus.DEAD.value:
                    continue
                assert op.status == OperationStatus.SUCCEEDED.value, (op.id, op.status)
                assert op.idempotency_key in self.tool.objects
        finally:
            self.engine.dispose()
            self.folder.cleanup()


OutboxMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOutboxStateMachine = OutboxMachine.TestCase
