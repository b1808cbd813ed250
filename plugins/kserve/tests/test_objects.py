"""What the plugin writes to KServe and how it reads KServe's status back, object by
object (the double's and the API's end-to-end checks are in the other files)."""

from __future__ import annotations

from typing import Any

import pytest

from llmops.capabilities.serving import (
    AutoscalingSpec,
    CanarySpec,
    DeploymentSpec,
    DeploymentState,
    ResourceSpec,
    RolloutState,
    TrafficSplit,
)
from llmops.errors import InvalidRequest
from llmops_kserve import objects

PLACEMENT = objects.Placement(
    storage_uri_prefixes={"/srv/models/": "pvc://llmops-models/"},
    runtimes=["kserve-huggingfaceserver", "vllm"],
)


def _spec(**fields: Any) -> DeploymentSpec:
    values: dict[str, Any] = {
        "endpoint_id": "e" * 32,
        "name": "chat",
        "model_uri": "/srv/models/a",
        "idempotency_key": "endpoint-" + "e" * 32,
    }
    values.update(fields)
    return DeploymentSpec.model_validate(values)


def test_a_local_model_folder_is_read_from_the_volume_kserve_mounts() -> None:
    assert objects.storage_uri("/srv/models/a/v1", PLACEMENT) == "pvc://llmops-models/a/v1"
    assert objects.storage_uri("file:///srv/models/b", PLACEMENT) == "pvc://llmops-models/b"
    assert objects.storage_uri("s3://bucket/model", PLACEMENT) == "s3://bucket/model"


@pytest.mark.parametrize("uri", ["/home/me/model", "file:///tmp/x", "ftp://host/model"])
def test_a_model_kserve_cannot_read_is_refused_with_the_way_out(uri: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        objects.storage_uri(uri, PLACEMENT)

    assert refused.value.extensions["parameter"] == "modelUri"
    assert "KServe cannot read" in refused.value.detail


def test_the_object_carries_labels_annotations_and_the_predictor_settings() -> None:
    spec = _spec(
        autoscaling=AutoscalingSpec(min_replicas=0, max_replicas=4, scale_metric="rps",
                                    scale_target=20),
        resources=ResourceSpec(cpu="2", memory="8Gi", gpus=1),
        runtime="vllm",
        env={"HF_HUB_OFFLINE": "1"},
        options={"served_model_name": "gpt", "args": ["--dtype=float16"]},
    )  # fmt: skip

    body = objects.inference_service(spec, PLACEMENT)

    assert body["apiVersion"] == "serving.kserve.io/v1beta1"
    assert body["kind"] == "InferenceService"
    assert body["metadata"]["name"] == "chat"
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "llmops",
        "llmops.dev/endpoint-id": "e" * 32,
        "llmops.dev/idempotency-key": "endpoint-" + "e" * 32,
    }
    assert objects.record(body) == spec, "the annotations hold the platform's record"
    predictor = body["spec"]["predictor"]
    assert predictor["minReplicas"] == 0
    assert predictor["maxReplicas"] == 4
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("rps", 20)
    assert "canaryTrafficPercent" not in predictor
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "huggingface"}
    assert model["runtime"] == "vllm"
    assert model["storageUri"] == "pvc://llmops-models/a"
    assert model["args"] == ["--model_name=gpt", "--dtype=float16"]
    assert model["env"] == [{"name": "HF_HUB_OFFLINE", "value": "1"}]
    assert model["resources"] == {
        "requests": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"},
        "limits": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"},
    }


def test_a_name_kserve_refuses_becomes_a_generated_name_and_long_keys_a_digest() -> None:
    spec = _spec(name="7b-chat", idempotency_key="k" * 100)

    body = objects.inference_service(spec, PLACEMENT)

    assert "name" not in body["metadata"]
    assert body["metadata"]["generateName"] == "ep-7b-chat-"
    label = body["metadata"]["labels"]["llmops.dev/idempotency-key"]
    assert len(label) <= 63
    assert label != "k" * 100
    assert body["metadata"]["annotations"]["llmops.dev/idempotency-key"] == "k" * 100
    assert objects.key_selector("k" * 100).endswith(label)


def test_ongoing_requests_become_a_concurrency_target() -> None:
    spec = _spec(autoscaling=AutoscalingSpec(max_replicas=3, target_ongoing_requests=2.5))

    predictor = objects.predictor(spec, PLACEMENT)

    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 3)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"runtime": "triton"}, "runtime"),
        ({"options": {"replicas": 2}}, "options"),
        ({"options": {"args": "--dtype=float16"}}, "options.args"),
        ({"model_format": "caffe"}, "options.model_format"),
    ],
)
def test_settings_kserve_would_not_take_are_refused_before_anything_is_written(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        objects.inference_service(_spec(**fields), PLACEMENT)

    assert refused.value.extensions["parameter"] == param


def _object(spec: DeploymentSpec, status: dict[str, Any], **predictor: Any) -> dict[str, Any]:
    body = objects.inference_service(spec, PLACEMENT)
    body["metadata"].update(generation=2, resourceVersion="7")
    body["spec"]["predictor"].update(predictor)
    body["status"] = {"observedGeneration": 2, "url": "http://chat.example.com", **status}
    return body


def _ready(**extra: Any) -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": "True"}], **extra}


def _revisions(latest: str, ready: str, rolled: str, traffic: list[Any]) -> dict[str, Any]:
    return {
        "components": {
            "predictor": {
                "latestCreatedRevision": latest,
                "latestReadyRevision": ready,
                "latestRolledoutRevision": rolled,
                "traffic": traffic,
            }
        }
    }


def test_ready_with_all_traffic_on_the_newest_revision_is_stable() -> None:
    spec = _spec()
    traffic = [{"revisionName": "chat-predictor-00001", "percent": 100, "latestRevision": True}]
    status = _ready(**_revisions("chat-predictor-00001", "chat-predictor-00001",
                                 "chat-predictor-00001", traffic))  # fmt: skip

    seen = objects.observe(_object(spec, status), spec)

    assert (seen.state, seen.ready) == (DeploymentState.READY, True)
    assert seen.rollout.state is RolloutState.STABLE
    assert seen.traffic == [TrafficSplit(tag="stable", model_uri="/srv/models/a", percent=100)]


def test_ready_while_a_new_revision_rolls_out_is_not_hidden() -> None:
    """kserve#4626: KServe may say Ready while the newest revision is still coming."""
    spec = _spec(model_uri="/srv/models/b")
    traffic = [{"revisionName": "chat-predictor-00001", "percent": 100, "latestRevision": False}]
    body = _object(spec, _ready(**_revisions("chat-predictor-00002", "chat-predictor-00001",
                                             "chat-predictor-00001", traffic)))  # fmt: skip
    body["metadata"]["annotations"]["llmops.dev/previous-model-uri"] = "/srv/models/a"

    seen = objects.observe(body, spec)

    assert seen.state is DeploymentState.UPDATING
    assert seen.ready, "the old revision still answers"
    assert seen.rollout.state is RolloutState.PROGRESSING
    assert seen.rollout.latest_revision == "chat-predictor-00002"
    assert seen.traffic == [TrafficSplit(tag="stable", model_uri="/srv/models/a", percent=100)]


def test_a_generation_the_controller_has_not_seen_is_in_progress() -> None:
    spec = _spec()
    body = _object(spec, _ready())
    body["metadata"]["generation"] = 3

    seen = objects.observe(body, spec)

    assert seen.rollout.state is RolloutState.PROGRESSING
    assert "generation 3" in seen.message


def test_a_canary_splits_traffic_between_the_stable_and_the_candidate_model() -> None:
    spec = _spec(canary=CanarySpec(model_uri="/srv/models/b", traffic_percent=20))
    traffic = [
        {"revisionName": "chat-predictor-00002", "percent": 20, "latestRevision": True,
         "tag": "latest"},
        {"revisionName": "chat-predictor-00001", "percent": 80, "latestRevision": False,
         "tag": "prev"},
    ]  # fmt: skip
    status = _ready(**_revisions("chat-predictor-00002", "chat-predictor-00002",
                                 "chat-predictor-00001", traffic))  # fmt: skip

    seen = objects.observe(_object(spec, status, canaryTrafficPercent=20), spec)

    assert seen.state is DeploymentState.READY
    assert seen.rollout.state is RolloutState.CANARY
    assert seen.rollout.stable_revision == "chat-predictor-00001"
    assert sorted(seen.traffic, key=lambda s: s.tag) == [
        TrafficSplit(tag="canary", model_uri="/srv/models/b", percent=20),
        TrafficSplit(tag="stable", model_uri="/srv/models/a", percent=80),
    ]


def test_a_failed_new_revision_is_failed_while_the_old_one_still_serves() -> None:
    spec = _spec(model_uri="/srv/models/b")
    traffic = [{"revisionName": "chat-predictor-00001", "percent": 100, "latestRevision": False}]
    status = {
        "conditions": [
            {"type": "LatestDeploymentReady", "status": "False", "reason": "ContainerCrashLooping",
             "message": "back-off restarting"},
            {"type": "Ready", "status": "False", "reason": "ContainerCrashLooping"},
        ],
        **_revisions("chat-predictor-00002", "chat-predictor-00001", "chat-predictor-00001",
                     traffic),
    }  # fmt: skip

    seen = objects.observe(_object(spec, status), spec)

    assert seen.state is DeploymentState.FAILED
    assert seen.ready, "the previous revision still answers"
    assert seen.rollout.state is RolloutState.FAILED
    assert "ContainerCrashLooping" in seen.message
    assert "chat-predictor-00001 still serves" in seen.message


def test_a_model_that_failed_to_load_on_the_first_deploy_is_failed() -> None:
    spec = _spec()
    status = {
        "conditions": [{"type": "Ready", "status": "False", "reason": "ModelLoadFailed"}],
        "modelStatus": {
            "transitionStatus": "BlockedByFailedLoad",
            "states": {"activeModelState": "FailedToLoad", "targetModelState": "Loaded"},
            "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no config.json"},
        },
    }

    seen = objects.observe(_object(spec, status), spec)

    assert (seen.state, seen.ready) == (DeploymentState.FAILED, False)
    assert "no config.json" in seen.message


def test_an_object_being_deleted_is_deleting() -> None:
    spec = _spec()
    body = _object(spec, _ready())
    body["metadata"]["deletionTimestamp"] = "2026-11-26T10:00:00Z"

    assert objects.observe(body, spec).state is DeploymentState.DELETING


def test_an_object_without_llmops_labels_has_no_record() -> None:
    body = objects.inference_service(_spec(), PLACEMENT)
    del body["metadata"]["labels"]["app.kubernetes.io/managed-by"]

    assert objects.record(body) is None


def _canaried(**predictor: Any) -> tuple[dict[str, Any], DeploymentSpec]:
    spec = _spec(canary=CanarySpec(model_uri="/srv/models/b", traffic_percent=20))
    body = objects.inference_service(spec, PLACEMENT)
    body["spec"]["predictor"]["model"]["storageUri"] = "pvc://llmops-models/b"
    body["spec"]["predictor"].update(predictor)
    return body, spec


def test_a_candidate_named_without_a_traffic_share_is_read_as_promoted() -> None:
    body, spec = _canaried()

    record, previous = objects.effective(body, spec, PLACEMENT)

    assert (record.model_uri, record.canary) == ("/srv/models/b", None)
    assert previous == "/srv/models/a", "the old revision serves what was stable"


def test_a_changed_traffic_share_is_read_from_the_object() -> None:
    body, spec = _canaried(canaryTrafficPercent=50)

    record, _ = objects.effective(body, spec, PLACEMENT)

    assert record.canary == CanarySpec(model_uri="/srv/models/b", traffic_percent=50)
    assert record.model_uri == "/srv/models/a"


def test_the_stable_model_named_at_zero_percent_is_a_rolled_back_canary() -> None:
    body, spec = _canaried(canaryTrafficPercent=0)
    body["spec"]["predictor"]["model"]["storageUri"] = "pvc://llmops-models/a"

    record, _ = objects.effective(body, spec, PLACEMENT)

    assert (record.model_uri, record.canary) == ("/srv/models/a", None)


def test_a_canary_given_at_creation_waits_while_the_stable_model_is_named() -> None:
    body, spec = _canaried()
    body["spec"]["predictor"]["model"]["storageUri"] = "pvc://llmops-models/a"

    record, _ = objects.effective(body, spec, PLACEMENT)

    assert record == spec, "the canary is still due"
