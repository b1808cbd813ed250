"""``argo-orchestration``: pipelines on Argo Workflows through the platform, against hera
talking to the same Argo Server, on one Argo Server double (``llmops.testing.argo``, in
this process) and one real ``llmops up`` with the Argo plugin on (its own process).

The issue's targets (orch-1): a pipeline submitted through the platform takes at most
1.10x hera's own submit of the same workflow to the same server (p50 over 200
submissions), and keeping 1,000 running pipelines in sync costs at most one Argo call
per pipeline per poll interval (or one list call per interval). A missed target is a
finding (``SUSPICIOUS``).

Submit: every path submits the same four-stage DAG, ``prepare -> (train, evaluate) ->
publish``, built by the plugin's own builder (:func:`llmops_argo.workflow.build_workflow`)
from the same :class:`~llmops.capabilities.orchestration.PipelineSpec`, each under a
fresh idempotency key (so a fresh name), the paths in rotating order:

* platform: ``POST /llm-ops/v1/workflows/pipelines`` with ``provider: "argo"``, timed until
  its answer, which must be 201: the outbox delivers the submission inside the request,
  so a 201 means the workflow exists on Argo (a 202 means it waits in the retry queue,
  which fails the case). The plugin lints it and creates it: two Argo calls (the
  workflow's name comes from the idempotency key, so a redelivery's create is a 409 and
  the plugin reads that workflow back: exactly once, at no cost to a first delivery);
* hera create: hera's own submit, ``Workflow.create()`` (it builds the model and calls
  ``WorkflowsService.create_workflow``), one call: what the issue compares with;
* hera lint + create: the two calls the plugin makes, through hera: the same
  Argo work, so the ratio is the platform's own cost (HTTP, key check, the durable row
  and outbox operation, building the workflow, mapping the answer).

Every path pays for building the workflow's models (hera's ``Workflow.build()``, which
``Workflow.create()`` calls): the direct paths get the hera ``Workflow`` written before
the clock starts, as a hera user writes it; the platform turns the spec into one inside
its request.

Status sync: N running pipelines (their workflows kept Running by the double), the
platform's background worker syncing them at ``sync_interval_seconds``. Every request the
double receives is recorded; the direct client's carry a User-Agent of their own, so the
platform's are told apart. A pass is the worker's burst of requests between two of its
pauses. Checked: every pipeline's workflow is read exactly once a pass and nothing else
is called, so calls per pipeline per interval <= 1. Timed: a pass (its first request to
its last), against hera's ``get_workflow`` of the same N workflows one after another
(the least a per-workflow poller pays), run in the pause after the pass; one list call
answering all N (what a list-based sync would pay instead) is noted.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import (
    PartialFailure,
    Result,
    Stats,
    child_pid,
    cpu_seconds,
    describe,
    environment,
    fmt_seconds,
    rotate,
)

if TYPE_CHECKING:
    from hera.workflows import Workflow, WorkflowsService

    from llmops.capabilities.orchestration import PipelineSpec
    from llmops.testing.argo import ArgoServerDouble
    from llmops.testing.console import ConsoleServer
    from llmops.testing.doubles import RecordedRequest
    from llmops_argo.provider import ArgoOrchestrator

NAME = "argo-orchestration"
API = "/llm-ops/v1"
PIPELINES = f"{API}/workflows/pipelines"
NAMESPACE = "argo"
#: both builders get it, so a stage without an image gets the same one on every path
DEFAULT_IMAGE = "python:3.12-slim"
SUBMIT_NAME = "bench-submit"
#: the direct path that makes the plugin's calls
AS_PLUGIN = "hera lint + create"
#: the plugin's provider called in this process
PLUGIN = "plugin submit"
SYNC_NAME = "bench-sync"
#: the issue's numbers
DEFAULT_SUBMIT_ROUNDS = 200
DEFAULT_PIPELINES = 1000
TARGET_SUBMIT_RATIO = 1.10
TARGET_CALLS_PER_PIPELINE = 1.0
SUBMIT_WARMUP = 10
#: passes kept (after one warm-up pass): each is followed by a direct sweep
SYNC_PASSES = 3
#: The worker's poll interval here. Long enough for a direct sweep of the N workflows to
#: fit in the pause between two passes (so the two never share the double); the default
#: (1 s) only brings the passes closer: a pass makes the same calls either way.
MIN_SYNC_INTERVAL_SECONDS = 5.0
#: seconds of the interval a sweep may take per workflow, to size it for N
SWEEP_BUDGET_PER_WORKFLOW = 0.004
#: a pass is over once every pipeline was read and the worker was quiet this long
PASS_QUIET_SECONDS = 0.25
#: ... or once it was quiet this long (a pass that skipped pipelines)
PASS_GIVE_UP_SECONDS = 2.0
#: the direct client's User-Agent, to tell its requests from the platform's
DIRECT_AGENT = "llmops-bench-direct"
#: how long a container runs on the double: the submit case's workflows end at once (the
#: worker syncs each about once), the sync case's keep running
SUBMIT_TASK_SECONDS = 0.05
RUNNING_TASK_SECONDS = 3600.0
#: the double's controller pace (its own default is 0.02 s; 1,000 running workflows make
#: each of its passes cost CPU this process shares with the direct client)
TICK_SECONDS = 0.05
CREATE_CLIENTS = 4

#: The issue's a -> (b, c) -> d with the fields a stage carries: env, retries, a timeout.
STAGES: list[dict[str, Any]] = [
    {
        "name": "prepare",
        "command": ["python", "-c", "print('prepare')"],
        "env": {"STAGE": "prepare", "DATA": "/data/train.jsonl"},
    },
    {
        "name": "train",
        "command": ["python", "-m", "train", "--epochs", "3"],
        "env": {"STAGE": "train"},
        "dependsOn": ["prepare"],
        "retries": 2,
        "timeoutSeconds": 3600,
    },
    {
        "name": "evaluate",
        "command": ["python", "-m", "evaluate"],
        "dependsOn": ["prepare"],
        "retries": 1,
    },
    {
        "name": "publish",
        "command": ["sh", "-c", "echo publish"],
        "dependsOn": ["train", "evaluate"],
        "workingDir": "/work",
    },
]
LABELS = {"team": "bench", "stage": "ci"}


def _body(name: str) -> dict[str, Any]:
    return {"name": name, "provider": "argo", "stages": STAGES, "labels": LABELS}


def _spec(name: str) -> PipelineSpec:
    """The spec the platform hands the plugin for :func:`_body` (its pipeline id as a label,
    the key ``pipeline-<id>``), under a fresh id: the same workflow but its name and key."""
    from llmops.capabilities.orchestration import PIPELINE_ID_LABEL, PipelineSpec, StageSpec

    stages = [
        StageSpec(
            name=s["name"],
            command=s["command"],
            env=s.get("env", {}),
            working_dir=s.get("workingDir"),
            depends_on=s.get("dependsOn", []),
            retries=s.get("retries", 0),
            timeout_seconds=s.get("timeoutSeconds"),
        )
        for s in STAGES
    ]
    pipeline_id = uuid.uuid4().hex
    return PipelineSpec(
        name=name,
        stages=stages,
        labels={**LABELS, PIPELINE_ID_LABEL: pipeline_id},
        idempotency_key=f"pipeline-{pipeline_id}",
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def _submitted(metadata: dict[str, str] | None) -> set[str]:
    """The keys of a stored workflow's labels or annotations that its submitter set (the
    controller adds ``workflows.argoproj.io/...``: phase, completed)."""
    return {key for key in metadata or {} if not key.startswith("workflows.argoproj.io/")}


def _workflow_of(answer: dict[str, Any]) -> str:
    external = answer.get("externalId")
    if not isinstance(external, str) or "/" not in external:
        raise RuntimeError(f"the platform answered no Argo workflow: {answer}")
    return external.split("/", 1)[1]


@dataclass
class Bench:
    argo: ArgoServerDouble
    platform: ConsoleServer
    service: WorkflowsService
    platform_pid: int | None
    #: the plugin's provider in this process, on the same double (the plugin without the
    #: platform around it: no HTTP, no durable write)
    provider: ArgoOrchestrator
    #: workflow names made on each path, to find each on the double afterwards
    made: dict[str, list[str]] = field(default_factory=dict)
    build_seconds: list[float] = field(default_factory=list)

    # -- the submit paths ------------------------------------------------------------------

    def submit(self, name: str) -> str:
        """One pipeline through the API; its workflow's name."""
        answer = self.platform.api.post(PIPELINES, json=_body(name))
        if answer.status_code != 201:
            raise RuntimeError(
                f"POST {PIPELINES}: {answer.status_code} (201 = created on Argo) "
                f"{answer.text[:500]}"
            )
        reply = answer.json()
        if reply.get("degraded"):
            raise RuntimeError(f"POST {PIPELINES} answered degraded: {reply}")
        return _workflow_of(reply)

    def platform_path(self) -> float:
        started = time.perf_counter()
        workflow = self.submit(SUBMIT_NAME)
        seconds = time.perf_counter() - started
        self.made.setdefault("platform", []).append(workflow)
        return seconds

    def plugin_path(self) -> float:
        """The plugin's own submit, called directly: build, lint, create."""
        spec = _spec(SUBMIT_NAME)
        started = time.perf_counter()
        status = self.provider.submit(spec)
        seconds = time.perf_counter() - started
        self.made.setdefault(PLUGIN, []).append(status.external_id.split("/", 1)[1])
        return seconds

    def _definition(self) -> Workflow:
        """The pipeline as a hera user writes it (the plugin's own builder, so the same
        workflow), bound to the direct client; not built yet."""
        from llmops_argo.workflow import workflow_definition

        workflow = workflow_definition(
            _spec(SUBMIT_NAME), namespace=NAMESPACE, default_image=DEFAULT_IMAGE
        )
        workflow.workflows_service = self.service
        return workflow

    def hera_create(self) -> float:
        """hera's own submit: ``Workflow.create()``, which builds the model and creates it."""
        workflow = self._definition()
        started = time.perf_counter()
        created = workflow.create()
        seconds = time.perf_counter() - started
        self.made.setdefault("hera create", []).append(created.metadata.name or "")
        return seconds

    def hera_as_plugin(self) -> float:
        """Build once, lint, create: the plugin's work on a first delivery, through hera."""
        from hera.workflows.models import WorkflowCreateRequest, WorkflowLintRequest

        workflow = self._definition()
        started = time.perf_counter()
        model = workflow.build()
        built = time.perf_counter()
        self.service.lint_workflow(WorkflowLintRequest(workflow=model), namespace=NAMESPACE)
        created = self.service.create_workflow(
            WorkflowCreateRequest(workflow=model), namespace=NAMESPACE
        )
        seconds = time.perf_counter() - started
        self.build_seconds.append(built - started)
        self.made.setdefault(AS_PLUGIN, []).append(created.metadata.name or "")
        return seconds

    def check_made(self) -> list[str]:
        """Every workflow each path made is on the double, once; the platform's and
        hera's workflows have the same spec (all but their names and keys)."""
        stored = Counter(w["metadata"]["name"] for w in self.argo.workflows())
        errors = []
        for path, names in self.made.items():
            missing = [n for n in names if stored[n] != 1]
            if missing:
                errors.append(f"{path}: {len(missing)} workflows not on Argo exactly once")
        platform = self.argo.workflow(self.made["platform"][-1]) or {}
        direct = self.argo.workflow(self.made["hera create"][-1]) or {}
        if platform.get("spec") != direct.get("spec"):
            errors.append("the platform's workflow and hera's differ in their spec")
        return errors

    def metadata_note(self) -> str:
        """Whether the platform's workflow and hera's carry the same labels and
        annotations (their values differ: names, keys, ids)."""
        platform = (self.argo.workflow(self.made["platform"][-1]) or {}).get("metadata", {})
        direct = (self.argo.workflow(self.made["hera create"][-1]) or {}).get("metadata", {})
        differ = {
            kind: sorted(_submitted(platform.get(kind)) ^ _submitted(direct.get(kind)))
            for kind in ("labels", "annotations")
        }
        if not any(differ.values()):
            return (
                "every path's workflow has the same spec and the same labels and annotations "
                "(their values differ only by name, key and pipeline id)"
            )
        return (
            "SUSPICIOUS: the paths' workflows have the same spec, but not the same metadata "
            f"keys: {differ} (the direct paths' spec no longer mirrors the platform's)"
        )

    # -- the status sync -----------------------------------------------------------------

    def platform_requests(self, since: int) -> tuple[list[RecordedRequest], int]:
        recorded = self.argo.recorded
        mine = [r for r in recorded[since:] if r.headers.get("user-agent") != DIRECT_AGENT]
        return mine, len(recorded)

    def sweep(self, names: list[str]) -> float:
        """hera's get_workflow of every workflow, one after another."""
        started = time.perf_counter()
        for name in names:
            workflow = self.service.get_workflow(name, namespace=NAMESPACE)
            if workflow.status is None or workflow.status.phase != "Running":
                raise RuntimeError(f"workflow {name} is not running: the case needs it running")
        return time.perf_counter() - started


@dataclass
class SyncPass:
    """The platform's requests in one pass of its worker."""

    requests: list[RecordedRequest]

    @property
    def start(self) -> float:
        return self.requests[0].received_at.timestamp()

    @property
    def span(self) -> float:
        return self.requests[-1].received_at.timestamp() - self.start


def _next_pass(bench: Bench, cursor: int, wanted: set[str], timeout: float) -> tuple[SyncPass, int]:
    """The worker's next pass, from its first request on: over once every workflow in
    ``wanted`` was read and it was quiet :data:`PASS_QUIET_SECONDS`, or quiet
    :data:`PASS_GIVE_UP_SECONDS` (some were skipped); returns it and the new cursor."""
    deadline = time.monotonic() + timeout
    seen: list[RecordedRequest] = []
    read: set[str] = set()
    last = 0.0
    while True:
        fresh, cursor = bench.platform_requests(cursor)
        now = time.monotonic()
        if fresh:
            seen.extend(fresh)
            read.update(r.path.rsplit("/", 1)[-1] for r in fresh)
            last = now
        elif seen:
            quiet = now - last
            if (wanted <= read and quiet >= PASS_QUIET_SECONDS) or quiet >= PASS_GIVE_UP_SECONDS:
                return SyncPass(seen), cursor
        if now > deadline:
            raise RuntimeError(f"no whole sync pass within {timeout:.0f} s ({len(read)} read)")
        time.sleep(0.01)


def _pause(bench: Bench, interval: float) -> int:
    """Wait for the worker's pause between two passes (no request for half the interval),
    so the first pass watched is a whole one; returns the cursor."""
    cursor, last = 0, time.monotonic()
    deadline = last + 4 * interval + 120
    while time.monotonic() - last < interval / 2:
        fresh, cursor = bench.platform_requests(cursor)
        if fresh:
            last = time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError("the worker never paused between two passes")
        time.sleep(0.01)
    return cursor


def _overlap(bench: Bench, cursor: int) -> int:
    """Platform requests since ``cursor``, the end of the last pass: made while the direct
    path ran (they stay unread: they belong to the next pass)."""
    fresh, _ = bench.platform_requests(cursor)
    return len(fresh)


def run(workdir: Path, rounds: int | None = None, pipelines: int | None = None) -> list[Result]:
    import requests

    from llmops.testing.argo import running_argo_server
    from llmops.testing.console import running_platform

    submit_rounds = rounds or DEFAULT_SUBMIT_ROUNDS
    count = pipelines or DEFAULT_PIPELINES
    interval = max(MIN_SYNC_INTERVAL_SECONDS, count * SWEEP_BUDGET_PER_WORKFLOW)
    root = Path(tempfile.mkdtemp(prefix="argo-orchestration-", dir=workdir))
    tmp = root / "tmp"
    tmp.mkdir()
    results: list[Result] = []
    errors: list[str] = []
    with environment(tmp, DO_NOT_TRACK="1"), ExitStack() as stack:
        argo = stack.enter_context(
            running_argo_server(
                namespace=NAMESPACE,
                run_commands=False,
                task_seconds=SUBMIT_TASK_SECONDS,
                tick_seconds=TICK_SECONDS,
                work_dir=root / "argo",
            )
        )
        started = time.perf_counter()
        platform = stack.enter_context(
            running_platform(
                env={
                    "LLMOPS_PLUGINS": "argo",
                    "LLMOPS_ARGO__SERVER_URL": argo.url,
                    "LLMOPS_ARGO__TOKEN": argo.token,
                    "LLMOPS_ARGO__NAMESPACE": NAMESPACE,
                    "LLMOPS_ARGO__DEFAULT_IMAGE": DEFAULT_IMAGE,
                    "LLMOPS_SYNC_INTERVAL_SECONDS": str(interval),
                },
                console=False,
            )
        )
        print(f"  llmops up (plugin argo) in {time.perf_counter() - started:.1f} s")
        from hera.workflows import WorkflowsService

        session = stack.enter_context(requests.Session())
        session.headers["User-Agent"] = DIRECT_AGENT
        service = WorkflowsService(
            host=argo.url + "/",
            token=argo.token,
            namespace=NAMESPACE,
            verify_ssl=False,
            session=session,
        )
        from llmops_argo.provider import ArgoOrchestrator
        from llmops_argo.settings import ArgoSettings

        provider = ArgoOrchestrator(
            ArgoSettings(
                server_url=argo.url,
                token=argo.token,
                namespace=NAMESPACE,
                default_image=DEFAULT_IMAGE,
            )
        )
        stack.callback(provider.close)
        bench = Bench(argo, platform, service, child_pid("llmops up"), provider)
        cases: list[tuple[str, Callable[[], list[Result]]]] = [
            ("submit", lambda: _submit_case(bench, submit_rounds)),
            ("sync", lambda: [_sync_case(bench, count, interval)]),
        ]
        for label, case in cases:
            try:
                results.extend(case())
            except Exception as exc:
                error = f"{label}: {type(exc).__name__}: {exc}".splitlines()[0]
                print(f"  FAILED {error}")
                errors.append(error)
        try:
            argo.check_errors()
        except AssertionError as exc:
            errors.append(str(exc).splitlines()[0])
    if errors:
        raise PartialFailure(results, errors)
    return results


def _submit_case(bench: Bench, rounds: int) -> list[Result]:
    cpu = cpu_seconds(bench.platform_pid)
    stats = rotate(
        {
            "platform": bench.platform_path,
            "hera create": bench.hera_create,
            AS_PLUGIN: bench.hera_as_plugin,
            PLUGIN: bench.plugin_path,
        },
        rounds=rounds,
        warmup=SUBMIT_WARMUP,
        progress=f"{NAME} submit",
    )
    cpu_after = cpu_seconds(bench.platform_pid)
    errors = bench.check_made()
    if errors:
        raise RuntimeError("; ".join(errors))
    platform = stats["platform"]
    create, as_plugin = stats["hera create"], stats[AS_PLUGIN]
    one = Result(NAME, "pipeline submit: platform / hera create", platform, create, "median")
    two = Result(
        NAME, "pipeline submit: platform / hera lint+create", platform, as_plugin, "median"
    )
    for result, why in (
        (
            one,
            "the plugin makes 2 Argo calls (lint, create) to hera's 1, and writes the pipeline "
            "and its outbox operation durably before it calls Argo",
        ),
        (
            two,
            "the same 2 Argo calls on both paths: the rest is the platform's own (HTTP, key "
            "check, the durable pipeline row and outbox operation, building the workflow, "
            "mapping the answer)",
        ),
    ):
        note = (
            f"p50 {result.ratio:.2f}x (target <= {TARGET_SUBMIT_RATIO:.2f}x), the platform adds "
            f"{_ms(platform.median - result.direct.median)} at p50, "
            f"{_ms(platform.p95 - result.direct.p95)} at p95"
        )
        if result.ratio > TARGET_SUBMIT_RATIO:
            note = f"SUSPICIOUS: target missed: {note}: {why}"
        result.notes.append(note)
    build = Stats(bench.build_seconds)
    two.notes.append(
        f"building the workflow and its two calls through hera take {_ms(as_plugin.median)} "
        f"at p50, hera's Workflow.create() {_ms(create.median)}; the build alone (hera's "
        f"models, on every path) {_ms(build.median)}"
    )
    if cpu is not None and cpu_after is not None:
        per = (cpu_after - cpu) / (SUBMIT_WARMUP + rounds)
        one.notes.append(
            f"CPU of the platform's process per submission: {_ms(per)} (/proc, warm-up and "
            "the worker's syncs of the ended pipelines included)"
        )
    one.notes.append(bench.metadata_note())
    plugin = Result(
        NAME, "plugin submit (in process) / hera create", stats[PLUGIN], create, "median"
    )
    plugin.notes.append(
        f"p50 {plugin.ratio:.2f}x: the plugin alone (building the workflow from the spec, "
        "lint, create, mapping the answer), without the platform's HTTP and durable write; "
        f"{plugin.ratio * create.median / as_plugin.median:.2f}x hera making the same calls"
    )
    for result in (one, two, plugin):
        print(describe(result))
        for line in result.notes:
            print(f"    {line}")
    return [one, two, plugin]


def _create_running(bench: Bench, count: int) -> list[str]:
    """``count`` pipelines through the API, :data:`CREATE_CLIENTS` at a time; their
    workflows' names."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(CREATE_CLIENTS) as pool:
        return list(pool.map(lambda _: bench.submit(SYNC_NAME), range(count)))


def _settle(bench: Bench, interval: float) -> None:
    """Every workflow of the submit case ended on the double and the platform seen it end,
    so the sync case's passes read its own pipelines only."""
    from llmops.testing.waiting import wait_for

    for name in bench.made.get("platform", []):
        bench.argo.wait_until_completed(name, timeout=30)

    def none_active() -> bool:
        for status in ("pending", "running"):
            answer = bench.platform.api.get(PIPELINES, params={"status": status, "limit": 1})
            if answer.status_code != 200:
                raise RuntimeError(f"GET {PIPELINES}: {answer.status_code} {answer.text[:300]}")
            if answer.json()["items"]:
                return False
        return True

    wait_for(
        none_active,
        timeout=2 * interval + 30,
        interval=0.2,
        what="the submit case's pipelines to end",
    )


def _sync_case(bench: Bench, count: int, interval: float) -> Result:
    from llmops.testing.waiting import wait_for
    from llmops_argo.workflow import PIPELINE_LABEL

    argo = bench.argo
    _settle(bench, interval)
    argo.set_task_seconds(RUNNING_TASK_SECONDS)
    started = time.perf_counter()
    names = _create_running(bench, count)
    print(
        f"  {count} pipelines submitted through the API in {time.perf_counter() - started:.1f}"
        f" s ({CREATE_CLIENTS} clients)"
    )

    def all_running() -> bool:
        phases = Counter(
            (w.get("status") or {}).get("phase")
            for w in argo.workflows()
            if w["metadata"]["labels"].get(PIPELINE_LABEL) == SYNC_NAME
        )
        return phases["Running"] == count

    wait_for(all_running, timeout=60, interval=0.2, what=f"{count} workflows to run")
    wanted = set(names)
    argo.clear_requests()
    timeout = 4 * interval + 120
    cursor = _pause(bench, interval)
    passes: list[SyncPass] = []
    sweeps = Stats()
    overlapped: list[str] = []
    listed: tuple[float, int] | None = None
    progress = sys.stdout.isatty()
    for index in range(1 + SYNC_PASSES):
        found, cursor = _next_pass(bench, cursor, wanted, timeout)
        passes.append(found)
        if index == 0:
            # the warm-up pass's pause: one list call answering every workflow
            begun = time.perf_counter()
            answer = bench.service.list_workflows(
                namespace=NAMESPACE, label_selector=f"{PIPELINE_LABEL}={SYNC_NAME}"
            )
            listed = (time.perf_counter() - begun, len(answer.items or []))
            during = _overlap(bench, cursor)
            if during:
                overlapped.append(f"the list call ({during} platform requests)")
            continue
        sweeps.samples.append(bench.sweep(names))
        during = _overlap(bench, cursor)
        if during:
            overlapped.append(f"sweep {index} ({during} platform requests)")
        if progress:
            print(f"\r  {NAME} sync: pass {index}/{SYNC_PASSES}", end="", flush=True)
    if progress:
        print()
    kept = passes[1:]
    result = Result(
        NAME,
        f"status sync of {count} running pipelines: pass / hera get of each",
        Stats([p.span for p in kept]),
        sweeps,
        "median",
    )
    result.notes.extend(_sync_notes(passes, wanted, count, interval, listed, sweeps))
    if overlapped:
        result.notes.append(
            "a direct call overlapped a platform pass (the pause was too short; both shared "
            f"the double): {', '.join(overlapped)}"
        )
    print(describe(result))
    for line in result.notes:
        print(f"    {line}")
    return result


def _sync_notes(
    passes: list[SyncPass],
    wanted: set[str],
    count: int,
    interval: float,
    listed: tuple[float, int] | None,
    sweeps: Stats,
) -> Iterator[str]:
    kept = passes[1:]
    workflow_reads = {f"/api/v1/workflows/{NAMESPACE}/{name}" for name in wanted}
    worst = 0
    others: Counter[str] = Counter()
    missing = 0
    calls = 0
    for one in kept:
        reads = Counter(r.path for r in one.requests if r.method == "GET")
        worst = max([worst, *(reads[p] for p in workflow_reads)])
        missing += sum(1 for p in workflow_reads if reads[p] == 0)
        others.update(
            f"{r.method} {r.path}"
            for r in one.requests
            if not (r.method == "GET" and r.path in workflow_reads)
        )
        calls += len(one.requests)
    per_pass = calls / len(kept) / count
    periods = [b.start - a.start for a, b in itertools.pairwise(passes)]
    period = sum(periods) / len(periods)
    per_interval = per_pass * interval / period
    note = (
        f"Argo calls per pipeline: {per_pass:.3f} a pass, the most for one pipeline {worst} "
        f"(a workflow GET each, no list call); {per_interval:.3f} per poll interval of "
        f"{interval:g} s (target <= {TARGET_CALLS_PER_PIPELINE:g}; a pass every "
        f"{period:.2f} s, start to start)"
    )
    if per_interval > TARGET_CALLS_PER_PIPELINE or worst > 1:
        note = f"SUSPICIOUS: target missed: {note}"
    yield note
    if missing:
        yield f"SUSPICIOUS: {missing} pipeline reads missing from {len(kept)} passes"
    if others:
        listing = ", ".join(f"{what} x{n}" for what, n in others.most_common(5))
        yield f"SUSPICIOUS: the passes made other calls than the workflows' GETs: {listing}"
    span = Stats([p.span for p in kept])
    yield (
        f"a pass over {count} pipelines takes {fmt_seconds(span.median)} (its first request to "
        f"its last): {_ms(span.median / count)} a pipeline (the workflow GET, mapping it, "
        f"writing the row), against {_ms(sweeps.median / count)} for hera's GET alone"
    )
    if span.median > interval:
        yield (
            f"a pass takes longer than the interval ({interval:g} s): at the default interval "
            "the worker would poll each pipeline once a pass, not once an interval"
        )
    if listed is not None:
        seconds, items = listed
        yield (
            f"one list call answering all {items} workflows (hera list_workflows, label "
            f"selector) takes {fmt_seconds(seconds)}, {seconds / sweeps.median:.2f}x the "
            f"{count} GETs: what a list-based sync would pay per interval instead"
        )
