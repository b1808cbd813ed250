"""Runs held by a lease: which platform process drives each run its executor holds, and
what happens when that process is gone.

An orchestrator that runs stages inside the platform's own process (the local executor:
:class:`~llmops.capabilities.orchestration.AdoptsRuns`) drives each run from one process.
That process is the run's *owner* (``workflow_pipelines.owner_id``), and it proves it is
alive with a heartbeat in ``executor_instances``, every few seconds
(:class:`RunWatcher`). Any process's worker that finds a run whose owner is gone — its
heartbeat older than ``LLMOPS_RUN_LEASE_SECONDS``, or, on the same host, its process no
longer there — takes the run over (:func:`take_over`): one conditional update makes it
the owner, and its executor adopts the run. Stages that finished while nobody watched are
recorded as they ended, those still running are watched again, and those killed with
their owner are retried by their retry policy or marked interrupted.

A cancel is a request recorded in the database (``cancel_requested_at``; the pipeline
shows ``cancelling``): the owner's watcher carries it out within a second, whichever
process took the request; a run whose owner is gone is cancelled by the process that
takes it over. Orchestrators outside the platform (Argo) are asked by any process through
the outbox, as before.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from llmops.capabilities.common import Capability
from llmops.capabilities.orchestration import AdoptsRuns
from llmops.db.models import ExecutorInstance, Operation, utcnow

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import sessionmaker

    from llmops.integrations import IntegrationRuntime

log = logging.getLogger(__name__)

HOST = socket.gethostname()[:255]
#: how often a process removes the rows of processes silent for long (an hour or more)
FORGET_EVERY = 600.0

#: The message of a run taken over where its run folder is not (the data dir of the
#: process that drove it is not shared with this one).
NOT_HERE = (
    "interrupted: the process that ran it stopped, and its run is not on this host "
    "(its executor's data dir is not shared with the process that took it over)"
)


def register(session: Session, instance_id: str) -> None:
    session.add(ExecutorInstance(id=instance_id, host=HOST, pid=os.getpid()))


def heartbeat(session: Session, instance_id: str) -> None:
    done = session.execute(
        update(ExecutorInstance)
        .where(ExecutorInstance.id == instance_id)
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if done == 0:  # removed as long dead by another process: this one lives on
        register(session, instance_id)


def forget_dead(session: Session, *, older_than: timedelta) -> None:
    """Remove instances silent for much longer than a lease (their runs were taken over)."""
    session.execute(
        delete(ExecutorInstance).where(ExecutorInstance.heartbeat_at < utcnow() - older_than)
    )


def gone_instances(session: Session, *, lease: float) -> list[str]:
    """The instances that have stopped (see :func:`owner_gone`), from the few rows of
    ``executor_instances``."""
    now = utcnow()
    return [
        row.id for row in session.scalars(select(ExecutorInstance)) if _stopped(row, now, lease)
    ]


def _stopped(row: ExecutorInstance, now: datetime, lease: float) -> bool:
    if row.heartbeat_at < now - timedelta(seconds=lease):
        return True
    return row.host == HOST and not _process_exists(row.pid, row.id)


def release_dead_claims(session: Session, *, lease: float) -> int:
    """Make the outbox operations that a stopped process was delivering due again now,
    instead of when their claim's lease (``LLMOPS_OUTBOX_LEASE_SECONDS``) runs out: a
    pipeline submitted by a request that died waits seconds, not a minute. How many."""
    gone = gone_instances(session, lease=lease)
    if not gone:
        return 0
    now = utcnow()
    released = session.execute(
        update(Operation)
        .where(
            Operation.status == "running",
            Operation.locked_by.in_(gone),
            Operation.lease_until > now,
        )
        .values(lease_until=now)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    return int(released or 0)


def owner_gone(
    session: Session, owner_id: str | None, *, lease: float, now: datetime | None = None
) -> bool:
    """Whether the run's owner has stopped: none, unknown, silent for a lease, or a
    process of this host that is no longer there."""
    if owner_id is None:
        return True
    owner = session.get(ExecutorInstance, owner_id)
    return owner is None or _stopped(owner, now or utcnow(), lease)


#: the instances this process runs (a test may run several platforms in one process)
LIVE_HERE: set[str] = set()


def _process_exists(pid: int, instance_id: str) -> bool:
    if pid == os.getpid():  # this process, or one that had its pid before it
        return instance_id in LIVE_HERE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def adopters(runtime: IntegrationRuntime) -> Iterator[tuple[str, AdoptsRuns]]:
    """The orchestrators that run stages inside this process, by provider name: the
    ones whose runs have an owner."""
    for _plugin, capability, name, provider in runtime.iter_providers():
        raw = getattr(provider, "unwrapped", provider)
        if capability is Capability.ORCHESTRATION and isinstance(raw, AdoptsRuns):
            yield name, raw


def detach_all(runtime: IntegrationRuntime) -> list[str]:
    """Let go of every run this process's executors drive, their stages left running,
    for another process to take over (a clean stop: :meth:`Platform.stop`)."""
    return [run for _name, executor in adopters(runtime) for run in executor.detach()]


class RunWatcher:
    """This process's heartbeat, and the cancels of the runs it drives: one thread, a
    round every third of the lease (at most every second), woken at once by
    :meth:`wake` (a cancel this process took)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        runtime: IntegrationRuntime,
        *,
        lease: float,
        act: Callable[[Session], object] = lambda session: None,
    ) -> None:
        """``act`` runs every round after the heartbeat: it carries out the cancels of
        the runs this process drives (:func:`llmops.services.pipelines.cancel_owned`)."""
        self.sessions = sessions
        self.runtime = runtime
        self.lease = lease
        self.act = act
        self.every = min(1.0, lease / 3)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._forgotten = time.monotonic()

    def start(self, instance_id: str) -> None:
        self.runtime.instance_id = instance_id
        self.runtime.wake_runs = self.wake
        with self.sessions() as session, session.begin():
            register(session, instance_id)
        LIVE_HERE.add(instance_id)
        self._thread = threading.Thread(target=self._loop, name="llmops-runs", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def round(self) -> None:
        instance_id = self.runtime.instance_id
        assert instance_id is not None
        with self.sessions() as session:
            with session.begin():
                heartbeat(session, instance_id)
            with session.begin():
                released = release_dead_claims(session, lease=self.lease)
            if released:
                log.warning("released %d queued writes a stopped process held", released)
            self.act(session)
            if time.monotonic() - self._forgotten > FORGET_EVERY:
                self._forgotten = time.monotonic()
                with session.begin():
                    forget_dead(session, older_than=timedelta(seconds=max(3600, self.lease * 100)))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.round()
            except Exception:  # the next round tries again; a missed heartbeat is one round
                log.exception("the run watcher's round failed")

    def stop(self) -> None:
        """Stop, and say so: the runs this process drove are taken over at once."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        instance_id = self.runtime.instance_id
        if instance_id is None:
            return
        LIVE_HERE.discard(instance_id)
        try:
            with self.sessions() as session, session.begin():
                session.execute(delete(ExecutorInstance).where(ExecutorInstance.id == instance_id))
        except Exception:  # a database that is away: the heartbeat expires instead
            log.warning("could not remove this process's executor instance", exc_info=True)
