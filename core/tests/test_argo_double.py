"""The Argo Server double (llmops.testing.argo) behaves like an Argo Server and its
workflow controller as hera's WorkflowsService sees them, and like kube-apiserver's
Secrets API as the official ``kubernetes`` client sees it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from hera.exceptions import AlreadyExists, BadRequest, NotFound, Unauthorized
from hera.workflows import DAG, Container, Env, RetryStrategy, Workflow, WorkflowsService
from hera.workflows import models as m
from kubernetes.client import ApiClient, Configuration, CoreV1Api, V1ObjectMeta, V1Secret
from kubernetes.client.exceptions import ApiException

from llmops.testing.argo import (
    TOKEN_NOT_VALID,
    ArgoServerDouble,
    node_id,
    pod_name,
    running_argo_server,
)

TOKEN = "t0ken"
NS = "argo"

# hera 7 serialises its requests with pydantic's deprecated .json()
pytestmark = pytest.mark.filterwarnings("ignore:The `json` method is deprecated:DeprecationWarning")


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoServerDouble]:
    """One double for the module (starting one is cheap; see the first test)."""
    with running_argo_server(
        token=TOKEN, namespace=NS, work_dir=tmp_path_factory.mktemp("argo")
    ) as argo:
        yield argo


@pytest.fixture
def argo(started: ArgoServerDouble) -> Iterator[ArgoServerDouble]:
    """The module's double, reset before each test and checked for crashes after."""
    started.reset()
    yield started
    started.check_errors()


@pytest.fixture
def service(argo: ArgoServerDouble) -> Iterator[WorkflowsService]:
    with WorkflowsService(host=argo.url, token=TOKEN, namespace=NS, verify_ssl=False) as svc:
        yield svc


@pytest.fixture
def core(argo: ArgoServerDouble) -> Iterator[CoreV1Api]:
    """The official kubernetes client, on the double's cluster API."""
    configuration = Configuration(
        host=argo.kubernetes_url,
        api_key={"authorization": TOKEN},
        api_key_prefix={"authorization": "Bearer"},
    )
    with ApiClient(configuration) as client:
        yield CoreV1Api(client)


def sh(name: str, script: str, **fields: Any) -> Container:
    return Container(name=name, image="alpine:3.20", command=["sh", "-c", script], **fields)


def dag(
    name: str, build: Callable[[], None], *, labels: dict[str, str] | None = None, **spec: Any
) -> Workflow:
    """A workflow ``name`` whose entrypoint ``main`` is the DAG ``build()`` declares."""
    with (
        Workflow(name=name, entrypoint="main", namespace=NS, labels=labels, **spec) as workflow,
        DAG(name="main"),
    ):
        build()
    return workflow


def submit(service: WorkflowsService, workflow: Workflow) -> str:
    created = service.create_workflow(m.WorkflowCreateRequest(workflow=workflow.build()))
    assert created.metadata.name
    return created.metadata.name


def nodes_by_display_name(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["displayName"]: n for n in workflow["status"]["nodes"].values()}


def post(argo: ArgoServerDouble, path: str, body: Any, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(argo.url + path, json=body, headers=headers)


def lines_of(path: Path) -> list[str]:
    return path.read_text().split()


# -- start, info, authentication ----------------------------------------------------------


def test_a_double_starts_well_under_a_second_and_answers_info_and_version(
    started: ArgoServerDouble, tmp_path: Path
) -> None:
    began = time.perf_counter()  # the schemas are compiled (once per process) by now
    with running_argo_server(token=TOKEN, work_dir=tmp_path) as argo:
        took = time.perf_counter() - began
        with WorkflowsService(host=argo.url, token=TOKEN, namespace=NS) as svc:
            info = svc.get_info()
            version = svc.get_version()

    assert took < 0.5, f"starting the double took {took:.2f} s"
    assert info.managed_namespace == NS
    assert version.version.startswith("v3.")


@pytest.mark.parametrize("token", [None, "wrong"], ids=["no-token", "wrong-token"])
def test_a_request_without_the_token_or_with_a_wrong_one_is_401(
    argo: ArgoServerDouble, token: str | None
) -> None:
    with WorkflowsService(host=argo.url, token=token, namespace=NS) as svc:
        with pytest.raises(Unauthorized, match="token not valid"):
            svc.list_workflows()
        with pytest.raises(Unauthorized):
            svc.get_info()

    answer = httpx.get(f"{argo.url}/api/v1/workflows/{NS}")
    assert (answer.status_code, answer.json()) == (401, {"code": 16, "message": TOKEN_NOT_VALID})


def test_an_expired_token_is_refused_on_both_apis_until_a_new_one_is_set(
    argo: ArgoServerDouble, service: WorkflowsService, core: CoreV1Api
) -> None:
    argo.expire_token()

    with pytest.raises(Unauthorized):
        service.list_workflows()
    with pytest.raises(ApiException) as refused:
        core.list_namespaced_secret(NS)
    assert refused.value.status == 401

    argo.set_token("renewed")
    with pytest.raises(Unauthorized):
        service.list_workflows()  # the old token stays refused
    with WorkflowsService(host=argo.url, token="renewed", namespace=NS) as renewed:
        assert renewed.list_workflows().items is None


def test_server_auth_mode_accepts_requests_without_a_token(argo: ArgoServerDouble) -> None:
    argo.auth_mode = "server"

    with WorkflowsService(host=argo.url, namespace=NS) as anonymous:
        info = anonymous.get_info()
        listed = anonymous.list_workflows()

    assert info.managed_namespace == NS
    assert listed.items is None


def test_another_namespace_is_permission_denied(argo: ArgoServerDouble) -> None:
    answer = httpx.get(
        f"{argo.url}/api/v1/workflows/elsewhere", headers={"Authorization": f"Bearer {TOKEN}"}
    )

    assert answer.status_code == 403
    assert answer.json()["code"] == 7
    assert 'in the namespace "elsewhere"' in answer.json()["message"]


# -- create, get, list, delete ------------------------------------------------------------


def test_a_workflow_is_created_read_listed_by_label_and_deleted(
    argo: ArgoServerDouble, service: WorkflowsService
) -> None:
    def build(team: str, tier: str | None) -> Workflow:
        labels = {"team": team, **({"tier": tier} if tier else {})}
        with Workflow(generate_name="crud-", entrypoint="one", namespace=NS, labels=labels) as w:
            sh("one", "exit 0")
        return w

    names = {
        key: submit(service, build(team, tier))
        for key, team, tier in [("a", "ml", "gold"), ("b", "ml", None), ("c", "data", "silver")]
    }

    read = service.get_workflow(names["a"])
    assert read.metadata.name.startswith("crud-")
    assert len(read.metadata.name) == len("crud-") + 5
    assert read.metadata.uid
    assert read.metadata.creation_timestamp

    def listed(selector: str) -> set[str]:
        items = service.list_workflows(label_selector=selector).items or []
        return {w.metadata.name for w in items}

    assert listed("team=ml") == {names["a"], names["b"]}
    assert listed("team!=ml") == {names["c"]}
    assert listed("tier in (gold,silver)") == {names["a"], names["c"]}
    assert listed("tier notin (gold)") == {names["b"], names["c"]}
    assert listed("tier") == {names["a"], names["c"]}
    assert listed("!tier") == {names["b"]}
    assert listed("team=nobody") == set()

    service.delete_workflow(names["a"])
    with pytest.raises(NotFound, match=f'workflows.argoproj.io "{names["a"]}" not found'):
        service.get_workflow(names["a"])
    assert listed("team=ml") == {names["b"]}


def test_a_list_pages_with_limit_and_continue_newest_first(
    argo: ArgoServerDouble, service: WorkflowsService
) -> None:
    created = [
        submit(service, dag(f"page-{i}", lambda: sh("t", "exit 0")(name="t"))) for i in range(5)
    ]

    first = service.list_workflows(limit="2")
    second = service.list_workflows(limit="2", continue_=first.metadata.continue_)
    rest = service.list_workflows(limit="2", continue_=second.metadata.continue_)

    pages = [[w.metadata.name for w in page.items or []] for page in (first, second, rest)]
    assert pages == [created[:-3:-1], created[-3:-5:-1], created[:1]]
    assert rest.metadata.continue_ is None


def test_a_duplicate_name_is_409_already_exists(service: WorkflowsService) -> None:
    workflow = dag("twice", lambda: sh("t", "exit 0")(name="t"))
    submit(service, workflow)

    with pytest.raises(AlreadyExists, match=r'workflows\.argoproj\.io "twice" already exists'):
        submit(service, workflow)


def test_server_dry_run_validates_without_storing(
    argo: ArgoServerDouble, service: WorkflowsService
) -> None:
    request = m.WorkflowCreateRequest(
        workflow=dag("dry", lambda: sh("t", "exit 0")(name="t")).build(), server_dry_run=True
    )

    answered = service.create_workflow(request)

    assert answered.metadata.name == "dry"
    assert argo.workflows() == []


def _valid_body() -> dict[str, Any]:
    workflow = dag("checked", lambda: sh("t", "exit 0", active_deadline_seconds=5)(name="t"))
    return {"workflow": workflow.build().model_dump(by_alias=True, exclude_none=True, mode="json")}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda b: b["workflow"]["spec"].update(parallelism="two"), "spec.parallelism"),
        (
            lambda b: b["workflow"]["spec"]["templates"][1]["container"].update(image=7),
            "spec.templates[1].container.image",
        ),
        (lambda b: b["workflow"]["spec"].update(entrypiont="main"), "spec.entrypiont"),
        (lambda b: b.update(serverDryRun="yes"), "serverDryRun"),
        (
            lambda b: b["workflow"]["metadata"].update(labels={"key": "v" * 64}),
            "metadata.labels",
        ),
        (
            lambda b: b["workflow"]["spec"]["templates"][1].update(activeDeadlineSeconds="soon"),
            "templates.t.activeDeadlineSeconds",
        ),
    ],
    ids=["wrong-type", "nested-wrong-type", "unknown-field", "request-field", "label", "argo-rule"],
)
def test_a_workflow_argo_would_refuse_is_400_invalid_argument_naming_the_field(
    argo: ArgoServerDouble, change: Callable[[dict[str, Any]], None], named: str
) -> None:
    body = _valid_body()
    change(body)

    answer = post(argo, f"/api/v1/workflows/{NS}", body)

    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == 3
    assert named in answer.json()["message"]
    assert argo.workflows() == []


def test_hera_sees_a_refused_workflow_as_bad_request(service: WorkflowsService) -> None:
    workflow = dag("long-label", lambda: sh("t", "exit 0")(name="t"), labels={"k": "x" * 70})

    with pytest.raises(BadRequest, match="must be no more than 63 characters"):
        submit(service, workflow)


def test_lint_answers_a_valid_workflow_and_refuses_a_cycle_or_an_unknown_dependency(
    argo: ArgoServerDouble, service: WorkflowsService
) -> None:
    def cycle() -> None:
        t = sh("t", "exit 0")
        a, b = t(name="a"), t(name="b")
        a >> b >> a

    linted = service.lint_workflow(
        m.WorkflowLintRequest(workflow=dag("fine", lambda: sh("t", "exit 0")(name="t")).build())
    )
    assert linted.metadata.name == "fine"
    with pytest.raises(BadRequest, match="dependency cycle detected: a->b->a"):
        service.lint_workflow(m.WorkflowLintRequest(workflow=dag("loop", cycle).build()))

    body = _valid_body()
    body["workflow"]["spec"]["templates"][0]["dag"]["tasks"][0]["depends"] = "nowhere"
    answer = post(argo, f"/api/v1/workflows/{NS}/lint", body)
    assert answer.status_code == 400
    assert "templates.main.tasks.t dependency 'nowhere' not defined" in answer.json()["message"]
    assert argo.workflows() == []


# -- the controller -----------------------------------------------------------------------


def test_a_diamond_dag_runs_each_task_after_its_dependencies(
    argo: ArgoServerDouble, service: WorkflowsService, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    step = sh(
        "step",
        f'echo "start-$TASK" >> {trace}; sleep 0.05; echo "end-$TASK" >> {trace}',
        env=[Env(name="TASK", value="$(HOSTNAME)")],
    )

    def build() -> None:
        a, b, c, d = (step(name=n) for n in "abcd")
        a >> [b, c] >> d

    created = service.create_workflow(
        m.WorkflowCreateRequest(workflow=dag("diamond", build).build())
    )

    done = argo.wait_until_completed(created.metadata.name)

    assert done["status"]["phase"] == "Succeeded"
    assert done["status"]["progress"] == "4/4"
    nodes = nodes_by_display_name(done)
    pods = {task: pod_name("diamond", f"diamond.{task}", "step") for task in "abcd"}
    events = lines_of(trace)
    position = {event: index for index, event in enumerate(events)}
    for before, after in [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]:
        assert position[f"end-{pods[before]}"] < position[f"start-{pods[after]}"], events
        assert nodes[after]["startedAt"] >= nodes[before]["finishedAt"]
        assert node_id("diamond", f"diamond.{after}") in nodes[before]["children"]
    assert nodes["a"]["id"] == node_id("diamond", "diamond.a")
    assert nodes["diamond"]["type"] == "DAG"
    assert nodes["diamond"]["children"] == [nodes["a"]["id"]]
    assert nodes["diamond"]["outboundNodes"] == [nodes["d"]["id"]]
    assert all(nodes[t]["outputs"]["exitCode"] == "0" for t in "abcd")
    labels = done["metadata"]["labels"]
    assert labels["workflows.argoproj.io/phase"] == "Succeeded"
    assert labels["workflows.argoproj.io/completed"] == "true"


def test_parallelism_caps_the_tasks_running_at_once(
    argo: ArgoServerDouble, service: WorkflowsService, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    step = sh("step", f"echo start >> {trace}; sleep 0.05; echo end >> {trace}")

    def build() -> None:
        for n in "abc":
            step(name=n)

    name = submit(service, dag("one-at-a-time", build, parallelism=1))
    done = argo.wait_until_completed(name)

    assert done["status"]["phase"] == "Succeeded"
    assert lines_of(trace) == ["start", "end"] * 3


def test_a_failing_task_is_retried_per_its_retry_strategy_then_fails_the_workflow(
    argo: ArgoServerDouble, service: WorkflowsService
) -> None:
    def build() -> None:
        first = sh("ok", "exit 0")(name="prepare")
        flaky = sh("train", "exit 0", retry_strategy=RetryStrategy(limit=2))(name="train")
        after = sh("ok2", "exit 0")(name="evaluate")
        first >> flaky >> after

    argo.fail_task("train", times=None, exit_code=3)
    name = submit(service, dag("retried", build))
    done = argo.wait_until_completed(name)

    nodes = nodes_by_display_name(done)
    assert done["status"]["phase"] == "Failed"
    assert done["status"]["message"] == f"child '{nodes['train']['id']}' failed"
    assert nodes["train"]["type"] == "Retry"
    assert nodes["train"]["message"] == "No more retries left"
    attempts = [nodes[f"train({i})"] for i in range(3)]
    assert nodes["train"]["children"] == [a["id"] for a in attempts]
    assert all(a["phase"] == "Failed" and a["outputs"]["exitCode"] == "3" for a in attempts)
    assert attempts[0]["message"] == "Error (exit code 3)"
    assert "train(3)" not in nodes
    assert nodes["evaluate"]["phase"] == "Omitted"
    assert nodes["evaluate"]["type"] == "Skipped"
    assert nodes["prepare"]["phase"] == "Succeeded"


def test_a_task_that_fails_once_succeeds_on_its_second_attempt(
    argo: ArgoServerDouble, service: WorkflowsService
) -> None:
    argo.fail_task("flaky", times=1, exit_code=4, message="boom")
    name = submit(
        service,
        dag(
            "second-time",
            lambda: sh("t", "exit 0", retry_strategy=RetryStrategy(limit=3))(name="flaky"),
        ),
    )

    done = argo.wait_until_completed(name)

    nodes = nodes_by_display_name(done)
    assert done["status"]["phase"] == "Succeeded"
    assert (nodes["flaky(0)"]["phase"], nodes["flaky(0)"]["message"]) == ("Failed", "boom")
    assert nodes["flaky(1)"]["phase"] == "Succeeded"
    assert nodes["flaky"]["phase"] == "Succeeded"


def test_a_failure_a_depends_expression_handles_runs_its_handler_and_does_not_fail_the_dag(
    argo: ArgoServerDouble, service: WorkflowsService
) -> None:
    def build() -> None:
        train = sh("train", "exit 2")(name="train")
        sh("alert", "exit 0")(name="alert", depends="train.Failed")
        sh("publish", "exit 0")(name="publish", depends="train && alert")
        assert train is not None

    done = argo.wait_until_completed(submit(service, dag("handled", build)))

    nodes = nodes_by_display_name(done)
    assert nodes["train"]["phase"] == "Failed"
    assert nodes["alert"]["phase"] == "Succeeded"
    assert nodes["publish"]["phase"] == "Omitted"
    assert done["status"]["phase"] == "Succeeded"


def test_a_template_deadline_kills_an_attempt_and_a_workflow_deadline_fails_the_workflow(
    argo: ArgoServerDouble, service: WorkflowsService
) -> None:
    slow_task = dag(
        "slow-task",
        lambda: sh("sleepy", "sleep 30", active_deadline_seconds=1)(name="sleepy"),
    )
    slow_workflow = dag(
        "slow-workflow", lambda: sh("sleepy", "sleep 30")(name="sleepy"), active_deadline_seconds=1
    )
    began = time.monotonic()
    names = [submit(service, slow_task), submit(service, slow_workflow)]

    task_done, workflow_done = (argo.wait_until_completed(n, timeout=5) for n in names)

    assert time.monotonic() - began < 5
    sleepy = nodes_by_display_name(task_done)["sleepy"]
    assert (task_done["status"]["phase"], sleepy["phase"]) == ("Failed", "Failed")
    assert sleepy["message"] == "Pod was active on the node longer than the specified deadline"
    assert workflow_done["status"]["phase"] == "Failed"
    assert workflow_done["status"]["message"] == "Step exceeded its deadline"


def test_stop_lets_the_running_task_finish_and_starts_no_more(
    argo: ArgoServerDouble, service: WorkflowsService, tmp_path: Path
) -> None:
    release = tmp_path / "release"

    def build() -> None:
        running = sh("wait", f"while [ ! -e {release} ]; do sleep 0.02; done")(name="running")
        running >> sh("next", "exit 0")(name="next")

    name = submit(service, dag("stopped", build))
    argo.wait_for_workflow(name, lambda w: _phase_of(w, "running") == "Running")

    stopped = service.stop_workflow(name, m.WorkflowStopRequest())
    release.touch()
    done = argo.wait_until_completed(name)

    assert stopped.spec.shutdown == "Stop"
    nodes = nodes_by_display_name(done)
    assert (done["status"]["phase"], done["status"]["message"]) == (
        "Failed",
        "Stopped with strategy 'Stop'",
    )
    assert nodes["running"]["phase"] == "Succeeded"
    assert "next" not in nodes


def test_terminate_kills_the_running_task(
    argo: ArgoServerDouble, service: WorkflowsService, tmp_path: Path
) -> None:
    late = tmp_path / "late"
    name = submit(
        service, dag("terminated", lambda: sh("t", f"sleep 30; touch {late}")(name="long"))
    )
    argo.wait_for_workflow(name, lambda w: _phase_of(w, "long") == "Running")

    service.terminate_workflow(name, m.WorkflowTerminateRequest())
    done = argo.wait_until_completed(name, timeout=2)

    long = nodes_by_display_name(done)["long"]
    assert done["status"]["message"] == "Stopped with strategy 'Terminate'"
    assert (long["phase"], long["message"]) == ("Failed", "Stopped with strategy 'Terminate'")
    with pytest.raises(BadRequest, match="cannot shutdown a completed workflow"):
        service.terminate_workflow(name, m.WorkflowTerminateRequest())
    assert not late.exists()


def test_retry_reruns_the_failed_and_omitted_nodes_and_keeps_the_succeeded_ones(
    argo: ArgoServerDouble, service: WorkflowsService
) -> None:
    def build() -> None:
        (
            sh("a", "exit 0")(name="prepare")
            >> sh("b", "exit 0")(name="train")
            >> sh("c", "exit 0")(name="evaluate")
        )

    argo.fail_task("train", times=1)
    name = submit(service, dag("again", build))
    failed = argo.wait_until_completed(name)
    assert failed["status"]["phase"] == "Failed"
    prepared = nodes_by_display_name(failed)["prepare"]

    retried = service.retry_workflow(name, m.WorkflowRetryRequest())
    assert retried.status.phase == "Running"
    done = argo.wait_until_completed(name)

    nodes = nodes_by_display_name(done)
    assert done["status"]["phase"] == "Succeeded"
    assert nodes["prepare"] == prepared
    assert nodes["train"]["phase"] == nodes["evaluate"]["phase"] == "Succeeded"
    with pytest.raises(BadRequest, match="workflow must be Failed/Error to retry"):
        service.retry_workflow(name, m.WorkflowRetryRequest())


# -- logs ---------------------------------------------------------------------------------


def test_the_logs_of_a_node_stream_line_by_line_by_pod_name(
    argo: ArgoServerDouble, service: WorkflowsService, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    script = f"echo one; echo two; while [ ! -e {release} ]; do sleep 0.02; done; echo three"
    name = submit(service, dag("talker", lambda: sh("talk", script)(name="talk")))
    pod = pod_name(name, f"{name}.talk", "talk")

    with requests.get(
        f"{argo.url}/api/v1/workflows/{NS}/{name}/log",
        params={"podName": pod, "logOptions.container": "main", "logOptions.follow": "true"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        stream=True,
        timeout=10,
    ) as answer:
        lines = answer.iter_lines()
        first = [json.loads(next(lines)), json.loads(next(lines))]
        running = _phase_of(argo.workflow(name) or {}, "talk")
        release.touch()
        rest = [json.loads(line) for line in lines]

    assert answer.headers["Transfer-Encoding"] == "chunked"
    assert running == "Running", "the first lines arrived while the task still ran"
    assert [e["result"]["content"] for e in first + rest] == ["one", "two", "three"]
    assert {e["result"]["podName"] for e in first + rest} == {pod}
    tail = httpx.get(
        f"{argo.url}/api/v1/workflows/{NS}/{name}/log",
        params={"podName": pod, "logOptions.tailLines": "1"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert [json.loads(x)["result"]["content"] for x in tail.text.splitlines()] == ["three"]


def test_the_logs_of_an_unknown_workflow_are_a_404_stream_error(argo: ArgoServerDouble) -> None:
    answer = httpx.get(
        f"{argo.url}/api/v1/workflows/{NS}/nowhere/log",
        params={"podName": "nowhere-pod"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )

    assert answer.status_code == 404
    assert answer.json()["error"]["grpc_code"] == 5
    assert answer.json()["error"]["message"] == 'workflows.argoproj.io "nowhere" not found'


# -- faults -------------------------------------------------------------------------------


def test_a_workflow_deleted_by_garbage_collection_is_gone_with_its_secrets(
    argo: ArgoServerDouble, service: WorkflowsService, core: CoreV1Api
) -> None:
    name = submit(service, dag("collected", lambda: sh("t", "exit 0")(name="t")))
    uid = service.get_workflow(name).metadata.uid
    owner = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": name, "uid": uid}
    core.create_namespaced_secret(
        NS, {"metadata": {"name": "owned", "ownerReferences": [owner]}, "stringData": {"k": "v"}}
    )
    core.create_namespaced_secret(NS, V1Secret(metadata=V1ObjectMeta(name="kept")))

    argo.delete_workflow(name)

    with pytest.raises(NotFound):
        service.get_workflow(name)
    assert [s["metadata"]["name"] for s in argo.secrets()] == ["kept"]


def test_down_refuses_connections_and_up_serves_again_on_the_same_port(
    argo: ArgoServerDouble, service: WorkflowsService
) -> None:
    name = submit(service, dag("survivor", lambda: sh("t", "exit 0")(name="t")))
    url = argo.url

    argo.down()
    with pytest.raises(requests.ConnectionError):
        service.get_workflow(name)
    argo.wait_until_completed(name)  # the controller goes on while the server is down
    argo.up()

    assert argo.url == url
    assert service.get_workflow(name).status.phase == "Succeeded"


def test_slow_delays_every_answer(argo: ArgoServerDouble, service: WorkflowsService) -> None:
    argo.slow(0.2)
    began = time.monotonic()
    service.list_workflows()
    slowed = time.monotonic() - began
    argo.slow(0)

    assert slowed >= 0.2


def test_the_requests_log_records_method_and_path_in_order(
    argo: ArgoServerDouble, service: WorkflowsService
) -> None:
    name = submit(service, dag("logged", lambda: sh("t", "exit 0")(name="t")))
    service.get_workflow(name)
    service.list_workflows(label_selector="a=b")

    assert argo.requests == [
        ("POST", f"/api/v1/workflows/{NS}"),
        ("GET", f"/api/v1/workflows/{NS}/{name}"),
        ("GET", f"/api/v1/workflows/{NS}"),
    ]
    assert argo.recorded[-1].query["listOptions.labelSelector"] == ["a=b"]


def test_many_workflows_run_cheaply_without_commands(tmp_path: Path) -> None:
    with (
        running_argo_server(
            token=TOKEN, run_commands=False, task_seconds=0.01, work_dir=tmp_path
        ) as argo,
        WorkflowsService(host=argo.url, token=TOKEN, namespace=NS) as svc,
    ):
        names = [
            submit(
                svc,
                dag(
                    f"bulk-{i}", lambda: sh("t", "exit 0")(name="t") >> sh("u", "exit 0")(name="u")
                ),
            )
            for i in range(100)
        ]
        done = [argo.wait_until_completed(n) for n in names]

        assert {w["status"]["phase"] for w in done} == {"Succeeded"}
        argo.check_errors()


# -- Secrets ------------------------------------------------------------------------------


def test_the_secrets_api_creates_reads_lists_by_label_and_deletes_like_kubernetes(
    argo: ArgoServerDouble, core: CoreV1Api
) -> None:
    secret = V1Secret(
        metadata=V1ObjectMeta(name="token", labels={"llmops.io/pipeline": "p1"}),
        string_data={"HF_TOKEN": "hf_secret"},
    )

    created = core.create_namespaced_secret(NS, secret)
    with pytest.raises(ApiException) as duplicate:
        core.create_namespaced_secret(NS, secret)
    read = core.read_namespaced_secret("token", NS)
    core.create_namespaced_secret(NS, V1Secret(metadata=V1ObjectMeta(name="other")))
    listed = core.list_namespaced_secret(NS, label_selector="llmops.io/pipeline=p1")
    core.delete_namespaced_secret("token", NS)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_secret("token", NS)

    assert created.metadata.uid
    assert created.type == "Opaque"
    assert base64.b64decode(read.data["HF_TOKEN"]) == b"hf_secret"
    assert read.string_data is None
    assert duplicate.value.status == 409
    assert json.loads(duplicate.value.body)["reason"] == "AlreadyExists"
    assert [s.metadata.name for s in listed.items] == ["token"]
    assert gone.value.status == 404
    assert json.loads(gone.value.body)["message"] == 'secrets "token" not found'


def test_a_secret_key_ref_reaches_the_command_and_a_missing_secret_fails_the_pod(
    argo: ArgoServerDouble, service: WorkflowsService, core: CoreV1Api
) -> None:
    core.create_namespaced_secret(
        NS, V1Secret(metadata=V1ObjectMeta(name="job-env"), string_data={"key": "s3cret"})
    )

    def uses(secret: str) -> Callable[[], None]:
        reference = m.EnvVarSource(secret_key_ref=m.SecretKeySelector(name=secret, key="key"))
        env = [Env(name="PLAIN", value="visible"), m.EnvVar(name="TOKEN", value_from=reference)]
        return lambda: sh("show", 'echo "$PLAIN $TOKEN"', env=env)(name="show")

    good = submit(service, dag("with-secret", uses("job-env")))
    bad = submit(service, dag("without-secret", uses("missing")))
    good_done, bad_done = argo.wait_until_completed(good), argo.wait_until_completed(bad)

    assert good_done["status"]["phase"] == "Succeeded"
    log = httpx.get(
        f"{argo.url}/api/v1/workflows/{NS}/{good}/log",
        params={"podName": pod_name(good, f"{good}.show", "show")},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert json.loads(log.text)["result"]["content"] == "visible s3cret"
    assert "s3cret" not in json.dumps(good_done), "the workflow holds a reference, not the value"
    show = nodes_by_display_name(bad_done)["show"]
    assert bad_done["status"]["phase"] == "Failed"
    assert (show["phase"], show["message"]) == (
        "Error",
        'CreateContainerConfigError: secret "missing" not found',
    )


def _phase_of(workflow: dict[str, Any], task: str) -> str | None:
    for node in (workflow.get("status") or {}).get("nodes", {}).values():
        if node["displayName"] == task:
            return str(node["phase"])
    return None
