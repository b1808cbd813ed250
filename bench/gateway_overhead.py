"""``gateway-overhead``: what the inference gateway adds to a request, on one real model
runtime (a tiny GPT-2, ``python -m llmops.model_runtime``, one torch thread) and one real
``llmops up`` whose serving plugin points an endpoint at it, each in a process of its own.

The claim it checks: LLM gateways add 2-4 ms per request (LiteLLM, Portkey); ours should
add well under that, and it passes a stream on chunk by chunk. The issue's targets (P3,
P4): the gateway adds at most 1 ms at p50 and 3 ms at p99 to a request, keeps at least 0.9
of the direct path's throughput under concurrent load, passes on every chunk of a stream
as it came (as many HTTP chunks out as in) and adds at most 1 ms to its first chunk. A
missed target is a finding (``SUSPICIOUS``). Both paths send the same body with the same
client library, the same way, alternately:

* platform: ``POST /llm-ops/v1/openai/v1/chat/completions`` with ``model`` = the endpoint's
  name and a viewer key (auth, the endpoint's lookup, the forward, the relay);
* direct: ``POST {runtime}/v1/chat/completions``;
* proxy (one-at-a-time cases only): the same through :data:`REFERENCE_PROXY`, the
  smallest proxy built as the gateway is (uvicorn, aiohttp): what one more Python hop
  costs on this machine, whoever writes it. Not a target: it tells the platform's own
  cost from the hop's when a latency target is missed.

Cases: a one-token chat, one request at a time (keep-alive httpx; the p50 and p99
differences are the gateway's cost per request); the same chat from 16 and 32 concurrent
clients for a few seconds a burst (aiohttp, whose client costs less CPU than httpx's on
this 2-core class of machine: the client shares the machine with both servers), bursts
alternating between the paths; and a stream of 64 tokens (``ignore_eos``, so its length
is fixed; aiohttp, which shows the HTTP chunks as they were framed): its chunks and
server-sent events are counted on both paths (a difference is a failure: the gateway
must pass on every chunk as it came), and the time to the first chunk and to the end of
the stream are timed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx
from harness import (
    PartialFailure,
    Result,
    Stats,
    child_pid,
    clean_env,
    cpu_seconds,
    describe,
    environment,
    fmt_seconds,
    percentile,
    rotate,
)

if TYPE_CHECKING:
    from llmops.testing.console import ConsoleServer

NAME = "gateway-overhead"
API = "/llm-ops/v1"
#: the serving endpoint's name: what a platform caller passes as ``model``
ENDPOINT = "bench-tiny"
#: the name the model runtime serves, which the plugin's inference target names
SERVED_MODEL = "tiny-gpt2"
STREAM_TOKENS = 64
#: enough one-at-a-time rounds for a p99 that is not one unlucky sample
DEFAULT_CALL_ROUNDS = 1000
DEFAULT_STREAM_ROUNDS = 50
#: warm-up rounds (not kept): connections, SQLAlchemy's statement cache, torch's kernels
CALL_WARMUP = 50
STREAM_WARMUP = 5
#: concurrent clients, and the bursts of each path at each level (alternating)
LOAD_CLIENTS = (16, 32)
LOAD_BURSTS = 4
LOAD_BURST_SECONDS = 2.0
LOAD_WARMUP_SECONDS = 0.5
#: the issue's targets (P3, P4): LiteLLM and Portkey add 2-4 ms a request
TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 3.0
TARGET_THROUGHPUT_RATIO = 0.9
TARGET_ADDED_FIRST_CHUNK_MS = 1.0
#: a stream whose first event comes after this share of its whole time looks buffered
BUFFERED_SHARE = 0.5


#: With this prompt the tiny model's tokens decode to text one by one, so a stream sends
#: about one event a token (a token that decodes to half a character sends none)
CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0}
#: clock ticks a second, for the CPU times in /proc/<pid>/stat


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


#: The smallest useful proxy, run as a third path: uvicorn, and aiohttp to the runtime, as
#: the gateway is built; no key, no endpoint lookup, no metrics, no fallback. What one more
#: Python HTTP hop costs on this machine, whoever writes it: the platform's own cost is
#: what it adds beyond this.
REFERENCE_PROXY = """
import json, sys
import aiohttp, uvicorn

ORIGIN, MODEL = sys.argv[2], sys.argv[3]
session = None


async def app(scope, receive, send):
    global session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                if session is not None:
                    await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/health":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if session is None:
        session = aiohttp.ClientSession()
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    request = {**json.loads(body), "model": MODEL}
    async with session.post(
        ORIGIN + scope["path"],
        data=json.dumps(request).encode(),
        headers={"Content-Type": "application/json"},
    ) as answer:
        kind = answer.headers.get("Content-Type", "application/json").encode()
        if request.get("stream"):
            start = {"type": "http.response.start", "status": answer.status}
            await send({**start, "headers": [(b"content-type", kind)]})
            async for data, _ in answer.content.iter_chunks():
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        data = await answer.read()
    headers = [(b"content-type", kind), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@contextmanager
def _reference_proxy(root: Path, runtime: str) -> Iterator[tuple[str, int]]:
    """:data:`REFERENCE_PROXY` in front of the runtime; yields its OpenAI base URL and its
    process id."""
    from llmops.testing.processes import free_port, serving_process

    port = free_port()
    origin = runtime.removesuffix("/v1")
    with serving_process(
        [sys.executable, "-c", REFERENCE_PROXY, str(port), origin, SERVED_MODEL],
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=root / "reference-proxy.log",
        env=clean_env(),
        what="the reference proxy",
    ) as process:
        yield f"http://127.0.0.1:{port}/v1", process.pid


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

    first_chunk: float
    total: float
    chunks: int  # HTTP chunks, as the server framed them
    events: int  # server-sent events
    text: str


@dataclass
class Paths:
    """The same chat, through the platform, straight to the runtime, and through the
    reference proxy."""

    platform_client: httpx.Client
    direct_client: httpx.Client
    proxy_client: httpx.Client
    platform_url: str
    direct_url: str
    proxy_url: str
    platform_key: str
    #: one event loop for the aiohttp cases, kept between rounds
    loop: asyncio.Runner
    #: the processes whose CPU time is read (None: not on this system)
    platform_pid: int | None = None
    runtime_pid: int | None = None
    proxy_pid: int | None = None
    #: each path's answers' text, to check both paths generate the same tokens
    texts: dict[str, set[str]] = field(default_factory=dict)
    streams: dict[str, list[Streamed]] = field(default_factory=dict)

    def cpu(self) -> tuple[float, float] | None:
        """CPU seconds the platform and the runtime have used so far."""
        platform, runtime = cpu_seconds(self.platform_pid), cpu_seconds(self.runtime_pid)
        return None if platform is None or runtime is None else (platform, runtime)

    def cpu_note(
        self, before: tuple[float, float] | None, requests: int, what: str, *, served: int = 2
    ) -> str | None:
        """The CPU each process spent per request since ``before``, ``requests`` a path
        (the runtime served ``served`` paths): unlike wall time it hardly grows when other
        processes load the machine."""
        after = self.cpu()
        if before is None or after is None:
            return None
        platform = (after[0] - before[0]) / requests
        runtime = (after[1] - before[1]) / (served * requests)
        return (
            f"CPU per {what}: the platform's process {_ms(platform)}, the model runtime's "
            f"{_ms(runtime)} (/proc, warm-up included)"
        )

    def _target(self, path: str) -> tuple[httpx.Client, str, str]:
        if path == "platform":
            return self.platform_client, self.platform_url, ENDPOINT
        if path == "proxy":
            return self.proxy_client, self.proxy_url, SERVED_MODEL
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

    def _aio_target(self, path: str) -> tuple[str, dict[str, str], str]:
        if path == "platform":
            headers = {"Authorization": f"Bearer {self.platform_key}"}
            return self.platform_url, headers, ENDPOINT
        if path == "proxy":
            return self.proxy_url, {}, SERVED_MODEL
        return self.direct_url, {}, SERVED_MODEL

    def stream(
        self, path: str, body: dict[str, Any], session: aiohttp.ClientSession
    ) -> Callable[[], float]:
        """One stream; returns the time to its first chunk (the rest goes to streams)."""
        url, headers, model = self._aio_target(path)
        payload = {**body, "model": model, "stream": True}

        async def one() -> float:
            first: float | None = None
            chunks: list[bytes] = []
            part = b""
            started = time.perf_counter()
            async with session.post(url, json=payload, headers=headers) as answer:
                if answer.status != 200:
                    text = await answer.text()
                    raise RuntimeError(f"{path}: POST {url} (stream): {answer.status} {text[:500]}")
                async for data, whole in answer.content.iter_chunks():
                    if first is None and data:
                        first = time.perf_counter() - started
                    part += data
                    if whole and part:
                        chunks.append(part)
                        part = b""
            total = time.perf_counter() - started
            if part:
                chunks.append(part)  # not chunked: one stream of bytes
            events = [
                line[len("data:") :].strip()
                for line in b"".join(chunks).decode().split("\n")
                if line.startswith("data:")
            ]
            if first is None or not events or events[-1] != "[DONE]":
                raise RuntimeError(f"{path}: the stream did not end with [DONE]: {events[-3:]}")
            text = "".join(
                choice["delta"].get("content") or ""
                for event in events[:-1]
                for choice in json.loads(event).get("choices", [])
            )
            self.streams.setdefault(path, []).append(
                Streamed(first, total, len(chunks), len(events), text)
            )
            return first

        return lambda: self.loop.run(one())

    def load(self, path: str, body: dict[str, Any], clients: int, seconds: float) -> float:
        """``clients`` concurrent clients sending ``body`` for ``seconds``, each waiting
        for its answer before the next; returns the answers a second."""
        url, headers, model = self._aio_target(path)
        payload = json.dumps({**body, "model": model}).encode()
        headers = {**headers, "Content-Type": "application/json"}

        async def burst() -> float:
            connector = aiohttp.TCPConnector(limit=clients)
            async with aiohttp.ClientSession(connector=connector) as session:
                done = 0
                started = time.perf_counter()
                deadline = started + seconds

                async def client() -> None:
                    nonlocal done
                    while time.perf_counter() < deadline:
                        async with session.post(url, data=payload, headers=headers) as answer:
                            content = await answer.read()
                            if answer.status != 200:
                                raise RuntimeError(
                                    f"{path}: POST {url}: {answer.status} {content[:500]!r}"
                                )
                        done += 1

                await asyncio.gather(*(client() for _ in range(clients)))
                return done / (time.perf_counter() - started)

        return self.loop.run(burst())


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
        environment(
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
        proxy, proxy_pid = stack.enter_context(_reference_proxy(root, runtime))
        platform_client = stack.enter_context(
            httpx.Client(
                headers={"Authorization": f"Bearer {platform.key('viewer')}"},
                timeout=60,
                trust_env=False,
            )
        )
        direct_client = stack.enter_context(httpx.Client(timeout=60, trust_env=False))
        proxy_client = stack.enter_context(httpx.Client(timeout=60, trust_env=False))
        paths = Paths(
            platform_client=platform_client,
            direct_client=direct_client,
            proxy_client=proxy_client,
            platform_url=f"{platform.url}{API}/openai/v1/chat/completions",
            direct_url=f"{runtime}/chat/completions",
            proxy_url=f"{proxy}/chat/completions",
            platform_key=platform.key("viewer"),
            loop=stack.enter_context(asyncio.Runner()),
            platform_pid=child_pid("llmops up"),
            runtime_pid=child_pid("llmops.model_runtime"),
            proxy_pid=proxy_pid,
        )
        cases: list[tuple[str, Callable[[], list[Result]]]] = [
            ("one-token chat", lambda: [_call_case(paths, call_rounds)]),
            ("concurrent chats", lambda: _load_case(paths)),
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
    proxy_cpu = cpu_seconds(paths.proxy_pid)
    stats = rotate(
        {path: paths.call(path, body) for path in ("platform", "direct", "proxy")},
        rounds=rounds,
        warmup=CALL_WARMUP,
        progress=f"{NAME} one-token chat",
    )
    platform, direct, proxy = stats["platform"], stats["direct"], stats["proxy"]
    result = Result(NAME, "chat, max_tokens=1: one request", platform, direct, "median")
    p99 = {path: percentile(s.samples, 99) for path, s in stats.items()}
    added = platform.median - direct.median
    added_p99 = p99["platform"] - p99["direct"]
    note = (
        f"the gateway adds {_ms(added)} at p50 (target <= {TARGET_ADDED_P50_MS:g} ms), "
        f"{_ms(platform.p95 - direct.p95)} at p95, {_ms(added_p99)} at p99 (target <= "
        f"{TARGET_ADDED_P99_MS:g} ms; p99 platform {_ms(p99['platform'])}, direct "
        f"{_ms(p99['direct'])}); {result.ratio:.2f}x the runtime's own answer "
        "(LiteLLM, Portkey add 2-4 ms)"
    )
    if added * 1e3 > TARGET_ADDED_P50_MS or added_p99 * 1e3 > TARGET_ADDED_P99_MS:
        note = f"SUSPICIOUS: target missed: {note}"
    result.notes.append(note)
    result.notes.append(
        f"the reference proxy (uvicorn + aiohttp, no key, lookup or metrics) adds "
        f"{_ms(proxy.median - direct.median)} at p50, {_ms(p99['proxy'] - p99['direct'])} at "
        f"p99: any Python proxy hop's cost on this machine; the platform's own beyond it: "
        f"{_ms(platform.median - proxy.median)} at p50"
    )
    cpu_note = paths.cpu_note(cpu, CALL_WARMUP + rounds, "request", served=3)
    proxy_after = cpu_seconds(paths.proxy_pid)
    if cpu_note is not None and proxy_cpu is not None and proxy_after is not None:
        proxy_share = _ms((proxy_after - proxy_cpu) / (CALL_WARMUP + rounds))
        cpu_note = cpu_note.replace(" (/proc", f", the reference proxy's {proxy_share} (/proc")
    if cpu_note is not None:
        result.notes.append(cpu_note)
    texts = paths.texts
    if len({frozenset(texts.get(path, ())) for path in stats}) != 1 or len(texts["direct"]) != 1:
        raise RuntimeError(f"the paths answered different completions: {texts}")
    print(describe(result))
    for line in result.notes:
        print(f"    {line}")
    return result


def _load_case(paths: Paths) -> list[Result]:
    """Answers a second from concurrent clients, in bursts alternating between the paths;
    the samples are seconds per answer (1 / throughput), so the ratio is direct's
    throughput over the platform's."""
    body = {**CHAT, "max_tokens": 1}
    results: list[Result] = []
    for clients in LOAD_CLIENTS:
        cpu = paths.cpu()
        for path in ("platform", "direct"):
            paths.load(path, body, clients, LOAD_WARMUP_SECONDS)
        rates: dict[str, list[float]] = {"platform": [], "direct": []}
        for burst in range(LOAD_BURSTS):
            order = ("platform", "direct") if burst % 2 == 0 else ("direct", "platform")
            for path in order:
                rates[path].append(paths.load(path, body, clients, LOAD_BURST_SECONDS))
        platform = Stats([1 / rate for rate in rates["platform"]])
        direct = Stats([1 / rate for rate in rates["direct"]])
        result = Result(
            NAME, f"chat, max_tokens=1: {clients} concurrent clients", platform, direct, "median"
        )
        throughput = {path: sum(r) / len(r) for path, r in rates.items()}
        ratio = throughput["platform"] / throughput["direct"]
        bursts = ", ".join(
            f"{p / d:.2f}" for p, d in zip(rates["platform"], rates["direct"], strict=True)
        )
        note = (
            f"throughput through the gateway {throughput['platform']:.0f}/s, direct "
            f"{throughput['direct']:.0f}/s: ratio {ratio:.2f} (target >= "
            f"{TARGET_THROUGHPUT_RATIO:g}; burst by burst {bursts}; {LOAD_BURSTS} bursts of "
            f"{LOAD_BURST_SECONDS:g} s a path)"
        )
        if ratio < TARGET_THROUGHPUT_RATIO:
            note = f"SUSPICIOUS: target missed: {note}"
        result.notes.append(note)
        after = paths.cpu()
        if cpu is not None and after is not None:
            answers = throughput["platform"] * (
                LOAD_BURSTS * LOAD_BURST_SECONDS + LOAD_WARMUP_SECONDS
            )
            result.notes.append(
                f"CPU per answer through the gateway: the platform's process "
                f"{_ms((after[0] - cpu[0]) / answers)} (/proc, warm-up included)"
            )
        print(describe(result))
        for line in result.notes:
            print(f"    {line}")
        results.append(result)
    return results


def _stream_case(paths: Paths, rounds: int) -> list[Result]:
    body = {**CHAT, "max_tokens": STREAM_TOKENS, "ignore_eos": True}
    cpu = paths.cpu()
    session = paths.loop.run(_session())
    try:
        firsts = rotate(
            {path: paths.stream(path, body, session) for path in ("platform", "direct", "proxy")},
            rounds=rounds,
            warmup=STREAM_WARMUP,
            progress=f"{NAME} stream",
        )
    finally:
        paths.loop.run(session.close())
    first_platform, first_direct = firsts["platform"], firsts["direct"]
    kept = {path: streams[STREAM_WARMUP:] for path, streams in paths.streams.items()}
    chunks = {path: sorted({s.chunks for s in streams}) for path, streams in kept.items()}
    counts = {path: sorted({s.events for s in streams}) for path, streams in kept.items()}
    texts = {path: {s.text for s in streams} for path, streams in kept.items()}
    in_out = [(p.chunks, d.chunks) for p, d in zip(kept["platform"], kept["direct"], strict=True)]
    if any(p != d for p, d in in_out) or len(chunks["direct"]) != 1:
        raise RuntimeError(
            f"the platform passed on {chunks['platform']} chunks a stream, the runtime sent "
            f"{chunks['direct']}: the gateway must pass on every chunk as it came"
        )
    if counts["platform"] != counts["direct"] or len(counts["direct"]) != 1:
        raise RuntimeError(
            f"the platform passed on {counts['platform']} events a stream, the runtime sent "
            f"{counts['direct']}: the gateway must pass on every event"
        )
    if texts["platform"] != texts["direct"] or len(texts["direct"]) != 1:
        raise RuntimeError("the streams' texts differ between the platform and the runtime")
    total = {path: Stats([s.total for s in streams]) for path, streams in kept.items()}
    case = f"stream of {STREAM_TOKENS} tokens"
    first = Result(NAME, f"{case}: first chunk", first_platform, first_direct, "median")
    whole = Result(NAME, f"{case}: whole stream", total["platform"], total["direct"], "median")
    events = counts["direct"][0]
    passed = (
        f"{chunks['direct'][0]} HTTP chunks in (from the runtime) and out (from the gateway), "
        f"every round; {events} server-sent events a stream on both paths (the role chunk, "
        "one a token that completes a character, the finish chunk, [DONE]); same text"
    )
    added_first = first_platform.median - first_direct.median
    note = (
        f"the gateway adds {_ms(added_first)} to the first chunk at p50 (target <= "
        f"{TARGET_ADDED_FIRST_CHUNK_MS:g} ms)"
    )
    if added_first * 1e3 > TARGET_ADDED_FIRST_CHUNK_MS:
        note = f"SUSPICIOUS: target missed: {note}"
    first.notes.append(note)
    first.notes.append(
        f"the reference proxy adds {_ms(firsts['proxy'].median - first_direct.median)} to "
        f"the first chunk at p50; the platform beyond it: "
        f"{_ms(first_platform.median - firsts['proxy'].median)}"
    )
    whole.notes.append(passed)
    whole.notes.append(
        f"the gateway adds {_ms(total['platform'].median - total['direct'].median)} to the "
        f"whole stream at p50 ({_ms((total['platform'].median - total['direct'].median) / events)}"
        " an event)"
    )
    share = first_platform.median / total["platform"].median
    relayed = (
        f"through the platform the first chunk comes at {share:.0%} of the stream's time "
        f"({fmt_seconds(first_platform.median)} of {fmt_seconds(total['platform'].median)}; "
        f"direct {first_direct.median / total['direct'].median:.0%})"
    )
    if share > BUFFERED_SHARE:
        relayed = f"SUSPICIOUS: {relayed}: the gateway looks like it buffers the stream"
    else:
        relayed += ": passed on as it comes, not buffered"
    first.notes.append(relayed)
    cpu_note = paths.cpu_note(cpu, STREAM_WARMUP + rounds, "stream", served=3)
    if cpu_note is not None:
        whole.notes.append(cpu_note)
    for result in (first, whole):
        print(describe(result))
        for line in result.notes:
            print(f"    {line}")
    return [first, whole]


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
