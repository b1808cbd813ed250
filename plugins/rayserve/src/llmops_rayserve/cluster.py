"""The one Ray session of this process: a local Ray started on demand, or a Ray cluster.

Ray allows one connection per process (``ray.init`` is global), so every
:class:`~llmops_rayserve.backend.RayServeBackend` of the process shares the
:class:`RaySession` returned by :func:`session_for`. Starting a local Ray takes half a
minute on a small machine, longer than one call from the platform may last: the start runs
in a background thread, and a call that needs Ray waits for it only as long as its
deadline allows, then says that Ray is still starting (the platform retries).

Security: Ray's dashboard, job submission and the dashboard agent's HTTP server run
arbitrary code for whoever reaches them. The local Ray is started with the dashboard off
(``include_dashboard=False``) and Serve's HTTP proxy bound to 127.0.0.1. Ray still starts
the dashboard agent's HTTP server (with its job routes) on the node's address, which
``ray.init`` cannot keep on the loopback: Ray's token authentication guards it, with a
random token of the plugin's (mode 0600). Nothing here exposes or proxies those APIs.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from llmops.errors import IntegrationUnavailable

logger = logging.getLogger("llmops_rayserve")

#: Ray puts unix sockets under its temp dir (``session_<date>_<pid>/sockets/...``); their
#: paths must stay under 107 characters, so the temp dir itself stays short.
MAX_TEMP_DIR_LENGTH = 40

#: Ray's own environment switches: no usage reports, no dashboard-driven metrics export.
RAY_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    # the proxy speaks plain HTTP/1.1 in-process (no HAProxy sidecar)
    "RAY_SERVE_ENABLE_HA_PROXY": "0",
    # under `uv run` Ray would otherwise package the current directory as a working_dir
    # runtime env and start every worker through `uv run` again: slow (a sync per worker),
    # and workers that miss the raylet's registration timeout die ("crashed during start").
    # Workers run the platform's own interpreter and packages instead.
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
}


@dataclass(frozen=True)
class RayConfig:
    """How to reach Ray: ``address`` None means a local Ray this process starts."""

    address: str | None
    data_dir: Path
    http_port: int | None = None
    num_cpus: int | None = None
    object_store_memory_mb: int = 200
    proxy_url: str | None = None

    @property
    def local(self) -> bool:
        return self.address is None


def short_temp_dir(data_dir: Path) -> Path:
    """The local Ray's temp dir (its logs, sockets and spilled objects): ``<data_dir>/ray``.

    Ray's unix socket paths must stay under 107 characters; when ``<data_dir>/ray`` is too
    long for that, Ray is given a short symlink under /tmp named after the data dir
    (stable, so that a restart finds the same one) that points at it: the files still live
    in the data dir."""
    preferred = data_dir / "ray"
    if len(str(preferred)) <= MAX_TEMP_DIR_LENGTH:
        return preferred
    preferred.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]
    prefix = f"llmops-ray-{os.getuid()}-"
    for old in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        if old.is_symlink() and not old.exists():  # its data dir is gone
            with contextlib.suppress(OSError):
                old.unlink()
    link = Path(tempfile.gettempdir()) / f"{prefix}{digest}"
    if link.is_symlink() and link.resolve() != preferred.resolve():
        link.unlink()
    if not link.is_symlink():
        if link.exists():  # a folder of an older version: leave it, use a fresh name
            link = Path(tempfile.mkdtemp(prefix="llmops-ray-")) / "r"
        link.symlink_to(preferred.resolve(), target_is_directory=True)
    return link


def free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tcp_reachable(address: str, timeout: float) -> str | None:
    """None when ``host:port`` accepts a TCP connection, else why not."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return f"cannot reach the Ray cluster at {address}: {exc}"


class RaySession:
    """Starts (or connects to) Ray and Serve once, in a background thread."""

    def __init__(self, config: RayConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self.started_local = False
        self.http_port: int | None = None
        self.temp_dir: Path | None = None

    # -- state --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def starting(self) -> bool:
        return self._thread is not None and not self._ready.is_set() and self._error is None

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def proxy_url(self) -> str:
        """Where Serve's HTTP proxy answers (without a trailing slash)."""
        if self.config.proxy_url:
            return self.config.proxy_url.rstrip("/")
        port = self.http_port or self.config.http_port or 8000
        if self.config.local or self.config.address is None:
            return f"http://127.0.0.1:{port}"
        host = self.config.address.removeprefix("ray://").rpartition(":")[0] or "127.0.0.1"
        return f"http://{host}:{port}"

    # -- start --------------------------------------------------------------------------

    def ensure(self, wait: float | None) -> None:
        """Start Ray and Serve if nothing started them yet, and wait up to ``wait``
        seconds (None: until done) for them.

        :raises IntegrationUnavailable: still starting after ``wait``, or the start failed.
        """
        with self._lock:
            if self._error is not None and not self._ready.is_set():
                error, self._error, self._thread = self._error, None, None
                logger.warning("retrying the Ray start that failed: %s", error)
            if self._thread is None and not self._ready.is_set():
                self._thread = threading.Thread(
                    target=self._start, name="llmops-rayserve-start", daemon=True
                )
                self._thread.start()
        if not self._ready.wait(timeout=wait):
            what = "the local Ray" if self.config.local else f"Ray at {self.config.address}"
            if self._error is not None:
                raise IntegrationUnavailable(
                    f"{what} could not be started: {type(self._error).__name__}: {self._error}"
                )
            raise IntegrationUnavailable(
                f"{what} is still starting (it takes about half a minute); try again shortly"
            )

    def _start(self) -> None:
        """The thread that starts Ray lives as long as the local Ray: Ray ties its
        processes to the starting thread (a parent-death signal), so they would die with
        it. It stops Ray when :meth:`shutdown` asks."""
        try:
            self._start_ray()
            self._ready.set()
        except BaseException as exc:
            logger.exception("starting Ray failed")
            if self.started_local:
                # Ray's processes die with this thread (their parent-death signal): stop
                # the half-started Ray cleanly so that the next try starts afresh
                with contextlib.suppress(Exception):
                    self._stop_ray()
            self._error = exc
            return
        try:
            self._stop.wait()
            if self.started_local:
                self._stop_ray()
        finally:
            self._stopped.set()

    def _stop_ray(self) -> None:
        import ray
        from ray import serve

        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        except Exception:
            logger.exception("stopping Serve failed; stopping Ray anyway")
        ray.shutdown()
        self.started_local = False

    def _start_ray(self) -> None:
        for key, value in RAY_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        if self.config.local:
            _local_auth_token(self.config.data_dir)  # before Ray reads its configuration
        import ray
        from ray import serve

        started = time.perf_counter()
        config = self.config
        if ray.is_initialized():
            logger.info("Ray is already initialized in this process; using it")
        elif config.local:
            temp_dir = short_temp_dir(config.data_dir)
            temp_dir.mkdir(parents=True, exist_ok=True)
            self.temp_dir = temp_dir
            ray.init(
                include_dashboard=False,
                num_cpus=config.num_cpus,
                object_store_memory=config.object_store_memory_mb * 1024 * 1024,
                namespace="llmops",
                configure_logging=True,
                logging_level=logging.WARNING,
                log_to_driver=False,
                _temp_dir=str(temp_dir),
            )
            self.started_local = True
        else:
            ray.init(
                address=config.address,
                namespace="llmops",
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        port = config.http_port or (free_local_port() if config.local else 8000)
        serve.start(
            http_options={"host": "127.0.0.1" if config.local else "0.0.0.0", "port": port},  # noqa: S104 - a cluster's proxy serves its nodes
            proxy_location="HeadOnly",
        )
        self.http_port = _running_proxy_port(port)
        logger.info(
            "Ray %s and Serve ready in %.1f s; Serve's proxy at %s",
            "started locally" if self.started_local else f"at {config.address}",
            time.perf_counter() - started,
            self.proxy_url,
        )

    # -- stop ---------------------------------------------------------------------------

    def shutdown(self, timeout: float = 120.0) -> None:
        """Stop Serve and the local Ray, if this session started them (in the thread that
        started them), and wait for them to be gone."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=timeout)
        self._ready.clear()
        self._thread = None
        if self.temp_dir is not None and self.temp_dir.is_symlink():
            self.temp_dir.unlink()  # the short alias under /tmp; the files stay


AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")


def _local_auth_token(data_dir: Path) -> None:
    """Ray's token authentication for the local Ray, with the token in the data dir (not
    ~/.ray), unless the operator configured Ray's authentication already."""
    if any(os.environ.get(name) for name in AUTH_VARIABLES):
        return
    token_path = data_dir / "ray-auth-token"
    if not token_path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_path)


def _running_proxy_port(asked: int) -> int:
    """The port of the Serve instance now running: a Serve started earlier on the same Ray
    keeps its own options."""
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        if client is None:
            return asked
        details = client.get_serve_details()
        port = details.get("http_options", {}).get("port")
        return int(port) if port else asked
    except Exception:
        return asked


_sessions: dict[RayConfig, RaySession] = {}
_sessions_lock = threading.Lock()


def session_for(config: RayConfig) -> RaySession:
    """The process's session for ``config``; one per configuration, and Ray itself is
    shared: a second configuration in the same process reuses the Ray already started."""
    with _sessions_lock:
        session = _sessions.get(config)
        if session is None:
            session = _sessions[config] = RaySession(config)
        return session


def existing_session(config: RayConfig) -> RaySession | None:
    with _sessions_lock:
        return _sessions.get(config)


def forget_session(config: RayConfig) -> None:
    with _sessions_lock:
        _sessions.pop(config, None)


def shutdown_sessions(data_dir: Path) -> None:
    """Shut down the sessions for ``data_dir`` (the local Ray they started, if any)."""
    with _sessions_lock:
        sessions = [s for c, s in _sessions.items() if c.data_dir == data_dir]
        for config in [c for c in _sessions if c.data_dir == data_dir]:
            del _sessions[config]
    for session in sessions:
        session.shutdown()
