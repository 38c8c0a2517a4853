"""Prometheus metrics of the analyzer: small functions every deployment and the Kafka reader call.

Why ``ray.util.metrics`` (and not ``prometheus-client``)
    Every Serve replica and the Kafka reader actor is its own worker process. A
    ``prometheus-client`` registry lives in one process, so an ingress ``/metrics`` would
    only ever see the ingress's own counters. ``ray.util.metrics`` records into Ray's core
    worker, and the metrics agent of each Ray node merges every worker of that node and
    serves them, next to Ray's and Serve's own metrics, on the node's *metrics export port*.
    One way everywhere: this module is the only place that defines an application metric.

How they are scraped (measured with Ray 2.60.0, ``ray.init(include_dashboard=False,
_metrics_export_port=P)``, a plain actor, a task and the driver each recording)
    * ``GET http://<node-ip>:<P>/metrics`` serves them with ``include_dashboard=False`` too;
      a value shows up about 10 s after it is recorded (Ray's report interval).
    * Ray adds the prefix ``ray_``: ``rca_incidents_total`` is scraped as
      ``ray_rca_incidents_total``. A name already ending in ``_total`` is not suffixed again.
    * Every series carries ``Component``, ``NodeAddress``, ``SessionName``, ``Version`` and
      ``WorkerId`` (one series per process): dashboards and rules aggregate with
      ``sum by (...)`` over the labels they mean, never over ``WorkerId``.
    * Histogram buckets are exact, but ``_sum`` is computed from bucket midpoints
      (observations 0.3 s and 3.0 s gave ``_sum`` 4.125 = 0.375 + 3.75): use
      ``histogram_quantile`` on buckets, not ``_sum / _count``, for latency.
    * Scrape target: the metrics export port of *every* Ray node (KubeRay: port 8080,
      named ``metrics``, on head and worker pods; ``kuberay/monitoring.yaml``). Locally
      (scripts/stack) and in docker compose: ``rca serve --metrics-port 8080``, one node.
    * ``render_latest()`` is what the ingress's ``GET /metrics`` returns: the page of the
      metrics agent of the ingress's own node (every process of that node, this one
      included). On one node that is everything; on several nodes, scrape the nodes.
    * Outside Ray (unit tests, a plain process) recording is a silent no-op.

The functions are cheap (a dict lookup and a C call), safe from any process, and never
raise: a metric must not take an analysis down. Label values are bounded (enum values, or
at most ``MAX_LABEL_VALUES`` distinct values per metric, then ``other``) so a caller passing
free text cannot explode the series count.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

from pipelines.schemas import Category, Severity

logger = logging.getLogger(__name__)

EXPORTED_PREFIX = "ray_"
"""What Ray's metrics agent puts in front of every name defined here."""

STAGE_BUCKETS_SECONDS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)
MAX_LABEL_VALUES = 50
MAX_LABEL_LENGTH = 64
OTHER = "other"
UNKNOWN = "unknown"

# name -> (kind, tag keys, help). The one list of application metrics; dashboards and
# alert rules may use these names (with EXPORTED_PREFIX) and Ray/Serve built-ins only.
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "rca_stage_duration_seconds": ("histogram", ("stage",), "Time one analysis spent in a stage."),
    "rca_incidents_total": ("counter", ("category", "severity"), "Incidents analyzed, by category and severity."),
    "rca_log_lines_total": ("counter", (), "Log lines received for analysis (before any drop)."),
    "rca_log_lines_dropped_total": ("counter", ("reason",), "Log lines dropped, by reason."),
    "rca_spans_dropped_total": ("counter", ("reason",),
                                "Trace spans the Kafka digesters left out (older than retention, incomplete, memory bound), by reason."),
    "rca_templates_mined_total": ("counter", (), "Log templates mined from the lines of analyses."),
    "rca_anomalies_flagged_total": ("counter", (), "Anomalies the scorer flagged."),
    "rca_llm_requests_total": ("counter", ("outcome",), "LLM requests, by outcome."),
    "rca_llm_tokens_total": ("counter", ("kind",), "LLM tokens used, kind prompt or completion."),
    "rca_kafka_consumer_lag_messages": ("gauge", ("topic", "partition"), "Messages behind the end of a partition."),
    "rca_dlq_messages_total": ("counter", ("reason",), "Messages sent to the dead-letter topic, by reason."),
    "rca_requests_rejected_total": ("counter", ("reason",), "Requests refused (too large, bad input), by reason."),
    "rca_notifications_total": ("counter", ("channel", "outcome"),
                                "Notification delivery attempts, by channel and outcome (delivered, retry, rejected, expired)."),
    "rca_notify_outbox_backlog": ("gauge", ("channel",), "Notifications waiting in the outbox, by channel."),
}

_CATEGORIES = frozenset(c.value for c in Category)
_SEVERITIES = frozenset(s.value for s in Severity)
_LABEL_CLEAN = re.compile(r"[^A-Za-z0-9_.:/\-]+")


def _ray_factory(name: str) -> Any:
    """Create the ray.util.metrics object for one entry of METRICS."""
    from ray.util import metrics as ray_metrics

    kind, tags, help_text = METRICS[name]
    if kind == "counter":
        return ray_metrics.Counter(name, description=help_text, tag_keys=tags)
    if kind == "gauge":
        return ray_metrics.Gauge(name, description=help_text, tag_keys=tags)
    return ray_metrics.Histogram(name, description=help_text, boundaries=list(STAGE_BUCKETS_SECONDS), tag_keys=tags)


_factory: Callable[[str], Any] = _ray_factory
_lock = threading.Lock()
_objects: dict[str, Any] = {}
_seen_labels: dict[str, set[str]] = {}
_failed: set[str] = set()
_node_url: str | None = None


def _metric(name: str) -> Any:
    metric = _objects.get(name)
    if metric is None:
        with _lock:
            metric = _objects.get(name)
            if metric is None:
                metric = _factory(name)
                _objects[name] = metric
    return metric


def _label(metric: str, value: object, allowed: frozenset[str] | None = None) -> str:
    """A bounded, printable label value: enum member, or one of the first MAX_LABEL_VALUES seen."""
    text = getattr(value, "value", value)
    text = _LABEL_CLEAN.sub("_", str(text).strip().lower())[:MAX_LABEL_LENGTH] or UNKNOWN
    if allowed is not None:
        return text if text in allowed else OTHER
    seen = _seen_labels.setdefault(metric, set())
    if text in seen:
        return text
    with _lock:
        if len(seen) >= MAX_LABEL_VALUES:
            return OTHER
        seen.add(text)
    return text


def _amount(value: object) -> float | None:
    """A finite number > 0, or None (counters only go up; zero is nothing to record)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def _guard(name: str, error: Exception) -> None:
    """Log a recording failure once per metric; never raise."""
    if name not in _failed:
        _failed.add(name)
        logger.warning("metric %s could not be recorded: %s: %s", name, type(error).__name__, error)


def _inc(name: str, value: object, tags: dict[str, str] | None = None) -> None:
    amount = _amount(value)
    if amount is None:
        return
    try:
        _metric(name).inc(amount, tags=tags)
    except Exception as error:  # noqa: BLE001 - a metric never takes a caller down
        _guard(name, error)


# ---------------------------------------------------------------- the functions others call


def observe_stage(stage: str, seconds: float) -> None:
    """Record how long one analysis spent in ``stage`` (summarize, score, reason, total, ...)."""
    try:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            return
        value = float(seconds)
        if not math.isfinite(value) or value < 0:
            return
        name = "rca_stage_duration_seconds"
        _metric(name).observe(value, tags={"stage": _label(name, stage)})
    except Exception as error:  # noqa: BLE001
        _guard("rca_stage_duration_seconds", error)


def count_incident(category: str, severity: str) -> None:
    """Count one analyzed incident; unknown categories/severities are counted as ``other``."""
    try:
        name = "rca_incidents_total"
        tags = {"category": _label(name, category, _CATEGORIES), "severity": _label(name, severity, _SEVERITIES)}
    except Exception as error:  # noqa: BLE001
        _guard("rca_incidents_total", error)
        return
    _inc(name, 1, tags)


def count_lines(lines_in: int, dropped: dict[str, int]) -> None:
    """Count lines received and, per reason (oversized, buffer_full, ...), lines dropped."""
    _inc("rca_log_lines_total", lines_in)
    _inc_by_reason("rca_log_lines_dropped_total", dropped)


def count_spans_dropped(dropped: dict[str, int]) -> None:
    """Count, per reason (older_than_retention, span_incomplete, span_bound), spans the digesters left out."""
    _inc_by_reason("rca_spans_dropped_total", dropped)


def _inc_by_reason(name: str, counts: dict[str, int]) -> None:
    try:
        items = list(counts.items()) if isinstance(counts, dict) else []
    except Exception as error:  # noqa: BLE001
        _guard(name, error)
        return
    for reason, count in items:
        try:
            tags = {"reason": _label(name, reason)}
        except Exception as error:  # noqa: BLE001
            _guard(name, error)
            continue
        _inc(name, count, tags)


def count_templates(n: int) -> None:
    """Count templates mined by one analysis."""
    _inc("rca_templates_mined_total", n)


def count_anomalies(n: int) -> None:
    """Count anomalies flagged by one analysis."""
    _inc("rca_anomalies_flagged_total", n)


def count_llm_request(outcome: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
    """Count one LLM request by outcome (ok, timeout, error, invalid, ...) and the tokens it used."""
    try:
        tags = {"outcome": _label("rca_llm_requests_total", outcome)}
    except Exception as error:  # noqa: BLE001
        _guard("rca_llm_requests_total", error)
        return
    _inc("rca_llm_requests_total", 1, tags)
    _inc("rca_llm_tokens_total", prompt_tokens, {"kind": "prompt"})
    _inc("rca_llm_tokens_total", completion_tokens, {"kind": "completion"})


def set_kafka_lag(topic: str, partition: int, lag: int) -> None:
    """Set how many messages the reader is behind the end of one partition (negative: ignored)."""
    name = "rca_kafka_consumer_lag_messages"
    try:
        if isinstance(lag, bool) or not isinstance(lag, (int, float)) or not math.isfinite(lag) or lag < 0:
            return
        tags = {"topic": _label(name, topic), "partition": _label(name, partition)}
        _metric(name).set(float(lag), tags=tags)
    except Exception as error:  # noqa: BLE001
        _guard(name, error)


def count_dlq(reason: str) -> None:
    """Count one message sent to the dead-letter topic."""
    try:
        tags = {"reason": _label("rca_dlq_messages_total", reason)}
    except Exception as error:  # noqa: BLE001
        _guard("rca_dlq_messages_total", error)
        return
    _inc("rca_dlq_messages_total", 1, tags)


def count_rejected(reason: str) -> None:
    """Count one refused request (too_large, bad_input, ...)."""
    try:
        tags = {"reason": _label("rca_requests_rejected_total", reason)}
    except Exception as error:  # noqa: BLE001
        _guard("rca_requests_rejected_total", error)
        return
    _inc("rca_requests_rejected_total", 1, tags)


def count_notification(channel: str, outcome: str) -> None:
    """Count one delivery attempt of a notification (pipelines/notify/worker.py)."""
    name = "rca_notifications_total"
    try:
        tags = {"channel": _label(name, channel), "outcome": _label(name, outcome)}
    except Exception as error:  # noqa: BLE001
        _guard(name, error)
        return
    _inc(name, 1, tags)


def set_outbox_backlog(channel: str, pending: int) -> None:
    """Set how many notifications of ``channel`` wait in the outbox."""
    name = "rca_notify_outbox_backlog"
    try:
        if isinstance(pending, bool) or not isinstance(pending, int) or pending < 0:
            return
        _metric(name).set(float(pending), tags={"channel": _label(name, channel)})
    except Exception as error:  # noqa: BLE001
        _guard(name, error)


# ---------------------------------------------------------------- exposition


def node_metrics_url() -> str | None:
    """The metrics page of the Ray node this process runs on, or None outside Ray."""
    global _node_url
    try:
        import ray

        if not ray.is_initialized():
            return None
        if _node_url is not None:
            return _node_url
        node_id = ray.get_runtime_context().get_node_id()
        for node in ray.nodes():
            if node.get("NodeID") == node_id and node.get("MetricsExportPort"):
                _node_url = f"http://{node['NodeManagerAddress']}:{int(node['MetricsExportPort'])}/metrics"
                return _node_url
    except Exception as error:  # noqa: BLE001
        logger.warning("cannot find this node's metrics export port: %s: %s", type(error).__name__, error)
    return None


def render_latest(timeout_seconds: float = 2.0) -> tuple[bytes, str]:
    """What ``GET /metrics`` on the ingress returns: (body, content type).

    Inside Ray: the page of this node's metrics agent (every worker of the node, Ray and
    Serve built-ins included). Outside Ray, or when the agent does not answer: this
    process's own ``prometheus-client`` default registry (process and Python metrics), with
    a comment line that says why the application metrics are missing. Blocking (one local
    HTTP call): call it from a sync route or a thread.
    """
    url = node_metrics_url()
    reason = "not running inside Ray"
    if url is not None:
        try:
            with urllib.request.urlopen(url, timeout=timeout_seconds) as response:  # noqa: S310 - our node
                content_type = response.headers.get("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                return response.read(), content_type
        except Exception as error:  # noqa: BLE001
            reason = f"Ray metrics agent at {url} did not answer: {type(error).__name__}"
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    note = f"# rca: application metrics unavailable here ({reason}); scrape each Ray node's metrics port\n"
    return note.encode() + generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _reset(factory: Callable[[str], Any] | None = None) -> None:
    """Forget created metrics (tests swap the factory for a recorder)."""
    global _factory, _node_url
    with _lock:
        _objects.clear()
        _seen_labels.clear()
        _failed.clear()
        _factory = factory or _ray_factory
        _node_url = None
