"""The example training job (llmops.examples.tiny_gpt2) really trains: its loss, logged
through the platform, falls; it saves a model that transformers reloads from the folder and
generates with; and `llmops example train` runs it as a job of a running platform.

Few steps and a small vocabulary keep each training to seconds on two CPU cores.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from llmops.cli import main as llmops_cli
from llmops.cli_examples import SAMPLE_DATASET, PlatformClient
from llmops.examples import sample_dataset
from llmops.examples.tiny_gpt2 import (
    CHAT_TEMPLATE,
    DatasetError,
    TrainingConfig,
    main,
    read_documents,
    record_text,
    train,
)
from llmops.jobclient import JobClient
from llmops.testing.console import running_platform
from llmops.testing.jobs import JobHandle as Job
from llmops.testing.jobs import cancel_job, start_job
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"
QUICK = TrainingConfig(steps=30, batch_size=8, vocab_size=500, log_every=10)
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".h5", ".msgpack")


@pytest.fixture(autouse=True)
def _offline_hub(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hugging Face caches in a temp dir; no hub, no telemetry."""
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The example talks to the platform over HTTP only: one database backend is enough."""
    return f"sqlite:///{tmp_path / 'llmops.db'}"


@pytest.fixture
def job(platform: TestClient) -> Iterator[Job]:
    """A running training job (its own process sleeps) and a token scoped to it: this
    test's process plays the job's part."""
    started = start_job(platform, name="tiny")
    yield started
    cancel_job(platform, started)


def run_metrics(api: Any, job_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of ``key`` in the job's run, from the tracker through the API."""
    run = api.get(f"{API}/training/jobs/{job_id}/experiment-run").json()
    compared = api.post(
        f"{API}/experiments/compare", json={"runIds": [run["externalId"]], "metrics": [key]}
    )
    assert compared.status_code == 200, compared.text
    return [(p["step"], p["value"]) for p in compared.json()["runs"][0]["metrics"][key]]


def assert_reloads_and_generates(model_dir: Path) -> None:
    """Only safetensors weights; transformers reloads the folder and generates."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = sorted(p.name for p in model_dir.iterdir())
    assert "model.safetensors" in names
    assert [n for n in names if n.endswith(WEIGHT_SUFFIXES)] == []
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the weather like?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt == "<|user|>\nWhat is the weather like?\n<|assistant|>\n"
    encoded = tokenizer("The river", return_tensors="pt")
    output = model.generate(
        **encoded,
        max_new_tokens=8,
        min_new_tokens=8,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    prompt_length = encoded["input_ids"].shape[1]
    assert output.shape[1] == prompt_length + 8
    assert tokenizer.decode(output[0][prompt_length:], skip_special_tokens=True).strip()


def assert_falls(losses: list[tuple[int, float]], steps: list[int]) -> None:
    assert [step for step, _ in losses] == steps
    first, last = losses[0][1], losses[-1][1]
    assert last < first - 0.5, losses


# -- through a running platform --------------------------------------------------------------


def test_llmops_example_train_runs_the_sample_as_a_job_whose_logged_loss_falls() -> None:
    with running_platform(env={"LLMOPS_PLUGINS": "example"}, console=False) as server:
        result = CliRunner().invoke(
            llmops_cli,
            [
                "example", "train", "--url", server.url, "--api-key", server.admin_key,
                "--steps", "30", "-p", "batch_size=8", "-p", "vocab_size=500",
                "--wait", "--timeout", "240",
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        job_id = re.search(r"submitted training job (\w+)", result.output)[1]  # type: ignore[index]
        assert f"created dataset {SAMPLE_DATASET} " in result.output
        assert f"console: {server.url}/training/{job_id}\n" in result.output
        assert f"training job {job_id} succeeded\n" in result.output

        assert_falls(run_metrics(server.api, job_id, "loss"), [10, 20, 30])
        [(step, eval_loss)] = run_metrics(server.api, job_id, "eval_loss")
        assert step == 30
        assert 0 < eval_loss < 10
        [(_, rate)] = run_metrics(server.api, job_id, "tokens_per_second")
        assert rate > 0
        logs = server.api.get(f"{API}/training/jobs/{job_id}/logs").json()["items"]
        saved = re.search(r"saved the model and tokenizer to (\S+) in", logs[0]["text"])
        assert saved, logs[0]["text"]
        assert_reloads_and_generates(Path(saved[1]))

        # the model it produced becomes a catalog model, once
        registered = server.api.post(f"{API}/training/jobs/{job_id}/model", json={})
        assert registered.status_code == 201, registered.text
        model = registered.json()
        assert model["uri"] == Path(saved[1]).resolve().as_uri()
        assert (model["name"], model["source"], model["framework"]) == (
            "tiny-gpt2",
            "training-job",
            "transformers",
        )
        assert model["labels"]["llmops.training_job_id"] == job_id
        again = server.api.post(f"{API}/training/jobs/{job_id}/model", json={"name": "other"})
        assert again.status_code == 200
        assert again.json()["id"] == model["id"]

        # run again, the dataset is found by name, not made twice
        client = PlatformClient(server.url, server.admin_key)
        try:
            dataset, changed = client.ensure_dataset(SAMPLE_DATASET, sample_dataset())
        finally:
            client.close()
        assert changed is False
        listed = server.api.get(f"{API}/catalog/datasets", params={"q": SAMPLE_DATASET}).json()
        assert [d["id"] for d in listed["items"]] == [dataset["id"]]
        assert dataset["fileCount"] == 1


def test_a_jsonl_dataset_of_text_prompt_completion_and_chat_records_trains_and_logs(
    platform: TestClient, job: Job, tmp_path: Path
) -> None:
    lines = [line for line in sample_dataset().read_text().splitlines() if line.strip()]
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines):
        if number % 3 == 0:
            records.append({"text": line})
        elif number % 3 == 1:
            head, _, tail = line.partition(" ")
            records.append({"prompt": head, "completion": " " + tail})
        else:
            chat = [
                {"role": "user", "content": "Tell me about the town."},
                {"role": "assistant", "content": line},
            ]
            records.append({"messages": chat})
    records.append({"label": "no text here"})
    data = tmp_path / "data"
    (data / "split").mkdir(parents=True)
    (data / "split" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    (data / "notes.csv").write_text("not,read\n")
    output = tmp_path / "output"

    with JobClient("http://testserver", job.id, job.token, http=platform) as client:
        result = train(QUICK, data=data, output=output, client=client)

    assert result.documents == len(lines)
    assert_falls(run_metrics(platform, job.id, "loss"), [10, 20, 30])
    assert run_metrics(platform, job.id, "eval_loss") == [(30, pytest.approx(result.eval_loss))]
    assert len(run_metrics(platform, job.id, "tokens_per_second")) == 1
    summary = json.loads((output / "summary.json").read_text())
    assert summary["config"]["steps"] == 30
    assert [entry["step"] for entry in summary["losses"]] == [10, 20, 30]
    assert_reloads_and_generates(output / "model")


# -- the script on its own -------------------------------------------------------------------


def test_the_script_takes_dataset_output_and_hyperparameters_from_the_job_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "dataset"
    data.mkdir()
    (data / "town.md").write_text(sample_dataset().read_text()[:6000])
    environ = {
        "LLMOPS_DATASET_PATH": str(data),
        "LLMOPS_OUTPUT_DIR": str(tmp_path / "out"),
        "LLMOPS_HYPERPARAMETERS": json.dumps(
            {"steps": 100, "batch_size": 4, "log_every": 1, "vocab_size": "400", "seed": 3}
        ),
    }

    assert main(["--steps", "3"], environ=environ) == 0  # the flag wins over the job's 100

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    config = summary["config"]
    assert (config["steps"], config["batch_size"], config["vocab_size"], config["seed"]) == (
        3,
        4,
        400,
        3,
    )
    assert [entry["step"] for entry in summary["losses"]] == [1, 2, 3]
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
    captured = capsys.readouterr()
    assert "step     3/3  loss" in captured.out
    assert "metrics are not logged" in captured.err  # no platform around: said, not failed


def test_the_same_seed_gives_the_same_run_and_another_seed_another(tmp_path: Path) -> None:
    data = tmp_path / "town.txt"
    data.write_text(sample_dataset().read_text()[:5000])
    config = TrainingConfig(steps=4, batch_size=4, vocab_size=400, log_every=1)

    def run(seed: int, name: str) -> tuple[list[tuple[int, float]], float, bytes]:
        client = JobClient.from_env({})
        seeded = TrainingConfig(**{**config.__dict__, "seed": seed})
        result = train(seeded, data=data, output=tmp_path / name, client=client)
        return result.losses, result.eval_loss, (result.model_dir / "tokenizer.json").read_bytes()

    first, again, other = run(7, "first"), run(7, "again"), run(8, "other")

    assert first == again
    assert first[0] != other[0]


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"steps": 0}, "steps must be at least 1"),
        ({"lr": "fast"}, "lr must be a number"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"n_embd": 66, "n_head": 4}, "must be a multiple of n_head"),
        ({"epochs": 3}, "unknown hyperparameters: epochs"),
    ],
)
def test_hyperparameters_that_cannot_train_are_refused_with_the_reason(
    values: dict[str, Any], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"LLMOPS_HYPERPARAMETERS": json.dumps(values)}

    with pytest.raises(SystemExit) as exited:
        main([], environ=environ)

    assert exited.value.code == 2
    assert error in capsys.readouterr().err


@pytest.mark.parametrize(
    ("record", "text"),
    [
        ({"text": "A line."}, "A line."),
        ({"prompt": "Q: rain?", "completion": "Yes."}, "Q: rain? Yes."),
        ({"prompt": "Q: rain?\n", "completion": "Yes."}, "Q: rain?\nYes."),
        (
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": [
                {"type": "text", "text": "Hello"}]}]},
            "<|user|>\nHi\n<|assistant|>\nHello\n",
        ),
        ({"label": 1}, None),
        (["not", "a", "record"], None),
    ],
)  # fmt: skip
def test_jsonl_records_give_their_text_prompt_and_completion_or_chat(
    record: Any, text: str | None
) -> None:
    assert record_text(record) == text


def test_chat_records_are_trained_in_the_form_the_saved_chat_template_renders() -> None:
    from jinja2 import Environment

    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    template = Environment(autoescape=False).from_string(CHAT_TEMPLATE)

    assert template.render(messages=messages) == record_text({"messages": messages})


def test_a_dataset_without_usable_text_is_refused_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.csv").write_text("a,b\n")
    (tmp_path / "rows.jsonl").write_text('{"label": 1}\n')
    with pytest.raises(DatasetError, match="found 0 documents"):
        read_documents(tmp_path)

    (tmp_path / "rows.jsonl").write_text('{"text": "fine"}\n{"text": broken\n')
    with pytest.raises(DatasetError, match=r"rows\.jsonl:2: not JSON"):
        read_documents(tmp_path)

    environ = {"LLMOPS_DATASET_PATH": str(tmp_path / "missing")}
    assert main([], environ=environ) == 1
    assert "no dataset at" in capsys.readouterr().err


def test_only_a_succeeded_job_that_saved_a_model_has_one_to_register(
    platform: TestClient, job: Job
) -> None:
    running = platform.post(f"{API}/training/jobs/{job.id}/model")
    assert running.status_code == 409, running.text
    assert "only a succeeded job" in running.json()["detail"]

    done = platform.post(
        f"{API}/training/jobs",
        json={"name": "no-model", "command": [sys.executable, "-c", "pass"], "track": False},
    ).json()

    def finished() -> bool:
        status = platform.get(f"{API}/training/jobs/{done['id']}").json()["status"]
        assert status not in {"failed", "cancelled"}, status
        return bool(status == "succeeded")

    wait_for(finished, timeout=60, what="the job to succeed")
    refused = platform.post(f"{API}/training/jobs/{done['id']}/model")
    assert refused.status_code == 422, refused.text
    assert "saved no servable model" in refused.json()["detail"]
    assert platform.get(f"{API}/catalog/models", params={"q": "no-model"}).json()["items"] == []
