"""A tiny benchmark harness: run the platform's path and the direct path alternately,
keep every sample, and report medians, p95s and their ratio.

The ratio is what the project's targets are stated in: both paths run in the same
process, on the same machine, interleaved in time, so machine speed and background
load cancel out far better than in any absolute number.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Metric = Literal["median", "p95"]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Stats:
    """Samples in seconds."""

    samples: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 95)

    def metric(self, which: Metric) -> float:
        return self.median if which == "median" else self.p95

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "median_s": self.median,
            "p95_s": self.p95,
            "min_s": min(self.samples),
            "max_s": max(self.samples),
        }


@dataclass
class Result:
    benchmark: str
    case: str
    platform: Stats
    direct: Stats
    #: Which statistic the ratio compares.
    metric: Metric
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.platform.metric(self.metric) / self.direct.metric(self.metric)

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "case": self.case,
            "metric": self.metric,
            "platform": self.platform.to_json(),
            "direct": self.direct.to_json(),
            "ratio": self.ratio,
            "notes": self.notes,
        }


class PartialFailure(Exception):
    """Some cases of a benchmark failed; ``results`` holds those that ran."""

    def __init__(self, results: list[Result], errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.results = results
        self.errors = errors


def timed(action: Callable[[], object]) -> float:
    """Seconds one call of ``action`` took."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


#: Clock ticks a second, the unit of /proc/<pid>/stat's CPU times.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def child_pid(marker: str) -> int | None:
    """The pid of this process's child whose command line holds ``marker``; None where
    there is no /proc (the CPU notes are left out there)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid() and marker in command:
            return int(entry.name)
    return None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds the process has used so far (/proc/<pid>/stat)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rotate(
    runs: dict[str, Callable[[], float]], *, rounds: int, warmup: int, progress: str
) -> dict[str, Stats]:
    """Every path once a round, the order rotating from round to round (as
    :func:`alternate` does for two); warm-up rounds are not kept."""
    kept = {path: Stats() for path in runs}
    names = list(runs)
    show = sys.stdout.isatty()
    for index in range(warmup + rounds):
        shift = index % len(names)
        for path in names[shift:] + names[:shift]:
            seconds = runs[path]()
            if index >= warmup:
                kept[path].samples.append(seconds)
        if show:
            print(f"\r  {progress}: round {index + 1}/{warmup + rounds}", end="", flush=True)
    if show:
        print()
    return kept


def alternate(
    platform: Callable[[], float],
    direct: Callable[[], float],
    *,
    rounds: int,
    warmup: int = 1,
    progress: str | None = None,
) -> tuple[Stats, Stats]:
    """Run both paths ``warmup + rounds`` times each, alternating which goes first.

    Each callable does one run and returns the seconds it measured (so a callable can
    time only the part that matters, e.g. until a server answers). Warm-up runs fill
    caches (page cache, .pyc, stevedore's entry-point cache) and are not kept.
    """
    kept_platform, kept_direct = Stats(), Stats()
    if not sys.stdout.isatty():
        progress = None  # a log file gets the summary lines only
    for index in range(warmup + rounds):
        order = (
            ((platform, kept_platform), (direct, kept_direct))
            if index % 2 == 0
            else ((direct, kept_direct), (platform, kept_platform))
        )
        for run, stats in order:
            seconds = run()
            if index >= warmup:
                stats.samples.append(seconds)
        if progress is not None:
            print(f"\r  {progress}: round {index + 1}/{warmup + rounds}", end="", flush=True)
    if progress is not None:
        print()
    return kept_platform, kept_direct


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without LLMOPS_* settings, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")}
    env.update(overrides)
    return env


@contextmanager
def environment(tmp: Path, **values: str) -> Iterator[None]:
    """``values`` in os.environ and every temp dir under ``tmp`` (for this process and
    the servers it starts), restored afterwards."""
    values = {**values, "TMPDIR": str(tmp)}
    saved = {name: os.environ.get(name) for name in values}
    saved_tempdir = tempfile.tempdir
    os.environ.update(values)
    tempfile.tempdir = str(tmp)
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def fmt_seconds(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.001:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} us"


def describe(result: Result) -> str:
    """One line with both paths' median and p95 and the ratio."""
    p, d = result.platform, result.direct
    return (
        f"  {result.case}: platform p50 {fmt_seconds(p.median)} p95 {fmt_seconds(p.p95)}"
        f" | direct p50 {fmt_seconds(d.median)} p95 {fmt_seconds(d.p95)}"
        f" | ratio of {result.metric}s {result.ratio:.2f}x (n={p.n}/{d.n})"
    )


def report(results: Sequence[Result]) -> None:
    """Each result's line (:func:`describe`) and its notes, indented under it."""
    for result in results:
        print(describe(result))
        for line in result.notes:
            print(f"    {line}")


def print_table(results: Sequence[Result]) -> None:
    header = ("benchmark", "case", "metric", "platform", "direct", "ratio")
    rows = [
        (
            r.benchmark,
            r.case,
            r.metric,
            fmt_seconds(r.platform.metric(r.metric)),
            fmt_seconds(r.direct.metric(r.metric)),
            f"{r.ratio:.2f}x",
        )
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    right = {3, 4, 5}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
