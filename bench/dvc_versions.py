"""``dvc-versions``: a dataset version made through the platform (the DVC plugin), against
``dvc add data && dvc push`` of the same files in a plain git + DVC repository, and the same
through DVC's Python API (``dvc.repo.Repo``), with one real ``llmops up`` with the dvc
plugin on (its own process).

The issue's target (data-1): making a version of a dataset of 10,000 small files and
200 MB through the platform takes at most 1.10x ``dvc add`` + ``dvc push`` of the same
files, same run (p50). A missed target is a finding (``SUSPICIOUS``).

The dataset: 10,000 files of 1 KiB in 100 folders and 4 files of 50 MiB, random bytes,
written once into the benchmark's temp dir. Every round and path gets **its own copy with
other bytes** (outside the clocks): the first 16 bytes of every file are that run's token,
so no file is ever in a DVC cache or on a remote already (the plugin's cache is shared by
every dataset, as it is in production: without the token the second round would hash and
push nothing), and flushed to disk (``os.sync``) before the clock starts.

* platform: the files copied into a fresh dataset's folder (``<storage>/datasets/<id>/
  files``, what an upload writes; an upload would make a version itself), then
  ``POST /llm-ops/v1/catalog/datasets/{id}/versions``, timed until the version's
  ``pushState`` is ``pushed`` (the POST tries the push at once; ``GET`` of the version
  every 20 ms when its answer says pending).
* dvc CLI (the direct path): a fresh ``git init`` + ``dvc init`` repository (a folder
  remote set as default, ``cache.type hardlink,copy`` as the plugin sets it), the files
  in ``data/``; timed: ``dvc add data`` then ``dvc push``, two processes of the venv's
  ``dvc``, as a user types them.
* dvc Python API: the same repository, ``Repo(root).add("data")`` and ``.push()`` in a
  process of its own started once (DVC imported, so no interpreter start is in it).

The paths rotate each round after one warm-up round; each run's dataset or repository
and remote are removed after it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from harness import PartialFailure, Result, Stats, environment, fmt_seconds, report, rotate

NAME = "dvc-versions"
API = "/llm-ops/v1"
DATASETS = f"{API}/catalog/datasets"
MIB = 1 << 20
SMALL_FILES = 10_000
SMALL_BYTES = 1024
SMALL_FOLDERS = 100
BIG_FILES = 4
BIG_BYTES = 50 * MIB
TOKEN_BYTES = 16
PLATFORM = "platform"
CLI = "dvc add + dvc push (CLI)"
PYAPI = "Repo.add + Repo.push (Python API)"
DEFAULT_ROUNDS = 3
WARMUP = 1
TARGET_RATIO = 1.10
POLL_SECONDS = 0.02
VERSION_TIMEOUT = 600.0

#: the Python API path's process: one job a line on stdin (a repository's root), its
#: seconds a line on the answers' pipe
API_CLIENT = r"""
import json, os, sys, time
# DVC prints what it did (to fd 1, past sys.stdout): the answers get a pipe of their own
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
from dvc.repo import Repo
print(json.dumps({"ready": True}), file=out, flush=True)
for line in sys.stdin:
    root = json.loads(line)["root"]
    began = time.perf_counter()
    repo = Repo(root)
    try:
        repo.add(root + "/data")
        pushed = repo.push()
    finally:
        repo.close()
    answer = {"seconds": time.perf_counter() - began, "pushed": pushed}
    print(json.dumps(answer), file=out, flush=True)
"""


def write_seed(root: Path) -> list[Path]:
    """The dataset's files, once (relative paths returned)."""
    pool = os.urandom(BIG_BYTES + SMALL_FILES * SMALL_BYTES)
    files: list[Path] = []
    for index in range(SMALL_FILES):
        rel = Path("small") / f"d{index % SMALL_FOLDERS:03d}" / f"f{index:05d}.bin"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(pool[index * SMALL_BYTES : (index + 1) * SMALL_BYTES])
        files.append(rel)
    for index in range(BIG_FILES):
        rel = Path("big") / f"shard-{index}.bin"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shift = index * 7 * MIB  # the pool from another offset, wrapping around
        (root / rel).write_bytes((pool[shift:] + pool[:shift])[:BIG_BYTES])
        files.append(rel)
    return files


def materialise(seed: Path, files: list[Path], dest: Path, token: str) -> None:
    """A copy of the seed in ``dest`` whose every file starts with ``token``'s bytes."""
    head = token.encode().ljust(TOKEN_BYTES, b"-")[:TOKEN_BYTES]
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(seed / rel, target)
        with target.open("r+b") as stream:
            stream.write(head)
    # the copy's writeback done before a clock starts: else it lands in whichever path
    # runs next (seen: the same path taking 5 s or 14 s)
    os.sync()


def _tree_bytes(files: list[Path], seed: Path) -> int:
    return sum((seed / rel).stat().st_size for rel in files)


class ApiClient:
    """The Python API path's process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", API_CLIENT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        self._reply()

    def _reply(self) -> dict[str, Any]:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            self.log.flush()
            tail = Path(self.log.name).read_text()[-600:]
            raise RuntimeError(f"the DVC Python API process ended: {tail!r}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def version(self, root: Path) -> float:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps({"root": str(root)}) + "\n")
        stdin.flush()
        answer = self._reply()
        if not answer["pushed"]:
            raise RuntimeError(f"Repo.push of {root} pushed nothing")
        return float(answer["seconds"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()


class Bench:
    def __init__(self, root: Path, seed: Path, files: list[Path], platform: Any) -> None:
        self.root = root
        self.seed = seed
        self.files = files
        self.platform = platform
        self.storage = platform.data_dir / "data" / "storage"
        self.dvc = str(Path(sys.executable).with_name("dvc"))
        self.runs = 0
        self.push_seen: list[str] = []

    def token(self) -> str:
        self.runs += 1
        return f"run-{self.runs:05d}"

    def platform_path(self) -> float:
        api = self.platform.api
        token = self.token()
        made = api.post(DATASETS, json={"name": f"bench-dvc-{token}"})
        if made.status_code != 201:
            raise RuntimeError(f"POST {DATASETS}: {made.status_code} {made.text[:300]}")
        dataset_id = made.json()["id"]
        materialise(self.seed, self.files, self.storage / "datasets" / dataset_id / "files", token)
        url = f"{DATASETS}/{dataset_id}/versions"
        began = time.perf_counter()
        answer = api.post(url, json={"message": token}, timeout=VERSION_TIMEOUT)
        if answer.status_code != 201:
            raise RuntimeError(f"POST {url}: {answer.status_code} {answer.text[:300]}")
        version = answer.json()
        self.push_seen.append(str(version.get("pushState")))
        deadline = time.monotonic() + VERSION_TIMEOUT
        while version.get("pushState") != "pushed":
            if version.get("pushState") == "failed" or time.monotonic() > deadline:
                raise RuntimeError(f"the version's push: {version.get('pushState')} {version}")
            time.sleep(POLL_SECONDS)
            read = api.get(f"{url}/{version['id']}")
            read.raise_for_status()
            version = read.json()
        seconds = time.perf_counter() - began
        if version["fileCount"] != len(self.files):
            raise RuntimeError(
                f"the version holds {version['fileCount']} files, not {len(self.files)}"
            )
        gone = api.delete(f"{DATASETS}/{dataset_id}")
        if gone.status_code != 204:
            raise RuntimeError(f"DELETE dataset: {gone.status_code} {gone.text[:300]}")
        return seconds

    def _repo(self, env: dict[str, str]) -> tuple[Path, Path]:
        """A fresh git + DVC repository with a folder remote and the run's files in data/."""
        token = self.token()
        repo = self.root / "direct" / token
        remote = self.root / "direct-remotes" / token
        repo.mkdir(parents=True)
        remote.mkdir(parents=True)
        for command in (["git", "init", "-q"], [self.dvc, "init", "-q"]):
            subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True)
        with (repo / ".dvc" / "config").open("a") as config:
            config.write(
                "[core]\n    remote = bench\n    analytics = false\n"
                '[cache]\n    type = "hardlink,copy"\n'
                f"['remote \"bench\"']\n    url = {remote}\n"
            )
        materialise(self.seed, self.files, repo / "data", token)
        return repo, remote

    def cli_path(self, env: dict[str, str]) -> float:
        repo, remote = self._repo(env)
        began = time.perf_counter()
        for command in ([self.dvc, "add", "-q", "data"], [self.dvc, "push", "-q"]):
            done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command[1:])}: {done.stderr[-500:]}")
        seconds = time.perf_counter() - began
        self._check_and_drop(repo, remote)
        return seconds

    def api_path(self, env: dict[str, str], client: ApiClient) -> float:
        repo, remote = self._repo(env)
        seconds = client.version(repo)
        self._check_and_drop(repo, remote)
        return seconds

    def _check_and_drop(self, repo: Path, remote: Path) -> None:
        pushed = sum(1 for p in remote.rglob("*") if p.is_file())
        # every file, and the .dir object listing them
        if pushed != len(self.files) + 1:
            raise RuntimeError(f"the remote of {repo} holds {pushed} objects")
        shutil.rmtree(repo, ignore_errors=True)
        shutil.rmtree(remote, ignore_errors=True)


def run(workdir: Path, rounds: int | None = None) -> list[Result]:
    from llmops.testing.console import running_platform

    kept_rounds = rounds or DEFAULT_ROUNDS
    root = Path(tempfile.mkdtemp(prefix="dvc-versions-", dir=workdir))
    tmp = root / "tmp"
    tmp.mkdir()
    home = root / "home"
    home.mkdir()
    gitconfig = root / "gitconfig"
    gitconfig.write_text("[user]\n    name = bench\n    email = bench@example.invalid\n")
    dvc_env = {
        "HOME": str(home),
        "GIT_CONFIG_GLOBAL": str(gitconfig),
        "GIT_CONFIG_NOSYSTEM": "1",
        "DVC_NO_ANALYTICS": "1",
        "DVC_GLOBAL_CONFIG_DIR": str(root / "dvc-config" / "global"),
        "DVC_SYSTEM_CONFIG_DIR": str(root / "dvc-config" / "system"),
        "DVC_SITE_CACHE_DIR": str(root / "dvc-site-cache"),
    }
    errors: list[str] = []
    results: list[Result] = []
    with environment(tmp, **dvc_env), ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        began = time.perf_counter()
        seed = root / "seed"
        files = write_seed(seed)
        size = _tree_bytes(files, seed)
        print(
            f"  wrote {len(files)} files, {size / MIB:.0f} MiB, in "
            f"{time.perf_counter() - began:.1f} s"
        )
        platform_dir = root / "platform"
        platform_dir.mkdir()
        began = time.perf_counter()
        platform = stack.enter_context(
            running_platform(env={"LLMOPS_PLUGINS": "dvc"}, console=False, data_dir=platform_dir)
        )
        print(f"  llmops up (plugin dvc) in {time.perf_counter() - began:.1f} s")
        env = dict(os.environ)
        client = ApiClient(env, root / "api-client.log")
        stack.callback(client.close)
        bench = Bench(root, seed, files, platform)
        copy_began = time.perf_counter()
        materialise(seed, files, root / "copy-probe", "probe")
        copy_seconds = time.perf_counter() - copy_began
        shutil.rmtree(root / "copy-probe")
        try:
            kept = rotate(
                {
                    PLATFORM: _shown(PLATFORM, bench.platform_path),
                    CLI: _shown(CLI, lambda: bench.cli_path(env)),
                    PYAPI: _shown(PYAPI, lambda: bench.api_path(env, client)),
                },
                rounds=kept_rounds,
                warmup=WARMUP,
                progress=NAME,
            )
        except Exception as exc:
            traceback.print_exc()
            error = f"versions: {type(exc).__name__}: {exc}".splitlines()[0]
            print(f"  FAILED {error}")
            errors.append(error)
        else:
            results = _results(kept, size, len(files), copy_seconds, bench.push_seen)
        report(results)
    if errors:
        raise PartialFailure(results, errors)
    return results


def _shown(name: str, path: Callable[[], float]) -> Callable[[], float]:
    """``path``, printing each run's seconds (the spread says more than a median here)."""

    def run() -> float:
        seconds = path()
        print(f"    {name}: {fmt_seconds(seconds)}", flush=True)
        return seconds

    return run


def _delta(seconds: float) -> str:
    return f"adds {fmt_seconds(seconds)}" if seconds >= 0 else f"saves {fmt_seconds(-seconds)}"


def _results(
    kept: dict[str, Stats], size: int, count: int, copy_seconds: float, push_seen: list[str]
) -> list[Result]:
    platform, cli, pyapi = kept[PLATFORM], kept[CLI], kept[PYAPI]
    what = f"{count} files, {size / MIB:.0f} MiB"
    main = Result(
        NAME, f"version of {what}: platform / dvc add + push (CLI)", platform, cli, "median"
    )
    note = (
        f"p50 {main.ratio:.2f}x (target <= {TARGET_RATIO:.2f}x): the platform "
        f"{_delta(platform.median - cli.median)} at p50 (the POST, the dataset's folder "
        "copied into its repository's data/, dvc add, the git commit, the row, the outbox's "
        "push)"
    )
    main.notes.append(f"SUSPICIOUS: target missed: {note}" if main.ratio > TARGET_RATIO else note)
    pending = sum(1 for state in push_seen if state != "pushed")
    main.notes.append(
        f"the POST's answer said pushed in {len(push_seen) - pending} of {len(push_seen)} runs "
        "(else the version was polled until pushed)"
    )
    main.notes.append(
        f"throughput at p50: platform {size / MIB / platform.median:.0f} MiB/s, dvc CLI "
        f"{size / MIB / cli.median:.0f} MiB/s; copying the files once here (outside the "
        f"clocks) takes {fmt_seconds(copy_seconds)}"
    )
    second = Result(
        NAME,
        f"version of {what}: platform / Repo.add + Repo.push (Python API)",
        platform,
        pyapi,
        "median",
    )
    second.notes.append(
        f"p50 {second.ratio:.2f}x: DVC's Python API in a warm process, what the plugin calls; "
        "the CLI's two processes (interpreter starts, imports, its own checks) "
        f"{_delta(cli.median - pyapi.median)} at p50"
    )
    return [main, second]
