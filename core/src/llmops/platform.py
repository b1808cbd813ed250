"""One running platform: settings, database, plugin runtime, metrics and health."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from llmops.capabilities.common import HealthStatus
from llmops.config import CoreSettings
from llmops.db import migrate
from llmops.db.session import make_engine, make_session_factory, transaction
from llmops.gateway import Gateway, GatewayMetrics
from llmops.integrations import IntegrationRuntime
from llmops.observability.health import HealthChecker
from llmops.observability.metrics import PlatformMetrics
from llmops.observability.status_history import StatusMonitor
from llmops.resilience.outbox import Outbox, OutboxPolicy
from llmops.services import pipelines
from llmops.services.outbox_handlers import audit_tool_action, outbox_handlers
from llmops.services.run_leases import RunWatcher, detach_all
from llmops.services.traffic import TrafficSampler

log = logging.getLogger(__name__)


class Platform:
    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        # the data dir holds the key file, the database and every upload: its owner's only
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):
            settings.data_dir.chmod(0o700)
        self.engine = make_engine(settings.resolved_database_url)
        self.sessions = make_session_factory(self.engine)
        self.metrics = PlatformMetrics()
        self.metrics.pipelines.watch(self.sessions)  # pipeline transitions, sync lag
        self.runtime = IntegrationRuntime(settings, metrics=self.metrics.registry)
        #: this process among the platform's processes: the owner of the runs its
        #: executor drives, with a heartbeat (:mod:`llmops.services.run_leases`)
        self.instance_id = uuid.uuid4().hex
        #: each change of a provider's health, kept in the database for the overview
        self.status_history = StatusMonitor(
            self.sessions,
            window=timedelta(hours=settings.status_history_hours),
            instance_id=self.instance_id,
        )
        #: background checks of every provider and of the database (``start()`` starts them)
        self.health = HealthChecker(
            self.runtime,
            interval=settings.health_cache_seconds,
            timeout=settings.health_check_timeout_seconds,
            database=self._probe_database,
            gauge=self.metrics.integration_up,
            on_round=self.status_history.observe,
        )
        self.gateway = Gateway(self.runtime, GatewayMetrics(self.metrics.registry))
        #: the gateway's totals every few seconds, for the endpoints' traffic API
        self.traffic = TrafficSampler(
            self.metrics.registry, interval=settings.traffic_sample_seconds
        )
        self.runs = RunWatcher(
            self.sessions,
            self.runtime,
            lease=settings.run_lease_seconds,
            act=lambda session: pipelines.cancel_owned(session=session, runtime=self.runtime),
        )
        self.outbox = Outbox(
            self.sessions,
            outbox_handlers(self.runtime),
            policy=OutboxPolicy(
                max_attempts=settings.outbox_max_attempts,
                lease_seconds=settings.outbox_lease_seconds,
            ),
            recorder=audit_tool_action,
            # its claims name this process: another releases them as soon as it is gone
            worker_id=self.instance_id,
        )

    def migrate(self) -> None:
        migrate.upgrade(self.engine)

    def start(self) -> None:
        """Migrate the database, load the enabled plugins and start the health checks.

        The first database check runs here (bounded by ``health_check_timeout_seconds``;
        the migration has just reached the database, so it is quick): readiness answers
        from a real check from the first probe on, never "down" before one. The
        providers' first round runs in the background: until it ends they show UNKNOWN,
        "not checked yet"."""
        self.migrate()
        self.runs.start(self.instance_id)
        with self.sessions() as session:
            self.runtime.sync(session)
        for state in self.runtime.states():
            if state.failure is not None:
                log.warning(
                    "plugin %s failed (%s): %s",
                    state.installed.name,
                    state.failure.stage,
                    state.failure.error,
                )
        self.health.check_database()
        self.health.start()
        self.traffic.start()

    def stop(self, *, hand_over_runs: bool = False) -> None:
        """Stop. ``hand_over_runs`` (``llmops up`` and ``llmops worker`` on SIGTERM): the
        runs this process's executor drives are let go, their stages left running, and
        another process (a replica, or this server started again) takes them over; without
        it, closing the executor cancels them."""
        if hand_over_runs:
            handed = detach_all(self.runtime)
            if handed:
                log.warning("left %d run(s) going for another process to take over", len(handed))
        self.runs.stop()
        self.traffic.close()
        self.health.close()
        self.status_history.close()
        self.runtime.shutdown()
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with transaction(self.sessions) as session:
            yield session

    def database_ok(self) -> tuple[bool, str]:
        """(ok, reason) from the last background check of the database: answers at once,
        whatever the database does. Not ok before the first check (``start()`` runs it)."""
        health = self.health.database()
        ok = health.status is HealthStatus.OK
        return ok, "" if ok else health.detail

    def _probe_database(self) -> None:
        """The database check the health checker runs (raises when the database fails)."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
