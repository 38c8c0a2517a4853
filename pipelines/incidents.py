"""From an alert to a stored, analyzed incident.

Every entry point (``POST /analyze``, the Alertmanager webhook, the Kafka reader, the CLI,
the evaluation) goes through ``IncidentService``: record the alert as an incident, gather
its context, run the pipeline, store the analysis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from anomaly.intake import EARLIEST_SECONDS, MAX_FUTURE_SECONDS
from pipelines import metrics
from pipelines.context_window import DEFAULT_AFTER_SECONDS, ContextWindow
from pipelines.pipeline import AnalysisPipeline
from pipelines.schemas import LONE_SURROGATE, Alert, AnalyzeRequest, Analysis, IncidentContext, LogEvent, LogInput, Telemetry
from pipelines.store import Store

log = logging.getLogger(__name__)

# (alert, start, end) -> telemetry from external sources (Loki, Prometheus) and what failed.
GatherContext = Callable[[Alert, datetime, datetime], Awaitable[tuple[Telemetry, list[str]]]]
# A new analysis with what past incidents teach (``pipelines.feedback.recall``), before it is stored.
Recall = Callable[[Analysis], Awaitable[Analysis]]


def _repaired(text: str | None) -> str | None:
    return LONE_SURROGATE.sub("\ufffd", text) if text and LONE_SURROGATE.search(text) else text


def repair_logs(logs: list[LogInput], repairs: dict[str, int]) -> list[LogInput]:
    """``logs`` as the intake can read them, each repair counted in ``repairs`` (reason -> lines).

    Log text is kept, as the intake keeps lines of undecodable bytes: a lone UTF-16 surrogate
    (JSON's ``"\\ud800"``) becomes U+FFFD (``undecodable``); an event's time before 1970 or more
    than a day ahead is dropped from the event (``timestamp_out_of_range``), as the intake
    does for the times text lines carry. Clean input is returned as it is (one scan).
    """
    latest = time.time() + MAX_FUTURE_SECONDS
    out: list[LogInput] = []
    for entry in logs:
        if isinstance(entry, str):
            if LONE_SURROGATE.search(entry):
                repairs["undecodable"] = repairs.get("undecodable", 0) + 1
                entry = _repaired(entry) or ""
            out.append(entry)
            continue
        texts = (entry.message, entry.service or "", entry.pod or "", entry.level or "", *entry.labels, *entry.labels.values())
        update: dict = {}
        if LONE_SURROGATE.search("\n".join(texts)):
            repairs["undecodable"] = repairs.get("undecodable", 0) + 1
            update = {k: _repaired(getattr(entry, k)) for k in ("message", "service", "pod", "level")}
            update["labels"] = {_repaired(k) or "": _repaired(v) or "" for k, v in entry.labels.items()}
        if entry.timestamp is not None and not EARLIEST_SECONDS <= entry.timestamp.timestamp() <= latest:
            repairs["timestamp_out_of_range"] = repairs.get("timestamp_out_of_range", 0) + 1
            update["timestamp"] = None
        out.append(entry.model_copy(update=update) if update else entry)
    return out


def _repaired_telemetry(telemetry: Telemetry | None, repairs: dict[str, int]) -> Telemetry | None:
    if telemetry is None or not telemetry.logs:
        return telemetry
    return telemetry.model_copy(update={"logs": repair_logs(telemetry.logs, repairs)})


class IncidentService:
    def __init__(
        self,
        store: Store,
        pipeline: AnalysisPipeline,
        *,
        context_window_seconds: int,
        gather_context: GatherContext | None = None,
        context_wait_seconds: float = DEFAULT_AFTER_SECONDS,
        recall: Recall | None = None,
    ) -> None:
        self._store = store
        self._pipeline = pipeline
        self._window = context_window_seconds
        self._gather = gather_context
        self._after = context_wait_seconds
        self._recall = recall

    async def analyze_request(self, request: AnalyzeRequest) -> Analysis:
        """``POST /analyze``: always a fresh analysis of the given alert and context.

        The request's ``degraded_reasons`` (what the caller's own reading of the data lost) are
        recorded on the analysis with those of the configured sources.
        """
        incident, _ = await self._store.record_alert(request.alert)
        window = Telemetry(logs=request.logs, metrics=request.metrics, spans=request.spans)
        context = await self._context(request.alert, window, request.baseline, request.context_window,
                                      request.degraded_reasons)
        return await self._analyze(incident.id, context)

    async def process_alert(
        self, alert: Alert, window: Telemetry | None = None, delivery: str | None = None, baseline: Telemetry | None = None,
        *, streamed: IncidentContext | None = None,
    ) -> dict:
        """An alert from Alertmanager or Kafka: idempotent, safe to redeliver.

        A resolved alert closes its incident. A firing alert is analyzed once per incident;
        a redelivery or a repeat finds the stored incident and its analysis. ``delivery`` (Kafka's
        topic:partition:offset) tells a retry of one delivery from a repeat of the alert.
        ``streamed`` is the Kafka reader's context (merged digests, spans, what its bound cut);
        the configured sources are gathered beside it.
        """
        if streamed is not None:
            window, baseline = streamed.window, streamed.baseline
        if alert.status == "resolved":
            incident = await self._store.resolve(alert)
            if incident is None:
                return {"incident_id": None, "created": False, "analyzed": False, "status": "unknown"}
            return {"incident_id": incident.id, "created": False, "analyzed": False, "status": incident.status}
        incident, created = await self._store.record_alert(alert, delivery=delivery)
        analyzed = False
        if created or not await self._store.has_analysis(incident.id):
            context = await self._context(alert, window or Telemetry(), baseline, self._window,
                                          streamed.degraded_reasons if streamed else None)
            if streamed is not None:
                context = context.model_copy(update={"window_digest": streamed.window_digest,
                                                     "baseline_digest": streamed.baseline_digest})
            await self._analyze(incident.id, context)
            analyzed = True
        return {"incident_id": incident.id, "created": created, "analyzed": analyzed, "status": incident.status}

    async def _analyze(self, incident_id: str, context: IncidentContext) -> Analysis:
        """Repair the context's log lines (counted), run the pipeline, store and count the analysis."""
        repairs: dict[str, int] = {}
        window = _repaired_telemetry(context.window, repairs)
        baseline = _repaired_telemetry(context.baseline, repairs)
        if repairs:
            context = context.model_copy(update={"window": window, "baseline": baseline})
        analysis = await self._pipeline.analyze(incident_id, context)
        if repairs:  # counted with the intake's own repairs and drops, on the analysis and on /metrics
            dropped = dict(analysis.stats.lines_dropped)
            for reason, n in repairs.items():
                dropped[reason] = dropped.get(reason, 0) + n
            analysis.stats.lines_dropped = dropped
            metrics.count_lines(0, repairs)
        if self._recall is not None:
            analysis = await self._recall(analysis)
        await self._store.save_analysis(incident_id, analysis)
        metrics.count_incident(analysis.classification.category.value, context.alert.severity.value)
        return analysis

    async def _context(
        self, alert: Alert, window: Telemetry, baseline: Telemetry | None, window_seconds: int,
        reasons: list[str] | None = None,
    ) -> IncidentContext:
        degraded: list[str] = list(reasons or [])
        if self._gather is not None:
            span = ContextWindow.at(alert.timestamp, window_seconds, self._after)
            fetched, failed = await self._gather(alert, span.start_time, span.end_time)
            degraded += failed
            window = Telemetry(
                logs=[*window.logs, *fetched.logs],
                metrics=[*window.metrics, *fetched.metrics],
                spans=[*window.spans, *fetched.spans],
            )
        return IncidentContext(alert=alert, window=window, baseline=baseline, degraded_reasons=degraded)
