"""The audit trail: who did what, when, from where, with what outcome.

Two kinds of rows go to the append-only ``audit_log`` table:
- one per API call (``action = "request"``), with the HTTP status answered, written by the
  ingress once the answer is known;
- one per change (``incident.open``, ``incident.join``, ``incident.resolve``, ``analysis.save``,
  ``api_key.create``, ``api_key.revoke``), written by the store in the same transaction as the
  change, so a change without its audit row cannot exist. ``status`` is NULL on these rows.

Who is acting travels with the request as an :class:`AuditContext` in a context variable
(:func:`bind`), so the store finds it however deep the call (``IncidentService``, background
tasks of the webhook, which copy the context when created). Work started by no request (the
Kafka reader) is recorded as the ``system`` actor.

An analysis row records which model saw which redacted context: the reasoner, the model,
the number of redactions and a SHA-256 of the redacted summary and evidence the reasoner
(and the LLM's prompt) was built from.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from contextvars import ContextVar, Token
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from pipelines.reasoning.redaction import redact_value
from pipelines.schemas import Analysis

MAX_DETAIL_CHARS = 4000


class AuditContext(BaseModel):
    """Who acts and through what: the part of an audit row shared by one request's rows."""

    actor: str = Field(max_length=200)
    actor_kind: str = Field(description="jwt, api_key, webhook, local, cli, system or anonymous")
    key_id: str | None = None
    role: str | None = None
    client: str | None = Field(default=None, max_length=100)
    method: str | None = None
    route: str | None = Field(default=None, max_length=300)
    request_id: str | None = None


SYSTEM = AuditContext(actor="system", actor_kind="system")


class AuditEntry(BaseModel):
    """One row to append."""

    context: AuditContext
    action: str = Field(max_length=100)
    incident_id: str | None = None
    status: int | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class AuditRecord(BaseModel):
    """One row as read back (``GET /api/audit``)."""

    id: int
    at: datetime
    request_id: str | None
    actor: str
    actor_kind: str
    key_id: str | None
    role: str | None
    client: str | None
    method: str | None
    route: str | None
    action: str
    incident_id: str | None
    status: int | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditRecord]
    page: int
    page_size: int
    total: int


_current: ContextVar[AuditContext | None] = ContextVar("rca_audit_context", default=None)


def bind(context: AuditContext) -> Token:
    """Make ``context`` the actor of every change made from here on in this task (and its children)."""
    return _current.set(context)


def unbind(token: Token) -> None:
    _current.reset(token)


def current() -> AuditContext:
    """The actor of the running request, or :data:`SYSTEM`."""
    return _current.get() or SYSTEM


def new_request_id() -> str:
    return str(uuid.uuid4())


def entry(action: str, *, context: AuditContext | None = None, incident_id: str | None = None,
          status: int | None = None, detail: dict[str, Any] | None = None) -> AuditEntry:
    """An entry for ``action`` by ``context`` (default: the current actor); the detail is redacted and bounded."""
    return AuditEntry(
        context=context or current(),
        action=action,
        incident_id=incident_id,
        status=status,
        detail=bounded_detail(detail or {}),
    )


def bounded_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """Redacted (the audit log keeps no secret either) and at most :data:`MAX_DETAIL_CHARS` of JSON."""
    cleaned, _ = redact_value(detail)
    text = json.dumps(cleaned, default=str)
    if len(text) <= MAX_DETAIL_CHARS:
        return json.loads(text)
    return {"truncated": True, "keys": sorted(str(k) for k in cleaned)[:50]}


def analysis_detail(analysis: Analysis) -> dict[str, Any]:
    """Which model saw which redacted context, for the ``analysis.save`` row."""
    context = {
        "summary": analysis.summary,
        "anomalies": [a.model_dump(mode="json", include={"subject", "service", "evidence"}) for a in analysis.anomalies],
        "evidence": [h.evidence for h in analysis.hypotheses],
    }
    digest = hashlib.sha256(json.dumps(context, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    usage = analysis.llm_usage
    return {
        "reasoner": analysis.reasoner,
        "model": usage.model if usage else None,
        "llm_prompt_tokens": usage.prompt_tokens if usage else 0,
        "redactions": analysis.stats.redactions,
        "lines_in": analysis.stats.lines_in,
        "context_sha256": digest,
        "degraded": analysis.degraded,
    }


__all__ = [
    "AuditContext",
    "AuditEntry",
    "AuditPage",
    "AuditRecord",
    "SYSTEM",
    "analysis_detail",
    "bind",
    "bounded_detail",
    "current",
    "entry",
    "new_request_id",
    "unbind",
]
