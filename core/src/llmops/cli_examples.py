"""``llmops example``: run the shipped examples against a running platform, through its
REST API, as any client would."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx

API = "/llm-ops/v1"
T = TypeVar("T")
TERMINAL = {"succeeded", "failed", "cancelled"}
SAMPLE_DATASET = "tiny-gpt2-sample"


class PlatformClient:
    """The few calls the examples make, with the platform's problem details as errors."""

    def __init__(self, url: str, api_key: str | None, *, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url + API, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise click.ClickException(
                f"cannot reach the platform at {self.url} ({exc}); is `llmops up` running?"
            ) from exc
        if response.status_code >= 400:
            raise click.ClickException(f"{method} {API}{path}: {_problem(response)}")
        return response.json() if response.content else None

    def find_by_name(
        self, path: str, name: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The item named ``name`` in the list at ``path``, walking its pages."""
        cursor: str | None = None
        while True:
            query = {**(params or {}), "limit": 200, **({"cursor": cursor} if cursor else {})}
            page = self.call("GET", path, params=query)
            for item in page["items"]:
                if item["name"] == name:
                    return dict(item)
            cursor = page.get("nextCursor")
            if not cursor:
                return None

    def find_dataset(self, name: str) -> dict[str, Any] | None:
        return self.find_by_name("/catalog/datasets", name, {"q": name})

    def ensure_dataset(self, name: str, sample: Path) -> tuple[dict[str, Any], bool]:
        """The dataset named ``name`` holding ``sample``: made (or completed) if need be.
        Returns it and whether anything was created or uploaded."""
        dataset = self.find_dataset(name)
        changed = False
        if dataset is None:
            dataset = self.call(
                "POST",
                "/catalog/datasets",
                json={
                    "name": name,
                    "description": "Plain English prose about a small town, its weather and "
                    "its cooking: the sample the tiny GPT-2 example trains on.",
                    "format": "text",
                    "tags": ["example"],
                },
            )
            changed = True
        files = self.call("GET", f"/catalog/datasets/{dataset['id']}")["files"]
        if sample.name not in {f["path"] for f in files}:
            with sample.open("rb") as content:
                uploaded = self.call(
                    "POST",
                    f"/catalog/datasets/{dataset['id']}/files",
                    files={"file": (sample.name, content, "text/plain")},
                )
            dataset = uploaded["dataset"]
            changed = True
        return dict(dataset), changed

    def submit_example_job(
        self,
        *,
        name: str,
        dataset_id: str,
        python: str,
        hyperparameters: dict[str, Any],
        experiment: str | None = None,
    ) -> dict[str, Any]:
        """Submit ``llmops.examples.tiny_gpt2`` as a training job on ``dataset_id``."""
        job = self.call(
            "POST",
            "/training/jobs",
            json={
                "name": name,
                "datasetId": dataset_id,
                "command": [python, "-m", "llmops.examples.tiny_gpt2"],
                "hyperparameters": hyperparameters,
                **({"experiment": experiment} if experiment else {}),
            },
        )
        return dict(job)


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if isinstance(body, dict):
        return f"HTTP {response.status_code}: {body.get('detail') or body.get('title')}"
    return f"HTTP {response.status_code}: {body}"


def _hyperparameter(value: str) -> tuple[str, Any]:
    key, sep, raw = value.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{value!r} is not KEY=VALUE")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


@click.group("example")
def example() -> None:
    """Run the shipped examples on a running platform (`llmops up`)."""


@example.command("train")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="the platform")
@click.option("--api-key", envvar="LLMOPS_API_KEY", help="an editor's key [env: LLMOPS_API_KEY]")
@click.option("--name", default="tiny-gpt2", show_default=True, help="the training job's name")
@click.option(
    "--dataset",
    "dataset_name",
    default=SAMPLE_DATASET,
    show_default=True,
    help="the catalog dataset to train on; made from the shipped sample when missing",
)
@click.option(
    "--experiment", default=None, help="the run's experiment (the platform's default if unset)"
)
@click.option("--steps", type=int, default=None, help="training steps (the script's default)")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="a hyperparameter (batch_size, lr, block_size, seed, vocab_size, n_layer, n_embd, "
    "n_head, log_every, eval_fraction); repeatable",
)
@click.option(
    "--python",
    "python",
    default=sys.executable,
    show_default=True,
    help="the interpreter that runs the job, on the platform's machine",
)
@click.option("--wait", is_flag=True, help="follow the job to its end; exit 1 unless it succeeds")
@click.option("--timeout", type=float, default=900.0, show_default=True, help="with --wait")
def train(
    url: str,
    api_key: str | None,
    name: str,
    dataset_name: str,
    experiment: str | None,
    steps: int | None,
    params: tuple[str, ...],
    python: str,
    wait: bool,
    timeout: float,
) -> None:
    """Train the example tiny GPT-2 as a training job of the platform at --url.

    The dataset is made from the shipped sample unless it exists; the job runs
    `python -m llmops.examples.tiny_gpt2`, which logs its loss to the job's experiment
    run and saves the model into the job's output folder. Needs the core's `train` extra
    where the job runs.
    """
    from llmops.examples import sample_dataset

    hyperparameters = dict(_hyperparameter(p) for p in params)
    if steps is not None:
        hyperparameters["steps"] = steps
    client = PlatformClient(url, api_key)
    try:
        sample = sample_dataset()
        dataset, changed = client.ensure_dataset(dataset_name, sample)
        verb = "created" if changed else "reusing"
        click.echo(f"{verb} dataset {dataset['name']} ({dataset['id']})")
        job = client.submit_example_job(
            name=name,
            dataset_id=dataset["id"],
            python=python,
            hyperparameters=hyperparameters,
            experiment=experiment,
        )
        click.echo(f"submitted training job {job['id']} ({job['status']})")
        click.echo(f"console: {client.url}/training/{job['id']}")
        if wait:
            job = _follow(client, job, timeout=timeout)
            click.echo(f"training job {job['id']} {job['status']}")
            _show_outcome(client, job)
            if job["status"] != "succeeded":
                sys.exit(1)
    finally:
        client.close()


def poll_until(check: Callable[[], T | None], *, timeout: float, interval: float = 1.0) -> T | None:
    """Call ``check`` until it returns a result; None once ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def poll(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 1.0) -> T:
    """Call ``check`` until it returns a result; a ClickException after ``timeout``."""
    result = poll_until(check, timeout=timeout, interval=interval)
    if result is None:
        raise click.ClickException(f"gave up waiting for {what} after {timeout:.0f} s")
    return result


def _follow(client: PlatformClient, job: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """The job once it has ended, printing each status it goes through."""
    seen = [job["status"]]

    def ended() -> dict[str, Any] | None:
        current = client.call("GET", f"/training/jobs/{job['id']}")
        if current["status"] != seen[-1]:
            seen.append(current["status"])
            click.echo(f"  {current['status']}")
        return dict(current) if current["status"] in TERMINAL else None

    if job["status"] in TERMINAL:
        return job
    return poll(ended, timeout=timeout, what=f"training job {job['id']} to end")


def _show_outcome(client: PlatformClient, job: dict[str, Any]) -> None:
    """The run's latest metrics when it has a run; the log's tail when the job failed."""
    response = client.http.get(f"/training/jobs/{job['id']}/experiment-run")
    if response.status_code == 200:
        metrics = response.json().get("latestMetrics") or {}
        if metrics:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))
            click.echo(f"latest metrics: {shown}")
    if job["status"] != "succeeded":
        logs = client.call("GET", f"/training/jobs/{job['id']}/logs", params={"tailBytes": 4000})
        for entry in logs["items"]:
            click.echo(f"--- {entry['stage']} (last lines)\n{entry['text']}", err=True)
