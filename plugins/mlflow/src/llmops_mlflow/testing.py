"""A real MLflow tracking server for tests: ``mlflow server`` on 127.0.0.1 with a SQLite
backend store and proxied artifacts in a temp dir, job execution and telemetry off.
Starting one takes about 20 s here, so start it once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llmops.testing.processes import free_port, serving_process


@dataclass(frozen=True)
class MlflowServer:
    url: str
    root: Path
    process: subprocess.Popen[bytes]


@contextmanager
def running_mlflow_server(
    root: Path | None = None, port: int | None = None
) -> Iterator[MlflowServer]:
    """A fresh server in a temp dir, removed at the end; or, given ``root`` and ``port``,
    the server of an earlier call started again on the same store and address (an outage
    test stops one and brings it back), and ``root`` is left to its owner."""
    owned = root is None
    root = root or Path(tempfile.mkdtemp(prefix="llmops-mlflow-"))
    port = port or free_port()
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "HOME": str(root / "home"),
    }
    args = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        with serving_process(
            args,
            health_url=f"{url}/health",
            log_path=root / "server.log",
            env=env,
            cwd=root,
            timeout=120,
            what="the MLflow tracking server",
        ) as process:
            yield MlflowServer(url=url, root=root, process=process)
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)
