"""Integration and database health, checked in the background.

A daemon thread (:meth:`HealthChecker.start`) runs one round every ``interval`` seconds
(``health_cache_seconds``): every live provider's ``health()`` and the database's
``SELECT 1``, each in a thread of its own with its own timeout
(``health_check_timeout_seconds``). A check that does not answer in time is reported
down and holds up nothing else; while it still runs it is not started again (no pile of
threads against a hung tool), and its answer is used when it finally comes. The routes
answer at once from the last results; the circuit-breaker overlay and the bounded detail
are applied when an answer is built, so a circuit that opens between rounds shows at once.
After each round, ``on_round`` (the status history, :mod:`llmops.observability.status_history`)
gets every checked provider's answer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from prometheus_client import Gauge

from llmops.capabilities.common import Capability, Health, HealthStatus, utcnow
from llmops.integrations import IntegrationRuntime

log = logging.getLogger(__name__)

#: The detail of a provider (or the database) whose first check has not finished.
NOT_CHECKED = "not checked yet"
#: The shortest pause between two rounds, whatever ``interval`` says.
MIN_INTERVAL = 0.05

_Key = tuple[str, Capability, str]  # plugin, capability, provider name
_Live = tuple[str, Capability, str, object]  # ... and the provider


@dataclass(frozen=True)
class ProviderHealth:
    plugin: str
    capability: Capability
    provider: str
    health: Health
    circuit: str = "closed"


class _Run:
    """One call of a check, in a daemon thread of its own."""

    __slots__ = ("finished", "started")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.finished = False


class _Check:
    """What is known of one check: its last result and its run in flight, if any."""

    def __init__(self, target: object, probe: Callable[[], Health], name: str) -> None:
        #: the provider it checks: a rebuilt provider is a new object, so a new check
        self.target = target
        self.probe = probe
        self.name = name
        self.result: Health | None = None
        self.running: _Run | None = None


class HealthChecker:
    """The background health checks of one platform and the answers built from them."""

    def __init__(
        self,
        runtime: IntegrationRuntime,
        *,
        interval: float,
        timeout: float = 5.0,
        database: Callable[[], object] | None = None,
        gauge: Gauge | None = None,
        on_round: Callable[[list[ProviderHealth]], object] | None = None,
    ) -> None:
        self.runtime = runtime
        #: seconds from the start of one round to the start of the next
        self.interval = interval
        #: how long one check may take before it is reported down
        self.timeout = timeout
        #: ``llmops_integration_up``, set by every round
        self.gauge = gauge
        #: given every checked provider's answer after each round
        self.on_round = on_round
        #: rounds finished so far (the background thread's and forced ones)
        self.rounds = 0
        # guards the checks and their results; notified when a run finishes or on close
        self._cond = threading.Condition()
        self._checks: dict[_Key, _Check] = {}
        self._database = (
            _Check(database, partial(_timed_probe, database), "database")
            if database is not None
            else None
        )
        self._gauged: set[tuple[str, str, str]] = set()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        # a plugin's rebuilt providers (new settings, enabled) are checked without delay
        runtime.add_configured_listener(lambda _name: self._wake.set())

    # -- the background thread ---------------------------------------------------------

    def start(self) -> None:
        """Start the background rounds (the first one at once)."""
        with self._cond:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._loop, name="llmops-health", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the rounds; a check still running is abandoned (its thread is a daemon)."""
        with self._cond:
            self._closed = True
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    def _loop(self) -> None:
        while not self._closed:
            began = time.monotonic()
            self._wake.clear()
            try:
                self.run_round()
            except Exception:  # the next round tries again
                log.exception("a background health round failed")
            pause = max(self.interval, MIN_INTERVAL) - (time.monotonic() - began)
            if pause > 0:
                self._wake.wait(pause)

    def run_round(self) -> None:
        """One round on the caller's thread: start every check not running yet, wait for
        each until its timeout (counted from its start), then set the gauges."""
        checks = self._checks_for(list(self.runtime.iter_providers()), prune=True)
        if self._database is not None:
            checks.append(self._database)
        self._run(checks, fresh=False)
        found = self._collect(list(self.runtime.iter_providers()))
        answers = [self._present(*f) for f in found if f[3] is not None]
        self._set_gauges(answers)
        if self.on_round is not None and not self._closed:
            try:
                self.on_round(answers)
            except Exception:  # the history misses a round; the checks go on
                log.exception("the health round's listener failed")
        with self._cond:
            self.rounds += 1

    # -- answers -----------------------------------------------------------------------

    def check(self, *, force: bool = False) -> tuple[list[ProviderHealth], bool]:
        """(results, cached): every live provider's last background result, at once;
        ``cached`` is True for those. ``force`` runs a round first, on the caller's
        thread (each check bounded by the timeout), and answers ``cached`` False."""
        if force:
            self.run_round()
        return self.results(), not force

    def results(self, plugin: str | None = None) -> list[ProviderHealth]:
        """The last result of every live provider (of ``plugin``); a provider whose first
        check has not finished is UNKNOWN, "not checked yet". Never waits for a check."""
        live = [p for p in self.runtime.iter_providers() if plugin is None or p[0] == plugin]
        return [self._present(*found) for found in self._collect(live)]

    def check_plugin(self, plugin: str) -> list[ProviderHealth]:
        """Check ``plugin``'s providers now, on the caller's thread (the connection test):
        each is waited for at most the timeout; one already running is waited for, not
        started a second time."""
        live = [p for p in self.runtime.iter_providers() if p[0] == plugin]
        self._run(self._checks_for(live, prune=False), fresh=True)
        return [self._present(*found) for found in self._collect(live)]

    def database(self) -> Health:
        """The last check of the database; UNKNOWN, "not checked yet", before the first."""
        with self._cond:
            result = self._database.result if self._database is not None else None
        if result is None:
            return Health(status=HealthStatus.UNKNOWN, detail=NOT_CHECKED)
        return result

    def check_database(self) -> Health:
        """Check the database now, at most the timeout (``Platform.start`` runs the first
        check so, before the app answers its first readiness probe)."""
        if self._database is not None:
            self._run([self._database], fresh=True)
        return self.database()

    # -- running checks ----------------------------------------------------------------

    def _checks_for(self, live: Iterable[_Live], *, prune: bool) -> list[_Check]:
        """The checks of these providers (new ones for new or rebuilt providers); with
        ``prune``, the checks of providers that are gone are forgotten."""
        found: dict[_Key, _Check] = {}
        with self._cond:
            for plugin, capability, name, provider in live:
                key = (plugin, capability, name)
                check = self._checks.get(key)
                if check is None or check.target is not provider:
                    check = _Check(
                        provider,
                        partial(_timed_health, provider),
                        f"{plugin}-{capability.value}-{name}",
                    )
                    self._checks[key] = check
                found[key] = check
            if prune:
                for key in set(self._checks) - set(found):
                    del self._checks[key]
        return list(found.values())

    def _run(self, checks: list[_Check], *, fresh: bool) -> None:
        """Start each check unless it is running, and wait for each until its deadline:
        its start plus the timeout, or with ``fresh`` now plus the timeout (a forced
        check gives one still running a timeout's chance). Past it, the check is DOWN."""
        with self._cond:
            if self._closed:
                return
            waits: list[tuple[float, _Check, _Run]] = []
            for check in checks:
                run = check.running
                if run is None:
                    run = check.running = _Run()
                    threading.Thread(
                        target=self._call,
                        args=(check, run),
                        name=f"llmops-health-{check.name}",
                        daemon=True,
                    ).start()
                waits.append(
                    ((time.monotonic() if fresh else run.started) + self.timeout, check, run)
                )
            for deadline, check, run in sorted(waits, key=lambda w: w[0]):
                self._cond.wait_for(
                    partial(self._over, run), timeout=max(0.0, deadline - time.monotonic())
                )
                if self._closed:
                    return
                if not run.finished:
                    check.result = Health(
                        status=HealthStatus.DOWN,
                        detail=f"no answer within {self.timeout:g} s",
                        latency_ms=(time.monotonic() - run.started) * 1000,
                    )

    def _over(self, run: _Run) -> bool:
        return run.finished or self._closed

    def _call(self, check: _Check, run: _Run) -> None:
        health = Health(status=HealthStatus.UNKNOWN, detail="the check did not finish")
        try:
            health = check.probe()
        except BaseException as exc:  # the probes catch Exception; this is the rest
            health = Health(status=HealthStatus.DOWN, detail=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            with self._cond:
                run.finished = True
                if check.running is run:
                    check.running = None
                check.result = health
                self._cond.notify_all()

    # -- building answers --------------------------------------------------------------

    def _collect(self, live: Iterable[_Live]) -> list[tuple[str, Capability, str, Health | None]]:
        """Each live provider's last result (None: not checked yet)."""
        with self._cond:
            found = []
            for plugin, capability, name, provider in live:
                check = self._checks.get((plugin, capability, name))
                result = check.result if check is not None and check.target is provider else None
                found.append((plugin, capability, name, result))
            return found

    def _present(
        self, plugin: str, capability: Capability, name: str, health: Health | None
    ) -> ProviderHealth:
        """The answer for one provider: its result with the circuit it has now."""
        if health is None:
            health = Health(status=HealthStatus.UNKNOWN, detail=NOT_CHECKED)
        breaker = self.runtime.breaker(capability, name)
        circuit = breaker.state.value
        if circuit != "closed" and health.status is HealthStatus.OK:
            health = health.model_copy(
                update={
                    "status": HealthStatus.DEGRADED,
                    "detail": f"{health.detail}; calls paused ({circuit}): "
                    f"{breaker.last_error}".lstrip("; "),
                }
            )
        health = health.model_copy(update={"detail": bounded_detail(health.detail)})
        return ProviderHealth(plugin, capability, name, health, circuit)

    def _set_gauges(self, answers: list[ProviderHealth]) -> None:
        """``llmops_integration_up`` of every checked provider; a gone one's is removed."""
        if self.gauge is None:
            return
        labelled: set[tuple[str, str, str]] = set()
        for result in answers:
            labels = (result.plugin, result.capability.value, result.provider)
            self.gauge.labels(*labels).set(1 if result.health.status is HealthStatus.OK else 0)
            labelled.add(labels)
        with self._cond:
            gone, self._gauged = self._gauged - labelled, labelled
        for labels in gone:
            with contextlib.suppress(KeyError):
                self.gauge.remove(*labels)


#: The longest ``detail`` a health result keeps.
MAX_DETAIL_CHARS = 300


def bounded_detail(text: object) -> str:
    """``text`` as one short line: its first line, control and invisible format characters
    (line and paragraph separators, bidi overrides) made spaces, runs of whitespace one,
    at most :data:`MAX_DETAIL_CHARS`. A provider's detail may quote what its tool answered;
    whatever a plugin puts there, the health routes show a short reason, not a page."""
    lines = [line for line in str(text).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    clean = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in first)
    line = " ".join(clean.split())
    if len(line) > MAX_DETAIL_CHARS:
        line = line[: MAX_DETAIL_CHARS - 1].rstrip() + "…"
    return line


def _timed_health(provider: object) -> Health:
    started = time.perf_counter()
    try:
        health = provider.health()  # type: ignore[attr-defined]
    except Exception as exc:  # a provider that raises is down, and says why
        return Health(
            status=HealthStatus.DOWN,
            detail=f"{type(exc).__name__}: {exc}",
            latency_ms=(time.perf_counter() - started) * 1000,
        )
    if not isinstance(health, Health):
        return Health(status=HealthStatus.UNKNOWN, detail="health() returned no Health")
    # ``checked_at`` says when the check finished: the answer says how old it is
    update: dict[str, object] = {"checked_at": utcnow()}
    if health.latency_ms is None:
        update["latency_ms"] = (time.perf_counter() - started) * 1000
    return health.model_copy(update=update)


def _timed_probe(probe: Callable[[], object]) -> Health:
    """``probe()`` (the database's ``SELECT 1``) as a Health: DOWN with the reason when
    it raises."""
    started = time.perf_counter()
    try:
        probe()
    except Exception as exc:  # reported, never raised
        return Health(
            status=HealthStatus.DOWN,
            detail=f"{type(exc).__name__}: {exc}",
            latency_ms=(time.perf_counter() - started) * 1000,
        )
    return Health(status=HealthStatus.OK, latency_ms=(time.perf_counter() - started) * 1000)


def overall(results: list[ProviderHealth], database_ok: bool) -> HealthStatus:
    if not database_ok:
        return HealthStatus.DOWN
    if any(r.health.status is not HealthStatus.OK for r in results):
        return HealthStatus.DEGRADED
    return HealthStatus.OK
