"""The background worker of ``llmops up``: keeps pipeline and serving state in step with
the tools and picks up configuration changes made by other processes.

Long work (an outbox operation whose handler is :attr:`~llmops.resilience.outbox.HandlerSpec.long`:
a model import or export, minutes by nature) is delivered by a lane of its own, one
operation at a time, so that it never holds up the other writes, the pipeline sync or the
serving reconcile. It starts on long work as soon as a request of this process commits it
(:meth:`~llmops.resilience.outbox.Outbox.long_work_enqueued`), and looks every round for
work other processes enqueued."""

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
        self._long_thread: threading.Thread | None = None
        self._serving_synced = 0.0  # monotonic time of the last serving reconcile
        self._orphans_ended = False  # the first round ends what no pipeline expects

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="llmops-worker", daemon=True)
        self._thread.start()
        self.start_long_work()

    def start_long_work(self) -> None:
        """Start the lane that delivers long work (``start`` does; ``llmops worker``,
        which runs the rounds itself, calls it alone)."""
        self._long_thread = threading.Thread(
            target=self._long_loop, name="llmops-long-work", daemon=True
        )
        self._long_thread.start()

    def run_once(self) -> None:
        runtime = self.platform.runtime
        runtime.sync_if_stale(self.platform.sessions)
        self.deliver_due()
        if self._stop.is_set():
            return
        with self.platform.sessions() as session:
            if not self._orphans_ended:
                ended = pipelines.end_orphans(session=session, runtime=runtime)
                self._orphans_ended = True
                if ended:
                    log.warning("ended runs no pipeline expects any more: %s", ended)
            pipelines.sync_active(
                session=session,
                runtime=runtime,
                meanwhile=self.deliver_due,
                stop=self._stop.is_set,
                take_over=True,
            )
        every = self.platform.settings.serving_sync_interval_seconds
        if time.monotonic() - self._serving_synced >= every:
            self._serving_synced = time.monotonic()
            with self.platform.sessions() as session:
                redeployed = serving.reconcile(session=session, runtime=runtime)
            if redeployed:
                log.warning("deploying again the endpoints their framework lost: %s", redeployed)

    def deliver_due(self) -> None:
        """Deliver the outbox's due operations, 20 at a time, until none is left; long
        work is the long-work lane's."""
        runtime = self.platform.runtime
        outbox = self.platform.outbox
        while outbox.run_once(
            limit=20, skip_providers=runtime.paused_providers(), skip_kinds=outbox.long_kinds
        ):
            if self._stop.is_set():
                return

    def deliver_long_work(self) -> None:
        """Deliver the due long work, one operation at a time, until none is left or the
        worker stops (a delivery in progress is told to stop through its heartbeat)."""
        runtime = self.platform.runtime
        outbox = self.platform.outbox
        kinds = outbox.long_kinds
        if not kinds:
            return
        while not self._stop.is_set() and outbox.run_once(
            limit=1, skip_providers=runtime.paused_providers(), kinds=kinds, stop=self._stop.is_set
        ):
            pass

    def tick(self) -> None:
        """One round; an error is logged and the next round goes on."""
        try:
            self.run_once()
        except Exception:  # the loop must survive a bad tick; the error is logged
            log.exception("background worker tick failed")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def _long_loop(self) -> None:
        outbox = self.platform.outbox
        while True:
            outbox.wait_for_long_work(self.interval)
            if self._stop.is_set():
                return
            try:
                self.deliver_long_work()
            except Exception:  # the lane must survive a bad round; the error is logged
                log.exception("background worker: delivering long work failed")

    def stop(self) -> None:
        self._stop.set()
        self.platform.outbox.long_work_enqueued()  # the lane's wait ends now
        for thread in (self._thread, self._long_thread):
            if thread is not None:
                thread.join(timeout=10)
