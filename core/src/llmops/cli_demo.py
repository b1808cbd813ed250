"""``llmops demo``: the whole path of a model through a running platform, through its REST
API as any client would: a dataset from the shipped sample, versioned when a versioning
plugin is on; the example model trained by a training job (a pipeline; tracked when a
tracker is on); the model it saved registered in the catalog; deployed on a serving
framework (local Ray Serve by default); one chat through the OpenAI-compatible gateway.

Nothing is downloaded: the dataset ships with the platform and the model is trained from
scratch. A second run reuses the dataset and the endpoint, which it moves to the newly
trained model in place.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import click
import httpx

from llmops.cli_examples import (
    SAMPLE_DATASET,
    PlatformClient,
    _follow,
    _hyperparameter,
    _problem,
    poll,
    poll_until,
)

STEPS = 6


class Progress:
    """Numbered steps on stdout, each with its time."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.number = 0
        self.started = time.monotonic()

    def step(self, what: str) -> None:
        self.number += 1
        self.started = time.monotonic()
        click.echo(f"[{self.number}/{self.total}] {what}")

    def done(self, what: str) -> None:
        click.echo(f"      {what} ({time.monotonic() - self.started:.1f} s)")

    def note(self, what: str) -> None:
        click.echo(f"      {what}")


def _version_dataset(
    client: PlatformClient, progress: Progress, dataset: dict[str, Any]
) -> dict[str, Any] | None:
    """The dataset's latest version (the upload made one), or a new one; None without a
    versioning plugin."""
    integrations = client.call("GET", "/integrations")["items"]
    versioning = [
        i["name"]
        for i in integrations
        if i["enabled"] and i["loaded"] and "versioning" in i["capabilities"]
    ]
    if not versioning:
        progress.note("no dataset versioning plugin is enabled: the dataset is not versioned")
        return None
    versions = client.call("GET", f"/catalog/datasets/{dataset['id']}/versions")["items"]
    if versions:
        version: dict[str, Any] = versions[0]
    else:
        version = client.call(
            "POST", f"/catalog/datasets/{dataset['id']}/versions", json={"message": "llmops demo"}
        )
    if version.get("pushState") == "pending":
        version = _pushed(client, progress, version)
    where = f", push {version['pushState']}" if version.get("pushState") else ""
    progress.done(
        f"version v{version['number']} ({version['id']}) by {version['provider']}: "
        f"{version['fileCount']} files{where}"
    )
    if version.get("degraded"):
        progress.note(str(version["degradedReason"]))
    return version


#: how long the demo waits for a version's push before it goes on without it, and how
#: often it looks
PUSH_WAIT_SECONDS = 60.0
PUSH_POLL_SECONDS = 0.5


def _pushed(client: PlatformClient, progress: Progress, version: dict[str, Any]) -> dict[str, Any]:
    """The version once its push to the remote has ended. The upload tries the push at
    once, but the platform's worker may have taken it, or a remote that is away makes it
    wait for a retry: the demo waits up to :data:`PUSH_WAIT_SECONDS`, then goes on with the
    push pending (the worker delivers it; nothing later in the demo needs it)."""
    where = f"/catalog/datasets/{version['datasetId']}/versions/{version['id']}"
    read: list[dict[str, Any]] = []

    def ended() -> dict[str, Any] | None:
        read.append(client.call("GET", where))
        return read[-1] if read[-1].get("pushState") != "pending" else None

    current = poll_until(ended, timeout=PUSH_WAIT_SECONDS, interval=PUSH_POLL_SECONDS) or read[-1]
    if current.get("pushState") == "pending":
        operation = current.get("pushOperationId")
        error = (
            client.call("GET", f"/operations/{operation}").get("lastError") if operation else None
        )
        progress.note(
            f"the push to the remote is still queued after {PUSH_WAIT_SECONDS:.0f} s"
            + (f" ({error})" if error else "")
            + f"; the platform retries it (operation {operation})"
        )
    elif current.get("pushState") == "failed":
        progress.note(
            "the push to the remote failed for good: see operation "
            f"{current.get('pushOperationId')}"
        )
    return current


def _framework(client: PlatformClient, wanted: str) -> dict[str, Any]:
    frameworks = client.call("GET", "/serving/frameworks")
    for framework in frameworks:
        if framework["name"] == wanted:
            return dict(framework)
    names = ", ".join(f["name"] for f in frameworks) or "none"
    raise click.ClickException(
        f"the serving framework {wanted!r} is not enabled on the platform (enabled: {names}); "
        "install and enable its plugin (llmops-rayserve for rayserve), or pick one with "
        "--framework"
    )


def _deploy(
    client: PlatformClient,
    *,
    name: str,
    model: dict[str, Any],
    framework: str,
    max_replicas: int,
) -> tuple[dict[str, Any], str]:
    """The endpoint ``name`` serving ``model``: created, or moved to ``model`` in place."""
    existing = client.find_by_name("/serving/endpoints", name)
    if existing is None:
        endpoint = client.call(
            "POST",
            "/serving/endpoints",
            json={
                "name": name,
                "modelId": model["id"],
                "framework": framework,
                "description": "The llmops demo: the example tiny GPT-2, trained from scratch.",
                "autoscaling": {
                    "minReplicas": 1,
                    "maxReplicas": max_replicas,
                    "targetOngoingRequests": 2,
                },
            },
        )
        return dict(endpoint), "created"
    if existing["framework"] != framework:
        raise click.ClickException(
            f"an endpoint named {name!r} already exists on {existing['framework']}: "
            f"pass another --endpoint name"
        )
    client.call(
        "PATCH", f"/serving/endpoints/{existing['id']}/deployment", json={"modelId": model["id"]}
    )
    return existing, "updated in place"


def _wait_ready(client: PlatformClient, endpoint: dict[str, Any], *, timeout: float) -> str:
    """Wait until the deployment serves ``endpoint``'s model and a real inference through
    the gateway's data path succeeds; returns the health detail."""
    seen: list[str] = []
    model_uri = client.call("GET", f"/catalog/models/{endpoint['modelId']}")["uri"]

    def ready() -> str | None:
        deployment = client.call("GET", f"/serving/endpoints/{endpoint['id']}/deployment")
        state = deployment["state"]
        message = deployment["status"].get("message") or ""
        if not seen or seen[-1] != state:
            seen.append(state)
            click.echo(f"      {state}" + (f": {message}" if message else ""))
        if state == "failed":
            raise click.ClickException(f"the deployment failed: {message}")
        traffic = deployment["status"].get("traffic") or []
        serving = {t["modelUri"] for t in traffic}
        if state != "ready" or model_uri not in serving:
            return None
        health = client.call("GET", f"/serving/endpoints/{endpoint['id']}/health")
        return str(health["detail"]) if health["healthy"] else None

    return poll(ready, timeout=timeout, what=f"endpoint {endpoint['name']} to become ready")


def _stream_chat(client: PlatformClient, model: str, prompt: str, max_tokens: int) -> Iterator[str]:
    """The answer's pieces as the gateway streams them (OpenAI's chat completion chunks)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    with client.http.stream("POST", "/openai/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            raise click.ClickException(f"the gateway answered {_problem(response)}")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line.removeprefix("data:").strip()
            if data == "[DONE]":
                return
            chunk = json.loads(data)
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield piece


@click.command("demo")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="the platform")
@click.option("--api-key", envvar="LLMOPS_API_KEY", help="an editor's key [env: LLMOPS_API_KEY]")
@click.option(
    "--framework", default="rayserve", show_default=True, help="the serving framework to deploy on"
)
@click.option(
    "--endpoint",
    "endpoint_name",
    default="tiny-gpt2-demo",
    show_default=True,
    help="the serving endpoint's name (the `model` OpenAI clients pass)",
)
@click.option("--steps", type=int, default=120, show_default=True, help="training steps")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="a hyperparameter of the example job (see `llmops example train --help`); repeatable",
)
@click.option("--max-replicas", type=int, default=2, show_default=True, help="autoscaling bound")
@click.option(
    "--prompt", default="Tell me about the town.", show_default=True, help="the chat message"
)
@click.option("--max-tokens", type=int, default=32, show_default=True)
@click.option(
    "--python",
    "python",
    default=sys.executable,
    show_default=True,
    help="the interpreter that runs the training job, on the platform's machine",
)
@click.option(
    "--timeout", type=float, default=900.0, show_default=True, help="for training and for deploying"
)
def demo(
    url: str,
    api_key: str | None,
    framework: str,
    endpoint_name: str,
    steps: int,
    params: tuple[str, ...],
    max_replicas: int,
    prompt: str,
    max_tokens: int,
    python: str,
    timeout: float,
) -> None:
    """From data to a served model on the platform at --url (start it with `make run`):
    a dataset, a training job tracked in the experiment tracker, a registered model, an
    endpoint on local Ray Serve and a chat through the OpenAI-compatible gateway.

    Works offline: the data ships with the platform and the model is trained from scratch
    (a 2-layer GPT-2, about half a minute on two CPU cores).
    """
    from llmops.examples import sample_dataset

    hyperparameters: dict[str, Any] = {"steps": steps, **dict(_hyperparameter(p) for p in params)}
    client = PlatformClient(url, api_key)
    progress = Progress(STEPS)
    begun = time.monotonic()
    try:
        served_on = _framework(client, framework)

        progress.step(f"dataset {SAMPLE_DATASET} from the shipped sample")
        dataset, changed = client.ensure_dataset(SAMPLE_DATASET, sample_dataset())
        progress.done(f"{'created' if changed else 'reusing'} dataset {dataset['id']}")

        progress.step("dataset version")
        version = _version_dataset(client, progress, dataset)

        progress.step(f"training the example model ({steps} steps) through a pipeline")
        job = client.submit_example_job(
            name=endpoint_name,
            dataset_id=dataset["id"],
            python=python,
            hyperparameters=hyperparameters,
        )
        click.echo(f"      training job {job['id']} ({job['status']})")
        job = _follow(client, job, timeout=timeout)
        if job["status"] != "succeeded":
            raise click.ClickException(
                f"training job {job['id']} {job['status']}: {job['message']}; see "
                f"{client.url}/training/{job['id']}"
            )
        run = client.http.get(f"/training/jobs/{job['id']}/experiment-run")
        if run.status_code == 200:
            tracked = run.json()
            metrics = tracked.get("latestMetrics") or {}
            shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))
            progress.note(f"tracked in {tracked['provider']} run {tracked['externalId']}: {shown}")
        else:
            progress.note("not tracked: no experiment tracker is enabled")
        progress.done(f"training job {job['id']} succeeded")

        progress.step("registering the trained model in the catalog")
        model = client.call(
            "POST",
            f"/training/jobs/{job['id']}/model",
            json={"name": f"{endpoint_name}-{job['id'][:8]}"},
        )
        progress.done(f"model {model['name']} ({model['id']}) at {model['uri']}")

        progress.step(f"deploying on {served_on['displayName']} as endpoint {endpoint_name}")
        endpoint, how = _deploy(
            client,
            name=endpoint_name,
            model=model,
            framework=framework,
            max_replicas=max_replicas,
        )
        click.echo(f"      endpoint {endpoint['id']} {how}")
        endpoint = {**endpoint, "modelId": model["id"]}
        detail = _wait_ready(client, endpoint, timeout=timeout)
        progress.done(f"ready: {detail}")

        progress.step("a chat through the OpenAI-compatible gateway (streamed)")
        click.echo(f"      > {prompt}")
        click.echo("      < ", nl=False)
        pieces = 0
        for piece in _stream_chat(client, endpoint_name, prompt, max_tokens):
            pieces += 1
            click.echo(piece, nl=False)
        click.echo("")
        if pieces == 0:
            raise click.ClickException("the gateway streamed an empty answer")
        progress.done(f"{pieces} chunks streamed")
    except httpx.HTTPError as exc:
        raise click.ClickException(f"talking to the platform at {client.url}: {exc}") from exc
    finally:
        client.close()

    base = client.url
    click.echo(f"\nDone in {time.monotonic() - begun:.0f} s. Open:")
    click.echo(f"  dataset        {base}/datasets/{dataset['id']}")
    click.echo(f"  training job   {base}/training/{job['id']}")
    click.echo(f"  model          {base}/models/{model['id']}")
    click.echo(f"  endpoint       {base}/serving/{endpoint['id']}")
    click.echo(f"  chat           {base}/serving/{endpoint['id']}/chat")
    if version is not None:
        node = f"serving-endpoint:{endpoint['id']}"
        click.echo(f"  lineage        {base}/lineage?node={node}")
        click.echo(f"  lineage (API)  {base}/llm-ops/v1/lineage?node={node}")
    click.echo("Call it with the OpenAI SDK:")
    click.echo(
        "  from openai import OpenAI\n"
        f'  client = OpenAI(base_url="{base}/llm-ops/v1/openai/v1", api_key="<your llmops key>")\n'
        f'  client.chat.completions.create(model="{endpoint_name}", '
        'messages=[{"role": "user", "content": "Hi"}])'
    )
