"""Replay of Nezha's fault cases (Train-Ticket, Online Boutique) as production would see them.

The reader (``NezhaCase.context``) turns one case of a dataset in Nezha's layout (see
``../shared/datasets/README.md``) into an ``IncidentContext`` the way production builds one:

* **the alert** fires when the project's own rules (``configs/prometheus-rules.yaml``:
  HighErrorRate and SlowResponseTime, their thresholds and ``for:`` read from the file) fire on
  the front end's metrics (``front_service`` and the entry service's pod), or at the injection
  plus an alert delay. Which of the two decides is the ``alert_at`` choice:

  - ``delay`` (the default, and what ``--alert-delay 0/60/120/180`` sweeps): the alert fires at
    injection + delay, for every case, so a sweep compares like with like. The rules are still
    evaluated and each case reports when they would have fired.
  - ``rules``: the alert fires when a rule first goes from pending to firing between the
    injection and the end of the case's data (an alert already firing before the injection is
    an older incident and does not count); where no rule trips, at injection + delay.

  The alert carries its rule's name, severity and summary, and the entry service: never the
  injection time nor anything else of the fault list.
* **the context** is what ``ContextWindow`` gives for that alert: logs and spans whose own
  timestamps fall inside the window, read from every minute file on disk that may hold some
  (neighbouring minutes included: production would have them), metrics up to the window's end
  only. The baseline is the dataset's fault-free ``construct_data`` minute (logs, spans) plus the
  metric history before the window; a short history is said (degraded), never filled from later.

Only the scorer side (``truth_service``, ``fault_type``, ``alert_plan``, ``score_cases``) reads the
fault list; what reaches the analyzer is the alert and its context.

Real data that the reader survives: overlapping minute files (exact duplicate rows and duplicate
spans are dropped), malformed rows (a glued row, "expected 8 fields, saw 10": skipped, counted
and named in the degraded reasons), files that are not pod metrics in a metric folder
(Online Boutique's ``dependency.csv``, ``source_50.csv``: ignored with a note), plain ``.csv`` or
``.csv.gz``, log lines wrapped in docker JSON with a local clock (the CSV ``Timestamp`` is used),
metric sentinels (3600 s latencies, NaN for idle pods, a success rate that is 0 in every row:
not measured), and fault types the scorer does not know (scored by service only).
"""

from __future__ import annotations

import gzip
import json
import math
import re
import threading
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Literal

import pandas as pd

from anomaly.pods import workload_of_pod
import yaml

from pipelines.context_window import DEFAULT_AFTER_SECONDS, ContextWindow
from pipelines.evaluation.intervals import share
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

#: How a Nezha fault type maps onto the product's incident categories (Train-Ticket and
#: Online Boutique names). A type not listed is scored by service only.
CATEGORY_OF_FAULT = {
    "return": "application",
    "exception": "application",
    "cpu_contention": "infrastructure",
    "cpu_consumed": "infrastructure",
    "network_delay": "network",
}

#: How a Nezha fault type maps onto the reasoner's ``Hypothesis.fault_type`` names.
FAULT_TYPE_NAMES = {
    "return": "code_exception",
    "exception": "code_exception",
    "cpu_contention": "cpu_contention",
    "cpu_consumed": "cpu_contention",
    "network_delay": "network_delay",
}

MINUTES_PER_CASE = 3  # the inject minute and the two after it: the case's data, as Nezha reads it
BASELINE_MINUTES = 30  # metric history used as the normal baseline before the window
MIN_BASELINE_POINTS = 8  # fewer points of history: the baseline is said to be short (degraded)
LATENCY_SENTINEL_SECONDS = 3600.0  # a latency of an hour or more is a missing value
DEFAULT_ALERT_DELAY_SECONDS = 120.0
RULES_FILE = Path(__file__).resolve().parents[2] / "configs" / "prometheus-rules.yaml"
AlertAt = Literal["delay", "rules"]

_LOG_FIELDS = ("Timestamp", "PodName", "Log")
_SPAN_FIELDS = ("TraceID", "SpanID", "ParentID", "PodName", "OperationName", "StartTimeUnixNano", "Duration")
_METRIC_TIME = "Time"
_METRIC_SKIP = {"Time", "TimeStamp", "PodName", "ServiceName"}
_SUFFIXES = (".csv.gz", ".csv")
_LEVEL_RE = re.compile(
    r"^\s*(?:\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\s+)?(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|SEVERE|FATAL|CRITICAL)\b\s*(.*)$",
    re.DOTALL,
)
_SKIPPED_RE = re.compile(r"Skipping line \d+")


class NezhaDatasetError(ValueError):
    """A dataset file is missing or unreadable; the message names the file and what to do."""


@dataclass
class ReadNotes:
    """What the reader skipped: malformed rows per file, files it ignored. Named in degraded reasons."""

    skipped_rows: dict[str, int] = field(default_factory=dict)
    ignored_files: list[str] = field(default_factory=list)

    def reasons(self) -> list[str]:
        reasons = [f"{name}: {count} malformed row(s) skipped" for name, count in sorted(self.skipped_rows.items())]
        if self.ignored_files:
            reasons.append(f"ignored files that are not pod metrics: {', '.join(sorted(self.ignored_files))}")
        return reasons

    def merge(self, other: ReadNotes) -> None:
        for name, count in other.skipped_rows.items():
            self.skipped_rows[name] = self.skipped_rows.get(name, 0) + count
        self.ignored_files.extend(f for f in other.ignored_files if f not in self.ignored_files)

def service_of_pod(pod: str) -> str:
    """The service (workload) a pod belongs to: ``ts-contacts-service-866bd68c97-9sv6w`` -> ``ts-contacts-service``.

    The scorer's truth and the reader's services use the intake's one rule (``anomaly.pods``).
    """
    return workload_of_pod(pod.strip())


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


def _read_csv(path: Path, notes: ReadNotes | None = None, *, usecols: Iterable[str] | None = None) -> pd.DataFrame:
    """Read one CSV (gzip or plain), turning any failure into an error that names the file.

    A malformed row (a glued row: "expected 8 fields, saw 10") is skipped and counted in ``notes``.
    """
    if not path.is_file():
        raise NezhaDatasetError(f"{path}: file is missing; the Nezha layout needs it (see datasets/README.md)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            frame = pd.read_csv(path, compression="infer", on_bad_lines="warn")
    except (OSError, EOFError, gzip.BadGzipFile, pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise NezhaDatasetError(f"{path}: cannot read it as a CSV ({exc})") from exc
    skipped = sum(len(_SKIPPED_RE.findall(str(w.message))) for w in caught if issubclass(w.category, pd.errors.ParserWarning))
    if skipped and notes is not None:
        notes.skipped_rows[path.name] = notes.skipped_rows.get(path.name, 0) + skipped
    if usecols is not None:
        missing = [c for c in usecols if c not in frame.columns]
        if missing and len(frame):
            raise NezhaDatasetError(f"{path}: missing column(s) {', '.join(missing)}")
        if missing:
            return pd.DataFrame(columns=list(usecols))
        frame = frame[list(usecols)]
    return frame


def _csv_files(folder: Path, pattern: str) -> list[Path]:
    """``<pattern>.csv.gz`` and ``<pattern>.csv`` files of a folder (Nezha ships both), by name."""
    if not folder.is_dir():
        return []
    return sorted({*folder.glob(f"{pattern}.csv.gz"), *folder.glob(f"{pattern}.csv")})


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


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


_FRAME_CACHE: dict[tuple[Path, int, int, tuple[str, ...]], tuple[pd.DataFrame, int]] = {}
_FRAME_LOCK = threading.Lock()


def _cached_frame(path: Path, columns: tuple[str, ...], notes: ReadNotes) -> pd.DataFrame:
    """A minute file read once per run (cases share neighbouring minutes); its skipped rows noted each time."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise NezhaDatasetError(f"{path}: cannot read it ({exc})") from exc
    key = (path.resolve(), stat.st_mtime_ns, stat.st_size, columns)
    with _FRAME_LOCK:
        hit = _FRAME_CACHE.get(key)
    if hit is None:
        own = ReadNotes()
        hit = (_read_csv(path, own, usecols=columns), own.skipped_rows.get(path.name, 0))
        with _FRAME_LOCK:
            _FRAME_CACHE[key] = hit
    if hit[1]:
        notes.skipped_rows[path.name] = notes.skipped_rows.get(path.name, 0) + hit[1]
    return hit[0]


def read_logs(paths: Iterable[Path], notes: ReadNotes | None = None, between: tuple[float, float] | None = None) -> list[LogEvent]:
    """Log events of minute files (only those stamped in ``[start, end)`` when given), each row once."""
    notes = notes if notes is not None else ReadNotes()
    frames = [_cached_frame(p, _LOG_FIELDS, notes) for p in paths]
    if not frames:
        return []
    frame = pd.concat(frames, ignore_index=True).drop_duplicates()
    stamps = pd.to_datetime(frame["Timestamp"], errors="coerce", utc=True, format="ISO8601").dt.floor("us")
    if between is not None:
        seconds = stamps.map(lambda s: s.timestamp() if not pd.isna(s) else math.nan)
        keep = (seconds >= between[0]) & (seconds < between[1])
        frame, stamps = frame[keep], stamps[keep]
    order = stamps.argsort(kind="stable")
    frame, stamps = frame.iloc[order], stamps.iloc[order]
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


def read_spans(paths: Iterable[Path], notes: ReadNotes | None = None, between: tuple[float, float] | None = None) -> list[Span]:
    """Spans of minute files (only those starting in ``[start, end)`` when given), each (trace id, span id) once."""
    notes = notes if notes is not None else ReadNotes()
    frames = [_cached_frame(p, _SPAN_FIELDS, notes) for p in paths]
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
        if between is not None and not between[0] <= start < between[1]:
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


# ---------------------------------------------------------------- metrics


@dataclass
class _PodMetrics:
    """One day of one pod's (or the front end's) metrics: unix seconds and one column per metric."""

    service: str
    times: list[float]
    columns: dict[str, list[float]]

    def samples(self, name: str) -> list[tuple[float, float]]:
        values = self.columns.get(name)
        if values is None or not _measured(values):
            return []
        return [(t, v) for t, v in zip(self.times, values) if math.isfinite(t) and math.isfinite(v)]


def _measured(values: list[float]) -> bool:
    """False for a column that is NaN or 0 in every row (Nezha's ``PodSuccessRate(%)``: not measured)."""
    return any(math.isfinite(v) and v != 0 for v in values)


class _MetricDay:
    """The whole-day metric files of one date folder, parsed once and shared by its cases.

    ``<pod>_metric.csv[.gz]`` are pods, ``front_service.csv[.gz]`` the front end; any other file
    (Online Boutique's ``dependency.csv``, ``source_50.csv``, ``destination_50.csv``) is ignored
    and noted.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pods: list[_PodMetrics] = []
        self.front: _PodMetrics | None = None
        self.notes = ReadNotes()
        if not folder.is_dir():
            raise NezhaDatasetError(f"{folder}: metric folder is missing")
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            stem = _stem(path)
            is_pod, is_front = stem.endswith("_metric"), stem == "front_service"
            if not (is_pod or is_front) or not path.name.endswith(_SUFFIXES):
                self.notes.ignored_files.append(f"{folder.name}/{path.name}")
                continue
            frame = _read_csv(path, self.notes)
            if _METRIC_TIME not in frame.columns:
                raise NezhaDatasetError(f"{path}: no {_METRIC_TIME} column")
            times = self._times(frame[_METRIC_TIME], path)
            columns = {
                metric_name(column): pd.to_numeric(frame[column], errors="coerce").astype(float).tolist()
                for column in frame.columns
                if column not in _METRIC_SKIP
            }
            if is_pod:
                named = frame["PodName"].dropna() if "PodName" in frame.columns else pd.Series(dtype=object)
                pod = str(named.iloc[0]) if len(named) else stem[: -len("_metric")]
                self.pods.append(_PodMetrics(service_of_pod(pod), times, columns))
            else:
                names = frame["ServiceName"].dropna() if "ServiceName" in frame.columns else pd.Series(dtype=object)
                self.front = _PodMetrics(str(names.iloc[0]) if len(names) else "frontend", times, columns)

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

    def all_times(self) -> list[float]:
        return sorted({t for pod in self.pods for t in pod.times if math.isfinite(t)})

    def signals(self, kind: str, entry: str | None) -> dict[str, list[tuple[float, float]]]:
        """The front end's ``error_ratio`` or ``latency_p95_seconds`` samples: the front-end file and the entry service's pods."""
        sources: list[tuple[str, _PodMetrics, str]] = []
        front_name, pod_name = {
            "error_ratio": ("success_rate_percent", "pod_success_rate_percent"),
            "latency_p95_seconds": ("latency_p95_seconds", "pod_server_latency_p95_seconds"),
        }[kind]
        if self.front is not None:
            sources.append((f"{self.front.service} {front_name}", self.front, front_name))
        sources += [(f"{p.service} {pod_name}", p, pod_name) for p in self.pods if entry and p.service == entry]
        found: dict[str, list[tuple[float, float]]] = {}
        for label, pod, name in sources:
            samples = pod.samples(name)
            if kind == "error_ratio":
                samples = [(t, 1.0 - v / 100.0) for t, v in samples]
            else:
                samples = [(t, v) for t, v in samples if v < LATENCY_SENTINEL_SECONDS]
            if samples:
                found[label] = sorted(samples)
        return found


_METRIC_CACHE: dict[Path, _MetricDay] = {}
_METRIC_LOCK = threading.Lock()


def _metric_day(folder: Path) -> _MetricDay:
    with _METRIC_LOCK:
        day = _METRIC_CACHE.get(folder.resolve())
        if day is None:
            day = _METRIC_CACHE[folder.resolve()] = _MetricDay(folder)
        return day


# ---------------------------------------------------------------- alert rules


@dataclass(frozen=True)
class AlertRule:
    """One alerting rule of ``configs/prometheus-rules.yaml``: its final comparison and ``for:``."""

    name: str
    threshold: float
    for_seconds: float
    severity: str
    summary: str
    signal: str  # which front-end signal the replay compares: error_ratio or latency_p95_seconds


#: The rules a front-end symptom fires, and the signal of the data each one compares.
REPLAYED_RULES = {"HighErrorRate": "error_ratio", "SlowResponseTime": "latency_p95_seconds"}


def _duration_seconds(text: str) -> float:
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", str(text))
    if not parts:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * unit[u] for n, u in parts)


def load_rules(path: Path = RULES_FILE) -> dict[str, AlertRule]:
    """HighErrorRate and SlowResponseTime as the project's rules file defines them."""
    try:
        groups = yaml.safe_load(path.read_text())["groups"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise NezhaDatasetError(f"{path}: cannot read the alert rules ({exc})") from exc
    rules: dict[str, AlertRule] = {}
    for group in groups:
        for rule in group.get("rules") or []:
            name = rule.get("alert")
            if name not in REPLAYED_RULES:
                continue
            match = re.search(r">\s*([0-9.eE+-]+)\s*$", str(rule.get("expr", "")).strip())
            if not match:
                raise NezhaDatasetError(f"{path}: {name}: no final `> threshold` in its expr")
            rules[name] = AlertRule(
                name=name,
                threshold=float(match.group(1)),
                for_seconds=_duration_seconds(rule.get("for", "0s")),
                severity=str((rule.get("labels") or {}).get("severity", "warning")),
                summary=str((rule.get("annotations") or {}).get("summary", name)),
                signal=REPLAYED_RULES[name],
            )
    missing = set(REPLAYED_RULES) - set(rules)
    if missing:
        raise NezhaDatasetError(f"{path}: alert rule(s) {', '.join(sorted(missing))} missing")
    return rules


def firing_starts(samples: list[tuple[float, float]], threshold: float, for_seconds: float) -> list[float]:
    """When a rule ``value > threshold for: for_seconds`` goes from pending to firing, as Prometheus
    evaluates it on these samples: pending from the first sample over the threshold, firing once it
    has stayed over it for ``for_seconds``; a sample at or under the threshold resets it."""
    starts: list[float] = []
    pending_since: float | None = None
    firing = False
    for t, value in samples:
        if value > threshold:
            pending_since = t if pending_since is None else pending_since
            if not firing and t - pending_since >= for_seconds:
                firing = True
                starts.append(t)
        else:
            pending_since, firing = None, False
    return starts


def _state_at(samples: list[tuple[float, float]], rule: AlertRule, moment: float) -> str:
    """``firing``, ``pending`` or ``inactive``: the rule's state at ``moment`` on samples up to it."""
    upto = [(t, v) for t, v in samples if t <= moment]
    if not upto or upto[-1][1] <= rule.threshold:
        return "inactive"
    since = upto[-1][0]
    for t, v in reversed(upto):
        if v <= rule.threshold:
            break
        since = t
    return "firing" if upto[-1][0] - since >= rule.for_seconds else "pending"


@dataclass(frozen=True)
class AlertPlan:
    """When and why a case's alert fires (scorer side: it knows the injection)."""

    moment: datetime
    rule: AlertRule
    reason: str
    after_injection_seconds: float
    rules_fire_after_seconds: float | None  # when a rule would fire within the case's data, if it does

    def describe(self) -> dict[str, Any]:
        return {
            "at": self.moment.isoformat(),
            "after_injection_seconds": round(self.after_injection_seconds, 1),
            "alert": self.rule.name,
            "reason": self.reason,
            "rules_fire_after_seconds": None if self.rules_fire_after_seconds is None else round(self.rules_fire_after_seconds, 1),
        }


# ---------------------------------------------------------------- cases


@dataclass
class NezhaCase:
    """One injected fault. ``truth_service``, ``fault_type`` and ``alert_plan`` are for the scorer only."""

    case_id: str
    truth_service: str
    fault_type: str
    inject_time: datetime
    inject_pod: str
    day_dir: Path
    baseline_dir: Path | None = None
    _contexts: dict[tuple[Any, ...], IncidentContext] = field(default_factory=dict, repr=False, compare=False)

    @property
    def truth_category(self) -> str:
        return CATEGORY_OF_FAULT.get(self.fault_type, "unknown")

    @property
    def truth_fault_type(self) -> str | None:
        return FAULT_TYPE_NAMES.get(self.fault_type)

    def minute_files(self, kind: str) -> list[Path]:
        """The case's own minute files: ``08:43:04`` -> ``08_43``, ``08_44``, ``08_45`` (those on disk)."""
        first = self.inject_time.replace(second=0, microsecond=0)
        return _minute_files(self.day_dir / kind, kind, first.timestamp(), first.timestamp() + 60.0 * (MINUTES_PER_CASE - 1))

    @property
    def data_end(self) -> float:
        """Where the case's data ends: the end of its last minute file."""
        first = self.inject_time.replace(second=0, microsecond=0).timestamp()
        return first + 60.0 * (MINUTES_PER_CASE - 1)

    # ------------------------------------------------ the alert (scorer side)

    def alert_plan(self, alert_at: AlertAt = "delay", delay_seconds: float = DEFAULT_ALERT_DELAY_SECONDS) -> AlertPlan:
        """When the replay's alert fires for this case, and why (see the module's docstring)."""
        if alert_at not in ("delay", "rules"):
            raise ValueError(f"alert_at {alert_at!r}: choose delay or rules")
        if delay_seconds < 0:
            raise ValueError(f"alert delay {delay_seconds}: must be >= 0 seconds")
        rules = load_rules()
        day = _metric_day(self.day_dir / "metric")
        entry = _entry_service(self._reference_spans()) or (day.front.service if day.front else None)
        injected = self.inject_time.timestamp()
        fired: list[tuple[float, AlertRule, str]] = []
        for rule in rules.values():
            for label, samples in day.signals(rule.signal, entry).items():
                fired += [(t, rule, label) for t in firing_starts(samples, rule.threshold, rule.for_seconds)
                          if injected <= t <= self.data_end]
        fired.sort(key=lambda item: item[0])
        rules_after = fired[0][0] - injected if fired else None
        if alert_at == "rules" and fired:
            moment, rule, label = fired[0]
            reason = f"rule {rule.name} fired on {label} (over {rule.threshold:g} for {rule.for_seconds:g}s)"
            return AlertPlan(_at(moment), rule, reason, moment - injected, rules_after)
        moment = injected + delay_seconds
        rule = self._rule_at(rules, day, entry, moment)
        reason = (f"injection + {delay_seconds:g}s" if alert_at == "delay"
                  else f"no rule fired within the case's data; injection + {delay_seconds:g}s")
        return AlertPlan(_at(moment), rule, reason, delay_seconds, rules_after)

    @staticmethod
    def _rule_at(rules: dict[str, AlertRule], day: _MetricDay, entry: str | None, moment: float) -> AlertRule:
        """The rule an on-call engineer would see at ``moment``: one firing, else one pending, else
        SlowResponseTime when the front end got slower over the last minutes, else HighErrorRate."""
        states = {"firing": [], "pending": []}  # type: dict[str, list[AlertRule]]
        for rule in rules.values():
            for samples in day.signals(rule.signal, entry).values():
                state = _state_at(samples, rule, moment)
                if state in states:
                    states[state].append(rule)
        for state in ("firing", "pending"):
            if states[state]:
                return states[state][0]
        latency = [v for samples in day.signals("latency_p95_seconds", entry).values() for t, v in samples
                   if moment - 780.0 <= t <= moment]
        recent = [v for samples in day.signals("latency_p95_seconds", entry).values() for t, v in samples
                  if moment - 180.0 < t <= moment]
        slower = bool(latency and recent and _median(recent) > 1.2 * _median(latency))
        return rules["SlowResponseTime" if slower else "HighErrorRate"]

    def _reference_spans(self) -> list[Span]:
        """Spans that show the entry service: the fault-free baseline minute, else the case's first minute."""
        paths = _csv_files(self.baseline_dir / "trace", "*_trace") if self.baseline_dir else []
        return read_spans(paths or self.minute_files("trace")[:1])

    # ------------------------------------------------ the analyzer's input

    def context(
        self,
        alert_at: AlertAt = "delay",
        delay_seconds: float = DEFAULT_ALERT_DELAY_SECONDS,
        before_seconds: float = 300.0,
        after_seconds: float = DEFAULT_AFTER_SECONDS,
    ) -> IncidentContext:
        """The incident as the analyzer sees it: the alert and its ``ContextWindow``. Cached."""
        key = (alert_at, float(delay_seconds), float(before_seconds), float(after_seconds))
        if key not in self._contexts:
            plan = self.alert_plan(alert_at, delay_seconds)
            window = ContextWindow.at(plan.moment, before_seconds, after_seconds)
            self._contexts[key] = replay_context(self.day_dir, self.baseline_dir, window, plan.rule)
        return self._contexts[key]


def replay_context(
    day_dir: Path, baseline_dir: Path | None, window: ContextWindow, rule: AlertRule, metrics_shift: float = 0.0
) -> IncidentContext:
    """What production would hand the analyzer for an alert of ``rule`` with this window.

    Knows nothing of any fault: the logs and spans stamped inside the window (from every minute
    file on disk that may hold some), metrics up to the window's end, and as the baseline the
    fault-free ``construct_data`` minute plus the metric history before the window.
    ``metrics_shift`` (fault-free replays only) reads the metrics that many seconds earlier and
    moves them onto the window, so a window's metrics can come from a time away from every fault.
    """
    notes = ReadNotes()
    degraded: list[str] = []
    between = (window.start, window.end)
    logs = read_logs(_minute_files(day_dir / "log", "log", window.start - 60.0, window.end + 60.0), notes, between)
    spans = read_spans(_minute_files(day_dir / "trace", "trace", window.start - 60.0, window.end + 60.0), notes, between)
    for kind, found in (("log lines", logs), ("spans", spans)):
        if not found:
            degraded.append(f"no {kind} inside the context window")
    day = _metric_day(day_dir / "metric")
    notes.merge(day.notes)
    past = ContextWindow(window.moment - metrics_shift, window.before_seconds, window.after_seconds)
    metrics = _shifted(day.series(past.start, past.end), metrics_shift)
    history = _shifted(day.series(*past.history(60.0 * BASELINE_MINUTES)), metrics_shift)
    if _points(history) < MIN_BASELINE_POINTS:
        degraded.append(f"metric history before the window is short ({_points(history)} points per series)")
    base_logs = read_logs(_csv_files(baseline_dir / "log", "*_log") if baseline_dir else [], notes)
    base_spans = read_spans(_csv_files(baseline_dir / "trace", "*_trace") if baseline_dir else [], notes)
    if not (base_logs or base_spans):
        degraded.append("no fault-free baseline minute (construct_data) for logs and spans")
    entry = _entry_service(spans) or _entry_service(base_spans) or (day.front.service if day.front else "frontend")
    alert = Alert(
        name=rule.name,
        severity=Severity(rule.severity) if rule.severity in Severity.__members__ else Severity.warning,
        timestamp=window.moment_time,
        labels={"alertname": rule.name, "service": entry, "severity": rule.severity},
        annotations={"summary": rule.summary.replace("{{ $labels.service }}", entry)},
    )
    return IncidentContext(
        alert=alert,
        window=Telemetry(logs=logs, metrics=metrics, spans=spans),
        baseline=Telemetry(logs=base_logs, metrics=history, spans=base_spans),
        degraded_reasons=[*degraded, *notes.reasons()],
    )


#: telemetry kinds an ablation can leave out of a replay (``rca eval nezha --without``)
TELEMETRY_KINDS = ("logs", "metrics", "spans")


def telemetry_kinds(kinds: Iterable[str]) -> list[str]:
    """The distinct kinds, sorted; ValueError naming one that is not a kind of telemetry."""
    chosen = sorted(set(kinds))
    unknown = [kind for kind in chosen if kind not in TELEMETRY_KINDS]
    if unknown:
        raise ValueError(f"unknown telemetry kind {unknown[0]!r}; choose from {', '.join(TELEMETRY_KINDS)}")
    return chosen


def without(context: IncidentContext, kinds: Iterable[str]) -> IncidentContext:
    """The same incident with some kinds of telemetry left out, in the window and the baseline alike.

    How the analyzer does on a system that logs little (Nezha's Online Boutique has metrics and
    traces, and few logs) can be seen on one that logs: replay it without its logs.
    """
    drop = {kind: [] for kind in telemetry_kinds(kinds)}
    if not drop:
        return context
    return context.model_copy(update={"window": context.window.model_copy(update=drop),
                                      "baseline": context.baseline.model_copy(update=drop) if context.baseline else None})


def _shifted(series: list[MetricSeries], seconds: float) -> list[MetricSeries]:
    if not seconds:
        return series
    return [MetricSeries(service=s.service, name=s.name, points=[(t + seconds, v) for t, v in s.points]) for s in series]


def _minute_files(folder: Path, kind: str, start: float, end: float) -> list[Path]:
    """The ``HH_MM_<kind>`` files on disk for the minutes from ``start`` to ``end`` (same day folder)."""
    first = int(start // 60) * 60
    found = []
    for minute in range(first, int(end) + 1, 60):
        name = datetime.fromtimestamp(minute, tz=timezone.utc).strftime("%H_%M")
        found += [folder / f"{name}_{kind}{suffix}" for suffix in _SUFFIXES if (folder / f"{name}_{kind}{suffix}").is_file()][:1]
    return found


def _at(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, tz=timezone.utc)


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
        for hour, index, entry, fault_list in _fault_entries(day_dir):
            try:
                inject_time = _utc(str(entry["inject_time"]))
                pod = str(entry["inject_pod"])
                kind = str(entry["inject_type"])
            except (KeyError, TypeError, ValueError) as exc:
                raise NezhaDatasetError(f"{fault_list}: case {index} of hour {hour} is malformed ({exc})") from exc
            baseline_dir = root / "construct_data" / day_dir.name
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


def _fault_entries(day_dir: Path) -> Iterable[tuple[str, int, Any, Path]]:
    fault_list = day_dir / f"{day_dir.name}-fault_list.json"
    if not fault_list.is_file():
        raise NezhaDatasetError(f"{fault_list}: fault list is missing")
    try:
        by_hour = json.loads(fault_list.read_text())
    except (OSError, ValueError) as exc:
        raise NezhaDatasetError(f"{fault_list}: not valid JSON ({exc})") from exc
    if not isinstance(by_hour, dict):
        raise NezhaDatasetError(f"{fault_list}: expected an object of hours to case lists")
    for hour, entries in sorted(by_hour.items()):
        for index, entry in enumerate(entries or []):
            yield hour, index, entry, fault_list


# ---------------------------------------------------------------- scoring


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rank_of(analysis: Analysis, service: str) -> int | None:
    """The rank of ``service`` among the hypotheses, ties ranked pessimistically: a hypothesis of the
    true service tied in confidence with others ranks after all of them. None when not named."""
    confidences = [h.confidence for h in analysis.hypotheses if h.service == service]
    if not confidences:
        return None
    best = max(confidences)
    above_or_tied = sum(1 for h in analysis.hypotheses if h.confidence >= best and h.service != service)
    return above_or_tied + 1


AS_AT_5_NOTE = "an analysis carries at most 3 hypotheses: AS@5 would equal AS@3, so it is not reported"


def score_cases(results: list[tuple[NezhaCase, Analysis, float]], plans: dict[str, AlertPlan] | None = None) -> dict[str, Any]:
    """AS@1 and AS@3, category and fault-type accuracy, each with counts and a Wilson 95 % interval,
    overall and per fault type; analysis time percentiles; and one row per case.

    AS@k counts a case when its true service ranks within the top k hypotheses (ties ranked
    pessimistically, see ``rank_of``). Category and fault-type accuracy count only the cases whose
    fault type the scorer knows (``CATEGORY_OF_FAULT``); a missing fault type is a miss.
    ``plans`` (case id -> ``AlertPlan``) adds when and why each case's alert fired.
    """
    plans = plans or {}
    rows: list[dict[str, Any]] = []
    seconds: list[float] = []
    for case, analysis, elapsed in results:
        ranked = sorted(analysis.hypotheses, key=lambda h: h.confidence, reverse=True)
        rank = rank_of(analysis, case.truth_service)
        category = analysis.classification.category.value
        known = case.truth_category != "unknown"
        predicted_type = ranked[0].fault_type if ranked else None
        seconds.append(elapsed)
        row = {
            "case": case.case_id,
            "truth_service": case.truth_service,
            "fault_type": case.fault_type,
            "predicted": [h.service for h in ranked],
            "confidences": [round(h.confidence, 3) for h in ranked],
            "rank": rank,
            "category": category,
            "category_ok": (category == case.truth_category) if known else None,
            "predicted_fault_type": predicted_type,
            "fault_type_ok": (predicted_type == case.truth_fault_type) if case.truth_fault_type else None,
            "degraded_reasons": list(analysis.degraded_reasons),
            "seconds": round(elapsed, 3),
        }
        if case.case_id in plans:
            row["alert"] = plans[case.case_id].describe()
        rows.append(row)

    p50 = _percentile(seconds, 0.5)
    p95 = _percentile(seconds, 0.95)
    result: dict[str, Any] = {"cases": len(rows), **_figures(rows)}
    result["as_at_5"] = None
    result["as_at_5_note"] = AS_AT_5_NOTE
    result["by_fault_type"] = {
        kind: {"cases": sum(1 for r in rows if r["fault_type"] == kind), **_figures([r for r in rows if r["fault_type"] == kind])}
        for kind in sorted({r["fault_type"] for r in rows})
    }
    if plans:
        described = [r["alert"] for r in rows if "alert" in r]
        result["alerts"] = {
            "fired_by_rules": sum(1 for a in described if a["reason"].startswith("rule ")),
            "rules_would_fire_within_case_data": sum(1 for a in described if a["rules_fire_after_seconds"] is not None),
            "at_delay": sum(1 for a in described if not a["reason"].startswith("rule ")),
        }
    result["degraded_cases"] = sum(1 for r in rows if r["degraded_reasons"])
    result["p50_seconds"] = round(p50, 3) if p50 is not None else None
    result["p95_seconds"] = round(p95, 3) if p95 is not None else None
    result["rows"] = rows
    return result


def _figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ranks = [r["rank"] for r in rows]
    categories = [r["category_ok"] for r in rows if r["category_ok"] is not None]
    types = [r["fault_type_ok"] for r in rows if r["fault_type_ok"] is not None]
    return {
        "as_at_1": share(sum(1 for k in ranks if k is not None and k <= 1), len(ranks)),
        "as_at_3": share(sum(1 for k in ranks if k is not None and k <= 3), len(ranks)),
        "category_accuracy": share(sum(categories), len(categories)),
        "fault_type_accuracy": share(sum(types), len(types)),
    }
