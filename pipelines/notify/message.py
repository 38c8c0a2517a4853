"""What a notification says, taken once from the incident and its analysis.

The outbox stores this ``Notification`` (never a rendered request: the channels' secrets,
a routing key or a webhook URL, are added only when it is sent), so a message delivered after
a restart or a day of retries says what the analysis said when it was stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from pipelines.schemas import Analysis

Event = Literal["trigger", "resolve"]

#: evidence lines and summaries are cut to this many characters in a notification
MAX_TEXT = 500


def _cut(text: str | None, limit: int = MAX_TEXT) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Notification(BaseModel):
    """One incident state (triggered or resolved) as every channel renders it."""

    incident_id: str
    event: Event
    alert_name: str
    service: str | None
    severity: str
    started_at: datetime
    resolved_at: datetime | None = None
    category: str
    category_confidence: float
    summary: str
    top_cause: str
    top_service: str | None
    top_confidence: float
    first_evidence: str | None
    first_step: str | None
    first_command: str | None
    reasoner: str
    link: str | None

    def resolved(self, at: datetime | None) -> "Notification":
        """The same message for the resolve: the same shape, the event and the time changed."""
        return self.model_copy(update={"event": "resolve", "resolved_at": at})


def incident_link(public_url: str | None, incident_id: str) -> str | None:
    """The incident's page (``/ui/incidents/{id}``) under ``RCA_PUBLIC_URL``; None when it is not set."""
    return f"{public_url.rstrip('/')}/ui/incidents/{incident_id}" if public_url else None


def notification(
    analysis: Analysis,
    *,
    alert_name: str,
    service: str | None,
    severity: str,
    started_at: datetime,
    public_url: str | None,
) -> Notification:
    """The trigger message of an analyzed incident."""
    top = analysis.hypotheses[0]
    step = analysis.remediation[0]
    return Notification(
        incident_id=analysis.incident_id,
        event="trigger",
        alert_name=alert_name,
        service=service,
        severity=severity,
        started_at=started_at,
        category=analysis.classification.category.value,
        category_confidence=analysis.classification.confidence,
        summary=_cut(analysis.summary, 1500) or "",
        top_cause=_cut(top.cause) or "",
        top_service=top.service,
        top_confidence=top.confidence,
        first_evidence=_cut(top.evidence[0]) if top.evidence else None,
        first_step=_cut(step.action),
        first_command=_cut(step.command),
        reasoner=analysis.reasoner,
        link=incident_link(public_url, analysis.incident_id),
    )
