"""The contract of the analyzer: what comes in, what an analysis is, what the API returns.

One pydantic model per concept. The API, the database (JSONB columns), the CLI's
``--json`` output and the evaluation all read and write these models, so a field has
one name everywhere.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from anomaly.digest import Digest
from anomaly.pods import workload_of_pod

#: labels that name a service, most specific first: a rule's own ``service``; the app labels of
#: Kubernetes manifests, OTel and Prometheus' sanitised ``app.kubernetes.io/name``; the workload of
#: kube-state-metrics and Istio series; then a pod (read as its workload) and a container. ``job``
#: comes last: it names the scrape job (``kube-state-metrics``, ``kubernetes-pods``, Loki's
#: ``<namespace>/<app>``), which is the service only when nothing more specific is there.
SERVICE_LABELS = (
    "service", "service_name", "app", "app_kubernetes_io_name", "app.kubernetes.io/name", "k8s_app",
    "deployment", "statefulset", "daemonset", "workload", "destination_workload",
)


def service_from_labels(labels: dict[str, str]) -> str | None:
    """The service a set of Prometheus, Alertmanager or Loki labels is about (``SERVICE_LABELS``)."""
    for key in SERVICE_LABELS:
        if labels.get(key):
            return str(labels[key])
    if labels.get("pod"):
        return workload_of_pod(str(labels["pod"]))
    for key in ("container", "job"):
        if labels.get(key):
            return str(labels[key])
    return None

MAX_SUMMARY_WORDS = 200


class Category(str, Enum):
    """What kind of incident it is: the classification an on-call engineer routes by."""

    infrastructure = "infrastructure"
    application = "application"
    network = "network"
    security = "security"
    database = "database"
    external = "external"


class Severity(str, Enum):
    critical = "critical"
    warning = "warning"
    info = "info"
    unknown = "unknown"


class RiskLevel(str, Enum):
    low = "low"
    medium = "medium"
    high = "high"


def _utc(value: datetime) -> datetime:
    """Naive timestamps are taken as UTC, so every stored time is comparable."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------- alerts in


#: The times the database and the pipeline can hold (the contract's datetimes allow more).
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9999, 12, 30, tzinfo=timezone.utc)


def time_problem(where: str, value: datetime | None) -> str | None:
    """Why a time cannot be stored, naming where it was; None when it can."""
    if value is not None and not (EARLIEST <= value <= LATEST):
        return f"{where}: {value.isoformat()} is outside 1970-01-01 .. 9999-12-30"
    return None


#: A lone UTF-16 surrogate half: JSON's ``"\\ud800"`` decodes to one, but no UTF-8 text (PostgreSQL, Arrow,
#: a log file) can hold it. A pair is decoded to one code point, so any surrogate left is a lone one.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
#: Unicode's bidirectional controls (UAX #9: embeddings, overrides, isolates and the implicit marks):
#: in a name they make a dashboard show other text than the one stored (``web\u202eipa`` reads ``webapi``).
BIDI_CONTROL = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def text_problem(where: str, text: str, *, names: bool = False) -> str | None:
    """Why ``text`` is refused at ``where``: a lone surrogate, or (``names``: an identifier) a bidi control."""
    found = LONE_SURROGATE.search(text)
    if found:
        return f"{where} holds a lone UTF-16 surrogate (U+{ord(found.group()):04X}), which is not valid Unicode"
    found = BIDI_CONTROL.search(text) if names else None
    if found:
        return (f"{where} holds the bidirectional control character U+{ord(found.group()):04X}, which makes "
                "dashboards show another text than the one stored; names may not carry it")
    return None


def _check_texts(field: str, values: dict[str, str], *, names: bool = False) -> dict[str, str]:
    """Every key and value of a label or annotation map, checked with :func:`text_problem`."""
    for key, value in values.items():
        problem = text_problem(f"{field}: key {key!r}", key, names=names) or text_problem(
            f"{field}.{key}", value, names=names)
        if problem:
            raise ValueError(problem)
    return values


class Alert(BaseModel):
    """One alert, as our API takes it (and as an Alertmanager alert is converted to)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=200, description="alertname, e.g. HighCPUUsage")
    severity: Severity = Severity.unknown
    timestamp: datetime = Field(description="when the alert started firing (startsAt)")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"
    ends_at: datetime | None = None
    fingerprint: str | None = Field(default=None, max_length=200)

    @field_validator("severity", mode="before")
    @classmethod
    def _severity_or_unknown(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() not in Severity.__members__:
            return Severity.unknown
        return value.lower() if isinstance(value, str) else value

    @field_validator("labels", "annotations")
    @classmethod
    def _valid_unicode(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        # lone surrogates only: an alert already stored with a bidi control must still be readable
        return _check_texts(info.field_name or "labels", value)

    @field_validator("timestamp", "ends_at")
    @classmethod
    def _as_utc(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        value = _utc(value) if value else value
        problem = time_problem(info.field_name or "time", value)
        if problem:  # the database and the pipeline hold 1970..9999, on every path (API, Kafka, CLI)
            raise ValueError(problem)
        return value

    @property
    def service(self) -> str | None:
        """The service the alert is about, from the labels Prometheus rules usually set."""
        return service_from_labels(self.labels)

    def identity(self) -> str:
        """Alertmanager's fingerprint when given, otherwise a stable hash of name+labels."""
        if self.fingerprint:
            return self.fingerprint
        canonical = self.name + "\x00" + "\x00".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class AlertmanagerAlert(BaseModel):
    """A single alert inside Alertmanager's webhook payload (version 4)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = ""

    @field_validator("labels", "annotations")
    @classmethod
    def _valid_texts(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return _check_texts(info.field_name or "labels", value, names=info.field_name == "labels")

    @model_validator(mode="after")
    def _needs_alertname(self) -> "AlertmanagerAlert":
        if not self.labels.get("alertname"):
            raise ValueError("labels.alertname is required")
        ends = self.ends_at if self.ends_at is not None and self.ends_at.year > 1 else None  # "0001-01-01" = open
        problem = time_problem("startsAt", self.starts_at) or time_problem("endsAt", ends)
        if problem:
            raise ValueError(problem)
        return self

    def to_alert(self) -> Alert:
        ends_at = self.ends_at
        if ends_at is not None and ends_at.year <= 1:  # Alertmanager's "0001-01-01T00:00:00Z"
            ends_at = None
        return Alert(
            name=self.labels["alertname"],
            severity=self.labels.get("severity", "unknown"),
            timestamp=self.starts_at,
            labels=self.labels,
            annotations=self.annotations,
            status=self.status,
            ends_at=ends_at,
            fingerprint=self.fingerprint or None,
        )


class AlertmanagerWebhook(BaseModel):
    """Alertmanager's webhook body, version 4: a group of alerts sharing group labels."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: str = "4"
    group_key: str = Field(default="", alias="groupKey")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=1000,
        description="Alertmanager alerts; each is validated on its own (see valid_alerts), so one malformed "
        "alert is reported without losing the others of its group",
    )

    @field_validator("version")
    @classmethod
    def _version_4(cls, value: str) -> str:
        if value != "4":
            raise ValueError(f"webhook version {value!r} is not supported; Alertmanager sends version 4")
        return value

    def valid_alerts(self) -> tuple[list[AlertmanagerAlert], list[AlertRejection]]:
        """The group's alerts that are valid, and why each other one is not.

        Alertmanager does not resend a group it got a 4xx for, so rejecting a whole group for one
        bad alert would lose the good ones.
        """
        valid: list[AlertmanagerAlert] = []
        rejected: list[AlertRejection] = []
        for index, raw in enumerate(self.alerts):
            try:
                valid.append(AlertmanagerAlert.model_validate(raw))
            except ValidationError as exc:
                rejected.append(AlertRejection(index=index, error=describe_validation_error(exc, where=f"body.alerts.{index}", limit=3)))
        return valid, rejected


class AlertRejection(BaseModel):
    """An alert of a webhook group that was not taken, and why."""

    index: int
    error: str


def describe_validation_error(exc: ValidationError, *, where: str = "", empty: str = "value", limit: int = 10) -> str:
    """A pydantic error in one line a user can act on: ``field.path: what is wrong; ...``.

    ``where`` prefixes every path (``body.alerts.3``); ``empty`` names a path-less error.
    """
    parts = []
    for error in exc.errors()[:limit]:
        path = ".".join(str(p) for p in (where, *error.get("loc", ())) if p != "")
        parts.append(f"{path or empty}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


# ---------------------------------------------------------------- context


class LogEvent(BaseModel):
    """One log line with what a shipper (Vector, Fluent Bit, OTel) knows about it."""

    model_config = ConfigDict(extra="ignore")

    message: str
    timestamp: datetime | None = None
    service: str | None = None
    pod: str | None = None
    level: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


LogInput = Annotated[str | LogEvent, Field(union_mode="left_to_right")]


class MetricSeries(BaseModel):
    """One metric of one service over time (a Prometheus range-query result, flattened)."""

    service: str
    name: str = Field(description="e.g. cpu_usage_percent, memory_usage_percent, latency_p90_seconds")
    points: list[tuple[float, float]] = Field(description="(unix seconds, value) pairs")


class Span(BaseModel):
    """One trace span: enough to see which callee is slow or failing."""

    trace_id: str
    span_id: str
    parent_id: str | None = None
    service: str
    operation: str = ""
    start: float = Field(description="unix seconds")
    duration_ms: float
    error: bool = False


class Telemetry(BaseModel):
    """Logs, metrics and traces of one time range."""

    logs: list[LogInput] = Field(default_factory=list)
    metrics: list[MetricSeries] = Field(default_factory=list)
    spans: list[Span] = Field(default_factory=list)


class IncidentContext(BaseModel):
    """Everything the pipeline reads for one incident: the window, and a normal baseline if known."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    alert: Alert
    window: Telemetry = Field(default_factory=Telemetry)
    baseline: Telemetry | None = None
    degraded_reasons: list[str] = Field(default_factory=list, description="context sources that failed")
    # Lines already mined where they arrived (the Kafka digesters): joined with the logs' own digest.
    window_digest: Digest | None = Field(default=None, exclude=True)
    baseline_digest: Digest | None = Field(default=None, exclude=True)


def _plain_names(alert: Alert) -> Alert:
    """An incoming alert's name and labels carry no bidirectional control (see ``BIDI_CONTROL``)."""
    problem = text_problem("name", alert.name, names=True)
    if problem:
        raise ValueError(problem)
    _check_texts("labels", alert.labels, names=True)
    return alert


class AnalyzeRequest(BaseModel):
    """Body of ``POST /analyze``."""

    model_config = ConfigDict(extra="forbid")

    alert: Annotated[Alert, AfterValidator(_plain_names)]
    context_window: int = Field(default=300, ge=1, le=86_400, description="seconds of context before the alert")
    logs: list[LogInput] = Field(default_factory=list, description="log lines (text) or log events")
    metrics: list[MetricSeries] = Field(default_factory=list)
    spans: list[Span] = Field(default_factory=list)
    baseline: Telemetry | None = None
    degraded_reasons: list[Annotated[str, Field(max_length=2000)]] = Field(
        default_factory=list, max_length=100,
        description="what the caller's own reading of the context lost (skipped rows, ignored files); "
        "recorded on the analysis with the pipeline's own reasons")

    @field_validator("degraded_reasons")
    @classmethod
    def _valid_reasons(cls, value: list[str]) -> list[str]:
        for i, reason in enumerate(value):
            problem = text_problem(f"degraded_reasons.{i}", reason)
            if problem:
                raise ValueError(problem)
        return value


# ---------------------------------------------------------------- analysis out


class Classification(BaseModel):
    category: Category
    confidence: float = Field(ge=0.0, le=1.0)


class Hypothesis(BaseModel):
    cause: str = Field(min_length=1)
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: list[str] = Field(default_factory=list)
    category: Category
    service: str | None = None
    fault_type: str | None = Field(default=None, description="e.g. cpu_contention, network_delay, code_exception")


class RemediationStep(BaseModel):
    step: int = Field(ge=1)
    action: str
    command: str | None = None
    expected_outcome: str
    risk_level: RiskLevel
    source: str | None = Field(
        default=None, description="where the step came from: 'runbook:<file>' or 'playbook:<fault type>'"
    )


class AnalysisStats(BaseModel):
    lines_in: int = 0
    lines_dropped: dict[str, int] = Field(default_factory=dict, description="reason -> count")
    templates: int = 0
    anomalies: int = 0
    services: int = 0
    chunks: int = 0
    redactions: int = 0


class LLMUsage(BaseModel):
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    cost_usd: float | None = None


class Anomaly(BaseModel):
    """Something the scorer found unusual, with the lines behind it."""

    kind: Literal["template", "service", "time_bucket", "metric"]
    subject: str = Field(description="template text, service name, bucket start or metric name")
    score: float
    service: str | None = None
    detail: str = ""
    evidence: list[str] = Field(default_factory=list)


class EvidenceRef(BaseModel):
    """Which evidence item cites something: 0-based indexes into ``hypotheses`` and its ``evidence``."""

    hypothesis: int = Field(ge=0)
    evidence: int = Field(ge=0)


class CitedTemplate(BaseModel):
    """A log template an evidence item quotes, with its lines, so a reader can check the quote."""

    template_id: str
    text: str = Field(description="the template as mined, placeholders as <*>")
    services: dict[str, int] = Field(default_factory=dict, description="service -> lines in the window")
    count: int = Field(ge=0, description="lines in the window")
    baseline_count: int | None = Field(default=None, description="lines in the baseline; None: no baseline read")
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    onset: datetime | None = Field(default=None, description="where its rate rose (a change point), if it did")
    levels: dict[str, int] = Field(default_factory=dict)
    exception_types: dict[str, int] = Field(default_factory=dict)
    exemplars: list[str] = Field(default_factory=list, description="a few of its lines, cut short")
    cited_by: list[EvidenceRef] = Field(default_factory=list)


class CitedMetric(BaseModel):
    """A metric series of the window an evidence item names, with its numbers."""

    name: str
    service: str
    points: int = Field(ge=0, description="points in the window")
    peak: float | None = None
    peak_at: datetime | None = None
    median: float | None = None
    baseline_median: float | None = None
    cited_by: list[EvidenceRef] = Field(default_factory=list)


class CitedOperation(BaseModel):
    """A span operation of the window an evidence item names, with its spans' figures."""

    service: str
    operation: str
    spans: int = Field(ge=0)
    errors: int = Field(ge=0)
    median_ms: float | None = None
    baseline_spans: int = 0
    baseline_median_ms: float | None = None
    cited_by: list[EvidenceRef] = Field(default_factory=list)


class Citations(BaseModel):
    """What the hypotheses' evidence cites, stored with the analysis (``pipelines/citations.py``)."""

    templates: list[CitedTemplate] = Field(default_factory=list)
    metrics: list[CitedMetric] = Field(default_factory=list)
    operations: list[CitedOperation] = Field(default_factory=list)


class TimeRange(BaseModel):
    """A stretch of time that was read, and how many log lines it held."""

    start: datetime
    end: datetime
    lines: int = Field(ge=0)


def ranked(hypotheses: list[Hypothesis]) -> list[Hypothesis]:
    """Hypotheses in the order an analysis stores them: most confident first (stable for ties)."""
    return sorted(hypotheses, key=lambda h: h.confidence, reverse=True)


class Analysis(BaseModel):
    """The answer to one incident: the contract of DESIGN.md."""

    incident_id: str
    summary: str
    classification: Classification
    hypotheses: list[Hypothesis] = Field(min_length=2, max_length=3)
    remediation: list[RemediationStep] = Field(min_length=1)
    anomalies: list[Anomaly] = Field(default_factory=list)
    reasoner: str = Field(description="'evidence' or 'llm:<model>'")
    degraded: bool = False
    degraded_reasons: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per stage")
    stats: AnalysisStats = Field(default_factory=AnalysisStats)
    llm_usage: LLMUsage | None = None
    cited: Citations = Field(default_factory=Citations, description="what the evidence cites: templates, metrics, operations")
    onset: datetime | None = Field(default=None, description="earliest change point the top hypothesis' cited templates show")
    window_range: TimeRange | None = Field(default=None, description="the logs read for the incident")
    baseline_range: TimeRange | None = Field(default=None, description="the baseline logs compared against")
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @field_validator("summary")
    @classmethod
    def _short_summary(cls, value: str) -> str:
        words = value.split()
        if len(words) > MAX_SUMMARY_WORDS:
            return " ".join(words[:MAX_SUMMARY_WORDS])
        return value

    @model_validator(mode="after")
    def _ranked(self) -> "Analysis":
        self.hypotheses = ranked(self.hypotheses)
        return self


class Incident(BaseModel):
    """An incident as stored and listed: the alert that opened it and its latest analysis."""

    id: str
    alert_name: str
    service: str | None
    severity: Severity
    status: Literal["open", "resolved"]
    category: Category | None = None
    fingerprint: str
    started_at: datetime
    resolved_at: datetime | None = None
    created_at: datetime
    alert: Alert
    analysis: Analysis | None = None


class IncidentPage(BaseModel):
    items: list[Incident]
    page: int
    page_size: int
    total: int = Field(description="matching incidents, counted up to 10,000 (see total_capped)")
    total_capped: bool = Field(default=False, description="more than `total` incidents match")


class Stats(BaseModel):
    incidents: int
    by_category: dict[str, int]
    by_severity: dict[str, int]
    latency_p50_seconds: float | None
    latency_p95_seconds: float | None
    incidents_per_hour: list[dict[str, Any]]
    accuracy: Accuracy | None = Field(default=None, description="from operators' feedback (top-1 and top-3 confirmed)")


# ---------------------------------------------------------------- feedback and similar incidents


class FeedbackCreate(BaseModel):
    """Body of ``POST /api/incidents/{id}/feedback``: which hypothesis was right, or the real cause.

    Either ``rank`` (the 1-based rank of the right hypothesis in the latest analysis) or
    ``category`` and ``service`` (the real cause, when no hypothesis named it); never both.
    """

    model_config = ConfigDict(extra="forbid")

    rank: int | None = Field(default=None, description="1-based rank of the hypothesis that was right")
    category: Category | None = Field(default=None, description="the real cause's category, when no hypothesis was right")
    service: str | None = Field(default=None, min_length=1, max_length=200, description="the real cause's service")
    notes: str = Field(default="", max_length=4000, description="how it was resolved, for the next on-call")

    @field_validator("service", "notes")
    @classmethod
    def _valid_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        problem = text_problem(info.field_name or "text", value, names=info.field_name == "service") if value else None
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _rank_or_cause(self) -> "FeedbackCreate":
        if self.rank is not None and (self.category is not None or self.service is not None):
            raise ValueError("give either rank (the right hypothesis) or category and service (the real cause), not both")
        if self.rank is None and (self.category is None or self.service is None):
            raise ValueError("give rank (the right hypothesis), or both category and service (the real cause)")
        return self


class Feedback(BaseModel):
    """One operator's verdict on an incident's analysis, as stored; the latest one of an incident is in force."""

    id: int
    incident_id: str
    created_at: datetime
    actor: str
    rank: int | None = Field(description="the rank the operator named, if they named one")
    confirmed_rank: int | None = Field(description="rank of the hypothesis that named the confirmed cause; None: none did")
    category: Category = Field(description="the confirmed cause's category")
    service: str | None = Field(description="the confirmed cause's service")
    cause: str | None = Field(description="the confirmed hypothesis' cause, when a rank was given")
    notes: str = ""


class FeedbackList(BaseModel):
    """``GET /api/incidents/{id}/feedback``: every verdict, newest first; ``current`` is the one in force."""

    incident_id: str
    current: Feedback | None
    items: list[Feedback]


class Signature(BaseModel):
    """What identifies an analysis' kind of incident, stored with it (``pipelines/similarity.py``)."""

    category: Category
    services: list[str] = Field(default_factory=list)
    templates: list[str] = Field(default_factory=list)
    evidence_kinds: list[str] = Field(default_factory=list)


class SimilarIncident(BaseModel):
    """A past incident like this one, with what they share and what feedback confirmed about it."""

    incident_id: str
    alert_name: str
    service: str | None
    started_at: datetime
    status: Literal["open", "resolved"]
    category: Category
    top_cause: str | None
    similarity: float = Field(ge=0.0, le=1.0)
    shared_services: list[str] = Field(default_factory=list)
    shared_templates: list[str] = Field(default_factory=list)
    shared_evidence_kinds: list[str] = Field(default_factory=list)
    same_category: bool
    feedback: Feedback | None = None


class AccuracyCounts(BaseModel):
    """How often the confirmed cause was the first hypothesis (top-1) or among the three (top-3)."""

    feedback: int = Field(description="incidents with feedback")
    top1: int
    top3: int
    top1_rate: float | None
    top3_rate: float | None


class Accuracy(AccuracyCounts):
    """Accuracy from feedback, overall and by the confirmed cause's category."""

    by_category: dict[str, AccuracyCounts] = Field(default_factory=dict)
