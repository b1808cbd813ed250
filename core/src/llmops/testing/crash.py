"""A crash harness: ``kill -9`` of the platform's processes at random moments during a
mixed workload, then a check that nothing was lost, duplicated or left unfinished.

It starts ``llmops up`` replicas (and optionally an ``llmops worker``) as processes of
their own on one database and one data dir, runs clients that create models, datasets,
pipelines and training jobs and cancel some pipelines, every request with an
``Idempotency-Key`` and retried with the same key (against any replica) until it is
answered, as a careful client does; meanwhile a killer sends SIGKILL to a random process
and starts it again. Afterwards, with every process up:

* every acknowledged write exists, once; no write exists twice (each operation has a
  name of its own);
* every pipeline and job is final within ``final_within`` seconds of the last restart;
* no stage ran more times than the attempts its pipeline records (each stage appends a
  line to a trace file when it starts);
* every idempotency key answers (the same request again gets its answer, not 409);
* the database is intact (SQLite's ``integrity_check``).

``tests/test_crash.py`` runs a short form in ``make test``; ``bench/crash.py`` runs the
long form and prints its figures.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from llmops.testing.processes import free_port

API = "/llm-ops/v1"
FINAL = {"succeeded", "failed", "cancelled"}
#: answers after which the same request is sent again (same key): the process died or
#: was busy, or the key's first request is still held by a process that died
RETRIED = {409, 429, 500, 502, 503, 504}


@dataclass
class CrashConfig:
    database_url: str
    data_dir: Path
    #: ``llmops up`` processes on the database (more than one needs PostgreSQL)
    replicas: int = 1
    #: an ``llmops worker`` process besides them, killed like them
    worker: bool = False
    #: how long the workload runs, and the killer with it
    seconds: float = 20.0
    #: the pause between two kills is drawn from this range
    kill_every: tuple[float, float] = (2.0, 4.0)
    clients: int = 3
    #: each client's pause after an answered operation, so the runs keep up with it
    think_seconds: float = 0.25
    seed: int = 0
    #: every run must be final this long after the last restart
    final_within: float = 60.0
    #: how long one operation is retried before it counts as unanswered
    answer_within: float = 90.0
    #: the platform's leases, short so that a crash is over quickly
    idempotency_lease_seconds: float = 2.0
    run_lease_seconds: float = 3.0


@dataclass
class Operation:
    kind: str
    name: str
    path: str
    body: dict[str, Any]
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: int | None = None
    resource_id: str | None = None
    tries: int = 0
    #: a replay answered something other than the first answer (an error, a conflict)
    surprise: str | None = None


@dataclass
class CrashReport:
    operations: int = 0
    acknowledged: int = 0
    kills: int = 0
    client_retries: int = 0
    #: answers a retry got from a key's record (``Idempotent-Replayed``)
    replayed: int = 0
    #: runs a process took over from one that was killed (its servers' logs say so)
    taken_over: int = 0
    pipelines: int = 0
    stages_started: int = 0
    seconds_to_final: float = 0.0
    seconds: float = 0.0
    unanswered: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    ran_twice: list[str] = field(default_factory=list)
    keys_unanswered: list[str] = field(default_factory=list)
    surprises: list[str] = field(default_factory=list)
    integrity: str = "not checked"

    @property
    def ok(self) -> bool:
        return not (
            self.unanswered
            or self.lost
            or self.duplicated
            or self.unfinished
            or self.ran_twice
            or self.keys_unanswered
            or self.surprises
        ) and self.integrity in {"ok", "not checked"}

    def lines(self) -> list[str]:
        problems = {
            "unanswered": self.unanswered,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "unfinished": self.unfinished,
            "ran twice": self.ran_twice,
            "keys unanswered": self.keys_unanswered,
            "surprises": self.surprises,
        }
        return [
            f"{self.operations} operations in {self.seconds:.0f} s, {self.acknowledged} "
            f"acknowledged, {self.client_retries} client retries, {self.replayed} answers "
            f"replayed from a key, {self.kills} kills",
            f"{self.pipelines} pipelines and jobs, {self.stages_started} stage starts, "
            f"{self.taken_over} runs taken over; all final {self.seconds_to_final:.1f} s "
            "after the last restart",
            f"database integrity: {self.integrity}",
            *(
                f"{name}: {len(found)} {found[:5]}" if found else f"{name}: 0"
                for name, found in problems.items()
            ),
        ]


class _Process:
    """One platform process, started again after each kill."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, port: int | None) -> None:
        self.argv = argv
        self.env = env
        self.log = log
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.port is not None:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.argv[3]} exited with {self.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.argv} did not answer within {timeout} s")

    def kill(self) -> None:
        """SIGKILL the process (only it: its stages run in sessions of their own)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class CrashHarness:
    def __init__(self, config: CrashConfig) -> None:
        self.config = config
        self.random = random.Random(config.seed)
        self.report = CrashReport()
        self.trace = config.data_dir.parent / "crash-trace.log"
        self.operations: list[Operation] = []
        self._ops_lock = threading.Lock()
        self._stop = threading.Event()
        self._last_restart = time.monotonic()
        self.auth: dict[str, str] = {}
        env = {
            **os.environ,
            "LLMOPS_DATA_DIR": str(config.data_dir),
            "LLMOPS_DATABASE_URL": config.database_url,
            "LLMOPS_PLUGINS": "none",
            "LLMOPS_IDEMPOTENCY_LEASE_SECONDS": str(config.idempotency_lease_seconds),
            "LLMOPS_RUN_LEASE_SECONDS": str(config.run_lease_seconds),
        }
        logs = config.data_dir.parent
        self.servers = [
            _Process(
                [sys.executable, "-m", "llmops.cli", "up", "--port", str(port)],
                env,
                logs / f"crash-server-{i}.log",
                port,
            )
            for i, port in enumerate(free_port() for _ in range(config.replicas))
        ]
        self.processes = list(self.servers)
        if config.worker:
            self.processes.append(
                _Process(
                    [sys.executable, "-m", "llmops.cli", "worker"],
                    env,
                    logs / "crash-worker.log",
                    None,
                )
            )

    # -- the run --------------------------------------------------------------------

    def run(self) -> CrashReport:
        started = time.monotonic()
        try:
            self._start_all()
            threads = [
                threading.Thread(target=self._client, args=(i,), daemon=True)
                for i in range(self.config.clients)
            ]
            killer = threading.Thread(target=self._killer, daemon=True)
            for thread in [*threads, killer]:
                thread.start()
            time.sleep(self.config.seconds)
            self._stop.set()
            killer.join()
            for thread in threads:
                thread.join(self.config.answer_within + 30)
            self._check()
        finally:
            for process in self.processes:
                process.stop()
        self.report.seconds = time.monotonic() - started
        return self.report

    def _start_all(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        first = self.servers[0]
        first.start()
        printed = first.log.read_text().splitlines()  # the first start prints the admin key
        key = next(line for line in printed if line.startswith("llmops_"))
        self.auth = {"Authorization": f"Bearer {key}"}
        for process in self.processes[1:]:
            process.start()

    def _killer(self) -> None:
        low, high = self.config.kill_every
        while not self._stop.wait(self.random.uniform(low, high)):
            victim = self.random.choice(self.processes)
            with victim.lock:
                victim.kill()
                self.report.kills += 1
                victim.start()
                self._last_restart = time.monotonic()

    # -- the clients ----------------------------------------------------------------

    def _client(self, index: int) -> None:
        chooser = random.Random(self.config.seed * 1000 + index)
        with httpx.Client(headers=self.auth, timeout=30) as client:
            while not self._stop.is_set():
                operation = self._next(chooser)
                if operation is None:
                    continue
                with self._ops_lock:
                    self.operations.append(operation)
                self._send(client, chooser, operation)
                self._stop.wait(self.config.think_seconds)

    def _next(self, chooser: random.Random) -> Operation | None:
        kind = chooser.choices(
            ["model", "dataset", "pipeline", "job", "cancel"], weights=[3, 2, 4, 2, 1]
        )[0]
        name = f"crash-{kind}-{uuid.uuid4().hex[:10]}"
        trace = str(self.trace)
        if kind == "model":
            return Operation(kind, name, f"{API}/catalog/models", {"name": name})
        if kind == "dataset":
            return Operation(kind, name, f"{API}/catalog/datasets", {"name": name})
        if kind == "pipeline":
            pause = round(chooser.uniform(0.2, 2.0), 2)
            return Operation(
                kind,
                name,
                f"{API}/workflows/pipelines",
                {
                    "name": name,
                    "stages": [
                        _stage(name, "a", trace, pause, retries=1),
                        {**_stage(name, "b", trace, 0.1), "dependsOn": ["a"]},
                    ],
                },
            )
        if kind == "job":
            return Operation(
                kind,
                name,
                f"{API}/training/jobs",
                {"name": name, "command": _command(f"training-{name}", "train", trace, 1.0)},
            )
        with self._ops_lock:
            running = [
                o for o in self.operations if o.kind == "pipeline" and o.resource_id is not None
            ]
        if not running:
            return None
        target = chooser.choice(running)
        return Operation(
            "cancel", target.name, f"{API}/workflows/pipelines/{target.resource_id}/cancel", {}
        )

    def _send(self, client: httpx.Client, chooser: random.Random, operation: Operation) -> None:
        deadline = time.monotonic() + self.config.answer_within
        headers = {"Idempotency-Key": operation.key}
        while time.monotonic() < deadline:
            server = chooser.choice(self.servers)
            operation.tries += 1
            try:
                answer = client.post(
                    f"{server.url}{operation.path}", json=operation.body, headers=headers
                )
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code not in RETRIED:
                operation.status = answer.status_code
                if answer.headers.get("idempotent-replayed") == "true":
                    self.report.replayed += 1
                if answer.status_code < 300 and operation.kind != "cancel":
                    operation.resource_id = answer.json()["id"]
                elif answer.status_code >= 400 and operation.kind != "cancel":
                    operation.surprise = f"{answer.status_code} {answer.text[:200]}"
                break
            if (
                answer is not None
                and answer.status_code == 409
                and operation.kind == "cancel"
                and "idempotency-key-in-use" not in answer.text  # already final: an answer
            ):
                operation.status = 409
                break
            self.report.client_retries += 1
            time.sleep(0.2)

    # -- the check ------------------------------------------------------------------

    def _check(self) -> None:
        report = self.report
        for process in self.processes:  # whatever the killer left half-started
            with process.lock:
                if process.process is None or process.process.poll() is not None:
                    process.start()
                elif process.port is not None:
                    process.wait_ready()
        restarted = self._last_restart
        with httpx.Client(headers=self.auth, timeout=30, base_url=self.servers[0].url) as api:
            pipelines = self._wait_final(api, restarted)
            report.seconds_to_final = time.monotonic() - restarted
            listed = {
                "model": _names(_all(api, f"{API}/catalog/models")),
                "dataset": _names(_all(api, f"{API}/catalog/datasets")),
                "pipeline": _names(pipelines),
                "job": _names(_all(api, f"{API}/training/jobs")),
            }
            report.operations = len(self.operations)
            for operation in self.operations:
                if operation.status is None:
                    report.unanswered.append(f"{operation.kind} {operation.name}")
                    continue
                if operation.surprise is not None:
                    report.surprises.append(f"{operation.name}: {operation.surprise}")
                if operation.kind == "cancel":
                    continue
                found = listed[operation.kind][operation.name]
                if operation.status < 300:
                    report.acknowledged += 1
                    if not found:
                        report.lost.append(f"{operation.kind} {operation.name}")
                if len(found) > 1:
                    report.duplicated.append(f"{operation.kind} {operation.name}")
                elif found and operation.resource_id not in (None, found[0]):
                    report.surprises.append(f"{operation.name}: answered another id")
            report.pipelines = len(pipelines)
            report.unfinished = [p["name"] for p in pipelines if p["status"] not in FINAL]
            self._check_stages(pipelines)
            self._check_keys(api)
        report.integrity = self._integrity()
        report.taken_over = sum(
            process.log.read_text(errors="replace").count("took its run over")
            for process in self.processes
            if process.log.exists()
        )

    def _wait_final(self, api: httpx.Client, since: float) -> list[dict[str, Any]]:
        while True:
            pipelines = _all(api, f"{API}/workflows/pipelines")
            if all(p["status"] in FINAL for p in pipelines):
                return pipelines
            if time.monotonic() - since > self.config.final_within:
                return pipelines
            time.sleep(0.5)

    def _check_stages(self, pipelines: list[dict[str, Any]]) -> None:
        started = (
            Counter(line.strip() for line in self.trace.read_text().splitlines() if line.strip())
            if self.trace.exists()
            else Counter()
        )
        self.report.stages_started = sum(started.values())
        for pipeline in pipelines:
            for stage in pipeline["stages"]:
                ran = started[f"{pipeline['name']} {stage['name']}"]
                if ran > max(stage["attempts"], 1):
                    self.report.ran_twice.append(
                        f"{pipeline['name']}/{stage['name']}: started {ran} times, "
                        f"{stage['attempts']} attempts"
                    )

    @staticmethod
    def _replay(api: httpx.Client, operation: Operation) -> httpx.Response:
        return api.post(
            operation.path, json=operation.body, headers={"Idempotency-Key": operation.key}
        )

    def _retry_after(self, answer: httpx.Response) -> float:
        """What a 409 says to wait, at most one lease (it rounds up to whole seconds)."""
        told = float(answer.headers.get("retry-after", self.config.idempotency_lease_seconds))
        return min(told, self.config.idempotency_lease_seconds)

    def _check_keys(self, api: httpx.Client) -> None:
        """The same request again gets the first one's answer: at once, or once the lease
        of a request that died holding the key has run out (its ``Retry-After``)."""
        for operation in self.operations:
            if operation.status is None:
                continue
            again = self._replay(api, operation)
            if again.status_code == 409 and "idempotency-key-in-use" in again.text:
                # a dead holder's lease: it runs out within one lease of the last restart
                time.sleep(self._retry_after(again) + 0.1)
                again = self._replay(api, operation)
            if again.status_code == 409 and "idempotency-key-in-use" in again.text:
                self.report.keys_unanswered.append(operation.name)
            elif operation.resource_id is not None and (
                again.status_code >= 300 or again.json().get("id") != operation.resource_id
            ):
                self.report.surprises.append(
                    f"{operation.name}: replay answered {again.status_code}"
                )

    def _integrity(self) -> str:
        url = self.config.database_url
        if not url.startswith("sqlite:///"):
            return "not checked"
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def _command(pipeline: str, stage: str, trace: str, pause: float) -> list[str]:
    return ["sh", "-c", f"echo '{pipeline} {stage}' >> {trace}; sleep {pause}"]


def _stage(pipeline: str, name: str, trace: str, pause: float, retries: int = 0) -> dict[str, Any]:
    return {"name": name, "command": _command(pipeline, name, trace, pause), "retries": retries}


def _all(api: httpx.Client, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor is not None:
            params["cursor"] = cursor
        page = api.get(path, params=params).json()
        items += page["items"]
        cursor = page.get("nextCursor")
        if not cursor:
            return items


def _names(items: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in items:
        found.setdefault(item["name"], []).append(item["id"])
    return _Missing(found)


class _Missing(dict[str, list[str]]):
    def __missing__(self, key: str) -> list[str]:
        return []
