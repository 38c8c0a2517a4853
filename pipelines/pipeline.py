"""One incident through the stages: summarize (fan-out) -> score -> reason -> Analysis.

The stages are given as async callables, so this module knows nothing of Ray: in
production they call Serve deployment handles (``deployments/ingress.py``); the same
class runs every path into the pipeline (HTTP, webhook, Kafka, CLI, evaluation).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from anomaly import AnomalyReport, Digest, LogRecord, MetricFrame, ScoredItem, digest_lines, summarize
from anomaly.engine import batches
from pipelines import citations, metrics
from pipelines.reasoning.base import Evidence, Verdict
from pipelines.reasoning.redaction import redact_analysis
from pipelines.schemas import (
    Analysis,
    AnalysisStats,
    Anomaly,
    IncidentContext,
    LogEvent,
    LogInput,
    MetricSeries,
    ranked,
)

# A chunk crosses process boundaries, so it is plain data: text lines or LogEvent dicts.
Chunk = list[str | dict]
MAX_ANOMALIES_ON_ANALYSIS = 20
MIN_CHUNK_LINES = 1_000


SummarizeChunk = Callable[[Chunk], Awaitable[Digest]]
ScoreAnomalies = Callable[[Digest, Digest | None, MetricFrame, MetricFrame | None], Awaitable[AnomalyReport]]
Reason = Callable[[Evidence], Awaitable[Verdict]]


def digest_chunk(chunk: Chunk, *, max_line_bytes: int = 65_536) -> Digest:
    """Mine one chunk of text lines and events into a Digest (the summarizer's work).

    What was dropped on the way (empty, binary, oversized) is counted in ``digest.dropped``.
    """
    texts = [item for item in chunk if isinstance(item, str)]
    digest = digest_lines(texts, max_line_bytes=max_line_bytes)
    dropped: dict[str, int] = {}
    records = [r for item in chunk if isinstance(item, dict) and (r := _record_from_event(item, max_line_bytes, dropped))]
    if records or dropped:
        events = Digest.from_records(records)
        events.count_dropped(dropped)
        digest = digest.merge(events)
    return digest


def _record_from_event(event: dict, max_line_bytes: int, dropped: dict[str, int]) -> LogRecord | None:
    message = str(event.get("message") or "")
    if not message.strip():
        dropped["empty"] = dropped.get("empty", 0) + 1
        return None
    if len(message.encode("utf-8", "replace")) > max_line_bytes:
        message = message.encode("utf-8", "replace")[:max_line_bytes].decode("utf-8", "ignore")
        dropped["truncated"] = dropped.get("truncated", 0) + 1
    timestamp = event.get("timestamp")
    level = event.get("level")
    return LogRecord(
        message=message,
        timestamp=float(timestamp) if isinstance(timestamp, (int, float)) else None,
        level=str(level).upper() if level else None,
        service=event.get("service"),
        pod=event.get("pod"),
        span_id=str(event["span_id"]).lower() if event.get("span_id") else None,
    )


#: Labels under which a shipper (OTel, Vector, Fluent Bit) hands over an event's span id.
SPAN_LABELS = ("span_id", "spanId", "span.id")


def to_chunk_items(logs: Sequence[LogInput]) -> list[str | dict]:
    """Lines and events as plain data; event timestamps become unix seconds."""
    items: list[str | dict] = []
    for entry in logs:
        if isinstance(entry, LogEvent):
            data = entry.model_dump(exclude={"labels"})
            data["timestamp"] = entry.timestamp.timestamp() if entry.timestamp else None
            span = next((entry.labels[k] for k in SPAN_LABELS if entry.labels.get(k)), None)
            if span:
                data["span_id"] = span
            items.append(data)
        else:
            items.append(entry)
    return items


def metric_frame(series: Sequence[MetricSeries]) -> MetricFrame:
    frame: MetricFrame = {}
    for s in series:
        frame.setdefault((s.service, s.name), []).extend(s.points)
    return frame


class AnalysisPipeline:
    """Runs the stages for one incident and assembles the Analysis."""

    def __init__(
        self,
        summarize_chunk: SummarizeChunk,
        score_anomalies: ScoreAnomalies,
        reason: Reason,
        *,
        chunk_lines: int = 20_000,
        min_chunks: int = 1,
    ) -> None:
        self._summarize_chunk = summarize_chunk
        self._score_anomalies = score_anomalies
        self._reason = reason
        self._chunk_lines = chunk_lines
        self._min_chunks = min_chunks

    async def digest(self, logs: Sequence[LogInput]) -> tuple[Digest, int]:
        """Fan the lines out over the summarizer replicas and merge what comes back.

        Chunks never cut a stack trace from its first line; returns the digest and the chunk count.
        """
        items = to_chunk_items(logs)
        # at least one chunk per summarizer replica once there is enough to share
        size = min(self._chunk_lines, max(MIN_CHUNK_LINES, -(-len(items) // self._min_chunks)))
        chunks = list(batches(items, size))  # type: ignore[arg-type]
        if not chunks:
            return Digest(), 0
        parts = await asyncio.gather(*(self._summarize_chunk(chunk) for chunk in chunks))
        return Digest.merge_all(parts), len(parts)

    async def analyze(self, incident_id: str, context: IncidentContext) -> Analysis:
        timings: dict[str, float] = {}
        started = time.perf_counter()

        t = time.perf_counter()
        window_logs = context.window.logs
        baseline_logs = context.baseline.logs if context.baseline else []
        (window, chunks), (baseline, _) = await asyncio.gather(self.digest(window_logs), self.digest(baseline_logs))
        window = _with_premined(window, bool(window_logs), context.window_digest)
        baseline = _with_premined(baseline, bool(baseline_logs), context.baseline_digest)
        baseline_digest = baseline if baseline_logs or baseline.lines else None
        timings["summarize"] = time.perf_counter() - t

        t = time.perf_counter()
        window_metrics = metric_frame(context.window.metrics)
        baseline_metrics = metric_frame(context.baseline.metrics) if context.baseline else None
        report = await self._score_anomalies(window, baseline_digest, window_metrics, baseline_metrics or None)
        flagged = report.flagged()
        summary = summarize(
            window, must_include=[i.template_id for i in flagged if i.template_id], max_words=200,
            baseline=baseline_digest, metrics=window_metrics, baseline_metrics=baseline_metrics or None,
        )
        timings["score"] = time.perf_counter() - t

        t = time.perf_counter()
        evidence = Evidence(
            alert=context.alert,
            summary=summary,
            digest=window,
            report=report,
            baseline_digest=baseline_digest,
            metrics=window_metrics,
            baseline_metrics=baseline_metrics,
            spans=context.window.spans,
            baseline_spans=context.baseline.spans if context.baseline else [],
        )
        verdict = await self._reason(evidence)
        timings["reason"] = time.perf_counter() - t
        # in the Analysis' order (it sorts by confidence), so evidence references index what is stored
        hypotheses = ranked(verdict.hypotheses[:3])
        cited = citations.cite(hypotheses, window, baseline_digest, window_metrics, baseline_metrics,
                               evidence.spans, evidence.baseline_spans)
        timings["total"] = time.perf_counter() - started

        degraded_reasons = [*context.degraded_reasons, *verdict.degraded_reasons]
        for stage, seconds in timings.items():
            metrics.observe_stage(stage, seconds)
        metrics.count_lines(window.lines, window.dropped)
        metrics.count_templates(len(window.templates))
        metrics.count_anomalies(len(flagged))
        # one redaction pass over everything that is stored and returned (README "Security")
        return redact_analysis(Analysis(
            incident_id=incident_id,
            summary=summary,
            classification=verdict.classification,
            hypotheses=hypotheses,
            remediation=verdict.remediation,
            anomalies=[_anomaly(item) for item in flagged[:MAX_ANOMALIES_ON_ANALYSIS]],
            reasoner=verdict.reasoner,
            degraded=bool(degraded_reasons),
            degraded_reasons=degraded_reasons,
            timings={k: round(v, 4) for k, v in timings.items()},
            stats=AnalysisStats(
                lines_in=window.lines,
                lines_dropped=window.dropped,
                templates=len(window.templates),
                anomalies=len(flagged),
                services=len(window.services),
                chunks=chunks,
                redactions=verdict.redactions,
            ),
            llm_usage=verdict.llm_usage,
            cited=cited,
            onset=citations.onset(cited),
            window_range=citations.time_range(window),
            baseline_range=citations.time_range(baseline_digest),
        ))


def _with_premined(mined: Digest, had_lines: bool, premined: Digest | None) -> Digest:
    """The lines' digest joined with one mined before (the Kafka digesters'): one digest, whatever the source."""
    if premined is None:
        return mined
    return Digest.merge_all([premined, mined]) if had_lines else premined


def _anomaly(item: ScoredItem) -> Anomaly:
    return Anomaly(
        kind=item.kind,  # type: ignore[arg-type]
        subject=item.subject,
        score=round(float(item.score), 4),
        service=item.service,
        detail=item.detail,
        evidence=list(item.evidence)[:5],
    )
