"""From an alert to a stored, analyzed incident.

Every entry point (``POST /analyze``, the Alertmanager webhook, the Kafka reader, the CLI,
the evaluation) goes through ``IncidentService``: record the alert as an incident, gather
its context, run the pipeline, store the analysis.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from pipelines import metrics
from pipelines.context_window import DEFAULT_AFTER_SECONDS, ContextWindow
from pipelines.pipeline import AnalysisPipeline
from pipelines.schemas import Alert, AnalyzeRequest, Analysis, IncidentContext, Telemetry
from pipelines.store import Store

log = logging.getLogger(__name__)

# (alert, start, end) -> telemetry from external sources (Loki, Prometheus) and what failed.
GatherContext = Callable[[Alert, datetime, datetime], Awaitable[tuple[Telemetry, list[str]]]]


class IncidentService:
    def __init__(
        self,
        store: Store,
        pipeline: AnalysisPipeline,
        *,
        context_window_seconds: int,
        gather_context: GatherContext | None = None,
        context_wait_seconds: float = DEFAULT_AFTER_SECONDS,
    ) -> None:
        self._store = store
        self._pipeline = pipeline
        self._window = context_window_seconds
        self._gather = gather_context
        self._after = context_wait_seconds

    async def analyze_request(self, request: AnalyzeRequest) -> Analysis:
        """``POST /analyze``: always a fresh analysis of the given alert and context."""
        incident, _ = await self._store.record_alert(request.alert)
        window = Telemetry(logs=request.logs, metrics=request.metrics, spans=request.spans)
        context = await self._context(request.alert, window, request.baseline, request.context_window)
        analysis = await self._pipeline.analyze(incident.id, context)
        await self._store.save_analysis(incident.id, analysis)
        metrics.count_incident(analysis.classification.category.value, request.alert.severity.value)
        return analysis

    async def process_alert(
        self, alert: Alert, window: Telemetry | None = None, delivery: str | None = None, baseline: Telemetry | None = None
    ) -> dict:
        """An alert from Alertmanager or Kafka: idempotent, safe to redeliver.

        A resolved alert closes its incident. A firing alert is analyzed once per incident;
        a redelivery or a repeat finds the stored incident and its analysis. ``delivery`` (Kafka's
        topic:partition:offset) tells a retry of one delivery from a repeat of the alert.
        """
        if alert.status == "resolved":
            incident = await self._store.resolve(alert)
            if incident is None:
                return {"incident_id": None, "created": False, "analyzed": False, "status": "unknown"}
            return {"incident_id": incident.id, "created": False, "analyzed": False, "status": incident.status}
        incident, created = await self._store.record_alert(alert, delivery=delivery)
        analyzed = False
        if created or not await self._store.has_analysis(incident.id):
            context = await self._context(alert, window or Telemetry(), baseline, self._window)
            analysis = await self._pipeline.analyze(incident.id, context)
            await self._store.save_analysis(incident.id, analysis)
            metrics.count_incident(analysis.classification.category.value, alert.severity.value)
            analyzed = True
        return {"incident_id": incident.id, "created": created, "analyzed": analyzed, "status": incident.status}

    async def _context(
        self, alert: Alert, window: Telemetry, baseline: Telemetry | None, window_seconds: int
    ) -> IncidentContext:
        degraded: list[str] = []
        if self._gather is not None:
            span = ContextWindow.at(alert.timestamp, window_seconds, self._after)
            fetched, degraded = await self._gather(alert, span.start_time, span.end_time)
            window = Telemetry(
                logs=[*window.logs, *fetched.logs],
                metrics=[*window.metrics, *fetched.metrics],
                spans=[*window.spans, *fetched.spans],
            )
        return IncidentContext(alert=alert, window=window, baseline=baseline, degraded_reasons=degraded)
