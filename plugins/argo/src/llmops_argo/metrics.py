"""Prometheus metrics of the Argo plugin (the orchestration exporter), from what the
provider itself saw: a scrape never calls Argo, so it answers at once even while the Argo
Server hangs.

* ``llmops_argo_workflows{phase}``: the workflows this process last saw in each Argo
  phase (``Pending``, ``Running``, ``Succeeded``, ``Failed``, ``Error``), among the last
  :data:`REMEMBERED_WORKFLOWS` it read (a submission, the platform's sync, a cancel, a
  retry). A workflow found gone from Argo is forgotten.
* ``llmops_argo_submissions_total{outcome}``: workflows submitted: ``created``, or
  ``existing`` when a redelivered submission found the workflow an earlier delivery made.
* ``llmops_argo_api_requests_total{operation, outcome}`` and
  ``llmops_argo_api_request_duration_seconds{operation}``: each request to the Argo
  Server's API (a provider call makes one or several: a submission lints, then creates);
  ``outcome`` is ``ok`` or the llmops error it became (``IntegrationUnavailable``...).

The guard's ``llmops_integration_*`` metrics count the provider's calls as a whole.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: How many workflows' last phases the provider remembers (the oldest read go first).
REMEMBERED_WORKFLOWS = 4096
#: Argo's workflow phases, reported even when no workflow is in them; a workflow without
#: a phase yet (just created) is ``Pending``, as Argo's UI shows it.
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Error")
OK = "ok"


class ArgoMetrics(Collector):
    """One provider's metrics; thread-safe. ``collect()`` reads memory only."""

    def __init__(self) -> None:
        self.requests = Counter(
            "llmops_argo_api_requests",
            "Requests to the Argo Server's API by operation and outcome (ok, or the "
            "error it became)",
            ["operation", "outcome"],
            registry=None,
        )
        self.latency = Histogram(
            "llmops_argo_api_request_duration_seconds",
            "Latency of requests to the Argo Server's API, by operation",
            ["operation"],
            registry=None,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.submissions = Counter(
            "llmops_argo_submissions",
            "Workflows submitted: created, or existing (a redelivered submission found the "
            "workflow an earlier delivery made)",
            ["outcome"],
            registry=None,
        )
        for outcome in ("created", "existing"):
            self.submissions.labels(outcome)
        self._lock = threading.Lock()
        self._phases: OrderedDict[str, str] = OrderedDict()

    # -- what the provider records -----------------------------------------------------

    def request(self, operation: str, outcome: str, seconds: float) -> None:
        self.requests.labels(operation, outcome).inc()
        self.latency.labels(operation).observe(max(0.0, seconds))

    def saw(self, workflow: str, phase: str | None) -> None:
        """Workflow ``workflow`` (its external id) was read in ``phase``."""
        with self._lock:
            self._phases[workflow] = phase or "Pending"
            self._phases.move_to_end(workflow)
            while len(self._phases) > REMEMBERED_WORKFLOWS:
                self._phases.popitem(last=False)

    def forget(self, workflow: str) -> None:
        """Workflow ``workflow`` is gone from Argo."""
        with self._lock:
            self._phases.pop(workflow, None)

    def phases(self) -> dict[str, int]:
        with self._lock:
            seen = Tally(self._phases.values())
        return {phase: seen.get(phase, 0) for phase in (*PHASES, *sorted(set(seen) - set(PHASES)))}

    # -- Collector ---------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        yield _workflows()
        yield from self.submissions.describe()
        yield from self.requests.describe()
        yield from self.latency.describe()

    def collect(self) -> Iterator[Metric]:
        family = _workflows()
        for phase, count in self.phases().items():
            family.add_metric([phase], count)
        yield family
        yield from self.submissions.collect()
        yield from self.requests.collect()
        yield from self.latency.collect()


def _workflows() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "llmops_argo_workflows",
        "Workflows by the Argo phase this process last saw them in (among the last "
        f"{REMEMBERED_WORKFLOWS} it read)",
        labels=["phase"],
    )
