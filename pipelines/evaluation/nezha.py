"""Replay of the Nezha Train-Ticket fault cases: a dataset reader and a scorer.

The reader turns one case of a dataset in Nezha's layout (see ``../shared/datasets/README.md``)
into an ``IncidentContext`` exactly like production would build one: an alert on the front end
at the injection time, the logs, traces and per-pod metrics of the case's minute files, and a
fault-free baseline. The analyzer side (``NezhaCase.context``) never looks at the fault list;
only the scorer side (``truth_service``, ``fault_type``, ``score_cases``) does.

Quirks of the real data that the reader copes with: overlapping minute files (exact duplicate
rows and duplicate spans are dropped), log lines wrapped in docker JSON with a local clock
(the CSV ``Timestamp`` column is used instead), metric sentinels (3600 s latencies, NaN for idle
pods), and a short metric history early in a day (the baseline then also takes later points).
"""

from __future__ import annotations

import gzip
import json
import math
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from pipelines.schemas import (
    Alert,
    Analysis,
    IncidentContext,
    LogEvent,
    MetricSeries,
    Severity,
    Span,
    Telemetry,
)

#: How a Nezha fault type maps onto the product's incident categories.
CATEGORY_OF_FAULT = {
    "return": "application",
    "exception": "application",
    "cpu_contention": "infrastructure",
    "network_delay": "network",
}

#: How a Nezha fault type maps onto the reasoner's ``Hypothesis.fault_type`` names.
FAULT_TYPE_NAMES = {
    "return": "code_exception",
    "exception": "code_exception",
    "cpu_contention": "cpu_contention",
    "network_delay": "network_delay",
}

MINUTES_PER_CASE = 3  # the inject minute and the two after it, as Nezha reads them
BASELINE_MINUTES = 30  # metric history used as the normal baseline before the window
MIN_BASELINE_POINTS = 8  # fewer points before the window: also take points well after it
LATENCY_SENTINEL_SECONDS = 3600.0  # a latency of an hour or more is a missing value

_LOG_FIELDS = ("Timestamp", "PodName", "Log")
_SPAN_FIELDS = ("TraceID", "SpanID", "ParentID", "PodName", "OperationName", "StartTimeUnixNano", "Duration")
_METRIC_TIME = "Time"
_METRIC_SKIP = {"Time", "TimeStamp", "PodName"}
_LEVEL_RE = re.compile(
    r"^\s*(?:\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\s+)?(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|SEVERE|FATAL|CRITICAL)\b\s*(.*)$",
    re.DOTALL,
)
# Kubernetes names a pod <deployment>-<replicaset hash>-<5 char suffix>, or
# <statefulset>-<ordinal>, or <daemonset>-<5 char suffix>.
_RS_POD_RE = re.compile(r"^(?P<svc>.+?)-(?:[a-z0-9]{6,10})-[a-z0-9]{5}$")
_SHORT_POD_RE = re.compile(r"^(?P<svc>.+?)-(?:[a-z0-9]{5}|\d+)$")


class NezhaDatasetError(ValueError):
    """A dataset file is missing or unreadable; the message names the file and what to do."""


def service_of_pod(pod: str) -> str:
    """The service (deployment) a pod belongs to, by Kubernetes' naming convention.

    ``ts-contacts-service-866bd68c97-9sv6w`` -> ``ts-contacts-service``. A name that does not
    follow the convention is returned unchanged, so nothing is lost.
    """
    pod = pod.strip()
    for pattern in (_RS_POD_RE, _SHORT_POD_RE):
        match = pattern.match(pod)
        if match and any(ch.isdigit() for ch in pod[len(match.group("svc")) :]):
            return match.group("svc")
    return pod


def metric_name(column: str) -> str:
    """A Prometheus-style snake_case name for a dataset column: ``CpuUsageRate(%)`` -> ``cpu_usage_rate_percent``."""
    units = {"%": "percent", "s": "seconds", "m": "millicores", "mi": "mib", "ops": "ops"}
    match = re.match(r"^(.*?)\s*\(([^)]*)\)\s*$", column)
    base, unit = (match.group(1), match.group(2).lower()) if match else (column, "")
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", base).lower()
    snake = re.sub(r"[^a-z0-9]+", "_", snake).strip("_")
    suffix = units.get(unit, re.sub(r"[^a-z0-9]+", "_", unit).strip("_"))
    return f"{snake}_{suffix}" if suffix else snake


def _utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)


def _read_csv(path: Path, *, usecols: Iterable[str] | None = None, header: bool = True) -> pd.DataFrame:
    """Read one gzip CSV, turning any failure into an error that names the file."""
    if not path.is_file():
        raise NezhaDatasetError(f"{path}: file is missing; the Nezha layout needs it (see datasets/README.md)")
    try:
        frame = pd.read_csv(path, compression="gzip", header=0 if header else None)
    except (OSError, EOFError, gzip.BadGzipFile, pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise NezhaDatasetError(f"{path}: cannot read it as a gzip CSV ({exc})") from exc
    if usecols is not None:
        missing = [c for c in usecols if c not in frame.columns]
        if missing and len(frame):
            raise NezhaDatasetError(f"{path}: missing column(s) {', '.join(missing)}")
        if missing:
            return pd.DataFrame(columns=list(usecols))
        frame = frame[list(usecols)]
    return frame


def _unwrap_log(raw: Any) -> str:
    """The message inside a docker JSON log line; plain text is kept as it is."""
    text = str(raw) if raw is not None and not (isinstance(raw, float) and math.isnan(raw)) else ""
    if text.startswith("{"):
        try:
            inner = json.loads(text)
            if isinstance(inner, dict) and isinstance(inner.get("log"), str):
                text = inner["log"]
        except ValueError:
            pass
    return text.rstrip("\n")


def _split_level(text: str) -> tuple[str | None, str]:
    """Level and message of a ``HH:MM:SS.mmm LEVEL message`` line (the inner clock is dropped)."""
    match = _LEVEL_RE.match(text)
    if not match:
        return None, text
    level = match.group(1).upper()
    return {"WARNING": "WARN", "SEVERE": "ERROR", "CRITICAL": "FATAL"}.get(level, level), match.group(2)


def read_logs(paths: Iterable[Path]) -> list[LogEvent]:
    """Log events of minute files, without the rows overlapping files repeat."""
    frames = [_read_csv(p, usecols=_LOG_FIELDS) for p in paths]
    if not frames:
        return []
    frame = pd.concat(frames, ignore_index=True).drop_duplicates()
    frame = frame.sort_values("Timestamp", kind="stable")
    stamps = pd.to_datetime(frame["Timestamp"], errors="coerce", utc=True, format="ISO8601").dt.floor("us")
    events: list[LogEvent] = []
    for stamp, pod, raw in zip(stamps, frame["PodName"], frame["Log"]):
        level, message = _split_level(_unwrap_log(raw))
        pod_name = str(pod) if isinstance(pod, str) else None
        when = None if pd.isna(stamp) else stamp.to_pydatetime()
        events.append(
            LogEvent(
                message=message,
                timestamp=when,
                service=service_of_pod(pod_name) if pod_name else None,
                pod=pod_name,
                level=level,
            )
        )
    return events


def read_spans(paths: Iterable[Path]) -> list[Span]:
    """Spans of minute files, each (trace id, span id) once."""
    frames = [_read_csv(p, usecols=_SPAN_FIELDS) for p in paths]
    if not frames:
        return []
    frame = pd.concat(frames, ignore_index=True).drop_duplicates(subset=["TraceID", "SpanID"])
    frame = frame.dropna(subset=["TraceID", "SpanID", "PodName"])
    spans: list[Span] = []
    for trace, span, parent, pod, operation, start_ns, duration_us in frame.itertuples(index=False, name=None):
        try:
            start = float(start_ns) / 1e9
            duration_ms = float(duration_us) / 1e3
        except (TypeError, ValueError):
            continue
        if not (math.isfinite(start) and math.isfinite(duration_ms)):
            continue
        parent_id = None if (not isinstance(parent, str) or parent == "root") else parent
        spans.append(
            Span(
                trace_id=str(trace),
                span_id=str(span),
                parent_id=parent_id,
                service=service_of_pod(str(pod)),
                operation=str(operation) if isinstance(operation, str) else "",
                start=start,
                duration_ms=duration_ms,
            )
        )
    return spans


@dataclass
class _PodMetrics:
    """One day of one pod's metrics: unix seconds and one column per metric."""

    service: str
    times: list[float]
    columns: dict[str, list[float]]


class _MetricDay:
    """The whole-day metric files of one date folder, parsed once and shared by its cases."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pods: list[_PodMetrics] = []
        self.front: _PodMetrics | None = None
        if not folder.is_dir():
            raise NezhaDatasetError(f"{folder}: metric folder is missing")
        for path in sorted(folder.glob("*.csv.gz")):
            frame = _read_csv(path)
            if _METRIC_TIME not in frame.columns:
                raise NezhaDatasetError(f"{path}: no {_METRIC_TIME} column")
            times = self._times(frame[_METRIC_TIME], path)
            columns: dict[str, list[float]] = {}
            for column in frame.columns:
                if column in _METRIC_SKIP or column == "ServiceName":
                    continue
                values = pd.to_numeric(frame[column], errors="coerce").astype(float).tolist()
                columns[metric_name(column)] = values
            if "PodName" in frame.columns:
                pod = str(frame["PodName"].dropna().iloc[0]) if frame["PodName"].notna().any() else path.stem
                self.pods.append(_PodMetrics(service_of_pod(pod), times, columns))
            else:
                name = str(frame["ServiceName"].iloc[0]) if "ServiceName" in frame.columns and len(frame) else "frontend"
                self.front = _PodMetrics(name, times, columns)

    @staticmethod
    def _times(column: pd.Series, path: Path) -> list[float]:
        # "2023-01-29 08:41:09.969234525 +0000 UTC m=+1.04": the wall clock (UTC) leads the text.
        clock = column.astype(str).str.extract(r"^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?)")[0]
        stamps = pd.to_datetime(clock, errors="coerce", utc=True, format="ISO8601")
        if stamps.isna().all() and len(column):
            raise NezhaDatasetError(f"{path}: no readable time in the {_METRIC_TIME} column")
        return [s.timestamp() if not pd.isna(s) else float("nan") for s in stamps]

    def series(self, start: float, end: float) -> list[MetricSeries]:
        """Every service's metrics with points in [start, end): one series per (service, metric)."""
        merged: dict[tuple[str, str], dict[float, list[float]]] = {}
        for pod in self.pods:
            keep = [i for i, t in enumerate(pod.times) if start <= t < end]
            for name, values in pod.columns.items():
                bucket = merged.setdefault((pod.service, name), {})
                for i in keep:
                    value = values[i]
                    if not math.isfinite(value):
                        continue
                    if name.endswith("_seconds") and value >= LATENCY_SENTINEL_SECONDS:
                        continue
                    bucket.setdefault(round(pod.times[i] / 60) * 60.0, []).append(value)
        result = []
        for (service, name), points in sorted(merged.items()):
            if points:
                ordered = [(t, sum(v) / len(v)) for t, v in sorted(points.items())]
                result.append(MetricSeries(service=service, name=name, points=ordered))
        return result

    def front_values(self, name: str, start: float, end: float) -> list[float]:
        if self.front is None or name not in self.front.columns:
            return []
        values = self.front.columns[name]
        return [v for t, v in zip(self.front.times, values) if start <= t < end and math.isfinite(v)]

    def first_time(self) -> float:
        times = [t for pod in self.pods for t in pod.times if math.isfinite(t)]
        return min(times) if times else float("nan")


_METRIC_CACHE: dict[Path, _MetricDay] = {}
_METRIC_LOCK = threading.Lock()


def _metric_day(folder: Path) -> _MetricDay:
    with _METRIC_LOCK:
        day = _METRIC_CACHE.get(folder.resolve())
        if day is None:
            day = _METRIC_CACHE[folder.resolve()] = _MetricDay(folder)
        return day


@dataclass
class NezhaCase:
    """One injected fault. ``truth_service`` and ``fault_type`` are for the scorer only."""

    case_id: str
    truth_service: str
    fault_type: str
    inject_time: datetime
    inject_pod: str
    day_dir: Path
    baseline_dir: Path | None = None
    _context: IncidentContext | None = field(default=None, repr=False, compare=False)

    @property
    def truth_category(self) -> str:
        return CATEGORY_OF_FAULT.get(self.fault_type, "unknown")

    def minute_files(self, kind: str) -> list[Path]:
        """The inject minute and the two after it: ``08:43:04`` -> ``08_43``, ``08_44``, ``08_45``."""
        first = self.inject_time.replace(second=0, microsecond=0)
        names = [(first + timedelta(minutes=i)).strftime("%H_%M") for i in range(MINUTES_PER_CASE)]
        return [self.day_dir / kind / f"{name}_{kind}.csv.gz" for name in names]

    def _baseline_files(self, kind: str) -> list[Path]:
        if self.baseline_dir is None or not (self.baseline_dir / kind).is_dir():
            return []
        return sorted((self.baseline_dir / kind).glob(f"*_{kind}.csv.gz"))

    def context(self) -> IncidentContext:
        """The incident as the analyzer sees it. Reads no fault list; cached per case."""
        if self._context is None:
            self._context = self._build_context()
        return self._context

    def _build_context(self) -> IncidentContext:
        degraded: list[str] = []
        logs = read_logs([p for p in self.minute_files("log") if p.is_file()])
        spans = read_spans([p for p in self.minute_files("trace") if p.is_file()])
        missing = [p.name for kind in ("log", "trace") for p in self.minute_files(kind) if not p.is_file()]
        if missing:
            degraded.append(f"minute files missing: {', '.join(missing)}")

        t0 = self.inject_time.timestamp()
        window_start = t0 - 60.0
        window_end = t0 + 60.0 * MINUTES_PER_CASE
        day = _metric_day(self.day_dir / "metric")
        metrics = day.series(window_start, window_end)
        baseline_metrics = day.series(t0 - 60.0 * (BASELINE_MINUTES + 1), window_start)
        if _points(baseline_metrics) < MIN_BASELINE_POINTS:
            # Too little history early in the day: normal behaviour is also read well after the window.
            later = day.series(window_end + 600.0, window_end + 600.0 + 60.0 * BASELINE_MINUTES)
            baseline_metrics = _concat_series(baseline_metrics, later)
            degraded.append("metric history before the alert is short; baseline also uses later points")

        baseline_logs = read_logs(self._baseline_files("log"))
        baseline_spans = read_spans(self._baseline_files("trace"))
        baseline = Telemetry(logs=baseline_logs, metrics=baseline_metrics, spans=baseline_spans)
        window = Telemetry(logs=logs, metrics=metrics, spans=spans)
        return IncidentContext(
            alert=self._alert(day, spans, t0),
            window=window,
            baseline=baseline,
            degraded_reasons=degraded,
        )

    def _alert(self, day: _MetricDay, spans: list[Span], t0: float) -> Alert:
        """A front-end symptom alert: latency when the front end got slower, else error rate."""
        entry = _entry_service(spans) or (day.front.service if day.front else "frontend")
        before = day.front_values("latency_p90_seconds", t0 - 600.0, t0)
        after = day.front_values("latency_p90_seconds", t0, t0 + 60.0 * MINUTES_PER_CASE)
        slower = bool(before and after and _median(after) > 1.2 * _median(before))
        name, summary = (
            ("SlowResponseTime", "front-end p90 latency rose")
            if slower
            else ("HighErrorRate", "front-end error rate rose")
        )
        return Alert(
            name=name,
            severity=Severity.warning,
            timestamp=self.inject_time,
            labels={"alertname": name, "service": entry, "source": "nezha-replay"},
            annotations={"summary": f"{summary} on {entry}"},
        )


def _entry_service(spans: list[Span]) -> str | None:
    """The service that receives requests from outside: the most frequent service of root spans."""
    counts: dict[str, int] = {}
    for span in spans:
        if span.parent_id is None:
            counts[span.service] = counts.get(span.service, 0) + 1
    return max(counts, key=lambda s: counts[s]) if counts else None


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _points(series: list[MetricSeries]) -> int:
    return max((len(s.points) for s in series), default=0)


def _concat_series(first: list[MetricSeries], second: list[MetricSeries]) -> list[MetricSeries]:
    merged: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for series in (*first, *second):
        merged.setdefault((series.service, series.name), []).extend(series.points)
    return [MetricSeries(service=s, name=n, points=sorted(p)) for (s, n), p in sorted(merged.items())]


def load_cases(root: Path) -> list[NezhaCase]:
    """Every case of a dataset in Nezha's layout, in time order.

    ``root`` holds ``rca_data/<date>/<date>-fault_list.json`` and optionally
    ``construct_data/<date>/`` (the fault-free baseline minute).
    """
    root = Path(root)
    rca = root / "rca_data"
    if not rca.is_dir():
        raise NezhaDatasetError(f"{rca}: folder is missing; expected a dataset in Nezha's layout")
    cases: list[NezhaCase] = []
    for day_dir in sorted(p for p in rca.iterdir() if p.is_dir()):
        fault_list = day_dir / f"{day_dir.name}-fault_list.json"
        if not fault_list.is_file():
            raise NezhaDatasetError(f"{fault_list}: fault list is missing")
        try:
            by_hour = json.loads(fault_list.read_text())
        except (OSError, ValueError) as exc:
            raise NezhaDatasetError(f"{fault_list}: not valid JSON ({exc})") from exc
        if not isinstance(by_hour, dict):
            raise NezhaDatasetError(f"{fault_list}: expected an object of hours to case lists")
        baseline_dir = root / "construct_data" / day_dir.name
        for hour, entries in sorted(by_hour.items()):
            for index, entry in enumerate(entries or []):
                try:
                    inject_time = _utc(str(entry["inject_time"]))
                    pod = str(entry["inject_pod"])
                    kind = str(entry["inject_type"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise NezhaDatasetError(f"{fault_list}: case {index} of hour {hour} is malformed ({exc})") from exc
                cases.append(
                    NezhaCase(
                        case_id=inject_time.strftime("%Y-%m-%dT%H:%M:%S"),
                        truth_service=service_of_pod(pod),
                        fault_type=kind,
                        inject_time=inject_time,
                        inject_pod=pod,
                        day_dir=day_dir,
                        baseline_dir=baseline_dir if baseline_dir.is_dir() else None,
                    )
                )
    cases.sort(key=lambda c: c.inject_time)
    return cases


# ---------------------------------------------------------------- scoring


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def score_cases(results: list[tuple[NezhaCase, Analysis, float]]) -> dict[str, Any]:
    """AS@1/3/5, category and fault-type accuracy, analysis time percentiles, and one row per case.

    AS@k counts a case when its true service is among the ``service`` of the top k hypotheses
    (an analysis carries at most 3, so AS@5 equals AS@3 unless that changes). Fault-type
    accuracy counts only the cases whose top hypothesis names a fault type.
    """
    rows: list[dict[str, Any]] = []
    hits = {1: 0, 3: 0, 5: 0}
    category_hits = 0
    typed = typed_hits = 0
    seconds: list[float] = []
    for case, analysis, elapsed in results:
        ranked = sorted(analysis.hypotheses, key=lambda h: h.confidence, reverse=True)
        services = [h.service for h in ranked]
        rank = next((i + 1 for i, s in enumerate(services) if s == case.truth_service), None)
        for k in hits:
            hits[k] += int(rank is not None and rank <= k)
        category = analysis.classification.category.value
        category_ok = category == case.truth_category
        category_hits += int(category_ok)
        predicted_type = ranked[0].fault_type if ranked else None
        if predicted_type:
            typed += 1
            typed_hits += int(predicted_type == FAULT_TYPE_NAMES.get(case.fault_type, case.fault_type))
        seconds.append(elapsed)
        rows.append(
            {
                "case": case.case_id,
                "truth_service": case.truth_service,
                "fault_type": case.fault_type,
                "predicted": services,
                "rank": rank,
                "category": category,
                "category_ok": category_ok,
                "predicted_fault_type": predicted_type,
                "seconds": round(elapsed, 3),
            }
        )
    n = len(results)

    def share(count: int, total: int) -> float:
        return round(count / total, 4) if total else 0.0

    p50 = _percentile(seconds, 0.5)
    p95 = _percentile(seconds, 0.95)
    return {
        "cases": n,
        "as_at_1": share(hits[1], n),
        "as_at_3": share(hits[3], n),
        "as_at_5": share(hits[5], n),
        "category_accuracy": share(category_hits, n),
        "fault_type_accuracy": share(typed_hits, typed),
        "p50_seconds": round(p50, 3) if p50 is not None else None,
        "p95_seconds": round(p95, 3) if p95 is not None else None,
        "rows": rows,
    }
