"""Where a local stage runs: its environment, built rather than inherited, and the
bubblewrap sandbox that keeps the platform's own files out of its reach.

A stage is code an editor submitted, running on the server's host. Without a sandbox it
runs as the server's user and could read what the server reads: the data dir, the
database, the key that encrypts every stored secret. In the sandbox (`bubblewrap
<https://github.com/containers/bubblewrap>`_, the tool Flatpak uses):

* the host's filesystem is read-only, except the stage's own run folder, ``/tmp``, the
  paths the platform grants the stage (a training job's output dir) and the operator's
  ``writable_paths``;
* every protected path (the data dir, the database file, the key file) is replaced by an
  empty directory or file; the paths granted to the stage (a job's dataset, its output
  dir) are mounted back inside it;
* the stage has a PID namespace of its own (it cannot see or signal the server, nor reach
  the server's files through ``/proc/<pid>/root``), a fresh ``/proc`` and ``/dev``, and no
  capabilities (a root server's stages keep uid 0 but lose every privilege). It does not
  die with the server (``--die-with-parent`` is not used): a restarted executor finds it
  by its run marker, as it finds unsandboxed stages.

Where bubblewrap is missing or cannot create namespaces, stages run unisolated; a server
running as root then refuses to start them (:class:`IsolationUnavailable`).
"""

from __future__ import annotations

import fnmatch
import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from llmops.errors import Conflict

#: Variables of the server's environment a stage gets by default (``*`` is a wildcard):
#: what programs need to find themselves, speak the locale, and reach the network the way
#: the host does. Everything else of the server's environment stays with the server.
DEFAULT_ENV_ALLOWLIST: tuple[str, ...] = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TERM",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)

#: Where bubblewrap is looked for when it is not on PATH.
BWRAP_CANDIDATES = ("/usr/bin/bwrap", "/usr/local/bin/bwrap")


class Isolation(StrEnum):
    """How the local executor isolates stages (``LLMOPS_LOCAL__ISOLATION``)."""

    #: the sandbox where bubblewrap works, unisolated otherwise (refused as root)
    AUTO = "auto"
    #: the sandbox, or no stage at all
    SANDBOX = "sandbox"
    #: no sandbox: stages run as the server's user and can read its files (refused as root)
    NONE = "none"


class IsolationUnavailable(Conflict):
    """Stages cannot be started with the isolation this host offers."""


def stage_environment(
    *,
    allowlist: Iterable[str],
    declared: Mapping[str, str],
    secrets: Mapping[str, str],
    platform: Mapping[str, str],
    server: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A stage's environment: the server's variables that ``allowlist`` names, then what
    the platform gives every stage (HOME, the run marker), then what the stage declared,
    then its secrets."""
    patterns = list(allowlist)
    inherited = {
        name: value
        for name, value in (os.environ if server is None else server).items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    }
    return {**inherited, **platform, **declared, **secrets}


def find_bubblewrap() -> str | None:
    found = shutil.which("bwrap")
    if found is not None:
        return found
    return next((c for c in BWRAP_CANDIDATES if os.access(c, os.X_OK)), None)


@functools.lru_cache(maxsize=4)
def probe(bwrap: str) -> str | None:
    """Why bubblewrap cannot sandbox a process on this host, or None when it can (tried
    once per process: a kernel without user namespaces, a container without the right
    to mount)."""
    argv = [bwrap, *_base_arguments(), "--", "/bin/true"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} could not be run: {exc}"
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        return f"{bwrap} cannot create a sandbox here: {reason[-1] if reason else done.returncode}"
    return None


def _base_arguments() -> list[str]:
    arguments = [
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--cap-drop",
        "ALL",
    ]
    if os.geteuid() != 0:  # an unprivileged bubblewrap works in a user namespace
        arguments.append("--unshare-user")
    return arguments


@dataclass(frozen=True)
class Sandbox:
    """The bubblewrap command line of a stage."""

    bwrap: str
    #: paths hidden from every stage (directories become empty, files /dev/null)
    protected: Sequence[Path] = ()
    #: paths every stage may write (the operator's ``writable_paths``; /tmp always)
    writable: Sequence[Path] = field(default_factory=lambda: [Path("/tmp")])  # noqa: S108

    def hides(self, path: Path, *, granted: Sequence[Path] = ()) -> bool:
        """Whether ``path`` is out of a stage's sight (under a protected path and not
        under one ``granted`` to it)."""
        resolved = path.resolve()
        if any(resolved.is_relative_to(g.resolve()) for g in granted):
            return False
        return any(resolved.is_relative_to(p) for p in self.protected)

    def command(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        work_dir: Path,
        read: Sequence[Path] = (),
        write: Sequence[Path] = (),
    ) -> list[str]:
        """``argv`` inside the sandbox, starting in ``cwd``; ``work_dir`` and ``write``
        writable, ``read`` readable, even where they lie under a protected path."""
        arguments = [self.bwrap, *_base_arguments()]
        for path in self.writable:
            if path.exists():
                arguments += ["--bind", str(path), str(path)]
        for path in self.protected:
            if path.is_dir():
                arguments += ["--tmpfs", str(path)]
            elif path.exists():
                arguments += ["--ro-bind", "/dev/null", str(path)]
        for path in read:
            if path.exists():
                arguments += ["--ro-bind", str(path), str(path)]
        for path in (work_dir, *write):
            path.mkdir(parents=True, exist_ok=True)
            arguments += ["--bind", str(path), str(path)]
        arguments += ["--chdir", str(cwd), "--", *argv]
        return arguments


def resolve(isolation: Isolation) -> tuple[str | None, str]:
    """The bubblewrap to use (None: unisolated) and a sentence saying how stages run."""
    if isolation is Isolation.NONE:
        return None, "stages run unisolated, as the server's user (isolation: none)"
    bwrap = find_bubblewrap()
    reason = "bubblewrap (bwrap) is not installed" if bwrap is None else probe(bwrap)
    if bwrap is not None and reason is None:
        return bwrap, "stages run in a bubblewrap sandbox (the data dir is hidden from them)"
    return None, f"stages run unisolated: {reason}"


def running_as_root() -> bool:
    return os.geteuid() == 0


def refusal(isolation: Isolation, bwrap: str | None, how: str) -> str | None:
    """Why no stage may start with this isolation, or None when they may."""
    if bwrap is not None:
        return None
    if isolation is Isolation.SANDBOX:
        return (
            f"isolation is 'sandbox' but {how.removeprefix('stages run unisolated: ')}; "
            "install bubblewrap (apt-get install bubblewrap) on the server's host"
        )
    if running_as_root():
        return (
            "refusing to run stages as root without a sandbox: they could read the "
            "platform's key file and database. Install bubblewrap (apt-get install "
            "bubblewrap), or run the server as an unprivileged user"
        )
    return None
