"""Row-level diffs of tabular dataset files (JSONL, CSV, TSV): the rows added, removed and
changed between two versions of a file, counted, with a page of them to show.

Rows pair by a **key** (a top-level field of a JSONL object, a CSV column) when one is
given, else by their **content**:

- With a key, a row whose key is on both sides with a different content is *changed*,
  one whose key is only after *added*, only before *removed*. A key held by several rows
  of one side: its rows equal in content pair first (so a duplicated row that moved is no
  change), the rest pair in file order, the k-th left before with the k-th left after, as
  changed, and the surplus of one side is added or removed. A row without the key (the
  field absent or null, an empty CSV cell, a JSONL line that is no object or no JSON) is
  matched by its content among the rows without the key: added or removed, never changed.
- Without a key, the rows of each side are a multiset: a row moved is unchanged, and of a
  row held twice before and once after, one is removed. Nothing is *changed* then.

Equality is semantic where it is cheap: two JSON rows are equal when they parse to the
same value (key order, whitespace, ``\\u`` escapes do not count), two CSV rows when they
map the same columns to the same values (a column reorder changes no row), and a line that
is no JSON equals another with the same text. Blank lines are no rows. Counts are exact;
with duplicates, which of several equal rows is the one reported (its line number) is the
implementation's choice, deterministic for a pair of files.

It streams, in memory bounded by ``bucket_bytes`` whatever the files' sizes. Both files
are read in blocks and walked side by side: lines byte-identical on both sides in the same
order (most of two versions of a dataset) pair at once, and a mismatch is resynchronised
within a window of lines, as ``diff`` would (an edit, an insertion, a deletion). Only the
rest is compared for real: those rows are partitioned by a hash of their bytes (then, for
the ones with no byte-identical counterpart, by a hash of their key or canonical content)
into buckets, which stay in memory while they fit in ``bucket_bytes`` and go to bucket
files under ``work_dir`` otherwise, each bucket then diffed in memory (a bucket still too
large is partitioned again on further hash bits). Only rows without a byte-identical
counterpart are ever parsed. The page of changes is kept in a bounded heap of the
``offset + limit`` first, so paging deep costs memory in proportion to the offset.
Memory is bounded except where one key value (or one row content, with no key) is held by
more rows than fit in a bucket: those rows cannot be split and are diffed together.

Row numbers are 1-based **line numbers** in the file (a CSV row's first line; the header is
line 1), so an editor opens the file at the row.

The module is pure: no database, no API; the dataset-version service calls it on two
restores of a file, and a file it does not know (:func:`row_format` is None) gets the
file-level diff only.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import json
import shutil
import struct
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import IO, Any

from llmops.capabilities.common import Value
from llmops.errors import InvalidRequest

#: the default of ``bucket_bytes``: rows compared in memory at once (their bytes, plus an
#: allowance per row); the diff's peak memory is a few times this
DEFAULT_BUCKET_BYTES = 16 * 1024 * 1024
#: under this key a CSV row keeps the values beyond the header's columns
EXTRA_FIELDS = "_extra"

_BLOCK = 1 << 18  # bytes read at a time
_CHUNK = 64  # lines compared at once while the two sides agree
_WINDOW = 256  # lines looked ahead to resynchronise after a mismatch
_CONFIRM = 4  # lines that must agree after a resynchronisation point taken at a glance
_FANOUT_BITS = 6  # 64 buckets a level
_MAX_DEPTH = 64 // _FANOUT_BITS
_ROW_OVERHEAD = 96  # bytes a row costs in memory beyond its own
_HEADER = struct.Struct("<qIBB")  # a spilled row: line, length of raw, of match, of content
_CSV_ROWS = 4096  # CSV rows read at a time


class RowFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    TSV = "tsv"


class RowChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


class RowChange(Value):
    """One row added, removed or changed, as parsed: a JSON value for JSONL (the line's
    text for one that is no JSON), a column → value mapping in header order for CSV."""

    kind: RowChangeKind
    #: the row's key value (None: no key given, or the row has none)
    key: Any = None
    before: Any = None
    after: Any = None
    #: 1-based line numbers of the row in each file (None on the side it is not on)
    before_line: int | None = None
    after_line: int | None = None


class RowDiff(Value):
    """What changed row by row between two versions of one file.

    ``rows_before = removed + changed + unchanged`` and ``rows_after = added + changed +
    unchanged``. ``changes`` is the page ``offset``/``limit`` of all the changes in row
    order: by line number (the after file's for rows added and changed, the before
    file's for rows removed; a removal first at equal numbers).
    """

    format: RowFormat
    #: the field rows were matched by (None: by content)
    key: str | None
    rows_before: int
    rows_after: int
    added: int
    removed: int
    changed: int
    unchanged: int
    changes: tuple[RowChange, ...]
    total_changes: int
    offset: int
    limit: int
    has_more: bool
    #: rows not readable as the format says, among those compared by content: JSONL
    #: lines that are no JSON (a line byte-identical to one on the other side is never
    #: parsed), CSV rows with more or fewer values than the header has columns
    invalid_before: int = 0
    invalid_after: int = 0
    #: a CSV file's header on each side (None: JSONL, or no file on that side)
    columns_before: tuple[str, ...] | None = None
    columns_after: tuple[str, ...] | None = None
    #: what a reader of the diff should know: a header change, a key column missing, ...
    notes: tuple[str, ...] = ()


def row_format(path: str) -> RowFormat | None:
    """The row format of a dataset file by its name (``.jsonl``/``.ndjson``, ``.csv``,
    ``.tsv``, any case), or None for a file the row diff does not read."""
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return RowFormat.JSONL
    if suffix == ".csv":
        return RowFormat.CSV
    if suffix == ".tsv":
        return RowFormat.TSV
    return None


def diff_rows(
    before: Path | None,
    after: Path | None,
    fmt: RowFormat,
    *,
    key: str | None = None,
    offset: int = 0,
    limit: int = 50,
    work_dir: Path | None = None,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
) -> RowDiff:
    """Diff the rows of ``before`` and ``after`` (None: the file is on one side only, so
    all its rows are added or removed), matched by ``key`` or by content (see the module).

    Returns the counts and the page ``offset``/``limit`` of the changes. Bucket files, when
    the rows to compare exceed ``bucket_bytes``, go to a temporary folder under
    ``work_dir`` (the system's temp dir by default), removed before returning.
    Raises :class:`~llmops.errors.InvalidRequest` for a CSV file the csv module cannot
    read (a field over its size limit, a NUL byte).
    """
    if before is None and after is None:
        raise ValueError("diff_rows needs a file on at least one side")
    if offset < 0 or limit < 0:
        raise ValueError("offset and limit must not be negative")
    if bucket_bytes < 1:
        raise ValueError("bucket_bytes must be positive")
    key = key or None
    run = _Run(fmt, key, offset, limit, work_dir, bucket_bytes)
    try:
        sides = (
            _open_side(before, fmt, 0) if before is not None else None,
            _open_side(after, fmt, 1) if after is not None else None,
        )
        try:
            if sides[0] is None or sides[1] is None:
                one = sides[0] if sides[0] is not None else sides[1]
                assert one is not None
                run.one_side(one)
            else:
                run.compare(sides[0], sides[1])
        finally:
            for side in sides:
                if side is not None:
                    side.close()
        return run.result(sides)
    finally:
        run.close()


# -- reading the files -------------------------------------------------------------------------

#: a block of rows: their raw lines (canonical JSON for CSV) and their line numbers
_Block = tuple[list[bytes], list[int]]


class _Side:
    """One file read as blocks of rows. ``lines`` counts every line walked, ``blank`` the
    blank ones among them, so rows = lines - blank (CSV rows skip blank lines up front)."""

    def __init__(self, path: Path, side: int) -> None:
        self.path = path
        self.side = side
        self.lines = 0
        self.blank = 0
        self.invalid = 0
        self.columns: tuple[str, ...] | None = None

    @property
    def rows(self) -> int:
        return self.lines - self.blank

    def blocks(self) -> Iterator[_Block]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _JsonlSide(_Side):
    def __init__(self, path: Path, side: int) -> None:
        super().__init__(path, side)
        self._file = path.open("rb")

    def blocks(self) -> Iterator[_Block]:
        read, readline = self._file.read, self._file.readline
        while True:
            data = read(_BLOCK)
            if not data:
                return
            if not data.endswith(b"\n"):
                data += readline()
            lines = data.split(b"\n")
            if not lines[-1]:
                lines.pop()
            first = self.lines + 1
            self.lines += len(lines)
            self.blank += lines.count(b"") + sum(map(bytes.isspace, lines))
            yield lines, list(range(first, first + len(lines)))

    def close(self) -> None:
        self._file.close()


class _CsvSide(_Side):
    """A CSV (TSV) file, parsed by the csv module (a quoted value may span lines); each row
    becomes its canonical JSON object (columns in sorted order), so that rows equal as
    column → value mappings are equal bytes, whatever the column order of the header."""

    def __init__(self, path: Path, side: int, delimiter: str) -> None:
        super().__init__(path, side)
        self._file: IO[str] = path.open(newline="", encoding="utf-8-sig", errors="replace")
        self._reader = csv.reader(self._file, delimiter=delimiter)
        self._read = 0  # lines the reader consumed so far

    def _next(self) -> list[str] | None:
        try:
            return next(self._reader, None)
        except csv.Error as exc:
            raise InvalidRequest(
                f"{self.path.name}: line {self._reader.line_num} is not readable as CSV: {exc}"
            ) from exc

    def blocks(self) -> Iterator[_Block]:
        header: list[str] | None = None
        while header is None:
            record = self._next()
            if record is None:
                return
            self._read = self._reader.line_num
            if record:
                header = record
        self.columns = tuple(header)
        order = sorted(range(len(header)), key=lambda i: header[i])
        names = [header[i] for i in order]
        width = len(header)
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        while True:
            lines: list[bytes] = []
            numbers: list[int] = []
            ended = False
            while len(lines) < _CSV_ROWS:
                record = self._next()
                if record is None:
                    ended = True
                    break
                start, self._read = self._read + 1, self._reader.line_num
                if not record:
                    continue
                if len(record) == width:
                    row: dict[str, Any] = dict(zip(names, [record[i] for i in order], strict=True))
                else:
                    self.invalid += 1
                    row = {header[i]: record[i] for i in order if i < len(record)}
                    if len(record) > width:
                        row[EXTRA_FIELDS] = record[width:]
                    row = dict(sorted(row.items()))
                lines.append(dumps(row).encode())
                numbers.append(start)
            if lines:
                self.lines += len(lines)
                yield lines, numbers
            if ended:
                return

    def close(self) -> None:
        self._file.close()


def _open_side(path: Path, fmt: RowFormat, side: int) -> _Side:
    if fmt is RowFormat.JSONL:
        return _JsonlSide(path, side)
    return _CsvSide(path, side, "\t" if fmt is RowFormat.TSV else ",")


# -- walking both sides in step ----------------------------------------------------------------


class _Cursor:
    """A window onto one side's rows: ``lines[i:]`` not walked yet, refilled by blocks."""

    def __init__(self, side: _Side) -> None:
        self._blocks = side.blocks()
        self.lines: list[bytes] = []
        self.numbers: list[int] = []
        self.i = 0
        self._done = False

    def ahead(self, want: int) -> int:
        """Rows available from ``i`` (at least ``want`` unless the file ends first)."""
        while len(self.lines) - self.i < want and not self._done:
            block = next(self._blocks, None)
            if block is None:
                self._done = True
                break
            self.lines = self.lines[self.i :] + block[0]
            self.numbers = self.numbers[self.i :] + block[1]
            self.i = 0
        return len(self.lines) - self.i


def _resync(before: list[bytes], after: list[bytes]) -> tuple[int, int] | None:
    """Rows to skip on each side to reach the nearest row the two windows share (the
    least rows skipped in all), or None when they share none."""
    first: dict[bytes, int] = dict(zip(reversed(after), range(len(after) - 1, -1, -1), strict=True))
    best: tuple[int, int] | None = None
    for i, line in enumerate(before):
        if best is not None and i >= best[0] + best[1]:
            break
        j = first.get(line)
        if j is not None and (best is None or i + j < best[0] + best[1]):
            best = (i, j)
    return best


# -- partitioning the rows left to compare -----------------------------------------------------

#: a row to compare: (line number, raw bytes, match digest, content digest); the digests
#: are empty before the rows are parsed
_Rec = tuple[int, bytes, bytes, bytes]


def _raw_hash(rec: _Rec) -> int:
    return hash(rec[1])


def _match_hash(rec: _Rec) -> int:
    return int.from_bytes(rec[2][:8], "little")


class _Partition:
    """The rows of both sides to compare, split into buckets by ``hash_of``: held in
    memory while they fit in ``budget`` bytes, in 64 bucket files a side beyond that."""

    def __init__(
        self, run: _Run, hash_of: Callable[[_Rec], int], depth: int = 0, whole: int = -1
    ) -> None:
        self._run = run
        #: the bytes of the bucket this one re-partitions: a bucket of that size again
        #: holds rows that no hash bits split (one key, one content), so it stops there
        self._whole = whole
        self._hash_of = hash_of
        self._depth = depth
        self._memory: tuple[list[_Rec], list[_Rec]] = ([], [])
        self._size = 0
        self._files: list[list[IO[bytes]]] | None = None
        self._folder: Path | None = None

    def add(self, side: int, rec: _Rec) -> None:
        if self._files is not None:
            self._write(side, rec)
            return
        self._memory[side].append(rec)
        self._size += len(rec[1]) + _ROW_OVERHEAD
        if self._size > self._run.bucket_bytes and self._depth < _MAX_DEPTH:
            self._spill()

    def _spill(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix=f"d{self._depth}-", dir=self._run.folder()))
        self._files = [
            [(self._folder / f"{side}-{i}").open("wb", buffering=1 << 13) for i in range(64)]
            for side in (0, 1)
        ]
        for side, recs in enumerate(self._memory):
            for rec in recs:
                self._write(side, rec)
        self._memory = ([], [])

    def _write(self, side: int, rec: _Rec) -> None:
        assert self._files is not None
        index = (self._hash_of(rec) >> (_FANOUT_BITS * self._depth)) & 63
        line, raw, match, content = rec
        self._files[side][index].write(
            _HEADER.pack(line, len(raw), len(match), len(content)) + raw + match + content
        )

    def buckets(self) -> Iterator[tuple[list[_Rec], list[_Rec]]]:
        """The buckets, each (rows before, rows after) in file order, one at a time."""
        if self._files is None:
            yield self._memory
            self._memory = ([], [])
            return
        assert self._folder is not None
        for files in self._files:
            for f in files:
                f.close()
        try:
            for i in range(64):
                paths = [self._folder / f"{side}-{i}" for side in (0, 1)]
                size = sum(p.stat().st_size for p in paths)
                if size == 0:
                    continue
                if (
                    size > self._run.bucket_bytes
                    and size != self._whole
                    and self._depth + 1 < _MAX_DEPTH
                ):
                    child = _Partition(self._run, self._hash_of, self._depth + 1, size)
                    for side, path in enumerate(paths):
                        for rec in _read_spilled(path):
                            child.add(side, rec)
                        path.unlink()
                    yield from child.buckets()
                else:
                    yield list(_read_spilled(paths[0])), list(_read_spilled(paths[1]))
                    for path in paths:
                        path.unlink()
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)


def _read_spilled(path: Path) -> Iterator[_Rec]:
    with path.open("rb", buffering=1 << 16) as f:
        while header := f.read(_HEADER.size):
            line, n_raw, n_match, n_content = _HEADER.unpack(header)
            body = f.read(n_raw + n_match + n_content)
            yield (
                line,
                body[:n_raw],
                body[n_raw : n_raw + n_match],
                body[n_raw + n_match :],
            )


# -- the diff ----------------------------------------------------------------------------------


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


_canonical = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode
_decode = json.JSONDecoder().decode


def _loads(raw: bytes) -> Any:
    """A row's JSON value (UTF-8, a byte order mark allowed; raises ValueError for a row
    that is no JSON)."""
    text = raw.decode()
    return _decode(text[1:] if text.startswith("\ufeff") else text)


def _key_bytes(value: Any) -> bytes:
    """A key value's identity: its canonical JSON, with a shortcut for strings and
    integers (the usual keys) that is as injective."""
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    if type(value) is int:
        return b"i" + str(value).encode()
    return b"j" + _canonical(value).encode()


_RANK = {RowChangeKind.REMOVED: 0, RowChangeKind.ADDED: 1, RowChangeKind.CHANGED: 1}


@dataclass
class _Run:
    """One diff's state: the counts, the heap of the first changes, the work folder."""

    fmt: RowFormat
    key: str | None
    offset: int
    limit: int
    work_dir: Path | None
    bucket_bytes: int
    added: int = 0
    removed: int = 0
    changed: int = 0
    invalid: list[int] = field(default_factory=lambda: [0, 0])
    #: max-heap (negated sort key) of the ``offset + limit`` first changes
    _heap: list[tuple[int, int, str, _Rec | None, _Rec | None]] = field(default_factory=list)
    _folder: Path | None = None

    def folder(self) -> Path:
        if self._folder is None:
            if self.work_dir is not None:
                self.work_dir.mkdir(parents=True, exist_ok=True)
            self._folder = Path(tempfile.mkdtemp(prefix="rowdiff-", dir=self.work_dir))
        return self._folder

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    # -- the two paths

    def one_side(self, side: _Side) -> None:
        """A file on one side only: every row is added (removed); no matching to do."""
        kind = RowChangeKind.ADDED if side.side == 1 else RowChangeKind.REMOVED
        keep = self.offset + self.limit
        for lines, numbers in side.blocks():
            for line, number in zip(lines, numbers, strict=True):
                if not line or line.isspace():
                    continue
                if self.fmt is RowFormat.JSONL:
                    try:
                        _loads(line)
                    except ValueError:
                        self.invalid[side.side] += 1
                rec = (number, line, b"", b"")
                if len(self._heap) < keep:  # the rows come in order: the first ones are kept
                    self._push(kind, rec if side.side == 0 else None, rec if side.side else None)
                else:
                    self._count(kind)

    def compare(self, before: _Side, after: _Side) -> None:
        raw = _Partition(self, _raw_hash)
        self._align(before, after, raw)
        parsed = _Partition(self, _match_hash)
        for rows_before, rows_after in raw.buckets():
            self._match_raw(rows_before, rows_after, parsed)
        for rows_before, rows_after in parsed.buckets():
            self._match_parsed(rows_before, rows_after)

    # -- step 1: pair the rows byte-identical in the same order

    def _align(self, before: _Side, after: _Side, out: _Partition) -> None:
        b, a = _Cursor(before), _Cursor(after)

        def left(cursor: _Cursor, side: int, n: int) -> None:
            for i in range(cursor.i, cursor.i + n):
                line = cursor.lines[i]
                if line and not line.isspace():
                    out.add(side, (cursor.numbers[i], line, b"", b""))
            cursor.i += n

        while True:
            nb, na = b.ahead(_WINDOW), a.ahead(_WINDOW)
            if nb == 0 or na == 0:
                break
            bl, al, bi, ai = b.lines, a.lines, b.i, a.i
            n = min(nb, na)
            j = 0
            while j + _CHUNK <= n and bl[bi + j : bi + j + _CHUNK] == al[ai + j : ai + j + _CHUNK]:
                j += _CHUNK
            while j < n and bl[bi + j] == al[ai + j]:
                j += 1
            b.i, a.i = bi + j, ai + j
            if j == n:
                continue
            # a mismatch at b.i / a.i: an edit, an insertion or a deletion at a glance, or
            # the nearest shared row of the two windows
            bi, ai = b.i, a.i
            skip: tuple[int, int] | None = None
            for di, dj in ((1, 1), (0, 1), (1, 0)):
                if (
                    bl[bi + di : bi + di + _CONFIRM] == al[ai + dj : ai + dj + _CONFIRM]
                    and bi + di < len(bl)
                    and ai + dj < len(al)
                ):
                    skip = (di, dj)
                    break
            if skip is None:
                skip = _resync(bl[bi : bi + _WINDOW], al[ai : ai + _WINDOW])
            if skip is None:
                skip = (min(len(bl) - bi, _WINDOW), min(len(al) - ai, _WINDOW))
            left(b, 0, skip[0])
            left(a, 1, skip[1])
        for cursor, side in ((b, 0), (a, 1)):
            while n := cursor.ahead(_WINDOW):
                left(cursor, side, n)

    # -- step 2: pair the rows byte-identical anywhere

    def _match_raw(self, before: list[_Rec], after: list[_Rec], out: _Partition) -> None:
        """Rows byte-identical on both sides pair (the k-th with the k-th); the others go
        on to be parsed, keyed and partitioned by their key or content."""
        count_after = Counter(rec[1] for rec in after)
        count_before = Counter(rec[1] for rec in before)
        for side, recs, other in ((0, before, count_after), (1, after, count_before)):
            for rec in recs:
                raw = rec[1]
                if other[raw] > 0:
                    other[raw] -= 1
                else:
                    match, content = self._identify(side, raw)
                    out.add(side, (rec[0], raw, match, content))

    def _identify(self, side: int, raw: bytes) -> tuple[bytes, bytes]:
        """A row's match digest (of its key value, or of its content for a row without a
        key and with no key given) and content digest."""
        try:
            value = _loads(raw)
        except ValueError:
            if self.fmt is RowFormat.JSONL:
                self.invalid[side] += 1
            content = _digest(b"t" + raw.strip())
            return _digest(b"n" + content), content
        content = _digest(b"j" + _canonical(value).encode())
        if self.key is not None and isinstance(value, dict):
            key_value = value.get(self.key)
            if self._has_key(key_value):
                return _digest(b"k" + _key_bytes(key_value)), content
        return _digest(b"n" + content), content

    def _has_key(self, value: Any) -> bool:
        """Whether a row's key value is one (not null, nor an empty CSV cell)."""
        return value is not None and (self.fmt is RowFormat.JSONL or value != "")

    # -- step 3: pair by key (or content) the rows left

    def _match_parsed(self, before: list[_Rec], after: list[_Rec]) -> None:
        groups: dict[bytes, tuple[list[_Rec], list[_Rec]]] = {}
        for side, recs in ((0, before), (1, after)):
            for rec in recs:
                groups.setdefault(rec[2], ([], []))[side].append(rec)
        for rows_before, rows_after in groups.values():
            if len(rows_before) == 1 and len(rows_after) == 1:
                if rows_before[0][3] != rows_after[0][3]:
                    self._push(RowChangeKind.CHANGED, rows_before[0], rows_after[0])
                continue
            # equal contents pair first, the k-th with the k-th; the rest in file order
            count_after = Counter(rec[3] for rec in rows_after)
            count_before = Counter(rec[3] for rec in rows_before)
            left: tuple[list[_Rec], list[_Rec]] = ([], [])
            for side, recs, other in ((0, rows_before, count_after), (1, rows_after, count_before)):
                for rec in recs:
                    if other[rec[3]] > 0:
                        other[rec[3]] -= 1
                    else:
                        left[side].append(rec)
            for old, new in zip(*left, strict=False):
                self._push(RowChangeKind.CHANGED, old, new)
            for rec in left[0][len(left[1]) :]:
                self._push(RowChangeKind.REMOVED, rec, None)
            for rec in left[1][len(left[0]) :]:
                self._push(RowChangeKind.ADDED, None, rec)

    def _count(self, kind: RowChangeKind) -> None:
        if kind is RowChangeKind.ADDED:
            self.added += 1
        elif kind is RowChangeKind.REMOVED:
            self.removed += 1
        else:
            self.changed += 1

    def _push(self, kind: RowChangeKind, old: _Rec | None, new: _Rec | None) -> None:
        """Count a change, and keep it if it is among the ``offset + limit`` first."""
        self._count(kind)
        keep = self.offset + self.limit
        if keep == 0:
            return
        line = new[0] if new is not None else old[0]  # type: ignore[index]
        item = (-line, -_RANK[kind], kind.value, old, new)
        if len(self._heap) < keep:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    # -- the answer

    def result(self, sides: tuple[_Side | None, _Side | None]) -> RowDiff:
        before, after = sides
        rows_before = before.rows if before is not None else 0
        rows_after = after.rows if after is not None else 0
        unchanged = rows_before - self.removed - self.changed
        assert unchanged == rows_after - self.added - self.changed, "row counts disagree"
        total = self.added + self.removed + self.changed
        for side in sides:
            if side is not None:  # CSV rows of the wrong width, counted as they were read
                self.invalid[side.side] += side.invalid
        page = sorted(self._heap, key=lambda item: (-item[0], -item[1]))
        columns = (
            before.columns if before is not None else None,
            after.columns if after is not None else None,
        )
        changes = tuple(
            self._change(RowChangeKind(kind), old, new, columns)
            for _, _, kind, old, new in page[self.offset : self.offset + self.limit]
        )
        return RowDiff(
            format=self.fmt,
            key=self.key,
            rows_before=rows_before,
            rows_after=rows_after,
            added=self.added,
            removed=self.removed,
            changed=self.changed,
            unchanged=unchanged,
            changes=changes,
            total_changes=total,
            offset=self.offset,
            limit=self.limit,
            has_more=self.offset + len(changes) < total,
            invalid_before=self.invalid[0],
            invalid_after=self.invalid[1],
            columns_before=columns[0],
            columns_after=columns[1],
            notes=tuple(self._notes(columns)),
        )

    def _change(
        self,
        kind: RowChangeKind,
        old: _Rec | None,
        new: _Rec | None,
        columns: tuple[tuple[str, ...] | None, tuple[str, ...] | None],
    ) -> RowChange:
        row_before = self._parse(old[1], columns[0]) if old is not None else None
        row_after = self._parse(new[1], columns[1]) if new is not None else None
        key_value = None
        if self.key is not None:
            for row in (row_after, row_before):
                if isinstance(row, dict) and self._has_key(row.get(self.key)):
                    key_value = row[self.key]
                    break
        return RowChange(
            kind=kind,
            key=key_value,
            before=row_before,
            after=row_after,
            before_line=old[0] if old is not None else None,
            after_line=new[0] if new is not None else None,
        )

    def _parse(self, raw: bytes, columns: tuple[str, ...] | None) -> Any:
        try:
            value = _loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace").strip()
        if columns is not None and isinstance(value, dict):
            # a CSV row: back in the order of its file's header, the extra values last
            ordered = {name: value[name] for name in columns if name in value}
            ordered.update((k, v) for k, v in value.items() if k not in ordered)
            return ordered
        return value

    def _notes(
        self, columns: tuple[tuple[str, ...] | None, tuple[str, ...] | None]
    ) -> Iterator[str]:
        old, new = columns
        for name, header in (("before", old), ("after", new)):
            if header is not None and len(set(header)) < len(header):
                yield f"the header {name} repeats a column: its last value counts"
            if self.key is not None and header is not None and self.key not in header:
                yield f"the header {name} has no column {self.key!r}: its rows match by content"
        if old is not None and new is not None and old != new:
            gone = [c for c in old if c not in new]
            came = [c for c in new if c not in old]
            if came:
                yield "columns added: " + ", ".join(came)
            if gone:
                yield "columns removed: " + ", ".join(gone)
            if not came and not gone:
                yield "columns reordered (no row changes for it)"
        for name, count in (("before", self.invalid[0]), ("after", self.invalid[1])):
            if count:
                what = (
                    "lines that are no JSON"
                    if self.fmt is RowFormat.JSONL
                    else "rows whose number of values is not the header's"
                )
                yield f"{count} {what} {name}, compared as text"
