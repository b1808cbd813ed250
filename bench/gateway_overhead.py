"""``gateway-overhead``: what the inference gateway adds to a request, on one real model
runtime (a tiny GPT-2, ``python -m llmops.model_runtime``, one torch thread) and one real
``llmops up`` whose serving plugin points an endpoint at it, each in a process of its own.

The claim it checks: LLM gateways add 2-4 ms per request (LiteLLM, Portkey); ours should
add well under that, and it passes a stream on chunk by chunk. Both paths send the same
body with a keep-alive httpx client:

* platform: ``POST /llm-ops/v1/openai/v1/chat/completions`` with ``model`` = the endpoint's
  name and a viewer key (auth, the endpoint's lookup, the forward, the relay);
* direct: ``POST {runtime}/v1/chat/completions``.

Cases: a one-token chat (the median difference is the gateway's cost per request), and a
stream of 64 tokens (``ignore_eos``, so its length is fixed): its server-sent events are
counted on both paths (a difference is a failure: the gateway must pass on every event),
and the time to the first event and to the end of the stream are timed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from harness import PartialFailure, Result, Stats, alternate, clean_env, describe, fmt_seconds

if TYPE_CHECKING:
    from llmops.testing.console import ConsoleServer

NAME = "gateway-overhead"
API = "/llm-ops/v1"
#: the serving endpoint's name: what a platform caller passes as ``model``
ENDPOINT = "bench-tiny"
#: the name the model runtime serves, which the plugin's inference target names
SERVED_MODEL = "tiny-gpt2"
STREAM_TOKENS = 64
DEFAULT_CALL_ROUNDS = 300
DEFAULT_STREAM_ROUNDS = 30
#: warm-up rounds (not kept): connections, SQLAlchemy's statement cache, torch's kernels
CALL_WARMUP = 20
STREAM_WARMUP = 3
#: LiteLLM and Portkey add 2-4 ms a request; ours should add well under the low end
TARGET_ADDED_MS = 2.0
#: a stream whose first event comes after this share of its whole time looks buffered
BUFFERED_SHARE = 0.5


#: With this prompt the tiny model's tokens decode to text one by one, so a stream sends
#: about one event a token (a token that decodes to half a character sends none)
CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0}
#: clock ticks a second, for the CPU times in /proc/<pid>/stat
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@contextmanager
def _environment(tmp: Path, **values: str) -> Iterator[None]:
    """``values`` in os.environ and every temp dir under ``tmp`` (for this process and
    the servers it starts), restored afterwards."""
    values = {**values, "TMPDIR": str(tmp)}
    saved = {name: os.environ.get(name) for name in values}
    saved_tempdir = tempfile.tempdir
    os.environ.update(values)
    tempfile.tempdir = str(tmp)
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _child_pid(marker: str) -> int | None:
    """The pid of this process's child whose command line holds ``marker``; None where
    there is no /proc (the CPU notes are left out there)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid() and marker in command:
            return int(entry.name)
    return None


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds the process has used so far (/proc/<pid>/stat)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@contextmanager
def _model_runtime(root: Path) -> Iterator[str]:
    """A tiny GPT-2 served by ``python -m llmops.model_runtime`` in its own process, with
    one torch thread; yields its OpenAI base URL (``.../v1``)."""
    from llmops.testing.models import tiny_causal_lm
    from llmops.testing.processes import free_port, serving_process

    folder = tiny_causal_lm(root / "model")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "llmops.model_runtime", "--model", str(folder)]
    args += ["--served-model-name", SERVED_MODEL, "--port", str(port), "--threads", "1"]
    args += ["--device", "cpu"]
    with serving_process(
        args,
        health_url=f"{url}/health",
        log_path=root / "model-runtime.log",
        env=clean_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"),
        timeout=120,
        what="the model runtime",
    ):
        yield f"{url}/v1"


def _create_endpoint(platform: ConsoleServer, runtime: str) -> None:
    """A catalog model whose URI is the runtime, and a serving endpoint on it."""
    model = platform.api.post(
        f"{API}/catalog/models", json={"name": f"model-{ENDPOINT}", "uri": runtime}
    )
    if model.status_code != 201:
        raise RuntimeError(f"POST catalog/models: {model.status_code} {model.text[:500]}")
    body = {"name": ENDPOINT, "modelId": model.json()["id"], "framework": "direct"}
    created = platform.api.post(f"{API}/serving/endpoints", json=body)
    if created.status_code != 201 or created.json().get("status") != "ready":
        raise RuntimeError(f"POST serving/endpoints: {created.status_code} {created.text[:500]}")


@dataclass
class Streamed:
    """One stream as a client saw it (seconds since the request was sent)."""

    first_event: float
    total: float
    events: int
    text: str


@dataclass
class Paths:
    """The same chat, through the platform and straight to the runtime."""

    platform_client: httpx.Client
    direct_client: httpx.Client
    platform_url: str
    direct_url: str
    #: the processes whose CPU time is read (None: not on this system)
    platform_pid: int | None = None
    runtime_pid: int | None = None
    #: each path's answers' text, to check both paths generate the same tokens
    texts: dict[str, set[str]] = field(default_factory=dict)
    streams: dict[str, list[Streamed]] = field(default_factory=dict)

    def cpu(self) -> tuple[float, float] | None:
        """CPU seconds the platform and the runtime have used so far."""
        platform, runtime = _cpu_seconds(self.platform_pid), _cpu_seconds(self.runtime_pid)
        return None if platform is None or runtime is None else (platform, runtime)

    def cpu_note(self, before: tuple[float, float] | None, requests: int, what: str) -> str | None:
        """The CPU each process spent per request since ``before``, ``requests`` a path:
        unlike wall time it hardly grows when other processes load the machine."""
        after = self.cpu()
        if before is None or after is None:
            return None
        platform = (after[0] - before[0]) / requests
        runtime = (after[1] - before[1]) / (2 * requests)  # it served both paths
        return (
            f"CPU per {what}: the platform's process {_ms(platform)}, the model runtime's "
            f"{_ms(runtime)} (/proc, warm-up included)"
        )

    def _target(self, path: str) -> tuple[httpx.Client, str, str]:
        if path == "platform":
            return self.platform_client, self.platform_url, ENDPOINT
        return self.direct_client, self.direct_url, SERVED_MODEL

    def call(self, path: str, body: dict[str, Any]) -> Callable[[], float]:
        client, url, model = self._target(path)
        payload = {**body, "model": model}

        def run() -> float:
            started = time.perf_counter()
            answer = client.post(url, json=payload)
            seconds = time.perf_counter() - started
            if answer.status_code != 200:
                raise RuntimeError(f"{path}: POST {url}: {answer.status_code} {answer.text[:500]}")
            content = answer.json()["choices"][0]["message"]["content"]
            self.texts.setdefault(path, set()).add(content)
            return seconds

        return run

    def stream(self, path: str, body: dict[str, Any]) -> Callable[[], float]:
        """One stream; returns the time to its first event (the rest goes to streams)."""
        client, url, model = self._target(path)
        payload = {**body, "model": model, "stream": True}

        def run() -> float:
            first: float | None = None
            events: list[str] = []
            started = time.perf_counter()
            with client.stream("POST", url, json=payload) as answer:
                if answer.status_code != 200:
                    answer.read()
                    raise RuntimeError(
                        f"{path}: POST {url} (stream): {answer.status_code} {answer.text[:500]}"
                    )
                for line in answer.iter_lines():
                    if line.startswith("data:"):
                        if first is None:
                            first = time.perf_counter() - started
                        events.append(line[len("data:") :].strip())
            total = time.perf_counter() - started
            if first is None or not events or events[-1] != "[DONE]":
                raise RuntimeError(f"{path}: the stream did not end with [DONE]: {events[-3:]}")
            text = "".join(
                choice["delta"].get("content") or ""
                for event in events[:-1]
                for choice in json.loads(event).get("choices", [])
            )
            self.streams.setdefault(path, []).append(Streamed(first, total, len(events), text))
            return first

        return run


def run(workdir: Path, rounds: int | None = None) -> list[Result]:
    from llmops.config import CoreSettings
    from llmops.testing.console import running_platform
    from llmops.testing.models import DIRECT_SERVING_PLUGIN
    from llmops.testing.plugins import temporary_plugin

    sync_interval = CoreSettings.model_fields["sync_interval_seconds"].default

    call_rounds = rounds or DEFAULT_CALL_ROUNDS
    stream_rounds = rounds or DEFAULT_STREAM_ROUNDS
    root = Path(tempfile.mkdtemp(prefix="gateway-overhead-", dir=workdir))
    tmp = root / "tmp"
    tmp.mkdir()
    results: list[Result] = []
    errors: list[str] = []
    with (
        _environment(
            tmp,
            HF_HOME=str(root / "hf"),
            HF_HUB_OFFLINE="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            TRANSFORMERS_OFFLINE="1",
            TORCH_HOME=str(root / "torch"),
        ),
        ExitStack() as stack,
    ):
        started = time.perf_counter()
        runtime = stack.enter_context(_model_runtime(root))
        seconds = time.perf_counter() - started
        print(f"  model runtime (tiny GPT-2, 1 torch thread) up in {seconds:.1f} s")
        # The plugin's module and dist-info in a folder of their own, on the platform's
        # PYTHONPATH: importlib.metadata finds its entry point like an installed one's.
        stack.enter_context(temporary_plugin(root, "direct", DIRECT_SERVING_PLUGIN))
        started = time.perf_counter()
        platform = stack.enter_context(
            running_platform(
                env={
                    "LLMOPS_PLUGINS": "direct",
                    "PYTHONPATH": str(root / "site-direct"),
                    # the background worker at its own pace, not the tests' quicker one
                    "LLMOPS_SYNC_INTERVAL_SECONDS": str(sync_interval),
                },
                console=False,
            )
        )
        print(f"  llmops up (plugin direct) in {time.perf_counter() - started:.1f} s")
        _create_endpoint(platform, runtime)
        platform_client = stack.enter_context(
            httpx.Client(
                headers={"Authorization": f"Bearer {platform.key('viewer')}"},
                timeout=60,
                trust_env=False,
            )
        )
        direct_client = stack.enter_context(httpx.Client(timeout=60, trust_env=False))
        paths = Paths(
            platform_client=platform_client,
            direct_client=direct_client,
            platform_url=f"{platform.url}{API}/openai/v1/chat/completions",
            direct_url=f"{runtime}/chat/completions",
            platform_pid=_child_pid("llmops up"),
            runtime_pid=_child_pid("llmops.model_runtime"),
        )
        cases: list[tuple[str, Callable[[], list[Result]]]] = [
            ("one-token chat", lambda: [_call_case(paths, call_rounds)]),
            ("stream", lambda: _stream_case(paths, stream_rounds)),
        ]
        for label, case in cases:
            try:
                results.extend(case())
            except Exception as exc:
                error = f"{label}: {type(exc).__name__}: {exc}".splitlines()[0]
                print(f"  FAILED {error}")
                errors.append(error)
    if errors:
        raise PartialFailure(results, errors)
    return results


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def _call_case(paths: Paths, rounds: int) -> Result:
    body = {**CHAT, "max_tokens": 1}
    cpu = paths.cpu()
    platform, direct = alternate(
        paths.call("platform", body),
        paths.call("direct", body),
        rounds=rounds,
        warmup=CALL_WARMUP,
        progress=f"{NAME} one-token chat",
    )
    result = Result(NAME, "chat, max_tokens=1: one request", platform, direct, "median")
    added = platform.median - direct.median
    note = (
        f"the gateway adds {_ms(added)} at p50 ({_ms(platform.p95 - direct.p95)} at p95), "
        f"{result.ratio:.2f}x the runtime's own answer; "
        f"target: well under {TARGET_ADDED_MS:.0f} ms (LiteLLM, Portkey add 2-4 ms)"
    )
    if added * 1e3 > TARGET_ADDED_MS:
        note = f"SUSPICIOUS: {note}"
    result.notes.append(note)
    cpu_note = paths.cpu_note(cpu, CALL_WARMUP + rounds, "request")
    if cpu_note is not None:
        result.notes.append(cpu_note)
    texts = paths.texts
    if texts.get("platform") != texts.get("direct") or len(texts.get("direct", ())) != 1:
        raise RuntimeError(f"the two paths answered different completions: {texts}")
    print(describe(result))
    for line in result.notes:
        print(f"    {line}")
    return result


def _stream_case(paths: Paths, rounds: int) -> list[Result]:
    body = {**CHAT, "max_tokens": STREAM_TOKENS, "ignore_eos": True}
    cpu = paths.cpu()
    first_platform, first_direct = alternate(
        paths.stream("platform", body),
        paths.stream("direct", body),
        rounds=rounds,
        warmup=STREAM_WARMUP,
        progress=f"{NAME} stream",
    )
    kept = {path: streams[STREAM_WARMUP:] for path, streams in paths.streams.items()}
    counts = {path: sorted({s.events for s in streams}) for path, streams in kept.items()}
    texts = {path: {s.text for s in streams} for path, streams in kept.items()}
    if counts["platform"] != counts["direct"] or len(counts["direct"]) != 1:
        raise RuntimeError(
            f"the platform passed on {counts['platform']} events a stream, the runtime sent "
            f"{counts['direct']}: the gateway must pass on every event"
        )
    if texts["platform"] != texts["direct"] or len(texts["direct"]) != 1:
        raise RuntimeError("the streams' texts differ between the platform and the runtime")
    total = {path: Stats([s.total for s in streams]) for path, streams in kept.items()}
    case = f"stream of {STREAM_TOKENS} tokens"
    first = Result(NAME, f"{case}: first event", first_platform, first_direct, "median")
    whole = Result(NAME, f"{case}: whole stream", total["platform"], total["direct"], "median")
    events = counts["direct"][0]
    passed = (
        f"{events} server-sent events a stream on both paths, every round (the role chunk, one "
        f"a token that completes a character, the finish chunk, [DONE]); same text"
    )
    first.notes.append(
        f"the gateway adds {_ms(first_platform.median - first_direct.median)} to the first "
        f"event at p50"
    )
    whole.notes.append(passed)
    whole.notes.append(
        f"the gateway adds {_ms(total['platform'].median - total['direct'].median)} to the "
        f"whole stream at p50 ({_ms((total['platform'].median - total['direct'].median) / events)}"
        " an event)"
    )
    share = first_platform.median / total["platform"].median
    relayed = (
        f"through the platform the first event comes at {share:.0%} of the stream's time "
        f"({fmt_seconds(first_platform.median)} of {fmt_seconds(total['platform'].median)}; "
        f"direct {first_direct.median / total['direct'].median:.0%})"
    )
    if share > BUFFERED_SHARE:
        relayed = f"SUSPICIOUS: {relayed}: the gateway looks like it buffers the stream"
    else:
        relayed += ": passed on as it comes, not buffered"
    first.notes.append(relayed)
    cpu_note = paths.cpu_note(cpu, STREAM_WARMUP + rounds, "stream")
    if cpu_note is not None:
        whole.notes.append(cpu_note)
    for result in (first, whole):
        print(describe(result))
        for note in result.notes:
            print(f"    {note}")
    return [first, whole]
