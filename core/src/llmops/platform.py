"""One running platform: settings, database, plugin runtime, metrics and health."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.orm import Session

from llmops.config import CoreSettings
from llmops.db import migrate
from llmops.db.session import make_engine, make_session_factory, transaction
from llmops.gateway import Gateway, GatewayMetrics
from llmops.integrations import IntegrationRuntime
from llmops.observability.health import HealthChecker
from llmops.observability.metrics import PlatformMetrics
from llmops.resilience.outbox import Outbox, OutboxPolicy
from llmops.services.outbox_handlers import audit_tool_action, outbox_handlers

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
        self.health = HealthChecker(self.runtime, ttl=settings.health_cache_seconds)
        self.gateway = Gateway(self.runtime, GatewayMetrics(self.metrics.registry))
        self.outbox = Outbox(
            self.sessions,
            outbox_handlers(self.runtime),
            policy=OutboxPolicy(
                max_attempts=settings.outbox_max_attempts,
                lease_seconds=settings.outbox_lease_seconds,
            ),
            recorder=audit_tool_action,
        )

    def migrate(self) -> None:
        migrate.upgrade(self.engine)

    def start(self) -> None:
        """Migrate the database and load the enabled plugins."""
        self.migrate()
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

    def stop(self) -> None:
        self.health.close()
        self.runtime.shutdown()
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with transaction(self.sessions) as session:
            yield session

    def database_ok(self) -> tuple[bool, str]:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # readiness reports the reason instead of raising
            return False, f"{type(exc).__name__}: {exc}"
        return True, ""
