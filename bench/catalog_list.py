"""``list-100k-sqlite`` / ``list-100k-postgresql``: per-page latency of
``GET /llm-ops/v1/catalog/models`` over a table of N models, through the real app
in-process, against the same keyset SQL run through SQLAlchemy on the same engine.

Each case also EXPLAINs the SQL the platform actually sent (captured from the engine)
and says whether the database reads an index in order, enters it at the cursor, or
scans and sorts the table.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

from fastapi.testclient import TestClient
from harness import PartialFailure, Result, Stats, describe, fmt_seconds
from sqlalchemy import ColumnElement, Engine, Table, event, func, insert, or_, select, text, tuple_
from sqlalchemy.engine import Row

from llmops.api.app import API_PREFIX, create_app
from llmops.config import CoreSettings
from llmops.db import migrate
from llmops.db.models import CatalogModel
from llmops.db.session import make_engine
from llmops.services.api_keys import Role, create_api_key
from llmops.services.pagination import encode_cursor

URL = f"{API_PREFIX}/catalog/models"
PAGE = 50
CHUNK = 5_000
DEFAULT_ROUNDS = 30
WARMUP = 2

TASKS = (
    "text-generation",
    "text-classification",
    "summarization",
    "translation",
    "question-answering",
    "embedding",
    "token-classification",
    "chat",
)
FRAMEWORKS = ("pytorch", "transformers", "vllm", "onnx", "tensorflow", "jax")
STATUSES = ("registered", "registered", "registered", "ready", "archived")
FAMILIES = (
    "llama",
    "mistral",
    "qwen",
    "gemma",
    "phi",
    "falcon",
    "bert",
    "roberta",
    "t5",
    "bart",
    "gpt2",
    "bloom",
    "opt",
    "pythia",
    "mpt",
    "olmo",
    "deberta",
    "electra",
    "whisper",
    "clip",
)
#: One family in twenty: a q= search whose first page is found early in the scan.
Q_COMMON = "mistral"
#: Matches nothing: the database has to look at every row to say so.
Q_NONE = "no-such-model-zz"
#: Where the "deep page" case starts, as a fraction of the table.
DEEP = 0.9

table = cast(Table, CatalogModel.__table__)
columns = table.c


def fill(engine: Engine, rows: int, seed: int = 1234) -> float:
    """Insert ``rows`` models in chunks of CHUNK; seconds it took.

    Names are distinct, task/framework/status vary, created_at is spread over a year with
    one row in ten sharing the previous row's instant (a bulk import), so the id
    tie-break of the keyset cursor is exercised too.
    """
    rng = random.Random(seed)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    year_us = 365 * 86_400 * 1_000_000
    created = base
    started = time.perf_counter()
    for start in range(0, rows, CHUNK):
        chunk = []
        for i in range(start, min(start + CHUNK, rows)):
            family = rng.choice(FAMILIES)
            task = rng.choice(TASKS)
            framework = rng.choice(FRAMEWORKS)
            if i % 10 != 0:
                created = base + timedelta(microseconds=rng.randrange(year_us))
            chunk.append(
                {
                    "id": f"{rng.getrandbits(128):032x}",
                    "name": f"{family}-{rng.randrange(1, 80)}b-{i:06d}",
                    "version": "1",
                    "description": f"{family} {task} model, {framework} weights",
                    "task": task,
                    "framework": framework,
                    "source": "manual",
                    "status": rng.choice(STATUSES),
                    "uri": f"s3://models/{family}/{i:06d}",
                    "tags": [family, task],
                    "labels": {"team": f"team-{i % 17}"},
                    "created_at": created,
                    "updated_at": created,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(table), chunk)
    return time.perf_counter() - started


@dataclass(frozen=True)
class Case:
    name: str
    #: Query parameters of the API request (besides cursor).
    params: dict[str, str]
    #: repeat: the same page ``rounds`` times; walk: ``pages`` consecutive pages.
    mode: Literal["repeat", "walk"]
    pages: int = 0
    #: Where the repeated page starts, as a fraction of the table (0: the first page).
    start: float = 0.0
    where: Callable[[], list[ColumnElement[bool]]] = list
    #: What would let the database read this query's pages without a scan or a sort.
    fix: str = ""

    @property
    def sort(self) -> str:
        return self.params.get("sort", "-createdAt")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def sort_column(self) -> str:
        return {"createdAt": "created_at", "updatedAt": "updated_at", "name": "name"}[
            self.sort.lstrip("-")
        ]


def _ilike(term: str) -> list[ColumnElement[bool]]:
    pattern = f"%{term}%"
    return [
        or_(
            columns.name.ilike(pattern, escape="\\"),
            columns.description.ilike(pattern, escape="\\"),
        )
    ]


CURSOR_FIX = (
    "let the database enter the index at the cursor: add the redundant bound "
    "`{col} {op}= :v AND (...)` to the OR, or compare a row value `({col}, id) {op} (:v, :id)` "
    "(sqlalchemy.tuple_); either turns the existing index into a range"
)
TRIGRAM_FIX = (
    "no btree can serve '%term%': a pg_trgm GIN index on name and description "
    "(PostgreSQL) or an FTS5 table (SQLite)"
)

CASES = (
    Case("first page (-createdAt)", {}, "repeat", fix="an index on (created_at, id)"),
    Case(
        "walk 200 pages (-createdAt)",
        {},
        "walk",
        pages=200,
        fix=CURSOR_FIX.format(col="created_at", op="<"),
    ),
    Case(
        f"page at {DEEP:.0%} depth (-createdAt)",
        {},
        "repeat",
        start=DEEP,
        fix=CURSOR_FIX.format(col="created_at", op="<"),
    ),
    Case(
        "walk 100 pages (sort=name)",
        {"sort": "name"},
        "walk",
        pages=100,
        fix=CURSOR_FIX.format(col="name", op=">"),
    ),
    Case(
        "task=summarization first page",
        {"task": "summarization"},
        "repeat",
        where=lambda: [columns.task == "summarization"],
        fix="an index on (task, created_at, id)",
    ),
    Case(f"q={Q_COMMON} first page", {"q": Q_COMMON}, "repeat", where=lambda: _ilike(Q_COMMON)),
    Case(
        f"q={Q_NONE} (no match)",
        {"q": Q_NONE},
        "repeat",
        where=lambda: _ilike(Q_NONE),
        fix=TRIGRAM_FIX,
    ),
)


@dataclass
class Capture:
    """The SQL statements an engine sends while recording."""

    on: bool = False
    statements: list[tuple[str, Any]] = field(default_factory=list)

    def listener(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if self.on:
            self.statements.append((statement, parameters))

    @contextmanager
    def recording(self) -> Iterator[list[tuple[str, Any]]]:
        self.statements = []
        self.on = True
        try:
            yield self.statements
        finally:
            self.on = False


def page_query(statements: list[tuple[str, Any]]) -> tuple[str, Any]:
    for statement, parameters in statements:
        flat = " ".join(statement.split()).lower()
        if "from models" in flat and "order by" in flat:
            return statement, parameters
    raise RuntimeError("the platform sent no page query on models")


@dataclass(frozen=True)
class Plan:
    lines: list[str]
    #: The index the database reads, if any.
    index: str | None
    full_scan: bool
    full_sort: bool
    #: Only rows with equal first sort keys get sorted (SQLite's "RIGHT PART OF ORDER BY",
    #: PostgreSQL's Incremental Sort): cheap, bounded by the page.
    partial_sort: bool
    #: The index is entered at the cursor (a range condition on the sort column).
    seeks: bool

    def problem(self, cursor: bool) -> bool:
        return self.full_scan or self.full_sort or (cursor and not self.seeks)

    def verdict(self, cursor: bool) -> str:
        if self.full_scan:
            read = "FULL SCAN of models"
        elif self.index is None:
            read = "no index"
        elif not cursor:
            read = f"reads index {self.index}"
        elif self.seeks:
            read = f"enters index {self.index} at the cursor (range)"
        else:
            read = (
                f"reads index {self.index} FROM ITS START, the cursor is only a filter "
                "(cost grows with depth)"
            )
        if self.full_sort:
            order = "FULL SORT of the matching rows"
        elif self.partial_sort:
            order = "sorts only ties of the first key (incremental, cheap)"
        else:
            order = "no sort"
        return f"{read}; {order}"


SQLITE_FULL_SORT = "USE TEMP B-TREE FOR ORDER BY"


def explain(engine: Engine, statement: str, parameters: Any, sort_column: str) -> Plan:
    """EXPLAIN (QUERY PLAN) of a statement as it was sent, with its parameters."""
    range_on_sort = re.compile(rf"\b{sort_column}\)?(?:::[\w ]+?)?\s*[<>]")
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            lines = [str(row[-1]) for row in rows]
            indexes = [re.search(r"USING (?:COVERING )?INDEX (\S+)", line) for line in lines]
            return Plan(
                lines=lines,
                index=next((m.group(1) for m in indexes if m), None),
                full_scan=any(line.startswith("SCAN") and "INDEX" not in line for line in lines),
                full_sort=SQLITE_FULL_SORT in lines,
                partial_sort=any(
                    line.startswith("USE TEMP B-TREE FOR") and line != SQLITE_FULL_SORT
                    for line in lines
                ),
                seeks=any(
                    line.startswith("SEARCH") and range_on_sort.search(line) for line in lines
                ),
            )
        rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
        lines = [str(row[0]) for row in rows]
        stripped = [re.sub(r"^\s*(->\s+)?", "", line) for line in lines]
        nodes = [line for line in stripped if "(cost=" in line]
        indexes = [re.search(r" using (\S+) on ", node) for node in nodes]
        return Plan(
            lines=lines,
            index=next((m.group(1) for m in indexes if m), None),
            full_scan=any(node.startswith("Seq Scan") for node in nodes),
            full_sort=any(node.startswith("Sort ") for node in nodes),
            partial_sort=any(node.startswith("Incremental Sort") for node in nodes),
            seeks=any(
                line.startswith("Index Cond") and range_on_sort.search(line) for line in stripped
            ),
        )


DirectCursor = tuple[Any, str]


class Direct:
    """The baseline: the keyset query in SQLAlchemy Core on the platform's own engine."""

    def __init__(self, engine: Engine, case: Case) -> None:
        self.engine = engine
        self.case = case
        self.column = columns[case.sort_column]

    def statement(self, cursor: DirectCursor | None) -> Any:
        case, column = self.case, self.column
        stmt = select(table)
        for condition in case.where():
            stmt = stmt.where(condition)
        if cursor is not None:
            value, last_id = cursor
            # the same row-value keyset the platform uses, so the ratio compares like with like
            key, bound = tuple_(column, columns.id), tuple_(value, last_id)
            if case.descending:
                stmt = stmt.where(column <= value, key < bound)
            else:
                stmt = stmt.where(column >= value, key > bound)
        order = (
            (column.desc(), columns.id.desc())
            if case.descending
            else (column.asc(), columns.id.asc())
        )
        return stmt.order_by(*order)

    def page(self, cursor: DirectCursor | None) -> tuple[float, list[Row[Any]]]:
        stmt = self.statement(cursor).limit(PAGE + 1)
        started = time.perf_counter()
        with self.engine.connect() as conn:
            rows = list(conn.execute(stmt).all())
        return time.perf_counter() - started, rows

    def next_cursor(self, rows: list[Row[Any]]) -> DirectCursor | None:
        if len(rows) <= PAGE:
            return None
        last = rows[PAGE - 1]._mapping
        return last[self.case.sort_column], last["id"]

    def cursor_at(self, fraction: float) -> DirectCursor | None:
        """The cursor of the row ``fraction`` of the way into the ordered result (untimed)."""
        if fraction <= 0:
            return None
        with self.engine.connect() as conn:
            total = conn.execute(
                select(func.count()).select_from(self.statement(None).subquery())
            ).scalar_one()
            offset = max(int(total * fraction) - 1, 0)
            row = conn.execute(self.statement(None).offset(offset).limit(1)).one()._mapping
        return row[self.case.sort_column], row["id"]


class Platform:
    def __init__(self, client: TestClient, case: Case) -> None:
        self.client = client
        self.case = case

    def page(self, cursor: str | None) -> tuple[float, list[str], str | None]:
        params = dict(self.case.params)
        if cursor is not None:
            params["cursor"] = cursor
        started = time.perf_counter()
        response = self.client.get(URL, params=params)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"GET {URL} {params}: {response.status_code} {response.text}")
        body = response.json()
        return elapsed, [item["id"] for item in body["items"]], body["nextCursor"]


def _median(values: list[float]) -> str:
    return fmt_seconds(statistics.median(values)) if values else "-"


class CaseRun:
    """One case: both paths alternately, page by page, with the plans of the SQL sent."""

    def __init__(
        self, client: TestClient, engine: Engine, capture: Capture, case: Case, rounds: int
    ) -> None:
        self.case = case
        self.engine = engine
        self.capture = capture
        self.rounds = rounds
        self.platform = Platform(client, case)
        self.direct = Direct(engine, case)
        self.p_stats, self.d_stats = Stats(), Stats()
        self.notes: list[str] = []
        self.mismatches = 0
        self.plans: list[tuple[str, bool, Plan]] = []

    def both(
        self, index: int, p_cursor: str | None, d_cursor: DirectCursor | None
    ) -> tuple[float, list[str], str | None, float, list[Row[Any]], list[tuple[str, Any]]]:
        """One page on each path, alternating which goes first; the platform's SQL."""
        if index % 2 == 0:
            with self.capture.recording() as statements:
                p_seconds, p_ids, next_p = self.platform.page(p_cursor)
            d_seconds, rows = self.direct.page(d_cursor)
        else:
            d_seconds, rows = self.direct.page(d_cursor)
            with self.capture.recording() as statements:
                p_seconds, p_ids, next_p = self.platform.page(p_cursor)
        if p_ids != [row.id for row in rows[:PAGE]]:
            self.mismatches += 1
        return p_seconds, p_ids, next_p, d_seconds, rows, statements

    def record_plan(self, label: str, cursor: bool, statements: list[tuple[str, Any]]) -> None:
        statement, parameters = page_query(statements)
        plan = explain(self.engine, statement, parameters, self.case.sort_column)
        self.plans.append((label, cursor, plan))

    def repeat(self) -> None:
        d_cursor = self.direct.cursor_at(self.case.start)
        p_cursor = None
        if d_cursor is not None:
            p_cursor = encode_cursor(self.case.sort, list(d_cursor))
        statements: list[tuple[str, Any]] = []
        for index in range(WARMUP + self.rounds):
            p_seconds, _, _, d_seconds, _, statements = self.both(index, p_cursor, d_cursor)
            if index >= WARMUP:
                self.p_stats.samples.append(p_seconds)
                self.d_stats.samples.append(d_seconds)
        label = "page 1" if d_cursor is None else f"page at {self.case.start:.0%}"
        self.record_plan(label, d_cursor is not None, statements)

    def walk(self) -> None:
        p_cursor: str | None = None
        d_cursor: DirectCursor | None = None
        seen: set[str] = set()
        duplicates = 0
        deepest: tuple[int, list[tuple[str, Any]]] | None = None
        for index in range(self.case.pages):
            p_seconds, p_ids, next_p, d_seconds, rows, statements = self.both(
                index, p_cursor, d_cursor
            )
            if index == 0:
                self.record_plan("page 1", False, statements)
            else:
                deepest = (index + 1, statements)
            duplicates += len(seen.intersection(p_ids))
            seen.update(p_ids)
            self.p_stats.samples.append(p_seconds)
            self.d_stats.samples.append(d_seconds)
            p_cursor, d_cursor = next_p, self.direct.next_cursor(rows)
            if p_cursor is None or d_cursor is None:
                if index < self.case.pages - 1:
                    self.notes.append(f"the walk ended after {index + 1} pages (no nextCursor)")
                break
        if deepest is not None:
            self.record_plan(f"page {deepest[0]}", True, deepest[1])
        if duplicates:
            self.notes.append(f"SUSPICIOUS: {duplicates} ids came back on more than one page")
        p, d = self.p_stats.samples, self.d_stats.samples
        self.notes.append(
            f"by depth (p50): platform pages 1-10 {_median(p[:10])}, last 10 {_median(p[-10:])};"
            f" direct {_median(d[:10])} -> {_median(d[-10:])}"
        )

    def run(self, benchmark: str) -> Result:
        if self.case.mode == "walk":
            self.walk()
        else:
            self.repeat()
        if self.mismatches:
            self.notes.append(
                f"SUSPICIOUS: {self.mismatches} page(s) differ between platform and direct SQL"
            )
        for label, cursor, plan in self.plans:
            self.notes.append(f"plan ({label}): {plan.verdict(cursor)}")
            if plan.problem(cursor):
                fix = f"; fix: {self.case.fix}" if self.case.fix else ""
                self.notes.append(f"PLAN PROBLEM ({label}): {plan.verdict(cursor)}{fix}")
        result = Result(benchmark, self.case.name, self.p_stats, self.d_stats, "p95", self.notes)
        print(describe(result))
        for note in self.notes:
            if not note.startswith("PLAN PROBLEM"):
                print(f"    {note}")
        for label, _, plan in self.plans:
            print(f"    EXPLAIN ({label}):")
            for line in plan.lines:
                print(f"      {line}")
        return result


def measure(
    benchmark: str, workdir: Path, database_url: str, rows: int, rounds: int
) -> list[Result]:
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        seconds = fill(engine, rows)
        print(f"  filled {rows} models in {seconds:.1f} s")
        if engine.dialect.name == "postgresql":
            # What autovacuum does soon after a bulk load; without it the planner guesses.
            with engine.begin() as conn:
                conn.execute(text("ANALYZE models"))
    finally:
        engine.dispose()
    settings = CoreSettings(data_dir=workdir / "data", database_url=database_url, plugins="none")
    results: list[Result] = []
    errors: list[str] = []
    with TestClient(create_app(settings)) as client:
        app_engine: Engine = client.app.state.platform.engine  # type: ignore[attr-defined]
        with client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
            _, key = create_api_key(session=session, name="bench", role=Role.VIEWER)
        client.headers["Authorization"] = f"Bearer {key}"
        capture = Capture()
        event.listen(app_engine, "before_cursor_execute", capture.listener)
        try:
            for case in CASES:
                try:
                    run = CaseRun(client, app_engine, capture, case, rounds)
                    results.append(run.run(benchmark))
                except Exception as exc:
                    error = f"{case.name}: {type(exc).__name__}: {exc}".splitlines()[0]
                    print(f"  FAILED {error}")
                    errors.append(error)
        finally:
            event.remove(app_engine, "before_cursor_execute", capture.listener)
    for result in results:
        result.notes.insert(0, f"{rows} rows")
    if errors:
        raise PartialFailure(results, errors)
    return results


def run_sqlite(workdir: Path, rows: int, rounds: int | None = None) -> list[Result]:
    url = f"sqlite:///{workdir / 'sqlite' / 'llmops.db'}"
    return measure("list-100k-sqlite", workdir / "sqlite", url, rows, rounds or DEFAULT_ROUNDS)


def run_postgresql(workdir: Path, rows: int, rounds: int | None = None) -> list[Result]:
    from llmops.testing.postgres import PostgresServer

    server = PostgresServer(workdir / "postgres")
    server.start()
    try:
        url = server.create_database()
        return measure(
            "list-100k-postgresql", workdir / "pg-app", url, rows, rounds or DEFAULT_ROUNDS
        )
    finally:
        server.stop()
