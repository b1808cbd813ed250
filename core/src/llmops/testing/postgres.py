"""A throwaway PostgreSQL server for tests and benchmarks.

It runs the distribution's own binaries (``apt-get install postgresql``) from a temporary
directory: no system service, nothing in the user's home, loopback only, durability off
for speed. PostgreSQL refuses to run as root, so under root (containers, CI) the server
runs as an unprivileged system account that already exists (``postgres``, else
``nobody``) from a private directory handed to that account.

    with PostgresServer(tmp_dir) as server:
        url = server.create_database()  # a fresh, empty database each call
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import psycopg
from psycopg import sql

from llmops.testing.processes import free_port

__all__ = [
    "PostgresNotInstalledError",
    "PostgresServer",
    "PostgresStartError",
    "find_postgres_bindir",
]

INSTALL_HINT = "apt-get install postgresql"
SUPERUSER = "postgres"
#: Accounts the server runs as when the caller is root, in order of preference.
UNPRIVILEGED_ACCOUNTS = ("postgres", "nobody")
#: Fast and disposable: a crash may lose the data, which a test server never keeps anyway.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "max_connections": "200",
}
_REQUIRED_BINARIES = ("initdb", "postgres", "pg_ctl")
_SOCKET_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes on Linux, 104 on macOS
_PORT_ATTEMPTS = 3
_STOP_TIMEOUT = 30.0


class PostgresNotInstalledError(RuntimeError):
    """The PostgreSQL server binaries are not on this machine."""

    def __init__(self, searched: list[Path]) -> None:
        where = ", ".join(str(path) for path in searched) or "nowhere"
        super().__init__(
            "PostgreSQL server binaries (initdb, postgres, pg_ctl) were not found "
            f"(searched: {where}); install them with `{INSTALL_HINT}`"
        )


class PostgresStartError(RuntimeError):
    """initdb failed or the server did not become ready; the message ends with its log."""


def find_postgres_bindir() -> Path:
    """The directory holding ``initdb``, ``postgres`` and ``pg_ctl``.

    Tries ``pg_config --bindir``, then the newest ``/usr/lib/postgresql/*/bin`` (Debian
    keeps the server binaries off ``PATH``), then wherever ``initdb`` on ``PATH`` lives.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    candidates.extend(
        sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    )
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).resolve().parent)
    unique = list(dict.fromkeys(candidates))
    for candidate in unique:
        if _has_server_binaries(candidate):
            return candidate
    raise PostgresNotInstalledError(unique)


def _has_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _REQUIRED_BINARIES)


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in bindir.parent.name.split(".") if part.isdigit())


def _unprivileged_account(name: str | None) -> pwd.struct_passwd | None:
    """The account to run the server as, or ``None`` to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    names = (name,) if name is not None else UNPRIVILEGED_ACCOUNTS
    for candidate in names:
        try:
            return pwd.getpwnam(candidate)
        except KeyError:
            continue
    raise PostgresStartError(
        "PostgreSQL refuses to run as root and none of the accounts "
        f"{', '.join(names)} exists to run it as; pass run_as= an existing unprivileged user"
    )


class PostgresServer:
    """A PostgreSQL server in ``base_dir`` on a free loopback port, for one test session.

    ``start()`` blocks until the server accepts connections; ``create_database()`` hands
    out fresh empty databases; ``stop()`` shuts it down (also at interpreter exit, should
    the caller be interrupted before it gets there). The server log is
    ``base_dir / "postgres.log"``.
    """

    def __init__(
        self,
        base_dir: Path | str,
        *,
        bindir: Path | None = None,
        run_as: str | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.log_path = self.base_dir / "postgres.log"
        #: Seconds the last ``start()`` took, initdb included.
        self.startup_seconds: float | None = None
        self._bindir = bindir
        self._run_as = run_as
        self._start_timeout = start_timeout
        self._account: pwd.struct_passwd | None = None
        self._runtime_dir: Path | None = None
        self._owns_runtime_dir = False
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._database_numbers = itertools.count(1)
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("this PostgresServer is already running")
        began = time.monotonic()
        bindir = self._bindir or find_postgres_bindir()
        if not _has_server_binaries(bindir):
            raise PostgresNotInstalledError([bindir])
        self._bindir = bindir
        self._account = _unprivileged_account(self._run_as)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._runtime_dir = self._make_runtime_dir()
        atexit.register(self.stop)
        try:
            self._initdb(bindir)
            self._launch(bindir)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Fast shutdown (``pg_ctl stop -m fast``): open connections are cut, not waited for."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        self._port = None
        if process is not None and process.poll() is None:
            assert self._bindir is not None  # set by start()
            with self._log() as log:
                stopped = subprocess.run(
                    [self._bindir / "pg_ctl", "stop", "-D", self.data_dir, "-m", "fast", "-w"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=False,
                    **self._child_options(),
                )
            if stopped.returncode != 0:
                process.send_signal(signal.SIGINT)  # what pg_ctl's fast mode sends
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._owns_runtime_dir and self._runtime_dir is not None:
            shutil.rmtree(self._runtime_dir)
            self._runtime_dir = None
            self._owns_runtime_dir = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what callers use ------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the PostgreSQL server is not running; call start() first")
        return self._port

    @property
    def data_dir(self) -> Path:
        if self._runtime_dir is None:
            raise RuntimeError("the PostgreSQL server has not been started")
        return self._runtime_dir / "data"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """Create a new empty database ``llmops_<n>`` and return its SQLAlchemy URL."""
        with self._lock:
            name = f"llmops_{next(self._database_numbers)}"
        with psycopg.connect(**self._conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    # -- internals -------------------------------------------------------------------

    def _make_runtime_dir(self) -> Path:
        """Where the data directory and unix socket live.

        ``base_dir`` itself, unless the server runs as another account (which may not be
        able to reach ``base_dir``: pytest's temp dirs are 0700) or the socket path would
        be too long for ``sun_path``; then a private temp dir, removed by ``stop()``.
        """
        socket_path = self.base_dir / "socket" / ".s.PGSQL.65535"
        if self._account is None and len(os.fsencode(socket_path)) <= _SOCKET_PATH_MAX:
            self._owns_runtime_dir = False
            runtime = self.base_dir
        else:
            self._owns_runtime_dir = True
            runtime = Path(tempfile.mkdtemp(prefix="llmops-pg-"))
        (runtime / "socket").mkdir(exist_ok=True)
        if self._account is not None:
            for path in (runtime, runtime / "socket"):
                os.chown(path, self._account.pw_uid, self._account.pw_gid)
        return runtime

    def _initdb(self, bindir: Path) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return  # restarted on the same directory
        command: list[str | Path] = [
            bindir / "initdb",
            "-D",
            self.data_dir,
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        offset = self._log_size()
        with self._log() as log:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
                **self._child_options(),
            )
        if result.returncode != 0:
            raise PostgresStartError(
                f"initdb exited with {result.returncode}:\n{self._log_since(offset)}"
            )

    def _launch(self, bindir: Path) -> None:
        """Start ``postgres`` on a free port, retrying if another process takes the port."""
        assert self._runtime_dir is not None
        for _attempt in range(_PORT_ATTEMPTS):
            port = free_port()
            settings = {
                **SERVER_SETTINGS,
                "port": str(port),
                "unix_socket_directories": str(self._runtime_dir / "socket"),
            }
            command: list[str | Path] = [bindir / "postgres", "-D", self.data_dir]
            for key, value in settings.items():
                command += ["-c", f"{key}={value}"]
            offset = self._log_size()
            with self._log() as log:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Keep the terminal's Ctrl-C away from the server: stop() shuts it down.
                    start_new_session=True,
                    **self._child_options(),
                )
            self._process = process
            if self._wait_until_ready(process, port):
                self._port = port
                return
            self._process = None
            log_text = self._log_since(offset)
            if "Address already in use" not in log_text:
                raise PostgresStartError(
                    f"postgres exited with {process.returncode} during start-up:\n{log_text}"
                )
        raise PostgresStartError(
            f"no free port after {_PORT_ATTEMPTS} attempts:\n{self._log_since(offset)}"
        )

    def _wait_until_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        """True once the server accepts connections, False if it exited first."""
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                with psycopg.connect(**self._conninfo(port), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                # Not up yet. Waiting on the process wakes us at once if it dies.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.05)
        raise PostgresStartError(
            f"postgres did not accept connections within {self._start_timeout:.0f}s; "
            f"see {self.log_path}"
        )

    def _conninfo(self, port: int | None = None) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": port if port is not None else self.port,
            "user": SUPERUSER,
            "dbname": "postgres",
        }

    def _child_options(self) -> dict[str, Any]:
        """Popen options that run a PostgreSQL binary as the right account, from a clean env."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["LC_ALL"] = "C"
        options: dict[str, Any] = {"env": env, "cwd": self._runtime_dir}
        if self._account is not None:
            env.update(
                HOME=self._account.pw_dir,
                USER=self._account.pw_name,
                LOGNAME=self._account.pw_name,
            )
            options.update(user=self._account.pw_uid, group=self._account.pw_gid, extra_groups=[])
        return options

    def _log(self) -> IO[bytes]:
        # Opened by us and inherited by the child, so the child needs no access to base_dir.
        return self.log_path.open("ab")

    def _log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def _log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
