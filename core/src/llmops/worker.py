"""The background worker of ``llmops up``: keeps pipeline and serving state in step with
the tools and picks up configuration changes made by other processes."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from llmops.services import pipelines, serving

if TYPE_CHECKING:
    from llmops.platform import Platform

log = logging.getLogger(__name__)


class BackgroundWorker:
    def __init__(self, platform: Platform, *, interval: float) -> None:
        self.platform = platform
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serving_synced = 0.0  # monotonic time of the last serving reconcile

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="llmops-worker", daemon=True)
        self._thread.start()

    def run_once(self) -> None:
        runtime = self.platform.runtime
        runtime.sync_if_stale(self.platform.sessions)
        self.deliver_due()
        if self._stop.is_set():
            return
        with self.platform.sessions() as session:
            pipelines.sync_active(
                session=session,
                runtime=runtime,
                meanwhile=self.deliver_due,
                stop=self._stop.is_set,
            )
        every = self.platform.settings.serving_sync_interval_seconds
        if time.monotonic() - self._serving_synced >= every:
            self._serving_synced = time.monotonic()
            with self.platform.sessions() as session:
                redeployed = serving.reconcile(session=session, runtime=runtime)
            if redeployed:
                log.warning("deploying again the endpoints their framework lost: %s", redeployed)

    def deliver_due(self) -> None:
        """Deliver the outbox's due operations, 20 at a time, until none is left."""
        runtime = self.platform.runtime
        while self.platform.outbox.run_once(limit=20, skip_providers=runtime.paused_providers()):
            if self._stop.is_set():
                return

    def tick(self) -> None:
        """One round; an error is logged and the next round goes on."""
        try:
            self.run_once()
        except Exception:  # the loop must survive a bad tick; the error is logged
            log.exception("background worker tick failed")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
