"""The model runtime: a real tiny GPT-2 (built here, saved with save_pretrained) served over
real HTTP, called with the official OpenAI SDK and with raw httpx for the wire format."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch
from openai import OpenAI

from llmops.model_runtime import __main__ as runtime_cli
from llmops.model_runtime.app import create_app
from llmops.model_runtime.engine import Engine, SamplingParams
from llmops.model_runtime.loader import ModelFolderError, check_model_folder, load_model
from llmops.testing.models import serving_in_thread, tiny_causal_lm
from llmops.testing.processes import free_port, serving_process
from llmops.testing.waiting import wait_for

SERVED = "tiny-gpt2"
HIDDEN = 32
HI = [{"role": "user", "content": "Hi"}]
# greedy or seeded, and past the end-of-text token: answers of a known length
GREEDY: dict[str, Any] = {"temperature": 0, "extra_body": {"ignore_eos": True}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 2-layer GPT-2 with fresh weights and a tokenizer trained on four sentences,
    saved with save_pretrained; 1024 positions leave room for a long answer."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a tiny model decodes many times faster on one thread
        try:
            yield tiny_causal_lm(tmp_path_factory.mktemp("model"), hidden=HIDDEN)
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> Engine:
    return Engine(load_model(model_dir, device="cpu"), default_max_tokens=16)


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[str]:
    """The app on uvicorn on 127.0.0.1, in a thread of the test process."""
    with serving_in_thread(create_app(engine, served_model_name=SERVED)) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{server}/v1", api_key="not-checked", max_retries=0) as sdk:
        yield sdk


def _events(response: httpx.Response) -> list[str]:
    """The payloads of a server-sent event stream, each checked to be `data: ...\\n\\n`."""
    body = response.read().decode()
    assert body.endswith("\n\n")
    events = body.split("\n\n")[:-1]
    assert all(event.startswith("data: ") for event in events), events
    return [event.removeprefix("data: ") for event in events]


# -- the OpenAI API through the SDK ---------------------------------------------------------


def test_the_model_list_names_the_served_model(client: OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == [SERVED]
    assert models[0].object == "model"


def test_a_chat_completion_answers_with_text_and_token_usage(client: OpenAI) -> None:
    answer = client.chat.completions.create(model=SERVED, messages=HI, max_tokens=8, **GREEDY)
    assert answer.object == "chat.completion"
    assert answer.id.startswith("chatcmpl-")
    assert answer.model == SERVED
    assert answer.created > 0
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.message.content
    assert choice.finish_reason == "length"
    assert answer.usage is not None
    # "<|user|>\nHi\n<|assistant|>\n" from the saved chat template: 7 tokens
    assert answer.usage.prompt_tokens == 7
    assert answer.usage.completion_tokens == 8
    assert answer.usage.total_tokens == 15


@pytest.mark.parametrize(
    "sampling",
    [GREEDY, {"temperature": 1.0, "top_p": 0.9, "seed": 11, "extra_body": {"ignore_eos": True}}],
    ids=["greedy", "seeded-sampling"],
)
def test_a_streamed_chat_sends_the_same_answer_piece_by_piece(
    client: OpenAI, sampling: dict[str, Any]
) -> None:
    whole = client.chat.completions.create(model=SERVED, messages=HI, max_tokens=12, **sampling)
    stream = client.chat.completions.create(
        model=SERVED,
        messages=HI,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
        **sampling,
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1
    assert "".join(pieces) == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {chunks[0].id}
    assert all(c.object == "chat.completion.chunk" and c.model == SERVED for c in chunks)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "length"
    assert set(finish[:-1]) == {None}
    assert chunks[-1].choices == []
    assert chunks[-1].usage == whole.usage


def test_a_seed_makes_sampling_repeatable(client: OpenAI) -> None:
    def sample(seed: int) -> str | None:
        answer = client.chat.completions.create(
            model=SERVED, messages=HI, max_tokens=16, temperature=1.0, seed=seed
        )
        return answer.choices[0].message.content

    assert sample(5) == sample(5)


def test_a_stop_sequence_ends_the_answer_before_it(client: OpenAI) -> None:
    sampling: dict[str, Any] = {"temperature": 1.0, "seed": 3, "extra_body": {"ignore_eos": True}}
    free = client.completions.create(model=SERVED, prompt="The town", max_tokens=16, **sampling)
    text = free.choices[0].text
    # two printable characters after the start, where the answer will be cut
    at = next(
        i
        for i in range(1, len(text) - 1)
        if all(c.isascii() and c.isprintable() and not c.isspace() for c in text[i : i + 2])
    )
    stop = text[at : at + 2]
    expected = text[: text.find(stop)]

    cut = client.completions.create(
        model=SERVED, prompt="The town", max_tokens=16, stop=[stop], **sampling
    )
    assert cut.choices[0].text == expected
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model=SERVED, prompt="The town", max_tokens=16, stop=stop, stream=True, **sampling
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_completion_answers_and_streams_the_same_text(client: OpenAI) -> None:
    whole = client.completions.create(model=SERVED, prompt="The town", max_tokens=10, **GREEDY)
    assert whole.object == "text_completion"
    assert whole.id.startswith("cmpl-")
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 10
    chunks = list(
        client.completions.create(
            model=SERVED, prompt="The town", max_tokens=10, stream=True, **GREEDY
        )
    )
    pieces = [c.choices[0].text for c in chunks if c.choices[0].text]
    assert len(pieces) > 1
    assert "".join(pieces) == whole.choices[0].text


def test_embeddings_have_the_hidden_size_and_equal_inputs_equal_vectors(client: OpenAI) -> None:
    answer = client.embeddings.create(
        model=SERVED, input=["The town sleeps", "The town sleeps", "A cat walks"]
    )
    vectors = [item.embedding for item in answer.data]
    assert [item.index for item in answer.data] == [0, 1, 2]
    assert all(len(vector) == HIDDEN for vector in vectors)
    assert vectors[0] == vectors[1]
    assert vectors[0] != vectors[2]
    assert answer.usage.prompt_tokens > 3


def test_embeddings_as_floats_are_the_mean_of_the_last_hidden_state(
    server: str, engine: Engine
) -> None:
    answer = httpx.post(
        f"{server}/v1/embeddings",
        json={"model": SERVED, "input": "The town sleeps", "encoding_format": "float"},
    )
    assert answer.status_code == 200
    vector = answer.json()["data"][0]["embedding"]
    model, tokenizer = engine.loaded.model, engine.loaded.tokenizer
    with torch.inference_mode():
        ids = tokenizer("The town sleeps", return_tensors="pt")["input_ids"]
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
    assert vector == pytest.approx(hidden.mean(dim=0).tolist(), abs=1e-6)


# -- errors ---------------------------------------------------------------------------------


def _assert_openai_error(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def test_an_unknown_model_is_a_404_in_openais_shape(client: OpenAI, server: str) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert raised.value.status_code == 404
    error = _assert_openai_error(raised.value.response, 404)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "gpt-4o" in error["message"]
    for path in ("/v1/completions", "/v1/embeddings"):
        body = {"model": "nope", "prompt": "x", "input": "x"}
        assert _assert_openai_error(httpx.post(f"{server}{path}", json=body), 404)["code"] == (
            "model_not_found"
        )


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"model": SERVED, "messages": HI, "max_tokens": -1}, "max_tokens"),
        ("/v1/chat/completions", {"model": SERVED, "messages": []}, "messages"),
        (
            "/v1/chat/completions",
            {"model": SERVED, "messages": HI, "temperature": 3},
            "temperature",
        ),
        ("/v1/chat/completions", {"model": SERVED, "messages": HI, "n": 2}, "n"),
        ("/v1/chat/completions", {"messages": HI}, "model"),
        ("/v1/chat/completions", {"model": SERVED, "messages": [{"role": "x"}]}, "messages.0.role"),
        ("/v1/completions", {"model": SERVED, "prompt": "x", "max_tokens": 0}, "max_tokens"),
        ("/v1/embeddings", {"model": SERVED, "input": [""]}, "input"),
    ],
    ids=[
        "negative-max-tokens",
        "no-messages",
        "temperature-over-2",
        "several-choices",
        "no-model",
        "unknown-role",
        "zero-max-tokens",
        "empty-input",
    ],
)
def test_bad_input_is_a_400_in_openais_shape(
    server: str, path: str, body: dict[str, Any], param: str
) -> None:
    error = _assert_openai_error(httpx.post(f"{server}{path}", json=body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_bad_input_raises_the_sdks_bad_request_error(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=SERVED, messages=HI, max_tokens=-1)
    assert raised.value.status_code == 400


def test_a_prompt_longer_than_the_context_is_a_400(server: str, engine: Engine) -> None:
    long_prompt = "The town sleeps by the river. " * 400
    assert len(engine.text_prompt(long_prompt)) > engine.context_length
    for stream in (False, True):
        answer = httpx.post(
            f"{server}/v1/completions",
            json={"model": SERVED, "prompt": long_prompt, "stream": stream},
        )
        assert _assert_openai_error(answer, 400)["code"] == "context_length_exceeded"


# -- the wire format and streaming ------------------------------------------------------------


def test_a_chat_stream_is_server_sent_events_ending_with_done(server: str) -> None:
    body = {"model": SERVED, "messages": HI, "max_tokens": 5, "stream": True, "temperature": 0}
    body["ignore_eos"] = True
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = _events(answer)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    for chunk in chunks:
        assert set(chunk) == {"id", "object", "created", "model", "choices"}
        assert chunk["object"] == "chat.completion.chunk"
        assert set(chunk["choices"][0]) == {"index", "delta", "logprobs", "finish_reason"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }
    # one chunk per token: each of the 5 tokens of this model's answer decodes to a newline
    assert [c["choices"][0]["delta"] for c in chunks[1:-1]] == [{"content": "\n"}] * 5


def test_a_client_that_goes_away_stops_the_generation(server: str, engine: Engine) -> None:
    body = {
        "model": SERVED,
        "messages": HI,
        "max_tokens": 1000,
        "stream": True,
        "temperature": 0,
        "ignore_eos": True,
    }
    generations, tokens = engine.stats.generations, engine.stats.completion_tokens
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body) as answer:
        lines = answer.iter_lines()
        first = json.loads(next(line for line in lines if line).removeprefix("data: "))
        assert first["choices"][0]["delta"]["role"] == "assistant"
        # the response is closed here, after a chunk or two of a 1000-token answer
    wait_for(lambda: engine.stats.generations > generations, what="the generation to end")
    assert engine.stats.last_finish_reason == "cancelled"
    assert engine.stats.cancelled >= 1
    assert engine.stats.completion_tokens - tokens < 1000
    # the engine's lock is free again: the next request is answered
    again = httpx.post(
        f"{server}/v1/chat/completions",
        json={"model": SERVED, "messages": HI, "max_tokens": 2},
        timeout=30,
    )
    assert again.status_code == 200


def test_the_chat_template_renders_the_prompt_and_plain_lines_stand_in_without_one(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokenizer = engine.loaded.tokenizer
    messages = [{"role": "system", "content": "Be brief."}, *HI]
    assert tokenizer.decode(engine.chat_prompt(messages)) == (
        "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n"
    )
    monkeypatch.setattr(tokenizer, "chat_template", None)
    assert tokenizer.decode(engine.chat_prompt(messages)) == (
        "system: Be brief.\nuser: Hi\nassistant:"
    )


# -- health, loading and the command ----------------------------------------------------------


@pytest.mark.anyio
async def test_health_is_200_only_after_a_real_generation_succeeded(engine: Engine) -> None:
    fresh = Engine(engine.loaded)
    assert not fresh.warmed_up
    generations = fresh.stats.generations
    transport = httpx.ASGITransport(app=create_app(fresh, served_model_name=SERVED))
    async with httpx.AsyncClient(transport=transport, base_url="http://runtime") as http:
        answer = await http.get("/health")
    assert answer.status_code == 200
    assert fresh.warmed_up
    assert fresh.stats.generations == generations + 1
    assert fresh.stats.completion_tokens == 1


@pytest.mark.anyio
async def test_health_is_503_while_the_model_cannot_generate(engine: Engine) -> None:
    broken = Engine(engine.loaded)
    broken.context_length = 1  # the warm-up prompt no longer fits: generation fails for real
    transport = httpx.ASGITransport(app=create_app(broken, served_model_name=SERVED))
    async with httpx.AsyncClient(transport=transport, base_url="http://runtime") as http:
        answer = await http.get("/health")
    assert answer.status_code == 503
    assert "context" in answer.json()["error"]
    assert not broken.warmed_up


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_folder_with_only_pickle_weights_is_refused_naming_the_file(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(model_dir / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelFolderError, match=r"pytorch_model\.bin.*no safetensors"):
        check_model_folder(pickled)
    with pytest.raises(ModelFolderError, match=r"pytorch_model\.bin"):
        load_model(pickled)
    assert runtime_cli.main(["--model", str(pickled)]) == 2
    assert "pytorch_model.bin" in capsys.readouterr().err


def test_a_folder_that_asks_for_custom_code_or_has_no_weights_is_refused(
    model_dir: Path, tmp_path: Path
) -> None:
    custom = tmp_path / "custom"
    shutil.copytree(model_dir, custom)
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Model"}
    (custom / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="trust_remote_code"):
        check_model_folder(custom)
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(model_dir / "config.json", empty / "config.json")
    with pytest.raises(ModelFolderError, match="no weights"):
        check_model_folder(empty)
    with pytest.raises(ModelFolderError, match=r"no config\.json"):
        check_model_folder(tmp_path)


def test_the_command_serves_a_model_folder_over_http(model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    args = [sys.executable, "-m", "llmops.model_runtime", "--model", str(model_dir)]
    args += ["--served-model-name", SERVED, "--port", str(port), "--threads", "1"]
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "runtime.log"
    with (
        serving_process(args, health_url=f"{url}/health", log_path=log, env=env),
        OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as sdk,
    ):
        answer = sdk.chat.completions.create(model=SERVED, messages=HI, max_tokens=3)
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == 7
    assert 1 <= answer.usage.completion_tokens <= 3


def test_the_sampling_defaults_stop_at_the_engines_default_length(engine: Engine) -> None:
    finished = engine.complete(
        engine.text_prompt("The town"), SamplingParams(temperature=0, ignore_eos=True)
    )
    assert finished.completion_tokens == engine.default_max_tokens == 16
    assert finished.reason == "length"
