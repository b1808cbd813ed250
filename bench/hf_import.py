"""``hf-import``: a model imported from the Hugging Face Hub through the platform, against
``huggingface_hub.snapshot_download`` of the same repository from the same Hub double
(``llmops.testing.hf``, in this process), with one real ``llmops up`` with the hf plugin
on (its own process).

The issue's targets (hub-1): importing a 200 MB multi-file model through the platform
takes at most 1.05x ``snapshot_download`` of the same repo from the same double in the
same run (p50), and the API's peak RSS during an import does not grow with the model's
size. A missed target is a finding (``SUSPICIOUS``).

The model: 4 safetensors shards (valid headers; their data a 16 MiB pool of random
bytes repeated from a different offset in each shard, as nothing between the paths and
the double compresses) with their index, ``config.json``, ``generation_config.json``, a
1 MiB ``tokenizer.json``, the tokenizer's config and special tokens, and a card
(README.md) with a license: 4 x 50 MiB for the issue's 200 MiB, 4 x 100 MiB for the
400 MiB model its peak RSS is compared with. The files are written once into the
benchmark's temp dir (in 1 MiB pieces).

Why 400 MiB and not a smaller model: huggingface_hub reads a download in 10 MiB chunks
and holds up to about 35 MiB per file in flight, so for shards under ~50 MiB its own peak
RSS grows with their size (snapshot_download alone, on a 2-core VM: 4 x 12.5 MiB about
90 MiB above idle, 4 x 50 MiB about 140 MiB, 4 x 100 MiB the same 140-150 MiB). Two
sizes both past that bound tell a peak that is bounded from one that follows the bytes.

Every download is a cold one, on every path: each round seeds a **fresh repository** on
the double from the same files (``add_repo`` with local paths: the double copies them
into its LFS store, outside the clocks), which every path downloads at its commit sha.
The platform has never seen that repository (its huggingface_hub cache, its state of
the commit and the catalog name are new); the other paths get empty folders. After each
import its files go (the catalog model deleted through the API and its repository's
folder removed from the plugin's cache; the other paths' folders removed), so the disk
holds one model at a time.

* platform: ``POST /llm-ops/v1/catalog/models/import`` with ``repoId``, ``revision`` (the
  sha) and a fresh ``name``, which must answer 202; then ``GET /catalog/models/{id}``
  every 100 ms until ``status`` is ``ready``. Timed from the POST to the model's
  ``updatedAt`` (set when its files are in place), so the poll's pace is not in it. The
  POST checks the import (``model_info``; the card and ``config.json`` read for the
  remote-code check); the background worker's long-work lane picks the operation up (the
  request wakes it when it commits; it also looks every ``sync_interval_seconds``) and
  downloads every file at the commit with ``hf_hub_download``, ``max_workers`` at once,
  hashing each file it placed (sha256, and the git blob id of the small ones) against the
  listing.
* platform worker: the same imports, from the worker's first request to the Hub (its
  ``model_info``, in the double's request log) to ready: the import without the POST and
  the wait for the worker.
* snapshot_download: ``snapshot_download(repo, revision=sha, cache_dir=<empty>,
  endpoint=<double>, token=False, max_workers=<the plugin's default>)``, progress bars
  off: the direct path.
* plugin: the plugin's own ``HfRegistry.import_model`` (fresh cache, state and
  destination), without the platform around it: where the worker's time goes.

The direct and plugin paths run in a process of their own each, started once (their
imports done and huggingface_hub's HTTP client warm after the warm-up round, as in the
platform's process) and timed inside it. Not in this process: the double's threads run
here, and a client here would share a GIL with the server it reads from while the
platform does not; this way every client is a process of its own on the same double.

The sizes take turns within each round (200 MiB first, then 400 MiB first) and the paths
rotate within each size (the plugin path for 200 MiB only), after one warm-up round.
Every import's files are checked: the platform's and the plugin's listing (path, sha256)
must equal the double's, and snapshot_download must leave the same paths.

Peak RSS: during every import each client's process is watched (``/proc/<pid>/status``:
``VmRSS`` sampled every 50 ms in a thread, and ``VmHWM`` after a reset through
``/proc/<pid>/clear_refs``, which catches a peak between two samples); the increase over
its ``VmRSS`` just before the import began is kept. The platform's 400 MiB imports'
median increase must stay within 10 MiB of its 200 MiB imports'; snapshot_download's is
given for reference.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from harness import (
    PartialFailure,
    Result,
    Stats,
    child_pid,
    cpu_seconds,
    describe,
    environment,
    fmt_seconds,
)

if TYPE_CHECKING:
    from llmops.testing.console import ConsoleServer
    from llmops.testing.hf import HfHubDouble, HubRequest

NAME = "hf-import"
API = "/llm-ops/v1"
IMPORT = f"{API}/catalog/models/import"
MODELS = f"{API}/catalog/models"
MIB = 1 << 20
NAMESPACE = "bench"
#: the issue's model, and the larger one its peak RSS is compared with (MiB)
SIZE = 200
RSS_SIZE = 400
SHARDS = 4
PLATFORM = "platform"
SNAPSHOT = "snapshot_download"
PLUGIN = "plugin"
#: the paths of each size, in the order of the first round (they rotate)
PATHS = {SIZE: (PLATFORM, SNAPSHOT, PLUGIN), RSS_SIZE: (PLATFORM, SNAPSHOT)}
DEFAULT_ROUNDS = 5
WARMUP = 1
TARGET_RATIO = 1.05
#: how much more the larger imports' peak RSS increase may be than the issue's model's
RSS_GROWTH_LIMIT = 10 * MIB
SAMPLE_SECONDS = 0.05
POLL_SECONDS = 0.1
IMPORT_TIMEOUT = 180.0
CLIENT_START_TIMEOUT = 60.0
TOKENIZER_BYTES = 1 * MIB
#: random bytes the shards' data repeats
POOL_BYTES = 16 * MIB
#: snapshot_download's library name, in its User-Agent
SNAPSHOT_AGENT = "llmops-bench-direct"

#: A client process (``snapshot`` or ``plugin``, its first argument): its imports done,
#: it downloads one repository per line of JSON on stdin and answers a line with the
#: seconds the download took (timed around that call only) and the files it left.
CLIENT = r"""
import json, os, sys, time, traceback
from pathlib import Path

KIND = sys.argv[1]
if KIND == "snapshot":
    from huggingface_hub import snapshot_download
else:
    from llmops.capabilities.registry import ImportRequest
    from llmops_hf.provider import HfRegistry
    from llmops_hf.settings import HfSettings
    import huggingface_hub  # the provider imports it on its first call


def snapshot(job):
    began = time.perf_counter()
    folder = snapshot_download(
        job["repoId"],
        revision=job["revision"],
        cache_dir=job["folder"] + "/cache",
        endpoint=job["endpoint"],
        token=False,
        max_workers=job["maxWorkers"],
        library_name=job["libraryName"],
    )
    seconds = time.perf_counter() - began
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, folder)] = None
    return seconds, files


def plugin(job):
    folder = Path(job["folder"])
    settings = HfSettings(
        endpoint=job["endpoint"], cache_dir=folder / "cache", max_workers=job["maxWorkers"]
    )
    registry = HfRegistry(settings, data_dir=folder / "data")
    request = ImportRequest(
        repo_id=job["repoId"], revision=job["revision"], destination=folder / "model"
    )
    began = time.perf_counter()
    result = registry.import_model(request)
    seconds = time.perf_counter() - began
    return seconds, {f.path: f.sha256 for f in result.files}


run = snapshot if KIND == "snapshot" else plugin
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    try:
        seconds, files = run(json.loads(line))
        print(json.dumps({"seconds": seconds, "files": files}), flush=True)
    except Exception:
        print(json.dumps({"error": traceback.format_exc()}), flush=True)
"""


# -- the model's files ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFiles:
    """One model's files on disk, as a repository on the double is seeded from them."""

    size_mib: int
    files: dict[str, Path | str]

    @property
    def total_bytes(self) -> int:
        return sum(
            p.stat().st_size if isinstance(p, Path) else len(p.encode())
            for p in self.files.values()
        )


def _write_shard(path: Path, tensor: str, data_bytes: int, pool: bytes, start: int) -> None:
    """A safetensors file holding one F32 tensor: an 8-byte header length, the JSON header
    (padded to 8 bytes, as safetensors writes it), then the data: ``pool`` (random bytes)
    over and over from offset ``start``, so shards with different starts differ."""
    header = {
        "__metadata__": {"format": "pt"},
        tensor: {"dtype": "F32", "shape": [data_bytes // 4], "data_offsets": [0, data_bytes]},
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    ring = pool + pool[:MIB]
    offset = start % len(pool)
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        left = data_bytes
        while left:
            piece = min(left, MIB)
            out.write(ring[offset : offset + piece])
            offset = (offset + piece) % len(pool)
            left -= piece


def _tokenizer(size: int) -> str:
    """A tokenizer.json of about ``size`` bytes (a BPE vocabulary)."""
    vocab: dict[str, int] = {}
    length = 60
    for index in itertools.count():
        token = f"tok{index:06d}"
        vocab[token] = index
        length += len(token) + 12
        if length >= size:
            break
    return json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": []}})


def write_model(folder: Path, size_mib: int, pool: bytes) -> ModelFiles:
    """The model of ``size_mib`` MiB in :data:`SHARDS` shards (their data from ``pool``),
    with the files a transformers checkpoint carries beside them."""
    folder.mkdir(parents=True)
    shard_bytes = size_mib * MIB // SHARDS
    files: dict[str, Path | str] = {}
    weight_map = {}
    for index in range(1, SHARDS + 1):
        name = f"model-{index:05d}-of-{SHARDS:05d}.safetensors"
        tensor = f"model.layers.{index - 1}.weight"
        path = folder / name
        _write_shard(path, tensor, shard_bytes, pool, start=(size_mib + index) * 4099)
        files[name] = path
        weight_map[tensor] = name
    index_json = {"metadata": {"total_size": SHARDS * shard_bytes}, "weight_map": weight_map}
    files["model.safetensors.index.json"] = json.dumps(index_json, indent=2)
    files["config.json"] = json.dumps(
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096},
        indent=2,
    )
    files["generation_config.json"] = json.dumps({"bos_token_id": 1, "eos_token_id": 2})
    files["tokenizer.json"] = _tokenizer(TOKENIZER_BYTES)
    files["tokenizer_config.json"] = json.dumps(
        {"tokenizer_class": "LlamaTokenizerFast", "model_max_length": 4096}
    )
    files["special_tokens_map.json"] = json.dumps({"bos_token": "<s>", "eos_token": "</s>"})
    return ModelFiles(size_mib, files)


# -- processes: their RSS and CPU -----------------------------------------------------------


def _status_bytes(pid: int, field_name: str) -> int | None:
    """A ``kB`` line of /proc/<pid>/status, in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class RssWatch:
    """The peak RSS of one process while a block runs, above its RSS when it began:
    ``VmRSS`` sampled every :data:`SAMPLE_SECONDS` in a thread, and ``VmHWM`` (the
    kernel's own high-water mark, reset at the start through ``clear_refs``; a peak
    between two samples is in it)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.idle: int | None = None
        self.peak: int | None = None
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled = 0

    def __enter__(self) -> RssWatch:
        if self.pid is None:
            return self
        self.idle = _status_bytes(self.pid, "VmRSS")
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self._sampled = self.idle or 0
        self._thread = threading.Thread(target=self._sample, name="rss-watch", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        assert self.pid is not None
        while not self._stop.wait(SAMPLE_SECONDS):
            rss = _status_bytes(self.pid, "VmRSS")
            if rss is not None:
                self._sampled = max(self._sampled, rss)

    def __exit__(self, *exc: object) -> None:
        if self.pid is None or self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        peak = self._sampled
        if self.hwm_reset:
            peak = max(peak, _status_bytes(self.pid, "VmHWM") or 0)
        self.peak = peak

    @property
    def increase(self) -> int | None:
        if self.idle is None or self.peak is None:
            return None
        return max(0, self.peak - self.idle)


class ClientProcess:
    """One of the direct paths' processes (:data:`CLIENT`), one download at a time."""

    def __init__(self, kind: str, env: dict[str, str], log_path: Path) -> None:
        self.kind = kind
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", CLIENT, kind],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                text=True,
            )
        try:
            self._reply(CLIENT_START_TIMEOUT)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def _reply(self, timeout: float) -> dict[str, Any]:
        out = self.process.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], timeout)
        line = out.readline() if ready else ""
        if not line:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            state = "exited" if self.process.poll() is not None else f"silent for {timeout:.0f} s"
            raise RuntimeError(f"the {self.kind} process {state}:\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the {self.kind} download failed:\n{answer['error']}")
        return answer

    def download(
        self, repo_id: str, revision: str, folder: Path, endpoint: str, workers: int
    ) -> tuple[float, dict[str, str | None]]:
        """Seconds the download took; every file it left, with its sha256 where the
        client computed one."""
        job = {
            "repoId": repo_id,
            "revision": revision,
            "folder": str(folder),
            "endpoint": endpoint,
            "maxWorkers": workers,
            "libraryName": SNAPSHOT_AGENT,
        }
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(job) + "\n")
        stdin.flush()
        answer = self._reply(IMPORT_TIMEOUT)
        return float(answer["seconds"]), dict(answer["files"])

    def close(self) -> None:
        stdin: IO[str] | None = self.process.stdin
        if stdin is not None and not stdin.closed:
            stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


# -- the benchmark ------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    repo_id: str
    sha: str
    #: path -> sha256 of every file, as the double holds them
    hashes: dict[str, str]


@dataclass
class Run:
    """One import on one path."""

    seconds: float
    rss: int | None
    hwm_reset: bool
    cpu: float | None
    requests: Counter[str]
    #: the platform's: from the worker's first Hub request, the POST, the wait between
    worker_seconds: float | None = None
    post_seconds: float | None = None
    wait_seconds: float | None = None


@dataclass
class PathSamples:
    """What the kept rounds of one path and size measured."""

    stats: Stats = field(default_factory=Stats)
    rss: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    hwm_reset: bool = True
    worker: Stats = field(default_factory=Stats)
    post: list[float] = field(default_factory=list)
    wait: list[float] = field(default_factory=list)

    def add(self, run: Run) -> None:
        self.stats.samples.append(run.seconds)
        if run.rss is not None:
            self.rss.append(run.rss)
        if run.cpu is not None:
            self.cpu.append(run.cpu)
        self.hwm_reset = self.hwm_reset and run.hwm_reset
        self.requests = run.requests
        if run.worker_seconds is not None:
            self.worker.samples.append(run.worker_seconds)
        if run.post_seconds is not None:
            self.post.append(run.post_seconds)
        if run.wait_seconds is not None:
            self.wait.append(run.wait_seconds)


def _kind(request: HubRequest) -> str:
    """A request's route, for the notes: what each path asked the double."""
    if request.server == "cdn":
        return f"{request.method} lfs object"
    if "/revision/" in request.path:
        return f"{request.method} model_info"
    if "/tree/" in request.path:
        return f"{request.method} tree"
    if "/resolve/" in request.path:
        return f"{request.method} resolve"
    return f"{request.method} {request.path}"


def _wall(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _mib(value: float) -> str:
    return f"{value / MIB:.1f} MiB"


def _median(values: list[float] | list[int]) -> float:
    return Stats([float(v) for v in values]).median


def _hash_seconds(model: ModelFiles) -> float:
    """Seconds one thread here takes to sha256 the model's files (read from the page
    cache): the least the plugin's check of what it placed costs."""
    began = time.perf_counter()
    for content in model.files.values():
        if isinstance(content, Path):
            digest = hashlib.sha256()
            with content.open("rb") as stream:
                while piece := stream.read(MIB):
                    digest.update(piece)
    return time.perf_counter() - began


@dataclass
class Bench:
    hub: HfHubDouble
    platform: ConsoleServer
    platform_pid: int | None
    clients: dict[str, ClientProcess]
    #: the plugin's huggingface_hub cache in the platform
    cache_dir: Path
    scratch: Path
    models: dict[int, ModelFiles]
    workers: int
    seed_seconds: list[float] = field(default_factory=list)
    names: itertools.count[int] = field(default_factory=itertools.count)

    def seed(self, size: int, index: int) -> Seeded:
        """A fresh repository on the double holding the model of ``size`` MiB."""
        repo_id = f"{NAMESPACE}/model-{size}mib-r{index}"
        began = time.perf_counter()
        sha = self.hub.add_repo(
            repo_id,
            self.models[size].files,
            license="apache-2.0",
            pipeline_tag="text-generation",
            library_name="transformers",
        )
        self.seed_seconds.append(time.perf_counter() - began)
        return Seeded(repo_id, sha, self.hub.file_hashes(repo_id, sha))

    def run(self, path: str, repo: Seeded) -> Run:
        self.hub.clear_requests()
        if path == PLATFORM:
            return self.platform_path(repo)
        return self.client_path(self.clients[path], repo)

    def platform_path(self, repo: Seeded) -> Run:
        name = f"bench-import-{next(self.names)}"
        api = self.platform.api
        cpu = cpu_seconds(self.platform_pid)
        with RssWatch(self.platform_pid) as watch:
            began_wall, began = time.time(), time.perf_counter()
            answer = api.post(
                IMPORT, json={"repoId": repo.repo_id, "revision": repo.sha, "name": name}
            )
            post_seconds = time.perf_counter() - began
            if answer.status_code != 202:
                raise RuntimeError(
                    f"POST {IMPORT}: {answer.status_code} (202 = accepted) {answer.text[:500]}"
                )
            detail = self._ready(answer.json()["id"], repo.repo_id)
        cpu_after = cpu_seconds(self.platform_pid)
        ready_wall = _wall(detail["updatedAt"])
        placed = {f["path"]: f.get("sha256") for f in detail["files"]}
        if placed != repo.hashes:
            raise RuntimeError(
                f"the platform's files of {repo.repo_id} differ from the double's: "
                f"{sorted(set(placed.items()) ^ set(repo.hashes.items()))[:6]}"
            )
        requests = self.hub.requests
        # the POST's check reads the listing once, the worker once more: its first request
        listing = f"/api/models/{repo.repo_id}/revision/{repo.sha}"
        listings = [r for r in requests if r.path == listing]
        if len(listings) != 2:
            raise RuntimeError(
                f"expected 2 model_info requests for {repo.repo_id} (the POST's check and the "
                f"worker's), the double saw {len(listings)}"
            )
        worker_wall = listings[1].received_at.timestamp()
        self._drop_platform(detail["id"], repo.repo_id)
        return Run(
            seconds=ready_wall - began_wall,
            rss=watch.increase,
            hwm_reset=watch.hwm_reset,
            cpu=None if cpu is None or cpu_after is None else cpu_after - cpu,
            requests=Counter(_kind(r) for r in requests),
            worker_seconds=ready_wall - worker_wall,
            post_seconds=post_seconds,
            wait_seconds=worker_wall - (began_wall + post_seconds),
        )

    def _ready(self, model_id: str, repo_id: str) -> dict[str, Any]:
        """The model once ``ready`` (polled); an error when it failed or took too long."""
        deadline = time.monotonic() + IMPORT_TIMEOUT
        while True:
            time.sleep(POLL_SECONDS)
            read = self.platform.api.get(f"{MODELS}/{model_id}")
            if read.status_code != 200:
                raise RuntimeError(f"GET {MODELS}/{model_id}: {read.status_code} {read.text}")
            detail: dict[str, Any] = read.json()
            if detail["status"] == "ready":
                return detail
            if detail["status"] != "importing":
                reason = (detail.get("importStatus") or {}).get("reason")
                raise RuntimeError(f"the import of {repo_id} is {detail['status']}: {reason}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the import of {repo_id} not ready in {IMPORT_TIMEOUT:g} s")

    def _drop_platform(self, model_id: str, repo_id: str) -> None:
        """The imported model and its repository's folder in the plugin's cache removed
        (the import is over: nothing uses them)."""
        gone = self.platform.api.delete(f"{MODELS}/{model_id}")
        if gone.status_code != 204:
            raise RuntimeError(f"DELETE {MODELS}/{model_id}: {gone.status_code} {gone.text}")
        folder = f"models--{repo_id.replace('/', '--')}"
        shutil.rmtree(self.cache_dir / folder, ignore_errors=True)
        shutil.rmtree(self.cache_dir / ".locks" / folder, ignore_errors=True)

    def client_path(self, client: ClientProcess, repo: Seeded) -> Run:
        folder = Path(tempfile.mkdtemp(prefix=f"{client.kind}-", dir=self.scratch))
        cpu = cpu_seconds(client.pid)
        with RssWatch(client.pid) as watch:
            seconds, files = client.download(
                repo.repo_id, repo.sha, folder, self.hub.url, self.workers
            )
        cpu_after = cpu_seconds(client.pid)
        shutil.rmtree(folder, ignore_errors=True)
        hashed = {path: sha for path, sha in files.items() if sha is not None}
        if set(files) != set(repo.hashes) or any(repo.hashes[p] != s for p, s in hashed.items()):
            raise RuntimeError(
                f"the {client.kind} download of {repo.repo_id} left other files than the "
                f"double's: {sorted(set(files) ^ set(repo.hashes))[:6]}"
            )
        return Run(
            seconds=seconds,
            rss=watch.increase,
            hwm_reset=watch.hwm_reset,
            cpu=None if cpu is None or cpu_after is None else cpu_after - cpu,
            requests=Counter(_kind(r) for r in self.hub.requests),
        )


def _rounds(bench: Bench, rounds: int) -> dict[int, dict[str, PathSamples]]:
    """Every size and its paths once a round, the sizes' order alternating and each
    size's paths rotating; the warm-up round is not kept."""
    kept = {size: {path: PathSamples() for path in paths} for size, paths in PATHS.items()}
    sizes = list(PATHS)
    show = sys.stdout.isatty()
    for index in range(WARMUP + rounds):
        for turn, size in enumerate(sizes if index % 2 == 0 else sizes[::-1]):
            repo = bench.seed(size, index)
            paths = PATHS[size]
            shift = (index + turn) % len(paths)
            for path in paths[shift:] + paths[:shift]:
                run = bench.run(path, repo)
                if index >= WARMUP:
                    kept[size][path].add(run)
        if show:
            print(f"\r  {NAME}: round {index + 1}/{WARMUP + rounds}", end="", flush=True)
    if show:
        print()
    return kept


def _requests_note(samples: dict[str, PathSamples]) -> str:
    def listing(counts: Counter[str]) -> str:
        return ", ".join(f"{what} x{n}" for what, n in sorted(counts.items()))

    return "requests to the double per import: " + "; ".join(
        f"{path} {sum(s.requests.values())} ({listing(s.requests)})" for path, s in samples.items()
    )


def _flagged(note: str, missed: bool) -> str:
    return f"SUSPICIOUS: target missed: {note}" if missed else note


def _results(
    bench: Bench, kept: dict[int, dict[str, PathSamples]], interval: float
) -> list[Result]:
    main, large = kept[SIZE], kept[RSS_SIZE]
    platform, snapshot, plugin = main[PLATFORM], main[SNAPSHOT], main[PLUGIN]
    size_bytes = bench.models[SIZE].total_bytes
    files = len(bench.models[SIZE].files) + 2  # the double adds .gitattributes and README.md
    direct = snapshot.stats.median
    worker = platform.worker.median
    post, wait = _median(platform.post), _median(platform.wait)

    whole = Result(
        NAME,
        f"import {SIZE} MiB ({files} files): POST -> ready / snapshot_download",
        platform.stats,
        snapshot.stats,
        "median",
    )
    why = (
        f"at p50 the POST (its check: model_info, the card, the configs) takes "
        f"{fmt_seconds(post)}, the wait until the worker's long-work lane picks the import up "
        f"(woken when the request commits; else every {interval:g} s) {fmt_seconds(wait)}, "
        "the worker's import "
        f"{fmt_seconds(worker)} ({worker / direct:.2f}x; the plugin alone in a process of "
        f"its own {plugin.stats.median / direct:.2f}x: it hashes every file it placed)"
    )
    whole.notes.append(
        _flagged(
            f"p50 {whole.ratio:.2f}x (target <= {TARGET_RATIO:.2f}x), the platform adds "
            f"{fmt_seconds(platform.stats.median - direct)} at p50; {why}",
            whole.ratio > TARGET_RATIO,
        )
    )
    whole.notes.append(
        f"throughput at p50: platform {size_bytes / MIB / platform.stats.median:.0f} MiB/s "
        f"(its worker {size_bytes / MIB / worker:.0f} MiB/s), snapshot_download "
        f"{size_bytes / MIB / direct:.0f} MiB/s"
    )
    whole.notes.append(_requests_note(main))
    if platform.cpu and snapshot.cpu and plugin.cpu:
        whole.notes.append(
            "CPU per import at p50 (/proc): the platform's process "
            f"{fmt_seconds(_median(platform.cpu))} (the POST, the polls, the import), "
            f"the plugin's {fmt_seconds(_median(plugin.cpu))}, snapshot_download's "
            f"{fmt_seconds(_median(snapshot.cpu))}"
        )

    lane = Result(
        NAME,
        f"import {SIZE} MiB: worker's first Hub request -> ready / snapshot_download",
        platform.worker,
        snapshot.stats,
        "median",
    )
    lane.notes.append(
        f"p50 {lane.ratio:.2f}x: the import without the POST and the wait for the worker "
        f"(model_info, then the {files} files, {bench.workers} at once, each hashed as it is "
        "placed; progress and the model row written to the database)"
    )

    alone = Result(
        NAME,
        f"plugin import {SIZE} MiB (own process) / snapshot_download",
        plugin.stats,
        snapshot.stats,
        "median",
    )
    hashing = _hash_seconds(bench.models[SIZE])
    alone.notes.append(
        f"p50 {alone.ratio:.2f}x: HfRegistry.import_model (model_info, the card and the "
        "configs read first, then every file through hf_hub_download, each checked against "
        f"the listing: sha256 and size) without the platform; sha256 of the {SIZE} MiB takes "
        f"{fmt_seconds(hashing)} on one thread here"
    )

    bigger = Result(
        NAME,
        f"import {RSS_SIZE} MiB ({files} files): POST -> ready / snapshot_download",
        large[PLATFORM].stats,
        large[SNAPSHOT].stats,
        "median",
    )
    bigger.notes.append(
        f"p50 {bigger.ratio:.2f}x (no target: the model the peak RSS is compared with); "
        f"the worker alone {large[PLATFORM].worker.median / large[SNAPSHOT].stats.median:.2f}x"
    )
    bigger.notes.extend(_rss_notes(main, large))
    if bench.seed_seconds:
        bigger.notes.append(
            f"seeding the fresh repositories on the double (outside the clocks) took "
            f"{fmt_seconds(sum(bench.seed_seconds))} in all"
        )
    return [whole, lane, alone, bigger]


def _rss_notes(main: dict[str, PathSamples], large: dict[str, PathSamples]) -> list[str]:
    small, big = main[PLATFORM], large[PLATFORM]
    if not small.rss or not big.rss:
        return ["peak RSS not measured (no /proc)"]
    growth = _median(big.rss) - _median(small.rss)
    how = "VmHWM after a reset and VmRSS every 50 ms" if small.hwm_reset else "VmRSS every 50 ms"
    note = (
        f"the API's peak RSS above its RSS before the import ({how}), p50 (max): {SIZE} MiB "
        f"model {_mib(_median(small.rss))} ({_mib(max(small.rss))}), {RSS_SIZE} MiB model "
        f"{_mib(_median(big.rss))} ({_mib(max(big.rss))}): {'+' if growth >= 0 else '-'}"
        f"{_mib(abs(growth))} for {RSS_SIZE // SIZE}x the bytes (target: does not grow with "
        f"the size; flagged above +{_mib(RSS_GROWTH_LIMIT)})"
    )
    notes = [_flagged(note, growth > RSS_GROWTH_LIMIT)]
    others = [
        f"{path} {_mib(_median(main[path].rss))}"
        + (f" / {_mib(_median(large[path].rss))}" if path in large and large[path].rss else "")
        for path in (SNAPSHOT, PLUGIN)
        if main[path].rss
    ]
    if others:
        notes.append(
            f"the other paths' processes, the same way, p50 at {SIZE} / {RSS_SIZE} MiB: "
            + ", ".join(others)
        )
    return notes


def run(workdir: Path, rounds: int | None = None) -> list[Result]:
    from llmops.config import CoreSettings
    from llmops.testing.console import running_platform
    from llmops.testing.hf import running_hf_hub
    from llmops_hf.settings import HfSettings

    kept_rounds = rounds or DEFAULT_ROUNDS
    interval = float(CoreSettings.model_fields["sync_interval_seconds"].default)
    workers = int(HfSettings.model_fields["max_workers"].default)
    root = Path(tempfile.mkdtemp(prefix="hf-import-", dir=workdir))
    tmp = root / "tmp"
    tmp.mkdir()
    errors: list[str] = []
    results: list[Result] = []
    hf_env = {
        "DO_NOT_TRACK": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(root / "hf-home"),
    }
    with environment(tmp, **hf_env), ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        began = time.perf_counter()
        # nothing between the paths and the double compresses: a random pool, repeated
        pool = os.urandom(POOL_BYTES)
        models = {size: write_model(root / "seed" / f"{size}mib", size, pool) for size in PATHS}
        print(
            f"  wrote the models ({SIZE} and {RSS_SIZE} MiB) in {time.perf_counter() - began:.1f} s"
        )
        hub = stack.enter_context(running_hf_hub(work_dir=root / "hub"))
        cache_dir = root / "platform-hub-cache"
        platform_dir = root / "platform"
        platform_dir.mkdir()
        began = time.perf_counter()
        platform = stack.enter_context(
            running_platform(
                env={
                    "LLMOPS_PLUGINS": "hf",
                    "LLMOPS_HF__ENDPOINT": hub.url,
                    "LLMOPS_HF__CACHE_DIR": str(cache_dir),
                    # the platform's default, not running_platform's 0.5 s
                    "LLMOPS_SYNC_INTERVAL_SECONDS": str(interval),
                },
                console=False,
                data_dir=platform_dir,
            )
        )
        print(f"  llmops up (plugin hf) in {time.perf_counter() - began:.1f} s")
        env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        clients: dict[str, ClientProcess] = {}
        for path, kind in ((SNAPSHOT, "snapshot"), (PLUGIN, "plugin")):
            clients[path] = ClientProcess(kind, env, root / f"{kind}.log")
            stack.callback(clients[path].close)
        scratch = root / "clients"
        scratch.mkdir()
        bench = Bench(
            hub=hub,
            platform=platform,
            platform_pid=child_pid("llmops up"),
            clients=clients,
            cache_dir=cache_dir,
            scratch=scratch,
            models=models,
            workers=workers,
        )
        try:
            results = _results(bench, _rounds(bench, kept_rounds), interval)
        except Exception as exc:
            error = f"imports: {type(exc).__name__}: {exc}".splitlines()[0]
            print(f"  FAILED {error}")
            errors.append(error)
        for result in results:
            print(describe(result))
            for line in result.notes:
                print(f"    {line}")
        try:
            hub.check_errors()
        except AssertionError as exc:
            errors.append(str(exc).splitlines()[0])
    if errors:
        raise PartialFailure(results, errors)
    return results
