"""Hand-built evidence for the reasoner's unit tests: rows of (service, level, message, time)."""

from __future__ import annotations

from anomaly import AnomalyReport, Digest, LogRecord
from pipelines.reasoning.base import Evidence
from pipelines.schemas import Alert

Row = tuple[str, str, str, float]


def digest_of(rows: list[Row]) -> Digest:
    return Digest.from_records([LogRecord(message=m, timestamp=t, level=lv, service=s) for s, lv, m, t in rows])


def evidence_of(alert: Alert, window: list[Row], baseline: list[Row] | None = None) -> Evidence:
    """The window's rows (and the baseline's, when given) as the reasoner reads them."""
    return Evidence(alert=alert, summary="", digest=digest_of(window), report=AnomalyReport(),
                    baseline_digest=digest_of(baseline) if baseline is not None else None)
