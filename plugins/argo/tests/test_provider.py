"""What the Argo provider does beyond the contract: Argo's own failure modes (a vanished
workflow, an expired token, an answer lost after the workflow was made, a server that
takes requests without a token), the secret environment's Secret, Argo's names, and the
cost of a status read."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from llmops.capabilities.common import HealthStatus
from llmops.capabilities.orchestration import (
    PipelineSpec,
    PipelineState,
    PipelineStatus,
    StageState,
)
from llmops.deadlines import deadline
from llmops.errors import (
    Conflict,
    IntegrationRejected,
    IntegrationUnavailable,
    InvalidRequest,
    NotFound,
)
from llmops.testing.argo import ArgoServerDouble
from llmops.testing.contracts import eventually
from llmops_argo.provider import ArgoOrchestrator
from llmops_argo.workflow import KEY_ANNOTATION, SECRET_ANNOTATION, build_workflow

MakeProvider = Callable[..., ArgoOrchestrator]


def _spec(*stages: dict[str, Any], **fields: Any) -> PipelineSpec:
    return PipelineSpec.model_validate({"name": "provider-test", "stages": list(stages), **fields})


def _stage(name: str, script: str = "exit 0", **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["sh", "-c", script], **fields}


def _until(
    provider: ArgoOrchestrator, external_id: str, check: Callable[[PipelineStatus], bool]
) -> PipelineStatus:
    def reached() -> PipelineStatus | None:
        status = provider.status(external_id)
        return status if check(status) else None

    return eventually(reached, timeout=30, interval=0.05, what=f"run {external_id}")


def _ended(provider: ArgoOrchestrator, external_id: str) -> PipelineStatus:
    return _until(provider, external_id, lambda s: s.state.terminal)


def _stage_of(status: PipelineStatus, name: str) -> Any:
    [found] = [s for s in status.stages if s.name == name]
    return found


def _workflow_name(external_id: str) -> str:
    return external_id.split("/", 1)[1]


def test_stage_names_argo_refuses_run_under_safe_names_and_read_back_as_given(
    make_provider: MakeProvider,
) -> None:
    provider = make_provider()
    spec = _spec(
        _stage("fetch_data", "echo fetched"),
        _stage("pipeline", "echo ran", depends_on=["fetch_data"]),
    )

    ended = _ended(provider, provider.submit(spec).external_id)

    assert ended.state is PipelineState.SUCCEEDED, ended.message
    assert [s.name for s in ended.stages] == ["fetch_data", "pipeline"]
    logs = {log.stage: log.text for log in provider.logs(ended.external_id)}
    assert "fetched" in logs["fetch_data"]
    assert "ran" in logs["pipeline"]


def test_status_is_one_request_to_the_argo_server(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    external_id = provider.submit(_spec(_stage("only"))).external_id
    _ended(provider, external_id)
    argo.clear_requests()

    provider.status(external_id)

    assert argo.requests == [("GET", f"/api/v1/workflows/argo/{_workflow_name(external_id)}")]


def test_submit_lints_then_creates_and_a_redelivery_reads_back_the_workflow_of_its_key(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    spec = _spec(_stage("only"), idempotency_key="pipeline-order")

    first = provider.submit(spec)

    assert argo.requests == [
        ("POST", "/api/v1/workflows/argo/lint"),
        ("POST", "/api/v1/workflows/argo"),
    ]
    argo.clear_requests()
    again = provider.submit(spec)
    name = _workflow_name(first.external_id)
    assert argo.requests == [
        ("POST", "/api/v1/workflows/argo/lint"),
        ("POST", "/api/v1/workflows/argo"),  # 409: the name comes from the key
        ("GET", f"/api/v1/workflows/argo/{name}"),
    ]
    assert again.external_id == first.external_id
    assert len(argo.workflows()) == 1


def test_a_create_whose_answer_was_lost_is_found_by_its_key_and_not_made_twice(
    make_provider: MakeProvider, argo: ArgoServerDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = make_provider()
    spec = _spec(_stage("only"), idempotency_key="pipeline-lost-answer")
    create = provider.server.create

    def create_then_lose_the_answer(workflow: Any, namespace: str) -> Any:
        create(workflow, namespace)
        raise IntegrationUnavailable("the connection broke before the answer came")

    monkeypatch.setattr(provider.server, "create", create_then_lose_the_answer)
    with pytest.raises(IntegrationUnavailable):
        provider.submit(spec)

    again = make_provider().submit(spec)  # the outbox's redelivery, after a restart too

    [workflow] = argo.workflows()
    assert workflow["metadata"]["annotations"][KEY_ANNOTATION] == "pipeline-lost-answer"
    assert _workflow_name(again.external_id) == workflow["metadata"]["name"]


def test_a_workflow_of_that_name_made_for_another_key_is_a_conflict_never_adopted(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    spec = _spec(_stage("only"), idempotency_key="pipeline-mine")
    squatter = build_workflow(spec, namespace="argo", default_image="busybox:1.36")
    assert squatter.model.metadata.annotations is not None
    squatter.model.metadata.annotations[KEY_ANNOTATION] = "pipeline-someone-else"
    provider.server.create(squatter.model, "argo")

    with pytest.raises(Conflict):
        provider.submit(spec)

    [workflow] = argo.workflows()
    assert workflow["metadata"]["annotations"][KEY_ANNOTATION] == "pipeline-someone-else"


def test_two_submissions_racing_with_one_key_make_one_workflow(
    make_provider: MakeProvider, argo: ArgoServerDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = make_provider(), make_provider()
    spec = _spec(_stage("only"), idempotency_key="pipeline-race")
    create = second.server.create

    def create_after_the_first(workflow: Any, namespace: str) -> Any:
        # the first submission creates its workflow while the second is on its way
        first.submit(spec)
        return create(workflow, namespace)

    monkeypatch.setattr(second.server, "create", create_after_the_first)

    other = second.submit(spec)
    one = first.submit(spec)

    assert other.external_id == one.external_id
    assert len(argo.workflows()) == 1


def test_a_vanished_workflow_is_reported_failed_saying_so_never_running(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    external_id = provider.submit(
        _spec(_stage("long", "sleep 60"), _stage("after", depends_on=["long"]))
    ).external_id
    _until(provider, external_id, lambda s: _stage_of(s, "long").state is StageState.RUNNING)

    argo.delete_workflow(_workflow_name(external_id))
    status = provider.status(external_id)

    assert status.state is PipelineState.FAILED
    assert "vanished from Argo" in status.message
    assert status.stages == [], "Argo no longer knows them: the platform keeps its own"
    restarted = make_provider().status(external_id)
    assert restarted.state is PipelineState.FAILED, "a restarted platform says so too"
    assert "vanished from Argo" in restarted.message
    with pytest.raises(NotFound, match="gone from Argo"):
        provider.logs(external_id)


def test_an_expired_token_is_a_refusal_of_the_call_never_a_failed_stage(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    external_id = provider.submit(_spec(_stage("long", "sleep 60"))).external_id
    _until(provider, external_id, lambda s: _stage_of(s, "long").state is StageState.RUNNING)

    argo.expire_token()

    with pytest.raises(IntegrationRejected, match="LLMOPS_ARGO__TOKEN") as refused:
        provider.status(external_id)
    assert refused.value.extensions["upstream_status"] == 401
    assert provider.health().status is HealthStatus.DOWN
    argo.set_token(argo.token)
    assert _stage_of(provider.status(external_id), "long").state is StageState.RUNNING
    provider.cancel(external_id)


def test_an_unreachable_argo_server_is_unavailable_so_the_platform_queues_the_submission(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    argo.down()

    with pytest.raises(IntegrationUnavailable, match="unreachable"):
        provider.submit(_spec(_stage("only"), idempotency_key="pipeline-down"))

    argo.up()
    assert provider.submit(_spec(_stage("only"), idempotency_key="pipeline-down")).external_id


def test_a_url_that_is_no_argo_server_never_reads_as_a_vanished_workflow(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    external_id = provider.submit(_spec(_stage("only"))).external_id
    elsewhere = make_provider(server_url=argo.kubernetes_url)  # answers 404 to Argo's paths

    with pytest.raises(IntegrationUnavailable, match="has no Argo API"):
        elsewhere.status(external_id)


def test_health_is_degraded_when_the_argo_server_takes_requests_without_a_token(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    assert provider.health().status is HealthStatus.OK

    argo.auth_mode = "server"
    health = provider.health()

    assert health.status is HealthStatus.DEGRADED
    assert "auth mode 'server'" in health.detail


def test_the_secret_environment_reaches_the_pods_through_a_secret_removed_at_the_end(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    token = "job-token-0123456789"
    spec = _spec(
        _stage("show", 'printf "%s\\n" "token=$LLMOPS_JOB_TOKEN"'),
        secret_env={"LLMOPS_JOB_TOKEN": token},
        idempotency_key="pipeline-secret",
    )

    submitted = provider.submit(spec)

    [workflow] = argo.workflows()
    assert token not in json.dumps(workflow), "the value is never in the workflow"
    secret_name = workflow["metadata"]["annotations"][SECRET_ANNOTATION]
    [secret] = [s for s in argo.secrets() if s["metadata"]["name"] == secret_name]
    assert base64.b64decode(secret["data"]["LLMOPS_JOB_TOKEN"]).decode() == token
    assert secret["metadata"]["labels"]["llmops.dev/workflow"] == workflow["metadata"]["name"]
    ended = _ended(provider, submitted.external_id)
    assert ended.state is PipelineState.SUCCEEDED, ended.message
    assert not [s for s in argo.secrets() if s["metadata"]["name"] == secret_name], (
        "the Secret is deleted once the run has ended"
    )
    [log] = provider.logs(ended.external_id)
    assert "token=[redacted]" in log.text
    assert token not in log.text


def test_a_redelivered_submission_gives_the_secret_its_fresh_token(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    spec = _spec(_stage("wait", "sleep 60"), idempotency_key="pipeline-fresh-token")
    first = provider.submit(spec.model_copy(update={"secret_env": {"T": _secret("first-one")}}))

    again = provider.submit(spec.model_copy(update={"secret_env": {"T": _secret("second-one")}}))

    assert again.external_id == first.external_id
    [secret] = argo.secrets()
    assert base64.b64decode(secret["data"]["T"]).decode() == "second-one"
    provider.cancel(first.external_id)


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def test_a_secret_environment_without_kubernetes_access_is_refused_saying_what_to_set(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider(kubernetes_api_url=None, kubernetes_token=None)

    with pytest.raises(Conflict, match="LLMOPS_ARGO__KUBERNETES_API_URL"):
        provider.submit(_spec(_stage("only"), secret_env={"LLMOPS_JOB_TOKEN": "x" * 10}))

    assert argo.workflows() == []


def test_a_run_whose_secret_is_gone_cannot_be_retried(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()
    spec = _spec(_stage("fails", "exit 2"), secret_env={"T": _secret("value-123456")})
    ended = _ended(provider, provider.submit(spec).external_id)
    assert ended.state is PipelineState.FAILED

    with pytest.raises(Conflict, match="submit the pipeline again"):
        provider.retry(ended.external_id)


def test_an_environment_name_kubernetes_refuses_is_invalid_before_argo_is_asked(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider()

    with pytest.raises(InvalidRequest):
        provider.submit(_spec(_stage("a", env={"NOT OK": "1"})))

    assert argo.requests == []


def test_stages_link_to_their_nodes_in_the_argo_ui(make_provider: MakeProvider) -> None:
    provider = make_provider(ui_url="https://argo.example.com/")
    ended = _ended(provider, provider.submit(_spec(_stage("only"))).external_id)
    name = _workflow_name(ended.external_id)

    assert ended.ui_url == f"https://argo.example.com/workflows/argo/{name}"
    assert provider.ui_url(ended.external_id) == ended.ui_url
    stage = _stage_of(ended, "only")
    assert stage.ui_url is not None
    assert stage.ui_url.startswith(f"{ended.ui_url}?nodeId={name}-")


def test_every_request_keeps_to_the_calls_deadline(
    make_provider: MakeProvider, argo: ArgoServerDouble
) -> None:
    provider = make_provider(request_timeout_seconds=30)
    argo.slow(2)

    began = time.monotonic()
    with deadline(0.3), pytest.raises(IntegrationUnavailable):
        provider.status("argo/whatever")

    assert time.monotonic() - began < 1.5, "the client gave up at the deadline, not later"
