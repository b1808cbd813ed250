"""A model imported from the Hub deploys on KServe through its storage URI: ``llmops up``
with the Hub plugin pointed at the Hub double (llmops.testing.hf) and the KServe plugin at
the Kubernetes API double (llmops.testing.kubernetes), whose PVC ``llmops-models`` is the
platform's folder of imported models. A tiny real GPT-2 is imported from the Hub, deployed
on KServe as ``pvc://llmops-models/<model id>``, reaches Ready (the double's controller
loads the imported files) and answers a chat through the gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmops.testing.console import ConsoleServer, running_platform
from llmops.testing.hf import HfHubDouble, running_hf_hub
from llmops.testing.kubernetes import KubernetesApiDouble
from llmops.testing.models import tiny_causal_lm
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"
TOKEN = "hub-to-kserve-token"
CLAIM = "llmops-models"
REPO = "acme/tiny-gpt2"


@dataclass(frozen=True)
class HubToKServe:
    server: ConsoleServer
    hub: HfHubDouble
    cluster: KubernetesApiDouble
    models: Path  # the platform's imported models, the PVC's folder


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HfHubDouble]:
    with running_hf_hub(work_dir=tmp_path_factory.mktemp("hf-hub")) as double:
        yield double
        double.check_errors()


@pytest.fixture(scope="module")
def platform(hub: HfHubDouble, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubToKServe]:
    root = tmp_path_factory.mktemp("hub-to-kserve").resolve()
    # running_platform keeps the platform's data in <root>/data: its storage dir is
    # <root>/data/storage, where the imports land (models/<model id>)
    models = root / "data" / "storage" / "models"
    with KubernetesApiDouble(token=TOKEN, storage={CLAIM: models}) as cluster:
        env = {
            "LLMOPS_PLUGINS": "kserve,hf",
            "LLMOPS_HF__ENDPOINT": hub.url,
            "LLMOPS_HF__TOKEN": hub.write_token,
            "LLMOPS_HF__CACHE_DIR": str(root / "hf-cache"),
            "LLMOPS_KSERVE__API_URL": cluster.url,
            "LLMOPS_KSERVE__TOKEN": TOKEN,
            "LLMOPS_KSERVE__STORAGE_URI_PREFIXES": json.dumps({f"{models}/": f"pvc://{CLAIM}/"}),
            "LLMOPS_SERVING_SYNC_INTERVAL_SECONDS": "1",
            "HF_HOME": str(root / "hf-home"),
            # huggingface_hub online, or the Hub plugin takes the Hub for down
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",
        }
        with running_platform(env=env, console=False, data_dir=root) as server:
            yield HubToKServe(server, hub, cluster, models)
        cluster.check_errors()


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_model_imported_from_the_hub_is_served_by_kserve_from_its_pvc_storage_uri(
    platform: HubToKServe, tmp_path: Path
) -> None:
    api = platform.server.api
    sha = platform.hub.add_repo(
        REPO,
        _files(tiny_causal_lm(tmp_path / "model")),
        license="mit",
        pipeline_tag="text-generation",
        library_name="transformers",
    )

    accepted = api.post(f"{API}/catalog/models/import", json={"repoId": REPO})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["source"] == f"hf://{REPO}@{sha}"
    model_id = accepted.json()["id"]
    model: dict[str, Any] = {}

    def imported() -> bool:
        model.update(api.get(f"{API}/catalog/models/{model_id}").json())
        return bool(model["status"] != "importing")

    wait_for(imported, timeout=60, what="the import from the Hub double")
    assert model["status"] == "ready", model["importStatus"]
    assert model["uri"] == (platform.models / model_id).as_uri()

    created = api.post(
        f"{API}/serving/endpoints",
        json={"name": "hub-kserve-chat", "modelId": model_id, "framework": "kserve"},
    )
    assert created.status_code in (201, 202), created.text
    endpoint = created.json()

    # the InferenceService as KServe got it: the imported folder, read from the PVC
    obj = platform.cluster.get_object("hub-kserve-chat")
    assert obj is not None
    served = obj["spec"]["predictor"]["model"]
    assert served["storageUri"] == f"pvc://{CLAIM}/{model_id}"
    assert served["modelFormat"]["name"] == "huggingface"  # from the Hub's library_name

    deployment: dict[str, Any] = {}

    def settled() -> bool:
        deployment.update(api.get(f"{API}/serving/endpoints/{endpoint['id']}/deployment").json())
        return deployment["state"] in ("ready", "failed")

    wait_for(settled, timeout=60, interval=0.2, what="the InferenceService to be ready")
    assert deployment["state"] == "ready", deployment["status"]
    assert deployment["status"]["ready"] is True

    answer = api.post(
        f"{API}/openai/v1/chat/completions",
        json={
            "model": "hub-kserve-chat",
            "messages": [{"role": "user", "content": "The town"}],
            "max_tokens": 8,
            "temperature": 0,
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"], answer.json()

    deleted = api.delete(f"{API}/serving/endpoints/{endpoint['id']}")
    assert deleted.status_code in (202, 204), deleted.text
    wait_for(
        lambda: platform.cluster.get_object("hub-kserve-chat") is None,
        timeout=30,
        what="the InferenceService to be deleted",
    )
