"""The outbox table (migration 004): written inside the store's transactions, read by the worker.

``Outbox.on_analysis`` and ``Outbox.on_resolve`` run on the connection of
``Store.save_analysis`` / ``Store.resolve``, inside their transaction: the analysis and its
notifications are committed together or not at all, so a crash between the two cannot lose
one. The unique (incident, channel, event) makes each incident state one message per channel
however often the analysis is stored again. The rest are the worker's queries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from pipelines.notify.channels import build_channels
from pipelines.notify.delivery import Attempt
from pipelines.notify.message import Notification, notification
from pipelines.notify.routing import NotifyRoute, route
from pipelines.schemas import Analysis
from pipelines.settings import Settings

_INSERT = (
    "INSERT INTO notification_outbox (incident_id, channel, event, message) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (incident_id, channel, event) DO NOTHING"
)


class Outbox:
    """Decides, in the store's transaction, which channels hear of an incident state, and queues it."""

    def __init__(self, channels: set[str], routes: list[NotifyRoute], public_url: str | None) -> None:
        self._channels = channels
        self._routes = routes
        self._public_url = public_url

    @classmethod
    def from_settings(cls, settings: Settings) -> "Outbox | None":
        """The outbox of the configured channels; None when no channel is configured (nothing is queued)."""
        channels = set(build_channels(settings))
        return cls(channels, settings.notify_routes, settings.public_url) if channels else None

    async def on_analysis(self, conn: asyncpg.Connection, incident_id: uuid.UUID, analysis: Analysis) -> int:
        """Queue the trigger of an analyzed incident (and its resolve if it already resolved); rows queued."""
        incident = await conn.fetchrow(
            "SELECT alert_name, service, severity, status, started_at, resolved_at FROM incidents WHERE id = $1",
            incident_id,
        )
        if incident is None:
            return 0
        channels = route(self._routes, self._channels, analysis.classification.category.value,
                         incident["severity"], incident["service"])
        message = notification(analysis, alert_name=incident["alert_name"], service=incident["service"],
                               severity=incident["severity"], started_at=incident["started_at"],
                               public_url=self._public_url)
        queued = 0
        for channel in channels:
            queued += await _queue(conn, incident_id, channel, message)
            if incident["status"] == "resolved":  # resolved before the analysis was stored
                queued += await _queue(conn, incident_id, channel, message.resolved(incident["resolved_at"]))
        return queued

    async def on_resolve(self, conn: asyncpg.Connection, incident_id: uuid.UUID, resolved_at: datetime) -> int:
        """Queue the resolve for every channel that was told of the trigger; rows queued."""
        triggers = await conn.fetch(
            "SELECT channel, message FROM notification_outbox WHERE incident_id = $1 AND event = 'trigger' ORDER BY id",
            incident_id,
        )
        queued = 0
        for row in triggers:
            message = Notification.model_validate(row["message"]).resolved(resolved_at)
            queued += await _queue(conn, incident_id, row["channel"], message)
        return queued


async def _queue(conn: asyncpg.Connection, incident_id: uuid.UUID, channel: str, message: Notification) -> int:
    status = await conn.execute(_INSERT, incident_id, channel, message.event, message.model_dump(mode="json"))
    return int(status.rsplit(" ", 1)[-1])


class DeliveryAttempt(BaseModel):
    """One try to deliver a notification, as recorded."""

    attempt: int
    at: datetime
    outcome: str = Field(description="delivered, retry, rejected or expired")
    http_status: int | None = None
    reason: str = Field(description="the receiver's answer or the network error; secrets scrubbed")
    retry_after_seconds: float | None = None
    next_attempt_at: datetime | None = None


class NotificationDelivery(BaseModel):
    """What an incident's state was told to one channel, and how it went (``GET /api/incidents/{id}/notifications``)."""

    channel: str
    event: str = Field(description="trigger or resolve")
    status: str = Field(description="pending, delivered, rejected or expired")
    attempts: list[DeliveryAttempt]
    created_at: datetime
    finished_at: datetime | None = None


# ---------------------------------------------------------------- the worker's side


@dataclass(frozen=True)
class OutboxRow:
    id: int
    incident_id: str
    channel: str
    event: str
    message: Notification
    attempts: int
    created_at: datetime


async def claim(conn: asyncpg.Connection, channels: list[str], limit: int, lease_seconds: float) -> list[OutboxRow]:
    """Lease up to ``limit`` due rows of ``channels``, oldest first.

    A row waits while an earlier row of the same incident and channel is pending (a resolve is
    never sent before its trigger). Leased rows are invisible to other workers for
    ``lease_seconds``; a worker that dies mid-send leaves them to be claimed again then.
    """
    rows = await conn.fetch(
        "UPDATE notification_outbox o SET locked_until = now() + make_interval(secs => $3)"
        " WHERE o.id IN (SELECT c.id FROM notification_outbox c WHERE c.status = 'pending'"
        "   AND c.next_attempt_at <= now() AND (c.locked_until IS NULL OR c.locked_until < now())"
        "   AND c.channel = ANY($1::text[])"
        "   AND NOT EXISTS (SELECT 1 FROM notification_outbox e WHERE e.incident_id = c.incident_id"
        "                   AND e.channel = c.channel AND e.id < c.id AND e.status = 'pending')"
        "   ORDER BY c.next_attempt_at, c.id LIMIT $2 FOR UPDATE SKIP LOCKED)"
        " RETURNING o.id, o.incident_id, o.channel, o.event, o.message, o.attempts, o.created_at",
        channels, limit, float(lease_seconds),
    )
    return [OutboxRow(id=r["id"], incident_id=str(r["incident_id"]), channel=r["channel"], event=r["event"],
                      message=Notification.model_validate(r["message"]), attempts=r["attempts"],
                      created_at=r["created_at"]) for r in sorted(rows, key=lambda r: r["id"])]


async def record(conn: asyncpg.Connection, row: OutboxRow, attempt: Attempt, *, status: str,
                 retry_in_seconds: float | None) -> None:
    """Write one attempt and the row's new state (``status``: pending, delivered, rejected, expired)."""
    number = row.attempts + 1
    async with conn.transaction():
        next_at = await conn.fetchval(
            "UPDATE notification_outbox SET attempts = $2, status = $3, locked_until = NULL, last_status = $4,"
            " last_error = $5, next_attempt_at = CASE WHEN $6::float8 IS NULL THEN next_attempt_at"
            "   ELSE now() + make_interval(secs => $6::float8) END,"
            " finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END"
            " WHERE id = $1 RETURNING next_attempt_at",
            row.id, number, status, attempt.status,
            None if attempt.outcome == "delivered" else attempt.reason, retry_in_seconds,
        )
        await conn.execute(
            "INSERT INTO notification_attempts (outbox_id, attempt, outcome, http_status, reason, retry_after_seconds,"
            " next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            row.id, number, attempt.outcome if status != "expired" else "expired", attempt.status, attempt.reason,
            attempt.retry_after_seconds, next_at if status == "pending" else None,
        )


async def backlog(conn: asyncpg.Connection) -> dict[str, int]:
    """Pending rows by channel."""
    rows = await conn.fetch("SELECT channel, count(*) AS n FROM notification_outbox WHERE status = 'pending' GROUP BY 1")
    return {r["channel"]: r["n"] for r in rows}


async def deliveries(conn: asyncpg.Connection, incident_id: str) -> list[dict[str, Any]]:
    """An incident's outbox rows with their attempts, oldest first (what was told, where, and how it went)."""
    rows = await conn.fetch(
        "SELECT o.id, o.channel, o.event, o.status, o.attempts, o.last_status, o.last_error, o.created_at,"
        " o.finished_at, COALESCE(jsonb_agg(jsonb_build_object('attempt', a.attempt, 'outcome', a.outcome,"
        "  'http_status', a.http_status, 'reason', a.reason, 'retry_after_seconds', a.retry_after_seconds,"
        "  'next_attempt_at', a.next_attempt_at, 'at', a.at) ORDER BY a.attempt) FILTER (WHERE a.id IS NOT NULL),"
        "  '[]'::jsonb) AS tries"
        " FROM notification_outbox o LEFT JOIN notification_attempts a ON a.outbox_id = o.id"
        " WHERE o.incident_id = $1 GROUP BY o.id ORDER BY o.id",
        uuid.UUID(incident_id),
    )
    return [dict(r) for r in rows]


async def incident_deliveries(conn: asyncpg.Connection, incident_id: str) -> list[NotificationDelivery]:
    """``deliveries`` as the API shows them."""
    return [NotificationDelivery(channel=r["channel"], event=r["event"], status=r["status"],
                                 attempts=[DeliveryAttempt.model_validate(t) for t in r["tries"]],
                                 created_at=r["created_at"], finished_at=r["finished_at"])
            for r in await deliveries(conn, incident_id)]
