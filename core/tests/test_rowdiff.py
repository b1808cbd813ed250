"""Row-level diffs of JSONL and CSV files (:mod:`llmops.rowdiff`): checked against a naive
in-memory diff on random files (property-based), on the named behaviours one by one, and
for a memory bound well below the size of the files."""

from __future__ import annotations

import csv
import io
import json
import random
import tempfile
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmops import rowdiff
from llmops.rowdiff import RowChange, RowDiff, RowFormat, diff_rows, row_format

# -- a naive diff to compare with: every row in memory, the module's rules spelt out ------------


@dataclass(frozen=True)
class Row:
    line: int
    value: Any  # as the diff shows it
    content: str  # identity of the content
    key: str | None  # identity of the key value (None: the row has none)
    key_value: Any


def _identity(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def naive_rows(path: Path | None, fmt: RowFormat, key: str | None) -> list[Row]:
    if path is None:
        return []
    rows: list[Row] = []
    if fmt is RowFormat.JSONL:
        for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                text = raw.decode("utf-8", "replace").strip()
                rows.append(Row(number, text, "text:" + text, None, None))
                continue
            kv = value.get(key) if key is not None and isinstance(value, dict) else None
            ident = None if kv is None else _identity(kv)
            rows.append(Row(number, value, "json:" + _identity(value), ident, kv))
        return rows
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter="\t" if fmt is RowFormat.TSV else ","
    )
    header: list[str] | None = None
    seen = 0
    for record in reader:
        start, seen = seen + 1, reader.line_num
        if not record:
            continue
        if header is None:
            header = record
            continue
        row: dict[str, Any] = dict(zip(header, record, strict=False))
        if len(record) > len(header):
            row[rowdiff.EXTRA_FIELDS] = record[len(header) :]
        kv = row.get(key) if key is not None else None
        ident = None if kv in (None, "") else _identity(kv)
        rows.append(Row(start, row, "json:" + _identity(row), ident, kv if ident else None))
    return rows


@dataclass
class NaiveDiff:
    added: list[Row]
    removed: list[Row]
    changed: list[tuple[Row, Row]]
    unchanged: int


def _group(row: Row, keyed: bool) -> str:
    return "key:" + row.key if keyed and row.key is not None else "content:" + row.content


def naive_diff(before: list[Row], after: list[Row], keyed: bool) -> NaiveDiff:
    groups: dict[str, tuple[list[Row], list[Row]]] = {}
    for side, rows in ((0, before), (1, after)):
        for row in rows:
            groups.setdefault(_group(row, keyed), ([], []))[side].append(row)
    result = NaiveDiff([], [], [], 0)
    for old, new in groups.values():
        # equal contents pair first, k-th with k-th; the rest in file order
        left_old, left_new = list(old), list(new)
        for row in old:
            twin = next((r for r in left_new if r.content == row.content), None)
            if twin is not None:
                left_new.remove(twin)
                left_old.remove(row)
                result.unchanged += 1
        result.changed += list(zip(left_old, left_new, strict=False))
        result.removed += left_old[len(left_new) :]
        result.added += left_new[len(left_old) :]
    return result


def all_changes(
    before: Path | None, after: Path | None, fmt: RowFormat, *, page: int, **kw: Any
) -> tuple[RowDiff, list[RowChange]]:
    """Every change, paged through ``page`` at a time."""
    first = diff_rows(before, after, fmt, offset=0, limit=page, **kw)
    changes = list(first.changes)
    while len(changes) < first.total_changes:
        more = diff_rows(before, after, fmt, offset=len(changes), limit=page, **kw)
        assert (more.added, more.removed, more.changed) == (
            first.added,
            first.removed,
            first.changed,
        )
        assert more.changes, "a page short of the total came back empty"
        changes += more.changes
    assert len(changes) == first.total_changes
    return first, changes


def check_against_naive(
    before: Path | None, after: Path | None, fmt: RowFormat, key: str | None, **kw: Any
) -> None:
    first, changes = all_changes(before, after, fmt, key=key, page=5, **kw)
    old_rows, new_rows = naive_rows(before, fmt, key), naive_rows(after, fmt, key)
    naive = naive_diff(old_rows, new_rows, keyed=key is not None)
    assert (first.rows_before, first.rows_after) == (len(old_rows), len(new_rows))
    assert (first.added, first.removed, first.changed, first.unchanged) == (
        len(naive.added),
        len(naive.removed),
        len(naive.changed),
        naive.unchanged,
    )
    # the page order: by line number (after's, before's for a removal), removals first
    order = [
        (c.after_line if c.after_line is not None else c.before_line, c.kind != "removed")
        for c in changes
    ]
    assert order == sorted(order)
    assert len(set(order)) == len(order)
    # every row named is the row at that line, named once, with its key value
    by_line = ({r.line: r for r in old_rows}, {r.line: r for r in new_rows})
    named: tuple[list[int], list[int]] = ([], [])
    summary: Counter[tuple[str, str, str]] = Counter()
    for c in changes:
        assert (
            c.kind
            == {(True, False): "removed", (False, True): "added", (True, True): "changed"}[
                (c.before_line is not None, c.after_line is not None)
            ]
        )
        rows = []
        for side, line, shown in ((0, c.before_line, c.before), (1, c.after_line, c.after)):
            if line is None:
                assert shown is None
                continue
            row = by_line[side][line]
            assert shown == row.value
            named[side].append(line)
            rows.append(row)
            summary[(_group(row, key is not None), f"{c.kind}:{side}", row.content)] += 1
        if key is not None:
            assert c.key in [r.key_value for r in rows]
            if c.kind == "changed":
                assert rows[0].key == rows[1].key is not None
    assert all(len(set(lines)) == len(lines) for lines in named)
    expected: Counter[tuple[str, str, str]] = Counter()
    for row in naive.removed:
        expected[(_group(row, key is not None), "removed:0", row.content)] += 1
    for row in naive.added:
        expected[(_group(row, key is not None), "added:1", row.content)] += 1
    for old, new in naive.changed:
        expected[(_group(old, True), "changed:0", old.content)] += 1
        expected[(_group(new, True), "changed:1", new.content)] += 1
    if all(len({r.key for r in rows}) == len(rows) for rows in (old_rows, new_rows)):
        # no key held twice: which rows pair is determined, so the summary is exact
        assert summary == expected
    else:
        # with duplicates only the rows left after equal contents pair are determined
        assert _sides(summary) == _sides(expected)


def _sides(summary: Counter[tuple[str, str, str]]) -> Counter[tuple[str, str, str]]:
    """The summary without the kinds: which rows of each side and group are reported."""
    sides: Counter[tuple[str, str, str]] = Counter()
    for (group, kind, content), n in summary.items():
        sides[(group, kind.split(":")[1], content)] += n
    return sides


@pytest.fixture
def small_buffers() -> Iterator[None]:
    """Blocks, windows and chunks of a few bytes and rows, so that small files cross
    every boundary the streaming has (a block, a window, a resynchronisation)."""
    with ExitStack() as stack:
        for name, value in (
            ("_BLOCK", 23),
            ("_WINDOW", 4),
            ("_CHUNK", 2),
            ("_CONFIRM", 2),
            ("_CSV_ROWS", 3),
        ):
            stack.enter_context(patch.object(rowdiff, name, value))
        yield


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


# -- random files --------------------------------------------------------------------------------

VALUES = st.one_of(
    st.integers(0, 3),
    st.sampled_from(["a", "b", "a,b", 'q"x', "é", "", "1"]),
    st.none(),
    st.booleans(),
    st.just(1.5),
)
OBJECTS = st.dictionaries(st.sampled_from(["id", "v", "w"]), VALUES, max_size=3)
ODD_LINES = st.sampled_from(["{bad json", "", "   ", "[1, 2]", "3", '"id"', "{}"])


@st.composite
def jsonl_line(draw: st.DrawFn, value: dict[str, Any] | None = None) -> str:
    if value is None:
        if draw(st.integers(0, 9)) == 0:
            return draw(ODD_LINES)
        value = draw(OBJECTS)
    items = draw(st.permutations(list(value.items())))
    spaced = draw(st.booleans())
    return json.dumps(dict(items), separators=(", ", ": ") if spaced else (",", ":"))


@st.composite
def edited(draw: st.DrawFn, lines: list[Any], line: st.SearchStrategy[Any]) -> list[Any]:
    """``lines`` after a few edits: deletions, insertions, replacements, moves."""
    out = list(lines)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "move", "duplicate"]))
        if op == "insert" or not out:
            out.insert(draw(st.integers(0, len(out))), draw(line))
            continue
        i = draw(st.integers(0, len(out) - 1))
        if op == "delete":
            del out[i]
        elif op == "replace":
            out[i] = draw(line)
        elif op == "move":
            out.insert(draw(st.integers(0, len(out) - 1)), out.pop(i))
        else:
            out.insert(draw(st.integers(0, len(out))), out[i])
    return out


@st.composite
def jsonl_pair(draw: st.DrawFn) -> tuple[str, str]:
    before = draw(st.lists(jsonl_line(), max_size=25))
    if draw(st.integers(0, 4)) == 0:
        after = draw(st.lists(jsonl_line(), max_size=25))
    else:
        after = draw(edited(before, jsonl_line()))
        # the same values written again, in another key order or spacing
        for i, text in enumerate(after):
            try:
                value = json.loads(text)
            except ValueError:
                continue
            if isinstance(value, dict) and draw(st.integers(0, 3)) == 0:
                after[i] = draw(jsonl_line(value))
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    last = draw(st.booleans())
    return (
        "".join(t + ending for t in before),
        ending.join(after) + (ending if last else ""),
    )


CELLS = st.sampled_from(["1", "2", "a", "", "x,y", 'say "hi"', "two\nlines", "é", " "])


@st.composite
def csv_pair(draw: st.DrawFn) -> tuple[str, str, str]:
    """Two CSV files: a header of some of the columns id, v, w; rows of quoted values
    with commas and newlines; the after header maybe reordered; a few ragged rows."""
    columns = draw(st.lists(st.sampled_from(["id", "v", "w"]), min_size=1, max_size=3, unique=True))

    def record(width: int) -> st.SearchStrategy[list[str]]:
        ragged = st.integers(max(0, width - 1), width + 1)
        return st.one_of(
            st.lists(CELLS, min_size=width, max_size=width),
            ragged.flatmap(lambda n: st.lists(CELLS, min_size=n, max_size=n)),
        )

    before = draw(st.lists(record(len(columns)), max_size=20))
    after_rows = draw(edited(before, record(len(columns))))
    order = draw(st.permutations(range(len(columns))))
    new_columns = [columns[i] for i in order]
    if draw(st.integers(0, 5)) == 0:  # a column added
        new_columns.append("extra")
        after_rows = [[*r, "z"] for r in after_rows]
        order = [*order, len(columns)]
    reordered = [[r[i] for i in order if i < len(r)] + r[len(order) :] for r in after_rows]

    def render(header: list[str], rows: list[list[str]], blank: bool) -> str:
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        for r in rows:
            writer.writerow(r)
            if blank:
                out.write("\n")
        return out.getvalue()

    key = draw(st.sampled_from([None, *columns]))
    return (
        render(columns, before, draw(st.booleans())),
        render(new_columns, reordered, False),
        key or "",
    )


PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(
    pair=jsonl_pair(), key=st.sampled_from([None, "id", "v"]), bucket=st.sampled_from([300, 10**7])
)
def test_a_jsonl_diff_agrees_with_a_naive_in_memory_diff(
    tmp_path: Path, small_buffers: None, pair: tuple[str, str], key: str | None, bucket: int
) -> None:
    before, after = write(tmp_path / "a.jsonl", pair[0]), write(tmp_path / "b.jsonl", pair[1])
    check_against_naive(
        before, after, RowFormat.JSONL, key, bucket_bytes=bucket, work_dir=tmp_path / "w"
    )
    assert list((tmp_path / "w").glob("*")) == []  # the bucket files are gone


@PROPERTY
@given(pair=csv_pair(), bucket=st.sampled_from([300, 10**7]))
def test_a_csv_diff_agrees_with_a_naive_in_memory_diff(
    tmp_path: Path, small_buffers: None, pair: tuple[str, str, str], bucket: int
) -> None:
    before, after = write(tmp_path / "a.csv", pair[0]), write(tmp_path / "b.csv", pair[1])
    check_against_naive(before, after, RowFormat.CSV, pair[2] or None, bucket_bytes=bucket)


@PROPERTY
@given(pair=jsonl_pair(), key=st.sampled_from([None, "id"]), which=st.sampled_from([0, 1]))
def test_a_file_on_one_side_only_agrees_with_a_naive_diff(
    tmp_path: Path, small_buffers: None, pair: tuple[str, str], key: str | None, which: int
) -> None:
    path = write(tmp_path / "a.jsonl", pair[which])
    if which == 0:
        check_against_naive(path, None, RowFormat.JSONL, key)
    else:
        check_against_naive(None, path, RowFormat.JSONL, key)


# -- the named behaviours ------------------------------------------------------------------------


def jsonl(path: Path, *rows: Any) -> Path:
    return write(path, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_row_format_reads_the_file_name() -> None:
    assert row_format("data/train.jsonl") is RowFormat.JSONL
    assert row_format("x.NDJSON") is RowFormat.JSONL
    assert row_format("a/b.CSV") is RowFormat.CSV
    assert row_format("t.tsv") is RowFormat.TSV
    assert row_format("model.parquet") is None
    assert row_format("README") is None


def test_a_file_only_after_is_all_rows_added_and_only_before_all_removed(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "a.jsonl", {"id": 1}, "", {"id": 2}, "not json")
    added = diff_rows(None, path, RowFormat.JSONL, key="id")
    assert (added.rows_before, added.rows_after, added.added, added.unchanged) == (0, 3, 3, 0)
    assert [(c.kind, c.key, c.after, c.after_line) for c in added.changes] == [
        ("added", 1, {"id": 1}, 1),
        ("added", 2, {"id": 2}, 3),
        ("added", None, "not json", 4),
    ]
    assert added.invalid_after == 1
    removed = diff_rows(path, None, RowFormat.JSONL)
    assert (removed.removed, removed.rows_after) == (3, 0)
    assert [c.before_line for c in removed.changes] == [1, 3, 4]
    with pytest.raises(ValueError, match="at least one side"):
        diff_rows(None, None, RowFormat.JSONL)


def test_rows_moved_are_unchanged_with_a_key_and_without(tmp_path: Path) -> None:
    rows = [{"id": i, "v": f"row {i}"} for i in range(10)]
    before = jsonl(tmp_path / "a.jsonl", *rows)
    after = jsonl(tmp_path / "b.jsonl", *reversed(rows))
    for key in (None, "id"):
        diff = diff_rows(before, after, RowFormat.JSONL, key=key)
        assert (diff.unchanged, diff.total_changes, diff.changes) == (10, 0, ())


def test_key_order_and_whitespace_are_no_change(tmp_path: Path) -> None:
    before = write(tmp_path / "a.jsonl", '{"id": 1, "v": {"x": 1, "y": [1, 2]}}\n')
    after = write(tmp_path / "b.jsonl", '{"v":{"y":[1,2],"x":1},  "id":1}\r\n\n')
    for key in (None, "id"):
        diff = diff_rows(before, after, RowFormat.JSONL, key=key)
        assert (diff.unchanged, diff.total_changes) == (1, 0)


def test_a_keyed_row_with_a_new_content_is_changed_and_shown_both_ways(tmp_path: Path) -> None:
    before = jsonl(
        tmp_path / "a.jsonl", {"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}
    )
    after = jsonl(
        tmp_path / "b.jsonl", {"id": 2, "v": "B"}, {"id": 3, "v": "c"}, {"id": 4, "v": "d"}
    )
    diff = diff_rows(before, after, RowFormat.JSONL, key="id")
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (1, 1, 1, 1)
    assert [(c.kind, c.key, c.before_line, c.after_line) for c in diff.changes] == [
        ("removed", 1, 1, None),
        ("changed", 2, 2, 1),
        ("added", 4, None, 3),
    ]
    assert diff.changes[1].before == {"id": 2, "v": "b"}
    assert diff.changes[1].after == {"id": 2, "v": "B"}
    # by content the edit is a removal and an addition
    by_content = diff_rows(before, after, RowFormat.JSONL)
    assert (by_content.added, by_content.removed, by_content.changed) == (2, 2, 0)


def test_rows_without_the_key_match_by_content_and_are_never_changed(tmp_path: Path) -> None:
    before = jsonl(
        tmp_path / "a.jsonl", {"v": "a"}, {"id": None, "v": "b"}, [1], {"id": 1, "v": "x"}
    )
    after = jsonl(
        tmp_path / "b.jsonl", {"v": "a"}, {"id": None, "v": "B"}, [1], {"id": 1, "v": "y"}
    )
    diff = diff_rows(before, after, RowFormat.JSONL, key="id")
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (1, 1, 1, 2)
    assert {(c.kind, c.key) for c in diff.changes} == {
        ("removed", None),
        ("added", None),
        ("changed", 1),
    }


def test_a_duplicated_key_pairs_equal_rows_first_then_in_file_order(tmp_path: Path) -> None:
    before = jsonl(
        tmp_path / "a.jsonl", {"id": 1, "v": "a"}, {"id": 1, "v": "b"}, {"id": 1, "v": "c"}
    )
    after = jsonl(tmp_path / "b.jsonl", {"id": 1, "v": "c"}, {"id": 1, "v": "A"})
    diff = diff_rows(before, after, RowFormat.JSONL, key="id")
    # c pairs with c wherever it moved; a (first left before) pairs with A; b is removed
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (0, 1, 1, 1)
    assert [(c.kind, c.before_line, c.after_line) for c in diff.changes] == [
        ("removed", 2, None),
        ("changed", 1, 2),
    ]


def test_duplicate_rows_count_without_a_key(tmp_path: Path) -> None:
    before = jsonl(tmp_path / "a.jsonl", {"v": 1}, {"v": 1}, {"v": 1})
    after = jsonl(tmp_path / "b.jsonl", {"v": 1})
    diff = diff_rows(before, after, RowFormat.JSONL)
    assert (diff.removed, diff.unchanged, diff.rows_before, diff.rows_after) == (2, 1, 3, 1)


def test_lines_that_are_no_json_are_counted_and_compared_as_text(tmp_path: Path) -> None:
    before = jsonl(tmp_path / "a.jsonl", {"id": 1}, "{broken", "same garbage")
    after = jsonl(tmp_path / "b.jsonl", {"id": 1}, "{broken, again", "same garbage  ")
    diff = diff_rows(before, after, RowFormat.JSONL, key="id")
    assert (diff.added, diff.removed, diff.unchanged) == (1, 1, 2)
    assert (diff.invalid_before, diff.invalid_after) == (2, 2)
    assert [(c.kind, c.before, c.after) for c in diff.changes] == [
        ("removed", "{broken", None),
        ("added", None, "{broken, again"),
    ]
    assert any("no JSON" in note for note in diff.notes)


def test_blank_lines_are_no_rows_and_a_missing_final_newline_is_no_change(tmp_path: Path) -> None:
    before = write(tmp_path / "a.jsonl", '{"id": 1}\n\n   \n{"id": 2}\n')
    after = write(tmp_path / "b.jsonl", '{"id": 1}\n{"id": 2}')
    diff = diff_rows(before, after, RowFormat.JSONL)
    assert (diff.rows_before, diff.rows_after, diff.unchanged, diff.total_changes) == (2, 2, 2, 0)


def test_paging_walks_the_changes_in_row_order(tmp_path: Path) -> None:
    before = jsonl(tmp_path / "a.jsonl", *({"id": i} for i in range(0, 40, 2)))
    after = jsonl(tmp_path / "b.jsonl", *({"id": i} for i in range(0, 40, 3)))
    pages = [
        diff_rows(before, after, RowFormat.JSONL, key="id", offset=o, limit=4)
        for o in range(0, 40, 4)
    ]
    total = pages[0].total_changes
    assert total == pages[0].added + pages[0].removed
    walked = [c for p in pages for c in p.changes]
    assert len(walked) == total
    assert [p.has_more for p in pages] == [4 * (i + 1) < total for i in range(len(pages))]
    assert (pages[0].offset, pages[1].offset, pages[1].limit) == (0, 4, 4)
    position = [(c.after_line or c.before_line, c.kind != "removed") for c in walked]
    assert position == sorted(position)
    counts_only = diff_rows(before, after, RowFormat.JSONL, key="id", limit=0)
    assert (counts_only.changes, counts_only.total_changes, counts_only.has_more) == (
        (),
        total,
        True,
    )


def test_a_csv_header_reorder_changes_no_row(tmp_path: Path) -> None:
    before = write(tmp_path / "a.csv", 'id,text,label\n1,hello,pos\n2,"a, b",neg\n')
    after = write(tmp_path / "b.csv", 'label,id,text\npos,1,hello\nneg,2,"a, b"\n')
    for key in (None, "id"):
        diff = diff_rows(before, after, RowFormat.CSV, key=key)
        assert (diff.unchanged, diff.total_changes) == (2, 0)
        assert diff.columns_before == ("id", "text", "label")
        assert diff.columns_after == ("label", "id", "text")
        assert any("reordered" in note for note in diff.notes)


def test_a_csv_column_added_changes_every_keyed_row_and_is_noted(tmp_path: Path) -> None:
    before = write(tmp_path / "a.csv", "id,text\n1,a\n2,b\n")
    after = write(tmp_path / "b.csv", "id,text,score\n1,a,0.5\n2,b,0.7\n")
    diff = diff_rows(before, after, RowFormat.CSV, key="id")
    assert (diff.changed, diff.unchanged) == (2, 0)
    assert diff.changes[0].before == {"id": "1", "text": "a"}
    assert diff.changes[0].after == {"id": "1", "text": "a", "score": "0.5"}
    assert "columns added: score" in diff.notes


def test_csv_rows_are_parsed_with_quoted_newlines_and_numbered_by_their_first_line(
    tmp_path: Path,
) -> None:
    before = write(tmp_path / "a.csv", 'id,text\n1,"two\nlines"\n2,"x, ""y"""\n')
    after = write(tmp_path / "b.csv", 'id,text\n1,"two\nlines"\n\n2,"x, y"\n3,"a\nb\nc"\n')
    diff = diff_rows(before, after, RowFormat.CSV, key="id")
    assert (diff.rows_before, diff.rows_after) == (2, 3)
    assert [(c.kind, c.key, c.before_line, c.after_line) for c in diff.changes] == [
        ("changed", "2", 4, 5),
        ("added", "3", None, 6),
    ]
    assert diff.changes[0].before == {"id": "2", "text": 'x, "y"'}
    assert diff.changes[1].after == {"id": "3", "text": "a\nb\nc"}


def test_csv_rows_with_the_wrong_number_of_values_are_counted(tmp_path: Path) -> None:
    before = write(tmp_path / "a.csv", "id,text\n1,a\n2\n")
    after = write(tmp_path / "b.csv", "id,text\n1,a,extra\n2\n")
    diff = diff_rows(before, after, RowFormat.CSV, key="id")
    assert (diff.invalid_before, diff.invalid_after, diff.changed, diff.unchanged) == (1, 2, 1, 1)
    assert diff.changes[0].after == {"id": "1", "text": "a", rowdiff.EXTRA_FIELDS: ["extra"]}


def test_a_key_column_missing_from_a_header_matches_its_rows_by_content(tmp_path: Path) -> None:
    before = write(tmp_path / "a.csv", "id,text\n1,a\n")
    after = write(tmp_path / "b.csv", "text\na\n")
    diff = diff_rows(before, after, RowFormat.CSV, key="id")
    assert (diff.added, diff.removed, diff.changed) == (1, 1, 0)
    assert "the header after has no column 'id': its rows match by content" in diff.notes


def test_tsv_files_split_on_tabs(tmp_path: Path) -> None:
    before = write(tmp_path / "a.tsv", "id\ttext\n1\ta, b\n")
    after = write(tmp_path / "b.tsv", "id\ttext\n1\ta; b\n")
    diff = diff_rows(before, after, RowFormat.TSV, key="id")
    assert diff.changed == 1
    assert diff.changes[0].after == {"id": "1", "text": "a; b"}


def test_bucket_files_go_under_the_work_dir_and_are_removed(tmp_path: Path) -> None:
    rows = [{"id": i, "v": "x" * 50} for i in range(2000)]
    before = jsonl(tmp_path / "a.jsonl", *rows)
    shuffled = rows[1:]
    random.Random(3).shuffle(shuffled)
    after = jsonl(tmp_path / "b.jsonl", *shuffled)
    work = tmp_path / "work"
    seen: list[Path] = []
    real_mkdtemp = tempfile.mkdtemp

    def spy(*args: Any, **kw: Any) -> str:
        made: str = real_mkdtemp(*args, **kw)
        seen.append(Path(made))
        return made

    with patch.object(tempfile, "mkdtemp", spy):
        diff = diff_rows(before, after, RowFormat.JSONL, key="id", work_dir=work, bucket_bytes=4096)
    assert (diff.removed, diff.unchanged) == (1, 1999)
    assert seen
    assert all(work in p.parents for p in seen)
    assert list(work.iterdir()) == []


def test_memory_stays_bounded_for_files_much_larger_than_a_bucket(tmp_path: Path) -> None:
    """A ~20 MB pair whose rows are shuffled (so every row goes through the buckets), with
    buckets of 256 KiB: the peak of the diff's allocations stays a small part of the
    files' size."""
    rng = random.Random(5)
    count = 100_000
    with (tmp_path / "a.jsonl").open("w") as a, (tmp_path / "b.jsonl").open("w") as b:
        after = []
        for i in range(count):
            row = {"id": i, "text": f"row {i} " + "x" * rng.randint(60, 100)}
            a.write(json.dumps(row) + "\n")
            if i % 100 == 0:
                row["text"] = "edited"
            if i % 100 != 1:
                after.append(json.dumps(row) + "\n")
        rng.shuffle(after)
        b.writelines(after)
    size = (tmp_path / "a.jsonl").stat().st_size + (tmp_path / "b.jsonl").stat().st_size
    assert size > 18_000_000
    tracemalloc.start()
    try:
        diff = diff_rows(
            tmp_path / "a.jsonl",
            tmp_path / "b.jsonl",
            RowFormat.JSONL,
            key="id",
            bucket_bytes=256 * 1024,
            work_dir=tmp_path / "work",
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (diff.changed, diff.removed, diff.added) == (count // 100, count // 100, 0)
    assert diff.unchanged == count - 2 * (count // 100)
    assert peak < size / 4, f"peak {peak} bytes for {size} bytes of files"
