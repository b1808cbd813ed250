"""Servers that tests start as processes of their own (``llmops up``, ``mlflow server``):
a free port on 127.0.0.1, a start that waits until the server answers (and says why when
it died instead), and a stop that ends the server's whole process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from llmops.testing.waiting import wait_for


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process_group(process: subprocess.Popen[bytes], *, grace: float = 15.0) -> None:
    """SIGTERM the process's group, then SIGKILL it after ``grace`` seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def serving_process(
    args: Sequence[str],
    *,
    health_url: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
    what: str = "the server",
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in a new session with its output in ``log_path``; yield once
    ``health_url`` answers 200, and stop the whole process group afterwards."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            return httpx.get(health_url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(answers, timeout=timeout, what=f"{what} to answer {health_url}")
        yield process
    finally:
        stop_process_group(process)
