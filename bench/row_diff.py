"""``row-diff``: the platform's row-level diff of two versions of a JSONL file
(``llmops.rowdiff.diff_rows``, what ``GET .../versions/{id}/diff`` runs on each tabular
file) against GNU ``diff`` of the same two files, in the same run.

The issue's target: the row diff of two **1M-row JSONL versions** runs **within 2x of GNU
``diff``** on the same files (p50), in **bounded memory**. A missed target is a finding
(``SUSPICIOUS``): a ratio above 2.0x at 1M rows, a platform peak RSS above 256 MiB at 1M
rows, or one that grows more than 1.5x from 250k to 1M rows (4x the bytes).

The data: two pairs of files written once into the benchmark's temp dir from a seeded
``random.Random`` (outside the clocks), 1,000,000 rows and, so the scaling shows,
250,000 rows: records ``{"id": i, "prompt": ..., "completion": ..., "tokens": n}`` of
about 155 bytes (words of a fixed vocabulary). The second version of each changes about
1% of the rows (a new completion and token count, the same id), removes about 0.5% and
inserts about 0.5% new ones (new ids), all spread across the file. The generator counts
what it did, and every platform run's counts must equal them: by key ``id``, changed =
the rows it changed, removed and added = the rows it removed and inserted; by content
(no key), nothing is changed, a changed row is one removed and one added. A wrong count
fails the case (and is a finding).

The paths, each a process of its own, started afresh for every run:

* platform, key ``id``: ``python -c`` (the venv's interpreter) importing
  ``llmops.rowdiff`` and calling ``diff_rows(before, after, RowFormat.JSONL, key="id",
  work_dir=<temp>)`` with the service's defaults (a page of 50, 16 MiB buckets). The
  process times the call itself (``perf_counter`` around it): that is the sample, so the
  interpreter's start and the import (noted, with the wall time) are not in the ratio.
* platform, by content: the same with no key.
* GNU diff (the direct path): ``diff before.jsonl after.jsonl > /dev/null`` (exit status
  1: the files differ), timed as the wall time of the process.

Peak RSS: the platform's process reports its own ``VmHWM`` (``/proc/self/status``) after
the call, and before it (the interpreter and the import); GNU diff's is its
``ru_maxrss``, read with ``os.wait4`` on its pid (the platform's is read the same way,
as a cross-check). Each size's three paths rotate each round after one warm-up round.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import PartialFailure, Result, Stats, fmt_seconds, report, rotate

NAME = "row-diff"
MIB = 1 << 20
#: the rows of each pair of files: the smaller one first, the issue's last
SIZES = (250_000, 1_000_000)
TARGET_ROWS = 1_000_000
SEED = 20_250_601
KEY = "id"
#: the second version: the share of rows changed, removed, and inserted (before a row)
CHANGE_RATE = 0.01
REMOVE_RATE = 0.005
INSERT_RATE = 0.005
PLATFORM_KEY = f"platform, key {KEY!r}"
PLATFORM_CONTENT = "platform, by content"
GNU_DIFF = "GNU diff"
PATHS = (PLATFORM_KEY, PLATFORM_CONTENT, GNU_DIFF)
DEFAULT_ROUNDS = 3
WARMUP = 1
TARGET_RATIO = 2.0
RSS_LIMIT = 256 * MIB
RSS_GROWTH_LIMIT = 1.5
RUN_TIMEOUT = 300.0

#: The platform's process: argv before, after, key ("" for none), work dir. Its one line
#: of JSON: the diff's counts, the seconds of the call alone, and its VmHWM before and
#: after the call.
CHILD = r"""
import time
began = time.perf_counter()
import json, sys
from pathlib import Path
from llmops.rowdiff import RowFormat, diff_rows
imported = time.perf_counter() - began


def status(name):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    return None


hwm_before = status("VmHWM")
start = time.perf_counter()
diff = diff_rows(
    Path(sys.argv[1]),
    Path(sys.argv[2]),
    RowFormat.JSONL,
    key=sys.argv[3] or None,
    work_dir=Path(sys.argv[4]),
)
seconds = time.perf_counter() - start
answer = {
    "seconds": seconds,
    "import": imported,
    "hwm_before": hwm_before,
    "hwm": status("VmHWM"),
    "rows_before": diff.rows_before,
    "rows_after": diff.rows_after,
    "added": diff.added,
    "removed": diff.removed,
    "changed": diff.changed,
    "unchanged": diff.unchanged,
    "page": len(diff.changes),
    "total": diff.total_changes,
}
print(json.dumps(answer), flush=True)
"""

#: the words of the rows' text
VOCABULARY = (
    "the a of to and in is for on with as by at from that this it be are was or an "
    "model data train test eval prompt answer question summary translate explain list "
    "write code python function error value result output input token user system note "
    "report table file version dataset row column key change update review check plan "
    "step first second next last short long simple clear brief detail example sample "
    "number count total average price cost time date year month week day hour city "
    "country market product customer order service support email letter story poem "
    "article paragraph sentence word title topic idea reason cause effect problem fix"
)
WORDS = VOCABULARY.split()


@dataclass(frozen=True)
class Pair:
    """Two versions of one file, and what the generator changed between them."""

    rows: int
    before: Path
    after: Path
    changed: int
    removed: int
    added: int

    @property
    def bytes(self) -> int:
        return self.before.stat().st_size

    def expected(self, key: bool) -> dict[str, int]:
        rows_after = self.rows - self.removed + self.added
        if key:
            return {
                "rows_before": self.rows,
                "rows_after": rows_after,
                "added": self.added,
                "removed": self.removed,
                "changed": self.changed,
            }
        return {
            "rows_before": self.rows,
            "rows_after": rows_after,
            "added": self.added + self.changed,
            "removed": self.removed + self.changed,
            "changed": 0,
        }


def _row(rng: random.Random, ident: int) -> str:
    choices = rng.choices
    prompt = " ".join(choices(WORDS, k=rng.randint(5, 8)))
    completion = " ".join(choices(WORDS, k=rng.randint(8, 12)))
    return (
        f'{{"id": {ident}, "prompt": "{prompt}", "completion": "{completion}", '
        f'"tokens": {rng.randint(8, 400)}}}\n'
    )


def write_pair(folder: Path, rows: int, seed: int) -> Pair:
    """``rows`` rows before; after, about :data:`CHANGE_RATE` of them changed (a new
    completion and a token count one higher at least: never equal), :data:`REMOVE_RATE`
    removed and :data:`INSERT_RATE` new rows inserted, anywhere in the file."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    before, after = folder / "before.jsonl", folder / "after.jsonl"
    changed = removed = added = 0
    next_id = rows
    with (
        before.open("w", buffering=1 << 20) as old,
        after.open("w", buffering=1 << 20) as new,
    ):
        for ident in range(rows):
            line = _row(rng, ident)
            old.write(line)
            if rng.random() < INSERT_RATE:
                new.write(_row(rng, next_id))
                next_id += 1
                added += 1
            draw = rng.random()
            if draw < REMOVE_RATE:
                removed += 1
            elif draw < REMOVE_RATE + CHANGE_RATE:
                value = json.loads(line)
                value["completion"] = " ".join(rng.choices(WORDS, k=rng.randint(8, 12)))
                value["tokens"] += rng.randint(1, 50)
                new.write(json.dumps(value) + "\n")
                changed += 1
            else:
                new.write(line)
    return Pair(rows, before, after, changed, removed, added)


# -- the runs ------------------------------------------------------------------------------


@dataclass
class PathRuns:
    """One path's kept runs: the samples and what else each run measured."""

    stats: Stats = field(default_factory=Stats)
    #: the platform's wall time of its process, its import of llmops.rowdiff
    wall: list[float] = field(default_factory=list)
    imports: list[float] = field(default_factory=list)
    #: peak RSS (bytes): VmHWM after the call (the platform), ru_maxrss (GNU diff)
    peak: list[int] = field(default_factory=list)
    #: the platform's VmHWM before the call (the interpreter and the import)
    base: list[int] = field(default_factory=list)
    #: the platform's ru_maxrss from wait4, as a cross-check of its VmHWM
    maxrss: list[int] = field(default_factory=list)


@dataclass
class Bench:
    pair: Pair
    scratch: Path
    #: every run's answer, warm-up included (the counts are checked on all of them)
    answers: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {PLATFORM_KEY: [], PLATFORM_CONTENT: []}
    )
    runs: dict[str, list[PathRuns]] = field(default_factory=dict)
    last: dict[str, dict[str, Any]] = field(default_factory=dict)

    def platform(self, path: str) -> float:
        key = KEY if path == PLATFORM_KEY else ""
        work = Path(tempfile.mkdtemp(prefix="work-", dir=self.scratch))
        out, log = self.scratch / "platform.out", self.scratch / "platform.log"
        argv = [sys.executable, "-c", CHILD, str(self.pair.before), str(self.pair.after)]
        status, usage, wall = _execute([*argv, key, str(work)], out, log)
        left = list(work.iterdir())
        shutil.rmtree(work, ignore_errors=True)
        if status != 0:
            tail = log.read_text(errors="replace")[-800:]
            raise RuntimeError(f"{path}: the diff's process exited {status}: {tail!r}")
        answer: dict[str, Any] = json.loads(out.read_text())
        answer.update(wall=wall, maxrss=usage.ru_maxrss * 1024, left=len(left))
        self.answers[path].append(answer)
        self.last[path] = answer
        return float(answer["seconds"])

    def gnu_diff(self) -> float:
        log = self.scratch / "diff.log"
        argv = ["diff", str(self.pair.before), str(self.pair.after)]
        status, usage, seconds = _execute(argv, Path(os.devnull), log)
        if status != 1:  # 0: no difference, 2: trouble
            tail = log.read_text(errors="replace")[-500:]
            raise RuntimeError(f"diff exited {status} (1 = the files differ): {tail!r}")
        self.last[GNU_DIFF] = {"maxrss": usage.ru_maxrss * 1024}
        return seconds


def _execute(argv: list[str], out: Path, log: Path) -> tuple[int, Any, float]:
    """Run ``argv`` (stdout to ``out``, stderr to ``log``; killed after
    :data:`RUN_TIMEOUT`): its exit status, its own rusage (``os.wait4`` on its pid, not
    every child's) and its wall time, from the start to the reaping."""
    with out.open("wb") as stdout, log.open("wb") as stderr:
        began = time.perf_counter()
        process = subprocess.Popen(argv, stdout=stdout, stderr=stderr)
        timer = threading.Timer(RUN_TIMEOUT, process.kill)
        timer.start()
        try:
            _, raw, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            timer.cancel()
        seconds = time.perf_counter() - began
    status = os.waitstatus_to_exitcode(raw)
    process.returncode = status  # reaped here: Popen must not wait for it again
    if status < 0:
        raise RuntimeError(f"{argv[0]} killed by signal {-status} (timeout {RUN_TIMEOUT:g} s?)")
    return status, usage, seconds


def _measure(bench: Bench, rounds: int) -> dict[str, PathRuns]:
    """The three paths rotating each round after the warm-up; every kept sample's extras
    (wall time, peaks) kept beside it."""
    kept = {path: PathRuns() for path in PATHS}

    def record(path: str, seconds: float) -> float:
        # rotate() keeps the samples of the rounds after the warm-up: the extras of a
        # run go with its sample, so they are trimmed to the same rounds afterwards
        answer = bench.last[path]
        runs = kept[path]
        runs.peak.append(int(answer["hwm"] if "hwm" in answer else answer["maxrss"]))
        if path != GNU_DIFF:
            runs.wall.append(float(answer["wall"]))
            runs.imports.append(float(answer["import"]))
            runs.base.append(int(answer["hwm_before"]))
            runs.maxrss.append(int(answer["maxrss"]))
        return seconds

    stats = rotate(
        {
            PLATFORM_KEY: lambda: record(PLATFORM_KEY, bench.platform(PLATFORM_KEY)),
            PLATFORM_CONTENT: lambda: record(PLATFORM_CONTENT, bench.platform(PLATFORM_CONTENT)),
            GNU_DIFF: lambda: record(GNU_DIFF, bench.gnu_diff()),
        },
        rounds=rounds,
        warmup=WARMUP,
        progress=f"{NAME} {_rows(bench.pair.rows)}",
    )
    for path, runs in kept.items():
        runs.stats = stats[path]
        for extras in (runs.wall, runs.imports, runs.peak, runs.base, runs.maxrss):
            del extras[: len(extras) - runs.stats.n]
    return kept


def _wrong_counts(bench: Bench) -> list[str]:
    """Every platform run whose counts are not the generator's."""
    wrong = []
    for path, answers in bench.answers.items():
        expected = bench.pair.expected(path == PLATFORM_KEY)
        for index, answer in enumerate(answers):
            got = {name: answer[name] for name in expected}
            if got != expected:
                wrong.append(f"{path} run {index + 1}: counts {got}, the generator's {expected}")
            elif answer["left"]:
                wrong.append(f"{path} run {index + 1}: left {answer['left']} files in work_dir")
    return wrong


# -- the results ---------------------------------------------------------------------------


def _rows(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows % 1_000_000 == 0 else f"{rows // 1000}k"


def _mib(value: float) -> str:
    return f"{value / MIB:.0f} MiB"


def _flagged(note: str, missed: bool) -> str:
    return f"SUSPICIOUS: target missed: {note}" if missed else note


def _results(pair: Pair, kept: dict[str, PathRuns], wrong: list[str]) -> list[Result]:
    direct = kept[GNU_DIFF]
    what = f"{_rows(pair.rows)} rows ({_mib(pair.bytes)})"
    results = []
    for path, how in ((PLATFORM_KEY, f"by key {KEY!r}"), (PLATFORM_CONTENT, "by content")):
        runs = kept[path]
        result = Result(
            NAME, f"diff {what} {how}: diff_rows / GNU diff", runs.stats, direct.stats, "median"
        )
        expected = pair.expected(path == PLATFORM_KEY)
        note = f"p50 {result.ratio:.2f}x"
        if pair.rows == TARGET_ROWS:
            note = _flagged(
                f"{note} (target <= {TARGET_RATIO:.1f}x): diff_rows "
                f"{fmt_seconds(runs.stats.median)} against GNU diff "
                f"{fmt_seconds(direct.stats.median)}",
                result.ratio > TARGET_RATIO,
            )
        else:
            note += " (no target: the size the 1M rows' time and memory are compared with)"
        result.notes.append(note)
        mine = [line for line in wrong if line.startswith(path + " ")]
        if mine:
            result.notes.append(f"SUSPICIOUS: wrong counts in {len(mine)} run(s): {mine[0]}")
        else:
            result.notes.append(
                "counts as generated in every run: "
                + ", ".join(f"{name} {value}" for name, value in expected.items())
            )
        result.notes.append(
            f"the process's wall time p50 {fmt_seconds(statistics.median(runs.wall))} "
            f"({statistics.median(runs.wall) / direct.stats.median:.2f}x GNU diff): "
            "the interpreter's start and `import llmops.rowdiff` "
            f"({fmt_seconds(statistics.median(runs.imports))} of it at p50) besides the call"
        )
        result.notes.append(
            f"throughput at p50: diff_rows {pair.rows / runs.stats.median / 1e6:.2f}M rows/s "
            f"({pair.bytes * 2 / MIB / runs.stats.median:.0f} MiB/s of both files), GNU diff "
            f"{pair.rows / direct.stats.median / 1e6:.2f}M rows/s"
        )
        result.notes.append(
            f"peak RSS (max of the kept runs): diff_rows {_mib(max(runs.peak))} (VmHWM; "
            f"{_mib(max(runs.base))} of it the interpreter and the import, so the call "
            f"{_mib(max(runs.peak) - max(runs.base))}; ru_maxrss {_mib(max(runs.maxrss))}), "
            f"GNU diff {_mib(max(direct.peak))} (ru_maxrss)"
        )
        results.append(result)
    return results


def _rss_findings(kept: dict[int, dict[str, PathRuns]], results: dict[int, list[Result]]) -> None:
    """The memory targets, on the 1M rows' results: at most :data:`RSS_LIMIT`, and at
    most :data:`RSS_GROWTH_LIMIT` times the 250k rows' peak."""
    from llmops.rowdiff import DEFAULT_BUCKET_BYTES

    small, large = SIZES[0], TARGET_ROWS
    if large not in kept:
        return
    for path, result in zip((PLATFORM_KEY, PLATFORM_CONTENT), results[large], strict=True):
        peak = max(kept[large][path].peak)
        note = f"peak RSS {_mib(peak)} at {_rows(large)} rows (target <= {_mib(RSS_LIMIT)})"
        missed = peak > RSS_LIMIT
        if small in kept:
            before = max(kept[small][path].peak)
            growth = peak / before
            own = (
                max(kept[small][path].peak) - max(kept[small][path].base),
                peak - max(kept[large][path].base),
            )
            note += (
                f", {growth:.2f}x the {_mib(before)} at {_rows(small)} rows for "
                f"{large // small}x the rows (target <= {RSS_GROWTH_LIMIT:.1f}x: bounded, not "
                f"following the files' size); the call's own, above the import: "
                f"{_mib(own[0])} -> {_mib(own[1])} (the rows left to compare, held while "
                f"they fit in the {_mib(DEFAULT_BUCKET_BYTES)} of bucket_bytes)"
            )
            missed = missed or growth > RSS_GROWTH_LIMIT
        result.notes.append(_flagged(note, missed))


def run(workdir: Path, rounds: int | None = None) -> list[Result]:
    kept_rounds = rounds or DEFAULT_ROUNDS
    root = Path(tempfile.mkdtemp(prefix="row-diff-", dir=workdir))
    errors: list[str] = []
    by_size: dict[int, list[Result]] = {}
    kept: dict[int, dict[str, PathRuns]] = {}
    try:
        began = time.perf_counter()
        pairs = [write_pair(root / _rows(rows), rows, SEED + rows) for rows in SIZES]
        print(
            "  wrote "
            + ", ".join(
                f"{_rows(p.rows)} rows ({_mib(p.bytes)}: {p.changed} changed, {p.removed} "
                f"removed, {p.added} inserted)"
                for p in pairs
            )
            + f" in {time.perf_counter() - began:.1f} s"
        )
        for pair in pairs:
            scratch = root / f"{_rows(pair.rows)}-work"
            scratch.mkdir()
            bench = Bench(pair, scratch)
            try:
                kept[pair.rows] = _measure(bench, kept_rounds)
            except Exception as exc:
                traceback.print_exc()
                error = f"{_rows(pair.rows)} rows: {type(exc).__name__}: {exc}".splitlines()[0]
                print(f"  FAILED {error}")
                errors.append(error)
                continue
            wrong = _wrong_counts(bench)
            errors.extend(f"{_rows(pair.rows)} rows: {line}" for line in wrong)
            by_size[pair.rows] = _results(pair, kept[pair.rows], wrong)
        _rss_findings(kept, by_size)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # the size first
    results = [r for rows in sorted(by_size, reverse=True) for r in by_size[rows]]
    report(results)
    if errors:
        raise PartialFailure(results, errors)
    return results
