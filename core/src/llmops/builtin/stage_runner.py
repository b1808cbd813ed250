"""One attempt of a local pipeline stage, in a process that outlives the executor.

The local executor (:mod:`llmops.builtin.local_executor`) starts it once per attempt
(:func:`command`): Python in isolated mode without site-packages imports this file as a
top-level module from its folder (its compiled form is cached), so that starting it
imports neither the ``llmops`` package (pluggy) nor anything but a few built-in modules;
a run with secrets adds :mod:`llmops.redaction`, loaded from its file. It costs a few
milliseconds above the interpreter's own start (about 15 ms in all). The runner:

* reads what to run from its stdin, one :mod:`marshal`-ed dict after which the executor
  closes the pipe (:func:`encode_config`): the stage's argv (in its sandbox), working dir
  and environment, the secret values to scrub from its output, its timeout and the kill
  grace. Secret values thus reach neither the disk, nor an argv, nor the runner's own
  environment, which holds the run marker only (``/proc/<runner>/environ`` shows
  nothing else);
* leads a session of its own, the one the executor signals, and starts the stage in
  another (the stage leads its own process group), so that it can kill everything the
  stage started and still outlive it. The stage gets exactly the environment the executor
  built (:meth:`LocalExecutor._stage_env`), nothing of the runner's;
* copies the stage's output into ``logs/<stage>.log`` as it comes, its secrets scrubbed;
* enforces the stage's timeout: SIGTERM to the stage's group, SIGKILL after the grace.
  SIGTERM, SIGINT or SIGHUP to the runner stop the stage the same way (a cancel);
* while the stage runs, keeps its pid and start time in ``exits/<stage>.<attempt>.pid``,
  for whoever finds the runner itself gone;
* when the stage's leader has ended, kills what is left in its group, ends the attempt's
  log with a ``--- <how it ended> ---`` line unless it succeeded, and writes its outcome,
  atomically, to ``exits/<stage>.<attempt>.json`` (:func:`outcome_path`) before exiting.

Nothing here depends on the executor being alive: when it dies, the stage goes on, and
whoever takes the run over (:meth:`LocalExecutor.adopt`) reads the outcome file, or
watches this process until it writes it.
"""

from __future__ import annotations

import errno
import marshal
import os
import select
import sys
import time

# Neither typing, json, contextlib nor the signal module (its enums): each would add
# milliseconds to every attempt. _signal is the C module that signal wraps.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from typing import Any

    from llmops.redaction import RedactingStream
else:
    try:
        import _signal
    except ImportError:  # pragma: no cover - CPython has it
        import signal as _signal

#: This file, which the executor runs.
RUNNER = os.path.abspath(__file__)
#: The code a runner is started with: this file, imported by its name from its folder
#: (after the standard library's, which it cannot shadow) rather than run as a script,
#: which Python would compile every time.
BOOTSTRAP = (
    f"import sys; sys.path.append({os.path.dirname(RUNNER)!r}); "
    f"import {os.path.splitext(os.path.basename(RUNNER))[0]} as runner; "
    "sys.exit(runner.main(sys.argv[1:]))"
)
#: Signals that make the runner stop its stage (SIGTERM, SIGKILL after the grace).
STOP_SIGNALS = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP)
#: How long, after the stage's group is dead, output a process that left the group still
#: holds is waited for (besides the grace), before the outcome is written without it.
DRAIN_SECONDS = 5.0


def command(folder: str, stage: str, attempt: int) -> list[str]:
    """The runner of ``stage``'s ``attempt``: isolated mode ignores PYTHON* variables and
    puts neither the working dir nor a script's folder first on ``sys.path``; the
    arguments name the attempt, so that the process can be found again."""
    return [sys.executable, "-I", "-S", "-c", BOOTSTRAP, folder, stage, str(attempt)]


def is_command_of(argv: list[str], folder: str, stage: str, attempt: int) -> bool:
    """Whether a process's ``argv`` is :func:`command`'s for that attempt."""
    return argv[-5:] == ["-c", BOOTSTRAP, folder, stage, str(attempt)]


def outcome_path(folder: str, stage: str, attempt: int) -> str:
    """Where the runner of ``stage``'s ``attempt`` writes how it ended."""
    return os.path.join(folder, "exits", f"{stage}.{attempt}.json")


def pid_path(folder: str, stage: str, attempt: int) -> str:
    """Where the runner keeps its stage's pid and start time while the stage runs."""
    return os.path.join(folder, "exits", f"{stage}.{attempt}.pid")


def describe_exit(code: int) -> str:
    """A stage's return code (negative: the signal that killed it) in words."""
    if code < 0:
        try:
            import signal

            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks after boot."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
        return int(raw[raw.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def encode_config(config: dict[str, Any]) -> bytes:
    """What the executor writes to a runner's stdin (the same Python reads it)."""
    return marshal.dumps(config)


def write_atomic(path: str, data: bytes) -> None:
    """Write ``path`` through a temporary file beside it and a rename."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def to_json(outcome: dict[str, str | int | bool | None]) -> bytes:
    """A flat dict as a JSON object (what ``json.dumps(outcome, indent=2)`` writes, but
    every character outside printable ASCII escaped)."""
    items = []
    for key, value in outcome.items():
        if value is None:
            text = "null"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = _json_string(str(value))
        items.append(f"  {_json_string(key)}: {text}")
    return ("{\n" + ",\n".join(items) + "\n}\n").encode()


def _json_string(text: str) -> str:
    escaped = []
    for char in text:
        code = ord(char)
        if 0x20 <= code < 0x7F and char not in '"\\':
            escaped.append(char)
        elif code > 0xFFFF:  # a surrogate pair
            code -= 0x10000
            escaped.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            escaped.append(f"\\u{code:04x}")
    return '"' + "".join(escaped) + '"'


def main(argv: list[str]) -> int:
    folder, stage, attempt = argv[0], argv[1], int(argv[2])
    # From here on a stop signal is a byte on wake_r: the loop below reads it.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    _signal.set_wakeup_fd(wake_w)
    for sig in STOP_SIGNALS:
        _signal.signal(sig, _noted)
    raw = sys.stdin.buffer.read()
    if not raw:  # its executor died before it handed the attempt over
        sys.stderr.write("--- the stage runner got nothing to run ---\n")
        return 2
    config = marshal.loads(raw)  # noqa: S302 - from the executor, through a pipe it alone has
    pid_file = pid_path(folder, stage, attempt)
    with open(os.path.join(folder, "logs", f"{stage}.log"), "ab", buffering=0) as log:
        outcome = _Attempt(config, log, wake_r, pid_file).run()
        if outcome["message"]:
            log.write(f"--- {outcome['message']} ---\n".encode())
    write_atomic(outcome_path(folder, stage, attempt), to_json(outcome))
    _unlink(pid_file)
    return 0


def _unlink(path: str) -> None:
    try:  # noqa: SIM105 - importing contextlib costs a millisecond to every attempt
        os.unlink(path)
    except FileNotFoundError:
        pass


def _noted(signum: int, frame: object) -> None:
    """A stop signal's handler: the wakeup fd has told the loop already."""


class _Attempt:
    def __init__(self, config: dict[str, Any], log: Any, wake_r: int, pid_file: str) -> None:
        self.config = config
        self.log = log
        self.wake_r = wake_r
        self.pid_file = pid_file
        self.timeout: float | None = config.get("timeout")
        self.grace = float(config.get("grace", 1.0))
        self.stopped = False

    def run(self) -> dict[str, str | int | bool | None]:
        returncode: int | None = None
        timed_out = False
        error: str | None = None
        # before the stage starts: a stage whose output cannot be scrubbed never runs
        stream = _scrubber(self.config.get("secrets") or [])
        if self._stop_signalled():
            self.stopped = True
        else:
            try:
                pid, out_r = self._spawn()
            except OSError as exc:
                error = f"could not start {self.config['program']!r}: {exc}"
            else:
                returncode, timed_out = self._watch(pid, out_r, stream)
        if self.stopped:
            message = "cancelled"
        elif timed_out:
            message = f"timed out after {self.timeout:g} s"
        elif error is not None:
            message = error
        elif returncode:
            message = describe_exit(returncode)
        else:
            message = ""
        now = time.time()
        return {
            "returncode": returncode,
            "exit_code": returncode if returncode is not None and returncode >= 0 else None,
            "signal": -returncode if returncode is not None and returncode < 0 else None,
            "timed_out": timed_out,
            "stopped": self.stopped,
            "error": error,
            "message": message,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int(now % 1 * 1_000_000):06d}+00:00",
        }

    def _stop_signalled(self) -> bool:
        """Whether a stop signal arrived since the last look."""
        try:
            received = os.read(self.wake_r, 512)
        except BlockingIOError:
            return False
        return any(byte in STOP_SIGNALS for byte in received)

    def _spawn(self) -> tuple[int, int]:
        """Start the stage in a session of its own, its output into a pipe."""
        argv: list[str] = self.config["argv"]
        env: dict[str, str] = self.config["env"]
        os.chdir(self.config["cwd"])
        program = _which(argv[0], env.get("PATH", os.defpath))
        out_r, out_w = os.pipe()
        try:
            pid = os.posix_spawn(
                program,
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, out_w, 2),
                ],
                setsid=True,
                # what Python ignores, the stage gets as programs expect it
                setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ),
            )
        except BaseException:
            os.close(out_r)
            raise
        finally:
            os.close(out_w)
        try:  # noqa: SIM105 - only a cleanup without the runner needs it
            write_atomic(self.pid_file, f"{pid} {start_time(pid)}\n".encode())
        except OSError:
            pass
        return pid, out_r

    def _watch(self, pid: int, out_r: int, stream: RedactingStream | None) -> tuple[int, bool]:
        """Copy the output until the stage has ended; return its return code and whether
        it timed out."""
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        for fd in (out_r, pidfd, self.wake_r):
            poller.register(fd, select.POLLIN)
        started = time.monotonic()
        deadline = None if self.timeout is None else started + self.timeout
        kill_at: float | None = None
        drain_until: float | None = None
        returncode: int | None = None
        timed_out = False
        output_open = True
        try:
            while True:
                now = time.monotonic()
                timers = [t for t in (deadline, kill_at, drain_until) if t is not None]
                wait = None if not timers else max(0.0, min(timers) - now) * 1000
                for fd, _ in poller.poll(wait):
                    if fd == out_r:
                        chunk = os.read(out_r, 65536)
                        if chunk:
                            self._write(chunk if stream is None else stream.feed(chunk))
                        else:
                            poller.unregister(out_r)
                            output_open = False
                    elif fd == pidfd:
                        # The leader is a zombie until reaped and pins the group id: kill
                        # what the stage left behind, then reap.
                        poller.unregister(pidfd)
                        _signal_group(pid, _signal.SIGKILL)
                        returncode = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                        deadline = kill_at = None
                        drain_until = time.monotonic() + self.grace + DRAIN_SECONDS
                    elif self._stop_signalled() and returncode is None and not self.stopped:
                        self.stopped = True  # a cancel: it wins over a timeout
                        _signal_group(pid, _signal.SIGTERM)
                        kill_at = time.monotonic() + self.grace
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    timed_out, deadline = True, None
                    if not self.stopped:
                        _signal_group(pid, _signal.SIGTERM)
                        kill_at = now + self.grace
                if kill_at is not None and now >= kill_at:
                    kill_at = None
                    _signal_group(pid, _signal.SIGKILL)
                if returncode is not None and (
                    not output_open or (drain_until is not None and now >= drain_until)
                ):
                    break
        finally:
            os.close(pidfd)
            os.close(out_r)
            if stream is not None:
                self._write(stream.flush())
        assert returncode is not None  # the loop ends once the leader is reaped
        return returncode, timed_out and not self.stopped

    def _write(self, data: bytes) -> None:
        """Append to the log; a full disk loses output, never the stage's outcome."""
        try:  # noqa: SIM105
            self.log.write(data)
        except OSError:
            pass


def _which(name: str, path: str) -> str:
    """The program ``name`` names, found as ``execvp`` with the stage's PATH finds it."""
    if "/" in name:
        return name
    for folder in path.split(os.pathsep):
        candidate = os.path.join(folder or os.curdir, name)
        if os.access(candidate, os.X_OK) and os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


def _scrubber(secrets: list[str]) -> RedactingStream | None:
    """A stream that scrubs ``secrets`` (None when there are none): the redaction module
    of this installation, loaded from its file so the ``llmops`` package is not imported."""
    if not secrets:
        return None
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(RUNNER)), "redaction.py")
    spec = importlib.util.spec_from_file_location("_llmops_redaction", path)
    if spec is None or spec.loader is None:  # pragma: no cover - the file ships with this one
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stream: RedactingStream = module.Redactor(secrets).stream()
    return stream


def _signal_group(pgid: int, sig: int) -> None:
    try:  # noqa: SIM105
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
