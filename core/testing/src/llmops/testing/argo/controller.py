"""Argo's workflow controller, and the kubelet under it, for workflows whose entrypoint is
a DAG of container templates (or one container template).

One thread moves every workflow on, a pass each ``tick_seconds``, writing ``status`` the
way Argo does: the phase (``""`` until the controller first sees the workflow, then
``Running``, ``Succeeded`` or ``Failed``), ``startedAt``/``finishedAt`` (RFC 3339, whole
seconds, as Kubernetes serialises time), ``message``, ``progress``, ``conditions``, and
``nodes`` keyed by node id: the DAG node (id = the workflow's name), one node per task
(``<wf>.<task>``; a ``Retry`` node with one ``Pod`` child per attempt, ``<wf>.<task>(0)``,
when the template has a ``retryStrategy``), ``Skipped``-type nodes in phase ``Omitted``
for tasks whose dependencies can no longer hold. Node ids are ``<wf>-<fnv32a(node
name)>`` and pod names ``<wf>-<template>-<fnv32a(node name)>`` (Argo's v2 pod names, the
default since v3.4). The labels ``workflows.argoproj.io/phase`` and
``workflows.argoproj.io/completed`` follow the phase.

A pod node is ``Pending`` when created and ``Running`` once its container starts. With
``run_commands`` the container is a local process: ``command + args`` (``$(VAR)``
expanded as Kubernetes does, Argo's ``{{workflow.name}}``-style variables substituted), in
its ``workingDir`` when that exists here (else a fresh folder), with only its ``env`` and
``envFrom`` (Secrets resolved from the cluster's Secrets API), ``PATH`` and ``HOSTNAME``;
its output is the pod's log and its exit code decides the phase. Without it a container
takes ``task_seconds`` and succeeds.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import re
import signal
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmops.testing.argo.errors import (
    failed_precondition,
    invalid_argument,
    workflow_exists,
    workflow_not_found,
)
from llmops.testing.argo.schema import Depends, dag_dependencies, parse_depends, template_type
from llmops.testing.argo.secrets import KubernetesSecretsApi, SecretMissing

PHASE_LABEL = "workflows.argoproj.io/phase"
COMPLETED_LABEL = "workflows.argoproj.io/completed"
#: Node phases of a node that has ended.
FULFILLED = frozenset({"Succeeded", "Failed", "Error", "Skipped", "Omitted"})
#: Phases a ``dependencies`` entry (or a bare ``depends`` name) accepts.
_GOOD = frozenset({"Succeeded", "Skipped", "Daemoned"})
#: ``depends`` results that handle a task's failure.
_HANDLING = frozenset({"Failed", "Errored", "AllFailed"})
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
WORKFLOW_DEADLINE_MESSAGE = "Step exceeded its deadline"
NO_MORE_RETRIES = "No more retries left"
OMITTED_MESSAGE = "omitted: depends condition not met"
HOST_NODE = "llmops-double-node"
_MAX_POD_PREFIX = 253 - 10 - 1
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_ARGO_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")
_KUBE_VARIABLE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")
#: Host variables a pod's process keeps (it sees nothing else of the host's environment).
_HOST_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def fnv32a(text: str) -> int:
    """32-bit FNV-1a, the hash Argo names nodes and pods with."""
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def node_id(workflow: str, node_name: str) -> str:
    """Argo's node id for ``node_name`` in ``workflow``."""
    return workflow if node_name == workflow else f"{workflow}-{fnv32a(node_name)}"


def pod_name(workflow: str, node_name: str, template: str) -> str:
    """Argo's v2 pod name for a pod node (``<wf>-<template>-<hash>``)."""
    if node_name == workflow:
        return workflow
    prefix = f"{workflow}-{template}" if template else workflow
    return f"{prefix[:_MAX_POD_PREFIX]}-{fnv32a(node_name)}"


def timestamp(moment: float | None = None) -> str:
    """A time as Kubernetes serialises ``metav1.Time``: UTC, whole seconds."""
    when = datetime.fromtimestamp(time.time() if moment is None else moment, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_name(prefix: str) -> str:
    """``metadata.generateName`` as kube-apiserver expands it."""
    return prefix[:58] + "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))


@dataclass
class TaskFault:
    """The next ``remaining`` attempts of a task fail (None: every one)."""

    remaining: int | None
    exit_code: int
    message: str | None


@dataclass
class Task:
    """One DAG task (or the lone container of a container entrypoint)."""

    name: str
    node_name: str
    display_name: str
    template: dict[str, Any]
    dependencies: list[str]
    depends: Depends | None
    arguments: dict[str, str]
    boundary: str | None

    @property
    def template_name(self) -> str:
        return str(self.template["name"])

    @property
    def retry_strategy(self) -> dict[str, Any] | None:
        strategy = self.template.get("retryStrategy")
        return strategy if isinstance(strategy, dict) else None


@dataclass
class PodLog:
    """A pod's container output: a file while ``run_commands``, else in memory."""

    path: Path | None
    data: bytes = b""
    ended: bool = False

    def read(self, offset: int = 0) -> bytes:
        """The output from byte ``offset`` on."""
        if self.path is None:
            return self.data[offset:]
        try:
            with self.path.open("rb") as file:
                file.seek(offset)
                return file.read()
        except FileNotFoundError:
            return b""


@dataclass
class Attempt:
    """A pod the kubelet runs for one attempt of a task."""

    node_id: str
    pod: str
    task: Task
    index: int
    started: float | None = None
    deadline: float | None = None
    due: float | None = None
    process: subprocess.Popen[bytes] | None = None
    forced: TaskFault | None = None
    log_file: Any = None


@dataclass
class WorkflowRun:
    """A stored Workflow and what the controller knows of its run."""

    obj: dict[str, Any]
    tasks: dict[str, Task] = field(default_factory=dict)
    dag_node: str | None = None
    fail_fast: bool = True
    parallelism: int | None = None
    deadline_seconds: int | None = None
    deadline: float | None = None
    live: dict[str, Attempt] = field(default_factory=dict)
    pods: dict[str, PodLog] = field(default_factory=dict)
    failed_fast: bool = False
    deadline_hit: bool = False
    finished: bool = False
    created_order: int = 0
    #: tasks whose failure another task's ``depends`` handles (``a.Failed``...): their
    #: failure neither stops the DAG (fail-fast) nor fails it
    handled: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def uid(self) -> str:
        return str(self.obj["metadata"]["uid"])

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.obj.setdefault("status", {})
        return status

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        nodes: dict[str, dict[str, Any]] = self.status.setdefault("nodes", {})
        return nodes

    @property
    def shutdown(self) -> str | None:
        value = (self.obj.get("spec") or {}).get("shutdown")
        return str(value) if value else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class WorkflowController:
    """The workflows of one Argo installation, and the thread that runs them."""

    def __init__(
        self,
        *,
        secrets: KubernetesSecretsApi,
        work_dir: Path,
        run_commands: bool,
        task_seconds: float,
        tick_seconds: float,
    ) -> None:
        self.secrets = secrets
        self.work_dir = work_dir
        self.run_commands = run_commands
        self.task_seconds = task_seconds
        self.tick_seconds = tick_seconds
        #: the one lock around every workflow; the controller waits on it between passes
        self.lock = threading.Condition(threading.RLock())
        self.runs: dict[tuple[str, str], WorkflowRun] = {}
        self.errors: list[str] = []
        self._faults: dict[str, list[TaskFault]] = {}
        self._resource_version = 1000
        self._created = 0
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        with self.lock:
            self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="argo-controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self.lock:
            self._stopping = True
            self.lock.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.clear()

    def clear(self) -> None:
        """Forget every workflow, killing the processes of running pods."""
        with self.lock:
            for run in self.runs.values():
                self._kill_all(run)
            self.runs.clear()
            self._faults.clear()
            self.errors.clear()
            self.lock.notify_all()

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- knobs ----------------------------------------------------------------------------

    def fail_task(self, task: str, times: int | None, exit_code: int, message: str | None) -> None:
        with self.lock:
            self._faults.setdefault(task, []).append(TaskFault(times, exit_code, message))

    # -- the API server's verbs (called with arguments already validated) ----------------

    def next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    @property
    def resource_version(self) -> str:
        return str(self._resource_version)

    def create(self, workflow: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
        """Store a validated Workflow (named already) and return what the API answers."""
        metadata = workflow["metadata"]
        key = (metadata["namespace"], metadata["name"])
        with self.lock:
            if key in self.runs:
                raise workflow_exists(metadata["name"])
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = timestamp()
            metadata["generation"] = 1
            workflow["status"] = {}
            if dry_run:
                metadata["resourceVersion"] = self.resource_version
                return copy.deepcopy(workflow)
            metadata["resourceVersion"] = self.next_resource_version()
            run = self._plan(workflow)
            self._created += 1
            run.created_order = self._created
            self.runs[key] = run
            self.lock.notify_all()
            return copy.deepcopy(run.obj)

    def get(self, namespace: str, name: str) -> WorkflowRun:
        run = self.runs.get((namespace, name))
        if run is None:
            raise workflow_not_found(name)
        return run

    def delete(self, namespace: str, name: str) -> None:
        with self.lock:
            run = self.get(namespace, name)
            self._kill_all(run)
            del self.runs[(namespace, name)]
            self.lock.notify_all()
        self._collect_garbage()

    def shut_down(self, namespace: str, name: str, strategy: str) -> dict[str, Any]:
        """``spec.shutdown = strategy`` (Stop: no new pods, running ones finish; Terminate:
        running pods are killed too); the workflow then fails."""
        with self.lock:
            run = self.get(namespace, name)
            if run.finished:
                raise failed_precondition("cannot shutdown a completed workflow")
            run.obj.setdefault("spec", {})["shutdown"] = strategy
            run.obj["metadata"]["resourceVersion"] = self.next_resource_version()
            self.lock.notify_all()
            return copy.deepcopy(run.obj)

    def retry(
        self,
        namespace: str,
        name: str,
        *,
        restart_successful: bool,
        node_selector: str | None,
    ) -> dict[str, Any]:
        """Argo's retry: the failed, errored and omitted nodes are reset (and, with
        ``restart_successful``, the succeeded nodes ``node_selector`` matches, with the
        nodes after them) and the workflow runs again."""
        with self.lock:
            run = self.get(namespace, name)
            phase = run.status.get("phase")
            if phase not in ("Failed", "Error"):
                raise invalid_argument("workflow must be Failed/Error to retry")
            matcher = _node_matcher(node_selector) if restart_successful else None
            reset: set[str] = set()
            for task in run.tasks.values():
                node = run.nodes.get(node_id(run.name, task.node_name))
                if node is None:
                    continue
                again = node["phase"] in ("Failed", "Error", "Omitted")
                if not again and matcher is not None and matcher(node):
                    again = True
                if again or any(d in reset for d in task.dependencies):
                    reset.add(task.name)
            doomed: set[str] = set()
            for task_name in reset:
                task = run.tasks[task_name]
                task_id = node_id(run.name, task.node_name)
                doomed.add(task_id)
                doomed.update(run.nodes.get(task_id, {}).get("children", []))
            for doomed_id in doomed:
                node = run.nodes.pop(doomed_id, None)
                if node is not None and node.get("type") == "Pod":
                    run.pods.pop(pod_name(run.name, node["name"], node["templateName"]), None)
            for node in run.nodes.values():
                if "children" in node:
                    node["children"] = [c for c in node["children"] if c not in doomed]
                    if not node["children"]:
                        del node["children"]
            if run.dag_node is not None and run.dag_node in run.nodes:
                dag = run.nodes[run.dag_node]
                dag["phase"] = "Running"
                for key in ("finishedAt", "message", "outboundNodes"):
                    dag.pop(key, None)
            run.obj.get("spec", {}).pop("shutdown", None)
            for key in ("finishedAt", "message"):
                run.status.pop(key, None)
            run.status["phase"] = "Running"
            run.status["conditions"] = [{"type": "PodRunning", "status": "False"}]
            run.obj["metadata"].setdefault("labels", {}).update(
                {PHASE_LABEL: "Running", COMPLETED_LABEL: "false"}
            )
            run.failed_fast = run.deadline_hit = run.finished = False
            if run.deadline_seconds is not None:
                run.deadline = time.monotonic() + run.deadline_seconds
            self._progress(run)
            run.obj["metadata"]["resourceVersion"] = self.next_resource_version()
            self.lock.notify_all()
            return copy.deepcopy(run.obj)

    def wait(self, seconds: float) -> None:
        """Wait (holding nothing) for the next change or ``seconds``."""
        with self.lock:
            self.lock.wait(seconds)

    # -- planning -------------------------------------------------------------------------

    def _plan(self, workflow: dict[str, Any]) -> WorkflowRun:
        run = WorkflowRun(obj=workflow)
        spec = workflow["spec"]
        templates = {t["name"]: t for t in spec.get("templates") or []}
        entry = templates[spec["entrypoint"]]
        run.deadline_seconds = _int(spec.get("activeDeadlineSeconds"))
        limits = [_int(spec.get("parallelism"))]
        if template_type(entry) == "dag":
            run.dag_node = run.name
            dag = entry["dag"]
            run.fail_fast = dag.get("failFast") is not False
            limits.append(_int(entry.get("parallelism")))
            tasks = list(dag.get("tasks") or [])
            for task in _topological(tasks):
                depends = parse_depends(str(task["depends"])) if task.get("depends") else None
                arguments = {
                    str(p["name"]): str(p.get("value", ""))
                    for p in (task.get("arguments") or {}).get("parameters") or []
                    if isinstance(p, dict) and "name" in p
                }
                run.tasks[task["name"]] = Task(
                    name=task["name"],
                    node_name=f"{run.name}.{task['name']}",
                    display_name=task["name"],
                    template=templates[task["template"]],
                    dependencies=dag_dependencies(task),
                    depends=depends,
                    arguments=arguments,
                    boundary=run.name,
                )
        else:
            run.tasks[entry["name"]] = Task(
                name=entry["name"],
                node_name=run.name,
                display_name=run.name,
                template=entry,
                dependencies=[],
                depends=None,
                arguments={},
                boundary=None,
            )
        run.handled = {
            name
            for task in run.tasks.values()
            if task.depends is not None
            for name, result in task.depends.references()
            if result in _HANDLING
        }
        known = [limit for limit in limits if limit]
        run.parallelism = min(known) if known else None
        return run

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self.lock:
                if self._stopping:
                    return
                try:
                    active = self._pass(time.monotonic())
                except Exception:
                    self.errors.append(traceback.format_exc())
                    active = True
                self.lock.notify_all()
                self.lock.wait(self.tick_seconds if active else 1.0)
            self._collect_garbage()

    def _collect_garbage(self) -> None:
        """Kubernetes' garbage collector: Secrets owned by deleted workflows go."""
        with self.lock:  # the live set and the sweep at once: no workflow created between
            self.secrets.collect_garbage({run.uid for run in self.runs.values()})

    def _pass(self, now: float) -> bool:
        """One pass over every workflow; True while any is still running."""
        active = False
        for run in list(self.runs.values()):
            if run.finished:
                continue
            active = True
            try:
                if self._operate(run, now):
                    run.obj["metadata"]["resourceVersion"] = self.next_resource_version()
            except Exception:
                self.errors.append(traceback.format_exc())
        return active

    def _operate(self, run: WorkflowRun, now: float) -> bool:
        """Move one workflow on; True when its object changed."""
        changed = False
        if not run.status.get("phase"):
            self._begin(run, now)
            changed = True
        if run.deadline is not None and now >= run.deadline and not run.deadline_hit:
            run.deadline_hit = True
            for attempt in list(run.live.values()):
                self._end_attempt(run, attempt, "Failed", WORKFLOW_DEADLINE_MESSAGE, None, now)
            changed = True
        strategy = run.shutdown
        if strategy is not None:
            for attempt in list(run.live.values()):
                node = run.nodes[attempt.node_id]
                if strategy == "Terminate" or node["phase"] == "Pending":
                    message = f"Stopped with strategy '{strategy}'"
                    self._end_attempt(run, attempt, "Failed", message, None, now)
                    changed = True
        for attempt in list(run.live.values()):
            changed = self._advance(run, attempt, now) or changed
        changed = self._schedule(run, now) or changed
        if not run.live and not any(
            n["phase"] not in FULFILLED for n in run.nodes.values() if n["id"] != run.dag_node
        ):
            self._finish(run)
            changed = True
        if changed:
            self._progress(run)
        return changed

    def _begin(self, run: WorkflowRun, now: float) -> None:
        started = timestamp()
        run.status.update(
            {
                "phase": "Running",
                "startedAt": started,
                "progress": "0/0",
                "conditions": [{"type": "PodRunning", "status": "False"}],
                "nodes": {},
            }
        )
        run.obj["metadata"].setdefault("labels", {}).update(
            {PHASE_LABEL: "Running", COMPLETED_LABEL: "false"}
        )
        if run.deadline_seconds is not None:
            run.deadline = now + run.deadline_seconds
        if run.dag_node is not None:
            entry = run.obj["spec"]["entrypoint"]
            run.nodes[run.dag_node] = self._node(
                run, run.name, run.name, "DAG", entry, "Running", None
            )

    def _node(
        self,
        run: WorkflowRun,
        name: str,
        display: str,
        kind: str,
        template: str,
        phase: str,
        boundary: str | None,
    ) -> dict[str, Any]:
        node: dict[str, Any] = {
            "id": node_id(run.name, name),
            "name": name,
            "displayName": display,
            "type": kind,
            "templateName": template,
            "templateScope": f"local/{run.name}",
            "phase": phase,
            "startedAt": timestamp(),
        }
        if boundary is not None:
            node["boundaryID"] = boundary
        if kind == "Pod":
            node["progress"] = "0/1"
            node["hostNodeName"] = HOST_NODE
        return node

    # -- scheduling -------------------------------------------------------------------------

    def _schedule(self, run: WorkflowRun, now: float) -> bool:
        changed = False
        running = sum(
            1
            for task in run.tasks.values()
            if (node := run.nodes.get(node_id(run.name, task.node_name))) is not None
            and node["phase"] not in FULFILLED
        )
        for task in run.tasks.values():
            task_id = node_id(run.name, task.node_name)
            if task_id in run.nodes:
                continue
            phases: dict[str, str] = {}
            for dependency in task.dependencies:
                dependency_node = run.nodes.get(node_id(run.name, run.tasks[dependency].node_name))
                if dependency_node is None or dependency_node["phase"] not in FULFILLED:
                    break
                phases[dependency] = dependency_node["phase"]
            else:
                if task.depends is not None:
                    holds = task.depends.evaluate(phases)
                else:
                    holds = all(phase in _GOOD for phase in phases.values())
                if not holds:
                    omitted = self._node(
                        run,
                        task.node_name,
                        task.display_name,
                        "Skipped",
                        task.template_name,
                        "Omitted",
                        task.boundary,
                    )
                    omitted["message"] = OMITTED_MESSAGE
                    omitted["finishedAt"] = omitted["startedAt"]
                    run.nodes[task_id] = omitted
                    self._link(run, task, task_id)
                    changed = True
                    continue
                if run.failed_fast or run.deadline_hit or run.shutdown is not None:
                    continue
                if run.parallelism is not None and running >= run.parallelism:
                    continue
                self._start_task(run, task, now)
                running += 1
                changed = True
        return changed

    def _link(self, run: WorkflowRun, task: Task, task_id: str) -> None:
        """Argo's DAG edges: the DAG node's children are its first tasks; a task is a
        child of its dependencies' outbound nodes (a Retry node's last attempt)."""
        if not task.dependencies:
            if run.dag_node is not None:
                _add_child(run.nodes[run.dag_node], task_id)
            return
        for dependency in task.dependencies:
            for outbound in self._outbound(run, run.tasks[dependency]):
                _add_child(run.nodes[outbound], task_id)

    def _outbound(self, run: WorkflowRun, task: Task) -> list[str]:
        task_id = node_id(run.name, task.node_name)
        node = run.nodes.get(task_id)
        if node is None:
            return []
        if node["type"] == "Retry" and node.get("children"):
            return [node["children"][-1]]
        return [task_id]

    def _start_task(self, run: WorkflowRun, task: Task, now: float) -> None:
        task_id = node_id(run.name, task.node_name)
        if task.retry_strategy is not None:
            run.nodes[task_id] = self._node(
                run,
                task.node_name,
                task.display_name,
                "Retry",
                task.template_name,
                "Running",
                task.boundary,
            )
            self._link(run, task, task_id)
            self._new_attempt(run, task, 0)
        else:
            self._link(run, task, task_id)
            self._new_pod(run, task, task.node_name, task.display_name, 0)

    def _new_attempt(self, run: WorkflowRun, task: Task, index: int) -> None:
        name = f"{task.node_name}({index})"
        display = f"{task.display_name}({index})"
        attempt_id = self._new_pod(run, task, name, display, index)
        _add_child(run.nodes[node_id(run.name, task.node_name)], attempt_id)

    def _new_pod(self, run: WorkflowRun, task: Task, name: str, display: str, index: int) -> str:
        pod_id = node_id(run.name, name)
        run.nodes[pod_id] = self._node(
            run, name, display, "Pod", task.template_name, "Pending", task.boundary
        )
        pod = pod_name(run.name, name, task.template_name)
        attempt = Attempt(node_id=pod_id, pod=pod, task=task, index=index)
        faults = self._faults.get(task.name)
        if faults:
            fault = faults[0]
            attempt.forced = fault
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    faults.pop(0)
        run.live[pod_id] = attempt
        return pod_id

    # -- the kubelet -------------------------------------------------------------------------

    def _advance(self, run: WorkflowRun, attempt: Attempt, now: float) -> bool:
        node = run.nodes[attempt.node_id]
        if node["phase"] == "Pending":
            self._run_pod(run, attempt, now)
            return True
        if attempt.deadline is not None and now >= attempt.deadline:
            self._end_attempt(run, attempt, "Failed", DEADLINE_MESSAGE, None, now)
            return True
        if attempt.forced is not None:
            code = attempt.forced.exit_code
            message = attempt.forced.message or f"Error (exit code {code})"
            self._end_attempt(run, attempt, "Failed", message, code, now)
            return True
        if attempt.process is not None:
            returned = attempt.process.poll()
            if returned is None:
                return False
            code = returned
            if code == 0:
                self._end_attempt(run, attempt, "Succeeded", None, 0, now)
            else:
                exit_code = code if code > 0 else 128 - code
                self._end_attempt(
                    run, attempt, "Failed", f"Error (exit code {exit_code})", exit_code, now
                )
            return True
        if attempt.due is not None and now >= attempt.due:
            self._end_attempt(run, attempt, "Succeeded", None, 0, now)
            return True
        return False

    def _run_pod(self, run: WorkflowRun, attempt: Attempt, now: float) -> None:
        node = run.nodes[attempt.node_id]
        template = attempt.task.template
        deadline = _int(template.get("activeDeadlineSeconds"))
        attempt.started = now
        attempt.deadline = now + deadline if deadline is not None else None
        log = PodLog(path=None)
        run.pods[attempt.pod] = log
        if attempt.forced is None and self.run_commands:
            try:
                self._spawn(run, attempt, log)
            except SecretMissing as missing:
                log.ended = True
                message = f"CreateContainerConfigError: {missing}"
                self._end_attempt(run, attempt, "Error", message, None, now)
                return
            except OSError as error:
                log.ended = True
                message = f'failed to start container "main": exec: {error.strerror or error}'
                self._end_attempt(run, attempt, "Error", message, None, now)
                return
        elif attempt.forced is None:
            attempt.due = now + self.task_seconds
        node["phase"] = "Running"
        run.status["conditions"] = [{"type": "PodRunning", "status": "True"}]

    def _spawn(self, run: WorkflowRun, attempt: Attempt, log: PodLog) -> None:
        container: dict[str, Any] = attempt.task.template.get("container") or {}
        variables = self._argo_variables(run, attempt)
        env = self._environment(run, attempt, container)
        argv = [
            _substitute(_expand(str(part), env), variables)
            for part in list(container.get("command") or []) + list(container.get("args") or [])
        ]
        if not argv:
            attempt.due = time.monotonic() + self.task_seconds
            return
        folder = self.work_dir / "pods" / run.namespace / run.name
        folder.mkdir(parents=True, exist_ok=True)
        log.path = folder / f"{attempt.pod}.log"
        working_dir = container.get("workingDir")
        if working_dir and Path(working_dir).is_dir():
            cwd = Path(working_dir)
        else:
            cwd = folder / f"{attempt.pod}.cwd"
            cwd.mkdir(exist_ok=True)
        attempt.log_file = log.path.open("wb")
        try:
            attempt.process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=attempt.log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError:
            attempt.log_file.close()
            attempt.log_file = None
            raise

    def _argo_variables(self, run: WorkflowRun, attempt: Attempt) -> dict[str, str]:
        metadata = run.obj["metadata"]
        values = {
            "workflow.name": run.name,
            "workflow.namespace": run.namespace,
            "workflow.uid": run.uid,
            "workflow.creationTimestamp": str(metadata.get("creationTimestamp", "")),
            "pod.name": attempt.pod,
            "node.name": run.nodes[attempt.node_id]["name"],
            "retries": str(attempt.index),
        }
        for parameter in ((run.obj["spec"].get("arguments") or {}).get("parameters")) or []:
            if isinstance(parameter, dict) and "name" in parameter:
                values[f"workflow.parameters.{parameter['name']}"] = str(parameter.get("value", ""))
        for key, value in attempt.task.arguments.items():
            values[f"inputs.parameters.{key}"] = value
        for parameter in ((attempt.task.template.get("inputs") or {}).get("parameters")) or []:
            if isinstance(parameter, dict) and "name" in parameter:
                key = f"inputs.parameters.{parameter['name']}"
                if key not in values and "value" in parameter:
                    values[key] = str(parameter["value"])
        return values

    def _environment(
        self, run: WorkflowRun, attempt: Attempt, container: Mapping[str, Any]
    ) -> dict[str, str]:
        """The container's environment as the kubelet builds it.

        :raises SecretMissing: for a Secret (or key) a non-optional reference names.
        """
        env = {k: os.environ[k] for k in _HOST_ENV if k in os.environ}
        env.setdefault("PATH", os.defpath)
        env["HOSTNAME"] = attempt.pod
        for source in container.get("envFrom") or []:
            prefix = str(source.get("prefix") or "")
            secret_ref = source.get("secretRef")
            if isinstance(secret_ref, dict):
                values = self.secrets.values(
                    run.namespace,
                    str(secret_ref.get("name")),
                    optional=bool(secret_ref.get("optional")),
                )
                env.update({prefix + k: v for k, v in values.items()})
            config_ref = source.get("configMapRef")
            if isinstance(config_ref, dict) and not config_ref.get("optional"):
                raise SecretMissing(f'configmap "{config_ref.get("name")}" not found')
        for variable in container.get("env") or []:
            name = str(variable.get("name"))
            if "value" in variable or "valueFrom" not in variable:
                env[name] = _expand(str(variable.get("value", "")), env)
                continue
            value_from = variable["valueFrom"] or {}
            value: str | None
            if isinstance(value_from.get("secretKeyRef"), dict):
                ref = value_from["secretKeyRef"]
                value = self.secrets.value(
                    run.namespace,
                    str(ref.get("name")),
                    str(ref.get("key")),
                    optional=bool(ref.get("optional")),
                )
            elif isinstance(value_from.get("configMapKeyRef"), dict):
                ref = value_from["configMapKeyRef"]
                if not ref.get("optional"):
                    raise SecretMissing(f'configmap "{ref.get("name")}" not found')
                value = None
            elif isinstance(value_from.get("fieldRef"), dict):
                value = {
                    "metadata.name": attempt.pod,
                    "metadata.namespace": run.namespace,
                    "spec.nodeName": HOST_NODE,
                    "status.podIP": "127.0.0.1",
                    "status.hostIP": "127.0.0.1",
                }.get(str(value_from["fieldRef"].get("fieldPath")), "")
            else:
                value = ""
            if value is not None:
                env[name] = value
        return env

    def _end_attempt(
        self,
        run: WorkflowRun,
        attempt: Attempt,
        phase: str,
        message: str | None,
        exit_code: int | None,
        now: float,
    ) -> None:
        self._kill(attempt)
        run.live.pop(attempt.node_id, None)
        log = run.pods.get(attempt.pod)
        if log is not None:
            log.ended = True
        node = run.nodes[attempt.node_id]
        node["phase"] = phase
        node["finishedAt"] = timestamp()
        node["progress"] = "1/1" if phase == "Succeeded" else "0/1"
        if message:
            node["message"] = message
        if exit_code is not None:
            node["outputs"] = {"exitCode": str(exit_code)}
        task = attempt.task
        task_id = node_id(run.name, task.node_name)
        if task_id == attempt.node_id:
            self._task_ended(run, task, node)
            return
        parent = run.nodes[task_id]
        decision = (
            "final" if phase == "Succeeded" else self._retry_decision(run, task, attempt, phase)
        )
        if decision == "retry":
            self._new_attempt(run, task, attempt.index + 1)
            return
        parent["phase"] = phase
        parent["finishedAt"] = node["finishedAt"]
        if decision == "exhausted":
            parent["message"] = NO_MORE_RETRIES
        elif message:
            parent["message"] = message
        if "outputs" in node:
            parent["outputs"] = copy.deepcopy(node["outputs"])
        self._task_ended(run, task, parent)

    def _retryable(self, task: Task, phase: str) -> bool:
        """Whether the template's retryPolicy retries an attempt that ended in ``phase``."""
        strategy = task.retry_strategy or {}
        policy = strategy.get("retryPolicy") or "OnFailure"
        if policy == "Always":
            return phase in ("Failed", "Error")
        if policy == "OnError":
            return phase == "Error"
        if policy == "OnFailure":
            return phase == "Failed"
        return False  # OnTransientError: the double's failures are never transient

    def _retry_decision(self, run: WorkflowRun, task: Task, attempt: Attempt, phase: str) -> str:
        """``retry`` (start another attempt), ``exhausted`` (the limit is reached) or
        ``final`` (the policy, a shutdown or a deadline rules retrying out)."""
        if run.shutdown is not None or run.deadline_hit or not self._retryable(task, phase):
            return "final"
        limit = _int((task.retry_strategy or {}).get("limit"))
        return "retry" if limit is None or attempt.index < limit else "exhausted"

    def _task_ended(self, run: WorkflowRun, task: Task, node: dict[str, Any]) -> None:
        if node["phase"] in ("Failed", "Error") and run.fail_fast and task.name not in run.handled:
            run.failed_fast = True

    def _finish(self, run: WorkflowRun) -> None:
        failed = [
            node
            for task in run.tasks.values()
            if (node := run.nodes.get(node_id(run.name, task.node_name))) is not None
            and node["phase"] in ("Failed", "Error")
            and task.name not in run.handled
        ]
        strategy = run.shutdown
        if strategy is not None:
            phase, message = "Failed", f"Stopped with strategy '{strategy}'"
        elif run.deadline_hit:
            phase, message = "Failed", WORKFLOW_DEADLINE_MESSAGE
        elif failed:
            phase = "Failed"
            message = (
                f"child '{failed[0]['id']}' failed"
                if run.dag_node is not None
                else str(failed[0].get("message") or "")
            )
        else:
            phase, message = "Succeeded", ""
        finished = timestamp()
        if run.dag_node is not None:
            dag = run.nodes[run.dag_node]
            dag["phase"] = phase
            dag["finishedAt"] = finished
            if message:
                dag["message"] = message
            dependents = {d for t in run.tasks.values() for d in t.dependencies}
            outbound = [
                node_id_
                for task in run.tasks.values()
                if task.name not in dependents
                for node_id_ in self._outbound(run, task)
            ]
            if outbound:
                dag["outboundNodes"] = outbound
        run.status["phase"] = phase
        run.status["finishedAt"] = finished
        if message:
            run.status["message"] = message
        run.status["conditions"] = [
            {"type": "PodRunning", "status": "False"},
            {"type": "Completed", "status": "True"},
        ]
        run.obj["metadata"]["labels"].update({PHASE_LABEL: phase, COMPLETED_LABEL: "true"})
        run.finished = True

    def _progress(self, run: WorkflowRun) -> None:
        pods = [n for n in run.nodes.values() if n["type"] == "Pod"]
        done = sum(1 for n in pods if n["phase"] == "Succeeded")
        run.status["progress"] = f"{done}/{len(pods)}"
        for node in run.nodes.values():
            if node["type"] in ("DAG", "Retry"):
                children = [
                    n for n in pods if node["type"] == "DAG" or n["id"] in node.get("children", [])
                ]
                node["progress"] = (
                    f"{sum(1 for n in children if n['phase'] == 'Succeeded')}/{len(children)}"
                )

    # -- processes ------------------------------------------------------------------------

    def _kill(self, attempt: Attempt) -> None:
        process = attempt.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if attempt.log_file is not None:
            attempt.log_file.close()
            attempt.log_file = None

    def _kill_all(self, run: WorkflowRun) -> None:
        for attempt in list(run.live.values()):
            self._kill(attempt)
        run.live.clear()


def _add_child(node: dict[str, Any], child: str) -> None:
    children: list[str] = node.setdefault("children", [])
    if child not in children:
        children.append(child)


def _topological(tasks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """DAG tasks with every task after its dependencies, else in declaration order."""
    placed: set[str] = set()
    pending = list(tasks)
    while pending:
        for task in pending:
            if all(d in placed for d in dag_dependencies(task)):
                placed.add(task["name"])
                pending.remove(task)
                yield task
                break
        else:  # a cycle: validation refuses those; keep the rest in order
            yield from pending
            return


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion (``$$`` escapes; unknown references stay)."""

    def replace(found: re.Match[str]) -> str:
        if found.group(0) == "$$":
            return "$"
        name = found.group(1)
        return env[name] if name in env else found.group(0)

    return _KUBE_VARIABLE.sub(replace, text)


def _substitute(text: str, values: Mapping[str, str]) -> str:
    """Argo's ``{{...}}`` variables the double knows (others stay as written)."""
    return _ARGO_VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def _node_matcher(selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """A ``nodeFieldSelector`` (``templateName=x,displayName!=y``) over node fields."""
    if not selector:
        return lambda node: True
    terms: list[tuple[str, bool, str]] = []
    for part in selector.split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            key, value = part.split("!=", 1)
            terms.append((key.strip(), False, value.strip()))
        elif "=" in part:
            key, value = part.split("=", 1)
            terms.append((key.strip().rstrip("="), True, value.strip()))
        else:
            raise invalid_argument(f"invalid node field selector: {part}")

    def matches(node: Mapping[str, Any]) -> bool:
        return all((str(node.get(key, "")) == value) is equal for key, equal, value in terms)

    return matches
