"""``api-startup``: from launching ``llmops up`` (fresh data dir, every installed plugin
enabled) until ``GET /readyz`` answers 200, against a one-route FastAPI app started the
same way with ``python -m uvicorn``."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cli_help import parse_importtime
from harness import Result, alternate, clean_env, describe

from llmops.testing.processes import free_port

NAME = "api-startup"
DEFAULT_ROUNDS = 5
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
POLL_INTERVAL = 0.01

BASELINE_APP = '''"""The api-startup benchmark's direct baseline: FastAPI + uvicorn, one route."""
from fastapi import FastAPI

app = FastAPI()


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ok"}
'''


class ServerError(RuntimeError):
    pass


def _log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def stop(process: subprocess.Popen[bytes]) -> str | None:
    """SIGTERM, then wait; SIGKILL only if it does not exit. A note when it misbehaved."""
    if process.poll() is not None:
        return None
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return f"pid {process.pid} ignored SIGTERM for {STOP_TIMEOUT:.0f}s and was killed"
    return None


def time_until_ready(
    command: list[str], *, env: dict[str, str], cwd: Path, port: int, log_path: Path
) -> tuple[float, str | None]:
    """Seconds from launching ``command`` until /readyz on ``port`` answers 200."""
    url = f"http://127.0.0.1:{port}/readyz"
    with httpx.Client(trust_env=False, timeout=5.0) as client, log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        try:
            while True:
                if process.poll() is not None:
                    raise ServerError(
                        f"{command[0]} exited with {process.returncode} before it was ready:\n"
                        f"{_log_tail(log_path)}"
                    )
                try:
                    if client.get(url).status_code == 200:
                        elapsed = time.perf_counter() - started
                        break
                except httpx.TransportError:
                    pass
                if time.perf_counter() - started > READY_TIMEOUT:
                    raise ServerError(
                        f"{url} did not answer 200 within {READY_TIMEOUT:.0f}s:\n"
                        f"{_log_tail(log_path)}"
                    )
                time.sleep(POLL_INTERVAL)
        finally:
            note = stop(process)
    return elapsed, note


def run(workdir: Path, rounds: int | None = None) -> list[Result]:
    rounds = rounds or DEFAULT_ROUNDS
    root = Path(tempfile.mkdtemp(prefix="api-startup-", dir=workdir))
    (root / "bench_baseline_app.py").write_text(BASELINE_APP)
    # One cache dir for all rounds: stevedore's entry-point cache is warm after the
    # warm-up round, as it is on any start after the first on a machine.
    cache = root / "xdg-cache"
    llmops = Path(sys.executable).parent / "llmops"
    notes: list[str] = []
    counter = iter(range(1_000_000))

    def platform() -> float:
        n = next(counter)
        port = free_port()
        data_dir = root / f"data-{n}"
        env = clean_env(
            LLMOPS_DATA_DIR=str(data_dir), LLMOPS_PLUGINS="all", XDG_CACHE_HOME=str(cache)
        )
        seconds, note = time_until_ready(
            [str(llmops), "up", "--port", str(port), "--log-level", "warning"],
            env=env,
            cwd=root,
            port=port,
            log_path=root / f"llmops-{n}.log",
        )
        if note:
            notes.append(f"llmops up: {note}")
        return seconds

    def direct() -> float:
        n = next(counter)
        port = free_port()
        env = clean_env(XDG_CACHE_HOME=str(cache))
        seconds, note = time_until_ready(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench_baseline_app:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=root,
            port=port,
            log_path=root / f"baseline-{n}.log",
        )
        if note:
            notes.append(f"baseline: {note}")
        return seconds

    platform_stats, direct_stats = alternate(
        platform, direct, rounds=rounds, warmup=1, progress=NAME
    )
    result = Result(
        NAME,
        "llmops up (all plugins) / uvicorn app, to /readyz",
        platform_stats,
        direct_stats,
        "median",
        notes,
    )
    print(describe(result))
    for note in notes:
        print(f"  {note}")
    explain_imports(result, env=clean_env(XDG_CACHE_HOME=str(cache)))
    return [result]


def explain_imports(result: Result, env: dict[str, str]) -> None:
    """Where a start's time goes: importing the app, by the slowest top-level imports."""
    traced = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import uvicorn, llmops.api.app"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
    )
    records = parse_importtime(traced.stderr)
    total = sum(r.self_us for r in records) / 1e6
    line = f"importing uvicorn + llmops.api.app alone takes {total:.2f} s (importtime); slowest:"
    print(f"  {line}")
    result.notes.append(line)
    for record in sorted(records, key=lambda r: r.cumulative_us, reverse=True)[:5]:
        item = f"{record.module} {record.cumulative_us / 1e6:.2f} s (depth {record.depth})"
        print(f"    {item}")
        result.notes.append(f"slow import: {item}")
