"""An operation whose plugin an admin disabled waits for it: disabling a plugin is a
choice, not an outage, and loses no queued write."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from llmops.db.models import Base, Operation
from llmops.db.session import make_engine, make_session_factory
from llmops.errors import NoProviderEnabled
from llmops.resilience.outbox import (
    DISABLED_RECHECK_SECONDS,
    Delivery,
    HandlerSpec,
    OperationStatus,
    Outbox,
    OutboxPolicy,
    OutcomeKind,
    enqueue,
)


def test_a_write_for_a_disabled_plugin_waits_unattempted_and_is_delivered_once_enabled(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    Base.metadata.create_all(engine)
    sessions = make_session_factory(engine)
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    enabled = [False]
    delivered: list[str] = []

    def write(delivery: Delivery) -> dict[str, Any]:
        if not enabled[0]:
            raise NoProviderEnabled(
                "tracking provider 'example' is not enabled",
                capability="tracking",
                provider="example",
            )
        delivered.append(delivery.operation.id)
        return {}

    outbox = Outbox(
        sessions,
        {"write": HandlerSpec(write)},
        policy=OutboxPolicy(max_attempts=2, base_delay=1.0, max_delay=4.0, lease_seconds=30.0),
        worker_id="w",
        rng=random.Random(1),
        clock=lambda: now[0],
    )
    with sessions() as session, session.begin():
        operation_id = enqueue(
            session,
            kind="write",
            provider="example",
            capability="tracking",
            idempotency_key="k1",
            payload={},
            resource_id="r1",
        ).id

    for _ in range(5):  # far more rounds than max_attempts
        outcome = outbox.deliver_now(operation_id)
        assert outcome.kind is OutcomeKind.RETRY_LATER
        now[0] += timedelta(seconds=DISABLED_RECHECK_SECONDS)

    with sessions() as session:
        waiting = session.scalars(select(Operation)).one()
        assert waiting.status == OperationStatus.PENDING.value
        assert waiting.attempts == 0
        assert "waiting until it is enabled again" in (waiting.last_error or "")

    enabled[0] = True
    assert outbox.run_once() == 1
    assert delivered == [operation_id]
    with sessions() as session:
        assert session.scalars(select(Operation)).one().status == OperationStatus.SUCCEEDED.value
