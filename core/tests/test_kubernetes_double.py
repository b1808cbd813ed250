"""The Kubernetes API double (llmops.testing.kubernetes) behaves like kube-apiserver with
KServe installed, as the official ``kubernetes`` client sees it, and its controller serves
real tiny models the way KServe's serverless mode does."""

from __future__ import annotations

import functools
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import urllib3
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration, CoreV1Api, CustomObjectsApi, VersionApi
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from openai import OpenAI

from llmops.testing.doubles import Fault
from llmops.testing.kubernetes import FINALIZER, REVISION_HEADER, KubernetesApiDouble
from llmops.testing.models import tiny_causal_lm
from llmops.testing.upstream import (
    ENV_VAR,
    UpstreamSchemasMissing,
    upstream_schema,
    upstream_schemas_dir,
)
from llmops.testing.waiting import wait_for

TOKEN = "double-token"
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
JSON_PATCH = "application/json-patch+json"
FIRST, SECOND = "pvc://models/first", "pvc://models/second"
HI = [{"role": "user", "content": "Hi"}]


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder the double mounts as the PVC ``models``: two tiny real GPT-2s."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a tiny model decodes faster on one thread
        root = tmp_path_factory.mktemp("pvc")
        tiny_causal_lm(root / "first", seed=0)
        tiny_causal_lm(root / "second", seed=1)
        try:
            yield root
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cluster_double(models: Path) -> Iterator[KubernetesApiDouble]:
    """One double for the module (double_fixture cannot take the models folder)."""
    with KubernetesApiDouble(
        namespaces=("default", "serving"), token=TOKEN, storage={"models": models}
    ) as double:
        yield double


@pytest.fixture
def cluster(cluster_double: KubernetesApiDouble) -> Iterator[KubernetesApiDouble]:
    """The module's double, emptied first; no handler or controller pass may crash."""
    cluster_double.reset()
    yield cluster_double
    cluster_double.check_errors()


def _client(url: str, token: str | None) -> ApiClient:
    configuration = Configuration(host=url)
    if token is not None:
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    configuration.retries = 0
    return ApiClient(configuration)


@pytest.fixture
def api(cluster: KubernetesApiDouble) -> Iterator[ApiClient]:
    with _client(cluster.url, TOKEN) as client:
        yield client


@pytest.fixture
def isvcs(api: ApiClient) -> CustomObjectsApi:
    return CustomObjectsApi(api)


@pytest.fixture
def idle(cluster: KubernetesApiDouble) -> KubernetesApiDouble:
    """Revisions never start: for tests of the API alone (no model is loaded)."""
    cluster.set_ready_delay(3600)
    return cluster


def isvc(name: str, uri: str = FIRST, **predictor: Any) -> dict[str, Any]:
    model = {
        "modelFormat": {"name": "huggingface"},
        "storageUri": uri,
        "args": ["--model_name=tiny"],
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {"model": model, **predictor}},
    }


def read_modify_replace(
    isvcs: CustomObjectsApi, name: str, change: Callable[[dict[str, Any]], None]
) -> Any:
    """Get, change and replace an object, again on 409: the controller writes the
    finalizer and status meanwhile, and a client of a cluster retries the same way."""

    def attempt() -> Any:
        current = get(isvcs, name)
        change(current)
        try:
            return isvcs.replace_namespaced_custom_object(
                GROUP, VERSION, "default", PLURAL, name, current
            )
        except ApiException as error:
            if error.status != 409:
                raise
            return None

    return wait_for(attempt, what=f"a replace of {name} without a conflict")


def create(isvcs: CustomObjectsApi, body: dict[str, Any], namespace: str = "default") -> Any:
    return isvcs.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, field_validation="Strict"
    )


def get(isvcs: CustomObjectsApi, name: str, namespace: str = "default") -> Any:
    return isvcs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def patch(isvcs: CustomObjectsApi, name: str, body: Any, **options: Any) -> Any:
    return isvcs.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, name, body, **options
    )


def refused(call: Callable[[], Any], status: int) -> dict[str, Any]:
    """The Kubernetes Status the call was refused with."""
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == status, caught.value.body
    body: dict[str, Any] = json.loads(caught.value.body)
    assert (body["kind"], body["apiVersion"]) == ("Status", "v1")
    assert (body["status"], body["code"]) == ("Failure", status)
    return body


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def reconciled(
    isvcs: CustomObjectsApi,
    name: str,
    predicate: Callable[[dict[str, Any]], bool] = lambda obj: True,
    *,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """The object, read through the API, once KServe has reconciled its generation and
    ``predicate`` holds (the way a plugin has to wait)."""

    def seen() -> dict[str, Any] | None:
        obj: dict[str, Any] = get(isvcs, name)
        status = obj.get("status") or {}
        if status.get("observedGeneration") != obj["metadata"]["generation"]:
            return None
        return obj if predicate(obj) else None

    found = wait_for(seen, timeout=timeout, what=f"InferenceService {name} to be reconciled")
    assert found is not None
    return found


def ready(obj: dict[str, Any]) -> bool:
    return conditions(obj).get("Ready", {}).get("status") == "True"


def served_by(url: str, count: int = 10) -> list[str]:
    """The revision that answered each of ``count`` OpenAI model listings."""
    with httpx.Client(base_url=url, timeout=10) as client:
        answers = [client.get("/openai/v1/models") for _ in range(count)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return [a.headers[REVISION_HEADER] for a in answers]


# -- discovery and authentication ----------------------------------------------------------


def test_discovery_finds_inferenceservices_through_the_dynamic_client(
    api: ApiClient, tmp_path: Path
) -> None:
    assert VersionApi(api).get_code().git_version.startswith("v1.")
    dynamic = DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    resource = dynamic.resources.get(api_version=f"{GROUP}/{VERSION}", kind="InferenceService")
    assert (resource.name, resource.namespaced, resource.short_names) == (PLURAL, True, ["isvc"])
    assert "status" in resource.subresources
    assert dynamic.get(resource, namespace="default").items == []
    assert CoreV1Api(api).read_namespace("serving").metadata.name == "serving"
    missing = refused(
        lambda: CustomObjectsApi(api).list_namespaced_custom_object(
            "nothing.example.com", "v1", "default", "things"
        ),
        404,
    )
    assert missing["message"] == "the server could not find the requested resource"


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_requests_without_the_right_token_are_unauthorized(
    cluster: KubernetesApiDouble, token: str | None
) -> None:
    with _client(cluster.url, token) as client:
        for call in (
            lambda: CustomObjectsApi(client).list_namespaced_custom_object(
                GROUP, VERSION, "default", PLURAL
            ),
            lambda: VersionApi(client).get_code(),
        ):
            body = refused(call, 401)
            assert (body["reason"], body["message"]) == ("Unauthorized", "Unauthorized")


# -- the REST verbs ------------------------------------------------------------------------


def test_create_answers_201_with_the_stored_object(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    body = isvc("first")
    body["status"] = {"url": "http://ignored"}
    created, code, _ = isvcs.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, "default", PLURAL, body
    )
    assert code == 201
    meta = created["metadata"]
    assert (meta["name"], meta["namespace"], meta["generation"]) == ("first", "default", 1)
    assert meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")
    assert "status" not in created  # the status subresource: create ignores it
    second = create(isvcs, isvc("second"))
    assert int(second["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert idle.get_object("first") == get(isvcs, "first")


def test_generate_name_appends_five_random_characters(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    body = isvc("ignored")
    body["metadata"] = {"generateName": "gen-"}
    name = create(isvcs, body)["metadata"]["name"]
    assert name.startswith("gen-")
    assert len(name) == len("gen-") + 5
    assert set(name[4:]) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert get(isvcs, name)["metadata"]["name"] == name


def test_create_refuses_a_taken_name_and_an_unknown_namespace(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    create(isvcs, isvc("taken"))
    taken = refused(lambda: create(isvcs, isvc("taken")), 409)
    assert taken["reason"] == "AlreadyExists"
    assert taken["message"] == 'inferenceservices.serving.kserve.io "taken" already exists'
    assert taken["details"] == {"name": "taken", "group": GROUP, "kind": PLURAL}
    nowhere = refused(lambda: create(isvcs, isvc("x"), namespace="nowhere"), 404)
    assert (nowhere["reason"], nowhere["message"]) == ("NotFound", 'namespaces "nowhere" not found')


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=chat", ["a", "b"]),
        ("app==chat", ["a", "b"]),
        ("app!=chat", ["c", "d"]),
        ("app in (chat,embed)", ["a", "b", "c"]),
        ("app notin (chat)", ["c", "d"]),
        ("tier", ["a", "c"]),
        ("!tier", ["b", "d"]),
        ("app=chat,tier=web", ["a"]),
        ("app=chat, !tier", ["b"]),
        ("", ["a", "b", "c", "d"]),
    ],
)
def test_list_filters_by_every_label_selector_form(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi, selector: str, expected: list[str]
) -> None:
    for name, labels in {
        "a": {"app": "chat", "tier": "web"},
        "b": {"app": "chat"},
        "c": {"app": "embed", "tier": "batch"},
        "d": {},
    }.items():
        body = isvc(name)
        body["metadata"]["labels"] = labels
        create(isvcs, body)
    found = isvcs.list_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, label_selector=selector
    )
    assert found["kind"] == "InferenceServiceList"
    assert int(found["metadata"]["resourceVersion"]) > 0
    assert [item["metadata"]["name"] for item in found["items"]] == expected


def test_list_spans_namespaces_and_pages(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    create(isvcs, isvc("here"))
    create(isvcs, isvc("there"), namespace="serving")
    everywhere = isvcs.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]] == [
        ("default", "here"),
        ("serving", "there"),
    ]
    page = isvcs.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1)
    assert len(page["items"]) == 1
    assert page["metadata"]["remainingItemCount"] == 1
    rest = isvcs.list_cluster_custom_object(
        GROUP, VERSION, PLURAL, limit=1, _continue=page["metadata"]["continue"]
    )
    assert [i["metadata"]["name"] for i in rest["items"]] == ["there"]
    assert "continue" not in rest["metadata"]


@pytest.mark.parametrize(
    "selector", ["app in (chat", "app in chat", "app=chat=x", "=chat", "a,", "app=not ok!"]
)
def test_a_malformed_label_selector_is_a_bad_request(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi, selector: str
) -> None:
    body = refused(
        lambda: isvcs.list_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, label_selector=selector
        ),
        400,
    )
    assert body["reason"] == "BadRequest"
    assert body["message"].startswith("unable to parse requirement")


def test_patches_move_generation_only_for_spec_changes(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    created = create(isvcs, isvc("patched"))
    labelled = patch(isvcs, "patched", {"metadata": {"labels": {"team": "a"}}})
    assert labelled["metadata"]["generation"] == 1
    assert int(labelled["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    merged = patch(isvcs, "patched", {"spec": {"predictor": {"minReplicas": 1, "maxReplicas": 3}}})
    assert merged["metadata"]["generation"] == 2
    assert merged["spec"]["predictor"]["maxReplicas"] == 3
    removed = patch(isvcs, "patched", {"spec": {"predictor": {"maxReplicas": None}}})
    assert "maxReplicas" not in removed["spec"]["predictor"]
    operations = [
        {"op": "test", "path": "/spec/predictor/minReplicas", "value": 1},
        {"op": "replace", "path": "/spec/predictor/model/storageUri", "value": SECOND},
        {"op": "add", "path": "/spec/predictor/model/args/-", "value": "--dtype=float32"},
        {"op": "copy", "from": "/metadata/labels/team", "path": "/metadata/labels/owner"},
        {"op": "move", "from": "/metadata/labels/owner", "path": "/metadata/labels/lead"},
        {"op": "remove", "path": "/spec/predictor/minReplicas"},
    ]
    jsoned = patch(isvcs, "patched", operations, _content_type=JSON_PATCH)
    assert jsoned["metadata"]["generation"] == 4
    assert jsoned["spec"]["predictor"]["model"]["storageUri"] == SECOND
    assert jsoned["spec"]["predictor"]["model"]["args"][-1] == "--dtype=float32"
    assert jsoned["metadata"]["labels"] == {"team": "a", "lead": "a"}
    unchanged = patch(isvcs, "patched", {"metadata": {"labels": {"team": "a"}}})
    assert (
        unchanged["metadata"]["resourceVersion"]
        == get(isvcs, "patched")["metadata"]["resourceVersion"]
    )


def test_patch_content_types_are_handled_as_for_a_custom_resource(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    create(isvcs, isvc("typed"))
    failing = [{"op": "test", "path": "/spec/predictor/model/storageUri", "value": SECOND}]
    body = refused(lambda: patch(isvcs, "typed", failing, _content_type=JSON_PATCH), 422)
    assert body["message"] == "the server rejected our request due to an error in our request"
    assert "test failed" in body["details"]["causes"][0]["message"]
    # client 37 sends a list as a merge patch unless told otherwise: a real server refuses
    listed = refused(lambda: patch(isvcs, "typed", [{"op": "remove", "path": "/spec"}]), 422)
    assert listed["details"]["causes"][0]["field"] == "patch"
    # with a dict body, the client turns json-patch into a strategic merge patch: 415
    for content_type in (JSON_PATCH, "application/apply-patch+yaml"):
        sent = functools.partial(patch, isvcs, "typed", {"spec": {}}, _content_type=content_type)
        media = refused(sent, 415)
        assert media["reason"] == "UnsupportedMediaType"
    assert get(isvcs, "typed")["metadata"]["generation"] == 1


def test_a_stale_resource_version_is_a_conflict(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    old = create(isvcs, isvc("raced"))
    patch(isvcs, "raced", {"metadata": {"labels": {"v": "2"}}})
    old["spec"]["predictor"]["minReplicas"] = 2
    conflict = refused(
        lambda: isvcs.replace_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "raced", old
        ),
        409,
    )
    assert conflict["reason"] == "Conflict"
    assert conflict["message"] == (
        'Operation cannot be fulfilled on inferenceservices.serving.kserve.io "raced": the '
        "object has been modified; please apply your changes to the latest version and try again"
    )
    stale = {"metadata": {"resourceVersion": old["metadata"]["resourceVersion"]}}
    refused(lambda: patch(isvcs, "raced", stale), 409)
    unversioned = get(isvcs, "raced")
    del unversioned["metadata"]["resourceVersion"]
    required = refused(
        lambda: isvcs.replace_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "raced", unversioned
        ),
        422,
    )
    assert required["details"]["causes"][0]["field"] == "metadata.resourceVersion"
    replaced = read_modify_replace(
        isvcs, "raced", lambda obj: obj["spec"]["predictor"].update(minReplicas=2)
    )
    assert replaced["metadata"]["generation"] == 2


def test_status_is_written_only_through_the_status_subresource(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    create(isvcs, isvc("statused"))
    through_main = read_modify_replace(
        isvcs, "statused", lambda obj: obj.update(status={"url": "http://elsewhere"})
    )
    assert through_main.get("status", {}).get("url") != "http://elsewhere"
    answer = isvcs.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "statused",
        {"status": {"url": "http://elsewhere"}, "spec": {"predictor": {"minReplicas": 5}}},
    )
    assert answer["status"]["url"] == "http://elsewhere"
    assert "minReplicas" not in answer["spec"]["predictor"]
    assert answer["metadata"]["generation"] == 1
    assert int(answer["metadata"]["resourceVersion"]) > int(
        through_main["metadata"]["resourceVersion"]
    )


def test_delete_marks_the_object_then_the_controller_removes_it(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    create(isvcs, isvc("doomed"))
    wait_for(lambda: FINALIZER in get(isvcs, "doomed")["metadata"].get("finalizers", []))
    answer = isvcs.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "doomed")
    assert answer["metadata"]["deletionTimestamp"]
    meanwhile = get(isvcs, "doomed")
    assert meanwhile["metadata"]["deletionTimestamp"] == answer["metadata"]["deletionTimestamp"]
    recreated = refused(lambda: create(isvcs, isvc("doomed")), 409)
    assert recreated["message"].startswith("object is being deleted")
    wait_for(lambda: idle.get_object("doomed") is None, what="the finalizer to be removed")
    gone = refused(lambda: get(isvcs, "doomed"), 404)
    assert gone["reason"] == "NotFound"
    assert gone["details"] == {"name": "doomed", "group": GROUP, "kind": PLURAL}
    refused(
        lambda: isvcs.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "doomed"),
        404,
    )
    again = create(isvcs, isvc("doomed"))
    assert again["metadata"]["uid"] != answer["metadata"]["uid"]


def test_faults_can_be_injected_on_one_verb_of_one_path(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    create(isvcs, isvc("faulty"))
    idle.inject(Fault.status(500, times=1), method="GET", route=idle.ITEM_ROUTE)
    with pytest.raises(ApiException) as caught:
        get(isvcs, "faulty")
    assert caught.value.status == 500
    assert get(isvcs, "faulty")["metadata"]["name"] == "faulty"


# -- admission -----------------------------------------------------------------------------


def test_an_unknown_field_is_refused_and_nothing_is_stored(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    body = isvc("typo", minReplicas=1)
    body["spec"]["predictor"]["minReplica"] = 1
    body["spec"]["predictor"]["model"]["storageURI"] = FIRST
    answer = refused(lambda: create(isvcs, body), 400)
    assert answer["reason"] == "BadRequest"
    assert answer["message"] == (
        'strict decoding error: unknown field "spec.predictor.minReplica", '
        'unknown field "spec.predictor.model.storageURI"'
    )
    assert idle.objects() == []
    created = isvcs.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, body, field_validation="Ignore"
    )
    assert "minReplica" not in created["spec"]["predictor"]  # dropped, as a server does
    typo = {"spec": {"predictor": {"model": {"storgeUri": SECOND}}}}
    strict = refused(lambda: patch(isvcs, "typo", typo, field_validation="Strict"), 400)
    assert (
        strict["message"] == 'strict decoding error: unknown field "spec.predictor.model.storgeUri"'
    )
    assert get(isvcs, "typo")["metadata"]["generation"] == 1


@pytest.mark.parametrize(
    ("change", "status", "reason", "wording"),
    [
        (lambda b: b["spec"]["predictor"].update(minReplicas="two"), 422, "Invalid",
         'spec.predictor.minReplicas: Invalid value: "string": spec.predictor.minReplicas in '
         'body must be of type integer: "string"'),
        (lambda b: b["spec"]["predictor"]["model"]["modelFormat"].pop("name"), 422, "Invalid",
         "spec.predictor.model.modelFormat.name: Required value"),
        (lambda b: b["metadata"].update(name="Bad_Name"), 422, "Invalid",
         'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'),
        (lambda b: b["metadata"].update(labels={"app": "not ok!"}), 422, "Invalid",
         'metadata.labels: Invalid value: "not ok!": a valid label must be'),
        (lambda b: b["metadata"].update(annotations={"note": 3}), 400, "BadRequest",
         "cannot unmarshal integer into Go struct field ObjectMeta.metadata.annotations"),
        (lambda b: b.update(kind="Deployment"), 422, "Invalid",
         'kind: Invalid value: "Deployment": must be InferenceService'),
        (lambda b: b.update(apiVersion="serving.kserve.io/v1alpha1"), 400, "BadRequest",
         "the API version in the data (serving.kserve.io/v1alpha1) does not match"),
        (lambda b: b["metadata"].update(name="1st-model"), 403, "Forbidden",
         'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the '
         'request: the InferenceService "1st-model" is invalid'),
        (lambda b: b["spec"]["predictor"].update(minReplicas=3, maxReplicas=2), 403, "Forbidden",
         "'MinReplicas' cannot be greater than MaxReplicas"),
        (lambda b: b["spec"]["predictor"].update(canaryTrafficPercent=150), 403, "Forbidden",
         "canaryTrafficPercent must be between 0 and 100"),
        (lambda b: b["spec"]["predictor"].update(sklearn={"storageUri": FIRST}), 403, "Forbidden",
         "exactly one of [SKLearn, XGBoost"),
    ],
)  # fmt: skip
def test_invalid_objects_are_refused_with_kubernetes_status_bodies(
    idle: KubernetesApiDouble,
    isvcs: CustomObjectsApi,
    change: Callable[[dict[str, Any]], Any],
    status: int,
    reason: str,
    wording: str,
) -> None:
    body = isvc("checked")
    change(body)
    answer = refused(lambda: create(isvcs, body), status)
    assert answer["reason"] == reason
    assert wording in answer["message"]
    if status == 422 and "is invalid" in answer["message"]:
        cause = answer["details"]["causes"][0]
        assert answer["message"].startswith('InferenceService.serving.kserve.io "')
        assert wording.startswith(cause["field"] + ": ")
    assert idle.objects() == []


def test_a_verb_a_path_does_not_take_is_not_allowed(
    idle: KubernetesApiDouble, api: ApiClient
) -> None:
    create(CustomObjectsApi(api), isvc("only"))
    url = f"{idle.url}/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}/only"
    answer = httpx.post(url, headers={"Authorization": f"Bearer {TOKEN}"}, json={})
    assert answer.status_code == 405
    assert answer.json()["reason"] == "MethodNotAllowed"


# -- the controller and the ingress -------------------------------------------------------


def test_controller_takes_an_inferenceservice_to_ready_and_serves_chat(
    cluster: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    create(isvcs, isvc("chat"))
    obj = reconciled(isvcs, "chat", ready)
    status = obj["status"]
    assert all(c["status"] == "True" for c in status["conditions"])
    assert {c["type"] for c in status["conditions"]} >= {
        "IngressReady", "LatestDeploymentReady", "PredictorConfigurationReady",
        "PredictorReady", "PredictorRouteReady", "Ready",
    }  # fmt: skip
    assert conditions(obj)["PredictorRouteReady"]["severity"] == "Info"
    assert "severity" not in conditions(obj)["Ready"]
    predictor = status["components"]["predictor"]
    assert (
        predictor["latestCreatedRevision"]
        == predictor["latestReadyRevision"]
        == "chat-predictor-00001"
    )
    assert predictor["latestRolledoutRevision"] == "chat-predictor-00001"
    assert predictor["traffic"] == [
        {"revisionName": "chat-predictor-00001", "latestRevision": True, "percent": 100}
    ]
    assert status["address"]["url"] == "http://chat.default.svc.cluster.local"
    assert status["modelStatus"]["states"] == {
        "activeModelState": "Loaded",
        "targetModelState": "Loaded",
    }
    assert status["modelStatus"]["transitionStatus"] == "UpToDate"
    assert FINALIZER in obj["metadata"]["finalizers"]
    url = status["url"]
    with OpenAI(base_url=f"{url}/openai/v1", api_key="unused", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="tiny", messages=HI, max_tokens=4, temperature=0,
            extra_body={"ignore_eos": True},
        )  # fmt: skip
        assert raw.headers[REVISION_HEADER] == "chat-predictor-00001"
        usage = raw.parse().usage
        assert usage is not None
        assert usage.completion_tokens == 4
        stream = client.chat.completions.create(
            model="tiny", messages=HI, max_tokens=4, temperature=0, stream=True,
            extra_body={"ignore_eos": True},
        )  # fmt: skip
        chunks = [chunk for chunk in stream]
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4
        assert [m.id for m in client.models.list()] == ["tiny"]
    assert httpx.get(f"{url}/v1/models/tiny").json() == {"name": "tiny", "ready": True}
    assert httpx.get(f"{url}/v1/models/other").status_code == 404
    assert httpx.get(f"{url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{url}/nothing").status_code == 404
    assert (
        httpx.get(f"{url}/v2/health/live", headers={"Host": "other.example.com"}).status_code == 404
    )


def test_canary_splits_traffic_exactly_and_promotion_moves_all_of_it(
    cluster: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    create(isvcs, isvc("canary"))
    url = reconciled(isvcs, "canary", ready)["status"]["url"]
    patch(
        isvcs,
        "canary",
        {"spec": {"predictor": {"canaryTrafficPercent": 20, "model": {"storageUri": SECOND}}}},
    )
    split = reconciled(
        isvcs,
        "canary",
        lambda o: (
            ready(o)
            and o["status"]["components"]["predictor"].get("latestReadyRevision")
            == "canary-predictor-00002"
        ),
    )
    predictor = split["status"]["components"]["predictor"]
    assert predictor["traffic"] == [
        {"revisionName": "canary-predictor-00002", "latestRevision": True, "percent": 20},
        {"revisionName": "canary-predictor-00001", "latestRevision": False, "percent": 80},
    ]
    assert predictor["latestRolledoutRevision"] == "canary-predictor-00001"
    answered = served_by(url, 10)
    assert answered.count("canary-predictor-00002") == 2
    assert answered.count("canary-predictor-00001") == 8
    promoted = patch(isvcs, "canary", {"spec": {"predictor": {"canaryTrafficPercent": None}}})
    assert promoted["metadata"]["generation"] == 3
    rolled = reconciled(isvcs, "canary", ready)["status"]["components"]["predictor"]
    assert rolled["latestCreatedRevision"] == "canary-predictor-00002"  # traffic is no template
    assert rolled["traffic"] == [
        {"revisionName": "canary-predictor-00002", "latestRevision": True, "percent": 100}
    ]
    assert rolled["latestRolledoutRevision"] == "canary-predictor-00002"
    assert rolled["previousRolledoutRevision"] == "canary-predictor-00001"
    assert set(served_by(url, 10)) == {"canary-predictor-00002"}


def test_canary_of_zero_keeps_all_traffic_on_the_rolled_out_revision(
    cluster: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    create(isvcs, isvc("zero"))
    url = reconciled(isvcs, "zero", ready)["status"]["url"]
    patch(
        isvcs,
        "zero",
        {"spec": {"predictor": {"canaryTrafficPercent": 0, "model": {"storageUri": SECOND}}}},
    )
    obj = reconciled(
        isvcs,
        "zero",
        lambda o: (
            o["status"]["components"]["predictor"].get("latestReadyRevision")
            == "zero-predictor-00002"
        ),
    )
    assert obj["status"]["components"]["predictor"]["traffic"] == [
        {"revisionName": "zero-predictor-00002", "latestRevision": True, "percent": 0},
        {"revisionName": "zero-predictor-00001", "latestRevision": False, "percent": 100},
    ]
    assert set(served_by(url, 5)) == {"zero-predictor-00001"}


def test_a_failed_revision_turns_ready_false_while_the_old_one_serves(
    cluster: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    create(isvcs, isvc("broken"))
    url = reconciled(isvcs, "broken", ready)["status"]["url"]
    cluster.fail_next_revisions("ContainerCrashLooping", "exit code 1: out of memory")
    patch(isvcs, "broken", {"spec": {"predictor": {"model": {"storageUri": SECOND}}}})
    obj = reconciled(isvcs, "broken", lambda o: conditions(o)["Ready"]["status"] == "False")
    seen = conditions(obj)
    message = 'Revision "broken-predictor-00002" failed with message: exit code 1: out of memory.'
    assert seen["PredictorReady"]["reason"] == "RevisionFailed"
    assert seen["PredictorReady"]["message"] == message
    assert seen["PredictorConfigurationReady"]["message"] == message
    assert seen["LatestDeploymentReady"]["status"] == "False"
    assert seen["PredictorRouteReady"]["status"] == "True"
    assert seen["Ready"]["reason"]
    model_status = obj["status"]["modelStatus"]
    assert model_status["transitionStatus"] == "BlockedByFailedLoad"
    assert model_status["states"] == {
        "activeModelState": "Loaded",
        "targetModelState": "FailedToLoad",
    }
    assert model_status["lastFailureInfo"]["reason"] == "ModelLoadFailed"
    predictor = obj["status"]["components"]["predictor"]
    assert predictor["latestCreatedRevision"] == "broken-predictor-00002"
    assert predictor["traffic"][0]["revisionName"] == "broken-predictor-00001"
    assert set(served_by(url, 3)) == {"broken-predictor-00001"}
    assert cluster.revisions("broken")[-1]["reason"] == "ContainerCrashLooping"


@pytest.mark.parametrize(
    ("uri", "wording"),
    [
        ("s3://bucket/model", "Cannot recognize storage type for s3://bucket/model"),
        ("pvc://other-claim/model", 'persistentvolumeclaim "other-claim" not found'),
        ("pvc://models/missing", 'model path "missing" not found'),
    ],
)
def test_storage_a_revision_cannot_pull_fails_it(
    cluster: KubernetesApiDouble, isvcs: CustomObjectsApi, uri: str, wording: str
) -> None:
    create(isvcs, isvc("unpulled", uri))
    obj = reconciled(isvcs, "unpulled", lambda o: conditions(o)["Ready"]["status"] == "False")
    seen = conditions(obj)
    assert seen["PredictorReady"]["reason"] == "RevisionMissing"
    assert wording in seen["PredictorConfigurationReady"]["message"]
    assert wording in obj["status"]["modelStatus"]["lastFailureInfo"]["message"]
    assert "url" not in obj["status"]


def test_a_model_format_without_a_runtime_is_an_invalid_spec(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    body = isvc("sk")
    body["spec"]["predictor"]["model"]["modelFormat"]["name"] = "sklearn"
    create(isvcs, body)

    def invalid() -> dict[str, Any] | None:
        status = get(isvcs, "sk").get("status", {})
        return status if status.get("modelStatus", {}).get("transitionStatus") else None

    status = wait_for(invalid)
    assert status["modelStatus"]["transitionStatus"] == "InvalidSpec"
    assert status["modelStatus"]["lastFailureInfo"]["reason"] == "NoSupportingRuntime"
    assert idle.revisions("sk") == []


def test_predictor_down_keeps_ready_true_but_answers_503(
    cluster: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    create(isvcs, isvc("flaky"))
    url = reconciled(isvcs, "flaky", ready)["status"]["url"]
    cluster.predictor_down("flaky")
    answer = httpx.post(f"{url}/openai/v1/chat/completions", json={"model": "tiny", "messages": HI})
    assert (answer.status_code, answer.text) == (503, "no healthy upstream")
    assert httpx.get(f"{url}/v1/models/tiny").status_code == 503
    assert ready(get(isvcs, "flaky"))
    cluster.predictor_down("flaky", down=False)
    assert httpx.get(f"{url}/v1/models/tiny").status_code == 200


def test_a_slow_revision_keeps_ready_unknown_while_the_old_one_serves(
    cluster: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    cluster.set_ready_delay(3600)
    create(isvcs, isvc("slow"))
    first = reconciled(isvcs, "slow")
    assert conditions(first)["Ready"]["status"] == "Unknown"
    assert conditions(first)["Ready"]["reason"] == "RevisionMissing"
    assert first["status"]["modelStatus"]["transitionStatus"] == "InProgress"
    cluster.set_ready_delay(0)
    url = reconciled(isvcs, "slow", ready)["status"]["url"]
    cluster.set_ready_delay(3600)
    patch(isvcs, "slow", {"spec": {"predictor": {"model": {"storageUri": SECOND}}}})
    updating = reconciled(isvcs, "slow")
    seen = conditions(updating)
    assert {k: seen[k]["status"] for k in ("Ready", "PredictorReady", "LatestDeploymentReady")} == {
        "Ready": "Unknown", "PredictorReady": "Unknown", "LatestDeploymentReady": "Unknown",
    }  # fmt: skip
    states = updating["status"]["modelStatus"]["states"]
    assert states == {"activeModelState": "Loaded", "targetModelState": "Pending"}
    assert set(served_by(url, 3)) == {"slow-predictor-00001"}
    cluster.set_ready_delay(0)
    done = reconciled(isvcs, "slow", ready)
    assert (
        done["status"]["components"]["predictor"]["latestReadyRevision"] == "slow-predictor-00002"
    )


def test_api_down_refuses_connections_and_api_up_restores_the_state(
    idle: KubernetesApiDouble, isvcs: CustomObjectsApi
) -> None:
    created = create(isvcs, isvc("kept"))
    port = idle.port
    idle.api_down()
    try:
        with pytest.raises(urllib3.exceptions.MaxRetryError):
            get(isvcs, "kept")
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        idle.api_up()
    assert idle.port == port
    assert get(isvcs, "kept")["metadata"]["uid"] == created["metadata"]["uid"]


def test_the_kubeconfig_works_with_the_clients_loader(
    idle: KubernetesApiDouble, tmp_path: Path
) -> None:
    path = idle.kubeconfig(tmp_path / "kubeconfig", namespace="serving")
    _, active = kube_config.list_kube_config_contexts(config_file=str(path))
    assert active["context"]["namespace"] == "serving"
    with kube_config.new_client_from_config(config_file=str(path)) as client:
        create(CustomObjectsApi(client), isvc("configured"), namespace="serving")
    assert idle.get_object("configured", "serving") is not None


def test_stop_leaves_no_threads_and_no_open_ports(models: Path) -> None:
    before = set(threading.enumerate())
    double = KubernetesApiDouble(storage={"models": models}).start()
    with _client(double.url, None) as client:
        create(CustomObjectsApi(client), isvc("brief"))
    url = double.wait_for_ready("brief")["status"]["url"]
    assert httpx.get(f"{url}/v2/health/live").status_code == 200
    ports = [double.port, int(url.rsplit(":", 1)[1])]
    double.stop()
    leaked = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not [t.name for t in leaked if "model-runtime-generation" not in t.name]
    for port in ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0


# -- upstream schemas ----------------------------------------------------------------------


def test_upstream_schemas_are_found_next_to_the_repository() -> None:
    folder = upstream_schemas_dir()
    assert (folder.parent.name, folder.name) == ("shared", "upstream-schemas")
    assert upstream_schema("kserve-inferenceservices-crd.yaml").is_file()


def test_upstream_schemas_follow_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert upstream_schemas_dir() == tmp_path
    with pytest.raises(UpstreamSchemasMissing, match="does not exist"):
        upstream_schema("kserve-inferenceservices-crd.yaml")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "absent"))
    with pytest.raises(UpstreamSchemasMissing, match="is not a folder"):
        upstream_schemas_dir()
