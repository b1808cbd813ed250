"""``JsonFileTracker``: the TrackingProvider Protocol, kept in JSON files on the local disk.

Layout under ``root``::

    experiments.json                 {"<experiment name>": "<experiment id>"}
    idempotency/<sha256 of key>      the run id created for that idempotency key
    runs/<run id>/run.json           the RunInfo
    runs/<run id>/metrics.jsonl      every MetricPoint, appended
    runs/<run id>/artifacts/...      copies of the logged files

Writes replace whole files atomically (write a temporary file, then ``os.replace``) and a
lock serialises them within one process. That is enough for an example and for tests; a
real plugin leaves concurrency to its tool.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from llmops.capabilities.common import Health, HealthStatus, utcnow
from llmops.capabilities.tracking import (
    ArtifactInfo,
    MetricPoint,
    RunInfo,
    RunPage,
    RunQuery,
    RunSpec,
    RunStatus,
)
from llmops.errors import Conflict, InvalidRequest, NotFound

#: The tag that carries ``RunSpec.idempotency_key``, as the MLflow plugin does.
IDEMPOTENCY_TAG = "llmops.idempotency_key"

_CLAUSE = re.compile(
    r"""^\s*(?:(?P<scope>params|tags)\.)?(?P<key>[\w.\-/]+)\s*=\s*
    (?:'(?P<single>[^']*)'|"(?P<double>[^"]*)")\s*$""",
    re.VERBOSE,
)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_ORDER = re.compile(r"^\s*(?P<field>[\w.\-/]+)(?:\s+(?P<direction>asc|desc))?\s*$", re.IGNORECASE)


class JsonFileTracker:
    """An experiment tracker whose "tool" is a directory of JSON files."""

    #: The core splits larger metric batches into calls of at most this many points.
    max_metrics_per_batch: int = 1000

    def __init__(self, root: Path) -> None:
        # Nothing is touched here: providers are built when settings change and must not
        # contact their tool; health() and the first write create the directory.
        self.root = Path(root)
        self._lock = threading.RLock()

    # -- runs ----------------------------------------------------------------------

    def create_run(self, spec: RunSpec) -> RunInfo:
        with self._lock:
            if spec.idempotency_key is not None:
                existing = self._run_for_key(spec.idempotency_key)
                if existing is not None:
                    return existing
            tags = dict(spec.tags)
            if spec.idempotency_key is not None:
                tags[IDEMPOTENCY_TAG] = spec.idempotency_key
            run_id = uuid.uuid4().hex
            run = RunInfo(
                run_id=run_id,
                experiment_id=self._experiment_id(spec.experiment),
                experiment_name=spec.experiment,
                name=spec.run_name,
                status=RunStatus.RUNNING,
                start_time=utcnow(),
                params=dict(spec.params),
                tags=tags,
                artifact_uri=self._artifacts_dir(run_id).as_uri(),
            )
            self._artifacts_dir(run_id).mkdir(parents=True)
            self._save(run)
            if spec.idempotency_key is not None:
                _write_atomic(self._key_file(spec.idempotency_key), run_id)
            return run

    def get_run(self, run_id: str) -> RunInfo:
        path = self._run_file(run_id)
        try:
            return RunInfo.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound(f"no run with id {run_id!r}", run_id=run_id) from None

    def end_run(self, run_id: str, status: RunStatus) -> RunInfo:
        with self._lock:
            run = self.get_run(run_id).model_copy(update={"status": status, "end_time": utcnow()})
            self._save(run)
            return run

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        with self._lock:
            run = self.get_run(run_id)
            changed = sorted(k for k, v in params.items() if run.params.get(k, v) != v)
            if changed:
                # Like MLflow: a parameter is written once; a run that changes one is a new run.
                raise Conflict(
                    f"parameters already logged with other values: {', '.join(changed)}",
                    run_id=run_id,
                    params=changed,
                )
            self._save(run.model_copy(update={"params": {**run.params, **params}}))

    def log_metrics(self, run_id: str, metrics: Sequence[MetricPoint]) -> None:
        if len(metrics) > self.max_metrics_per_batch:
            raise InvalidRequest(
                f"at most {self.max_metrics_per_batch} metric points per call, got {len(metrics)}"
            )
        with self._lock:
            run = self.get_run(run_id)
            history = self._run_dir(run_id) / "metrics.jsonl"
            logged = {
                (p.key, p.value, p.step, p.timestamp)
                for key in {point.key for point in metrics}
                for p in self.metric_history(run_id, key)
            }
            with history.open("a", encoding="utf-8") as out:
                for point in metrics:  # an identical point is stored once, as MLflow does
                    identity = (point.key, point.value, point.step, point.timestamp)
                    if identity not in logged:
                        logged.add(identity)
                        out.write(point.model_dump_json() + "\n")
            latest = dict(run.latest_metrics)
            for key in {point.key for point in metrics}:
                latest[key] = _latest(self.metric_history(run_id, key)).value
            self._save(run.model_copy(update={"latest_metrics": latest}))

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        self.get_run(run_id)
        history = self._run_dir(run_id) / "metrics.jsonl"
        if not history.exists():
            return []
        points = [
            MetricPoint.model_validate_json(line)
            for line in history.read_text(encoding="utf-8").splitlines()
            if line
        ]
        return sorted((p for p in points if p.key == key), key=lambda p: (p.step, p.timestamp))

    # -- artifacts -----------------------------------------------------------------

    def log_artifact(
        self, run_id: str, local_path: Path, artifact_path: str | None = None
    ) -> ArtifactInfo:
        self.get_run(run_id)
        source = Path(local_path)
        if not source.exists():
            raise InvalidRequest(f"no such file or directory: {source}")
        relative = PurePosixPath(artifact_path or "") / source.name
        target = self._artifact_target(run_id, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
            return ArtifactInfo(path=str(relative), is_dir=True)
        shutil.copyfile(source, target)
        return ArtifactInfo(path=str(relative), size_bytes=target.stat().st_size)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactInfo]:
        self.get_run(run_id)
        base = PurePosixPath(path or "")
        folder = self._artifact_target(run_id, base)
        if not folder.is_dir():
            return []
        return [
            ArtifactInfo(
                path=str(base / child.name),
                is_dir=child.is_dir(),
                size_bytes=None if child.is_dir() else child.stat().st_size,
            )
            for child in sorted(folder.iterdir(), key=lambda c: c.name)
        ]

    # -- search --------------------------------------------------------------------

    def search_runs(self, query: RunQuery) -> RunPage:
        matches = _parse_filter(query.filter)
        order = _parse_order(query.order_by)
        offset = _parse_page_token(query.page_token)
        runs_dir = self.root / "runs"
        runs = [
            RunInfo.model_validate_json(f.read_text(encoding="utf-8"))
            for f in sorted(runs_dir.glob("*/run.json"))
        ]
        wanted = set(query.experiments)
        runs = [
            r
            for r in runs
            if (not wanted or r.experiment_name in wanted) and all(m(r) for m in matches)
        ]
        runs.sort(key=lambda r: r.run_id)
        for sort_key, descending in reversed(order):
            present = [r for r in runs if sort_key(r) is not None]
            absent = [r for r in runs if sort_key(r) is None]
            present.sort(key=sort_key, reverse=descending)
            runs = present + absent  # runs without the value come last either way
        page = runs[offset : offset + query.page_size]
        more = offset + query.page_size < len(runs)
        return RunPage(runs=page, next_page_token=str(offset + query.page_size) if more else None)

    def run_url(self, run_id: str) -> str | None:
        return None  # JSON files have no web UI

    # -- health --------------------------------------------------------------------

    def health(self) -> Health:
        started = time.perf_counter()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".health-") as probe:
                probe.write(b"ok")
                probe.flush()
        except OSError as exc:
            return Health(
                status=HealthStatus.DOWN,
                latency_ms=(time.perf_counter() - started) * 1000,
                detail=f"cannot write to {self.root}: {exc}",
            )
        return Health(
            status=HealthStatus.OK,
            latency_ms=(time.perf_counter() - started) * 1000,
            detail=f"writing runs to {self.root}",
        )

    # -- files ---------------------------------------------------------------------

    def _run_dir(self, run_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{32}", run_id):
            raise NotFound(f"no run with id {run_id!r}", run_id=run_id)
        return self.root / "runs" / run_id

    def _run_file(self, run_id: str) -> Path:
        return self._run_dir(run_id) / "run.json"

    def _artifacts_dir(self, run_id: str) -> Path:
        return self._run_dir(run_id) / "artifacts"

    def _artifact_target(self, run_id: str, relative: PurePosixPath) -> Path:
        base = self._artifacts_dir(run_id).resolve()
        target = (base / relative).resolve()
        if relative.is_absolute() or not target.is_relative_to(base):
            raise InvalidRequest(f"artifact path {str(relative)!r} leaves the run's folder")
        return target

    def _key_file(self, key: str) -> Path:
        return self.root / "idempotency" / hashlib.sha256(key.encode()).hexdigest()

    def _run_for_key(self, key: str) -> RunInfo | None:
        try:
            run_id = self._key_file(key).read_text(encoding="utf-8").strip()
            return self.get_run(run_id)
        except (FileNotFoundError, NotFound):
            return None

    def _experiment_id(self, name: str) -> str:
        path = self.root / "experiments.json"
        experiments: dict[str, str] = (
            json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        )
        if name not in experiments:
            experiments[name] = uuid.uuid4().hex[:12]
            _write_atomic(path, json.dumps(experiments, indent=2, sort_keys=True))
        return experiments[name]

    def _save(self, run: RunInfo) -> None:
        _write_atomic(self._run_file(run.run_id), run.model_dump_json(indent=2))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _latest(points: Sequence[MetricPoint]) -> MetricPoint:
    """MLflow's rule: the latest value is the one with the highest step, then timestamp."""
    return max(points, key=lambda p: (p.step, p.timestamp))


def _parse_filter(text: str) -> list[Callable[[RunInfo], bool]]:
    """``key = 'value'`` clauses joined by ``and``; ``params.`` or ``tags.`` narrows the
    key to one of them, a bare key matches either."""
    if not text.strip():
        return []
    matches: list[Callable[[RunInfo], bool]] = []
    for clause in _AND.split(text.strip()):
        found = _CLAUSE.match(clause)
        if found is None:
            raise InvalidRequest(
                f"unsupported filter clause {clause!r}: use key = 'value', "
                "params.key = 'value' or tags.key = 'value', joined by AND"
            )
        scope, key = found["scope"], found["key"]
        value = found["single"] if found["single"] is not None else found["double"]

        def match(
            run: RunInfo, scope: str | None = scope, key: str = key, value: str = value
        ) -> bool:
            if scope == "params":
                sources = [run.params]
            elif scope == "tags":
                sources = [run.tags]
            else:
                sources = [run.params, run.tags]
            return any(source.get(key) == value for source in sources)

        matches.append(match)
    return matches


def _parse_order(fields: Sequence[str]) -> list[tuple[Callable[[RunInfo], Any], bool]]:
    """``start_time``, ``end_time``, ``name`` or ``metrics.<key>``, then ``ASC`` or ``DESC``;
    the default is the newest run first."""
    if not fields:
        return [(lambda r: r.start_time, True)]
    order: list[tuple[Callable[[RunInfo], Any], bool]] = []
    for text in fields:
        found = _ORDER.match(text)
        field = found["field"].removeprefix("attributes.") if found else ""
        descending = bool(found and (found["direction"] or "asc").lower() == "desc")
        if field in {"start_time", "end_time", "name"}:
            order.append((operator.attrgetter(field), descending))
        elif field.startswith("metrics.") and len(field) > len("metrics."):
            order.append((_metric(field.removeprefix("metrics.")), descending))
        else:
            raise InvalidRequest(
                f"unsupported order_by {text!r}: use start_time, end_time, name or "
                "metrics.<key>, optionally followed by ASC or DESC"
            )
    return order


def _metric(key: str) -> Callable[[RunInfo], float | None]:
    return lambda run: run.latest_metrics.get(key)


def _parse_page_token(token: str | None) -> int:
    if token is None:
        return 0
    if not token.isdigit():
        raise InvalidRequest(f"invalid page token {token!r}")
    return int(token)
