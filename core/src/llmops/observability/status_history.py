"""The integrations' status history: each change of a provider's health, in the database.

The health checker (:mod:`llmops.observability.health`) hands every round's results to a
:class:`StatusMonitor`. It records a row for a provider's first result and for each
result whose status (ok, degraded, down, unknown) differs from the one before, with the
time of the check, its detail (the reason) and the process that saw it; a round that
changes nothing writes nothing. What came before is remembered in memory, and read from
the database when the process starts, so a restart that finds a provider as it was
records nothing. The writes happen on a thread of the monitor's own, in the order the
rounds saw the changes: a database that hangs holds up no health round (readiness
reports it), and the changes wait in memory until it answers. Each replica records what
it sees (two replicas that see the same change record it twice, each with its
``instance_id`` and ``host``). Rows older than ``status_history_hours`` are deleted, at
most once a minute.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from llmops.db.models import IntegrationStatusChange, utcnow
from llmops.db.session import transaction
from llmops.observability.health import ProviderHealth

log = logging.getLogger(__name__)

#: How often, at most, the rows past the window are deleted (seconds).
PRUNE_EVERY_SECONDS = 60.0
#: How many changes wait for the database at most; past it, the oldest are dropped.
MAX_WAITING = 10_000
#: How long the writer waits before it tries a failed write again (seconds).
RETRY_SECONDS = 5.0
#: The shortest pause of the writer when nothing waits (seconds).
MIN_PAUSE = 1.0

_Key = tuple[str, str, str]  # plugin, capability, provider


class StatusMonitor:
    """Records the changes of the providers' health that one process sees."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        window: timedelta,
        instance_id: str,
        host: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        prune_every: float = PRUNE_EVERY_SECONDS,
    ) -> None:
        self.sessions = sessions
        #: how long a change is kept
        self.window = window
        self.instance_id = instance_id
        self.host = (host if host is not None else socket.gethostname())[:255]
        self.clock = clock
        self.prune_every = prune_every
        # guards what follows; notified when changes wait or are written, and on close
        self._cond = threading.Condition()
        #: the status each provider had in the last round handed over
        self._seen: dict[_Key, str] = {}
        #: the results that changed a provider's status, not written yet
        self._waiting: deque[ProviderHealth] = deque(maxlen=MAX_WAITING)
        self._writing = False
        self._closed = False
        self._thread: threading.Thread | None = None
        # the writer's own: the last status recorded of each provider (None until read
        # from the database), and when the old rows were last deleted
        self._write_lock = threading.Lock()
        self._last: dict[_Key, str] | None = None
        self._pruned_at: float | None = None

    # -- the health rounds' side: never waits for the database ---------------------------

    def observe(self, results: Iterable[ProviderHealth]) -> None:
        """Hand over a round's results: those whose status differs from the provider's
        in the round before (and each provider's first) are written in the background."""
        with self._cond:
            if self._closed:
                return
            for result in results:
                key = (result.plugin, result.capability.value, result.provider)
                status = result.health.status.value
                if self._seen.get(key) != status:
                    self._seen[key] = status
                    self._waiting.append(result)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="llmops-status-history", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every change handed over is written (or given up on for a failing
        database); False when that took longer than ``timeout``."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._closed or (not self._waiting and not self._writing),
                timeout=timeout,
            )

    def close(self) -> None:
        """Stop the writer; changes not written yet are dropped."""
        with self._cond:
            self._closed = True
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    # -- the writer ----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._closed or bool(self._waiting),
                    timeout=max(self.prune_every, MIN_PAUSE),
                )
                if self._closed:
                    return
                batch = list(self._waiting)
                self._waiting.clear()
                self._writing = True
            retry = False
            try:
                self.record(batch)
            except SQLAlchemyError as exc:  # kept, in order, for the next try
                log.warning("integration status changes not recorded yet: %s", exc)
                retry = True
            except Exception:  # logged; the rounds go on
                log.exception("integration status changes not recorded")
            with self._cond:
                if retry:
                    self._waiting.extendleft(reversed(batch))
                self._writing = False
                self._cond.notify_all()
                if retry:
                    self._cond.wait_for(lambda: self._closed, timeout=RETRY_SECONDS)

    def record(self, results: Iterable[ProviderHealth]) -> int:
        """Write the results whose status differs from the provider's last recorded one
        (and the first of each provider), then delete old rows when it is time; returns
        how many were written. Raises when the database fails the write (nothing is
        remembered as written then)."""
        with self._write_lock:
            recorded = self._record(list(results))
            if self._pruned_at is None or time.monotonic() - self._pruned_at >= self.prune_every:
                try:
                    self.prune()
                except SQLAlchemyError as exc:
                    log.warning("old integration status changes not deleted: %s", exc)
            return recorded

    def _record(self, results: list[ProviderHealth]) -> int:
        if self._last is None:
            with self.sessions() as session:
                self._last = latest_statuses(session)
        changes: list[IntegrationStatusChange] = []
        last = dict(self._last)
        for result in results:
            key = (result.plugin, result.capability.value, result.provider)
            status = result.health.status.value
            previous = last.get(key)
            if previous == status:
                continue
            last[key] = status
            changes.append(
                IntegrationStatusChange(
                    at=result.health.checked_at,
                    plugin=result.plugin,
                    capability=result.capability.value,
                    provider=result.provider,
                    status=status,
                    previous=previous,
                    detail=result.health.detail,
                    latency_ms=result.health.latency_ms,
                    instance_id=self.instance_id,
                    host=self.host,
                )
            )
        if not changes:
            return 0
        with transaction(self.sessions) as session:
            session.add_all(changes)
        self._last = last
        return len(changes)

    def prune(self) -> int:
        """Delete the changes older than the window; returns how many."""
        cutoff = self.clock() - self.window
        with transaction(self.sessions) as session:
            deleted = session.execute(
                delete(IntegrationStatusChange).where(IntegrationStatusChange.at < cutoff)
            )
        self._pruned_at = time.monotonic()
        return int(getattr(deleted, "rowcount", 0) or 0)


def latest_statuses(session: Session) -> dict[_Key, str]:
    """The status of each provider's latest recorded change (whichever process saw it)."""
    table = IntegrationStatusChange
    latest = select(func.max(table.id)).group_by(table.plugin, table.capability, table.provider)
    rows = session.execute(
        select(table.plugin, table.capability, table.provider, table.status).where(
            table.id.in_(latest)
        )
    ).all()
    return {(plugin, capability, provider): status for plugin, capability, provider, status in rows}


def changes_since(session: Session, since: datetime) -> list[IntegrationStatusChange]:
    """The changes recorded at or after ``since``, oldest first."""
    table = IntegrationStatusChange
    return list(
        session.scalars(select(table).where(table.at >= since).order_by(table.at, table.id))
    )
