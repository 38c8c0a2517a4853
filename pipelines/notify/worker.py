"""The delivery worker: drains the outbox to the channels, with retries, and records every attempt.

It runs as an asyncio task of the ingress replica (``start``/``stop``); any number of them
may run on one database, since a row is leased (``FOR UPDATE SKIP LOCKED``) before it is
sent. It holds its own small connection pool, so a slow receiver never holds the API's
connections. Nothing is in memory that the outbox does not hold: a worker that stops (a
restart, a crash) leaves pending rows for the next one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from datetime import datetime, timezone

import asyncpg
import httpx

from pipelines import metrics
from pipelines.notify import outbox
from pipelines.notify.channels import Channel, build_channels
from pipelines.notify.delivery import Attempt, attempt, backoff_seconds, scrub
from pipelines.settings import Settings
from pipelines.tls import http_verify

log = logging.getLogger(__name__)

BATCH = 20
FAILED_PASS_MAX_WAIT_SECONDS = 30.0


class _ScrubSecrets(logging.Filter):
    """httpx logs every request's URL at INFO: a Slack webhook URL is a secret, so it is scrubbed there."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self._secrets):
            record.msg, record.args = scrub(message, self._secrets), ()
        return True


class DeliveryWorker:
    """Delivers due outbox rows of the configured ``channels``; ``run_once`` is one pass (tests call it)."""

    def __init__(
        self,
        database_url: str,
        channels: dict[str, Channel],
        *,
        timeout_seconds: float = 10.0,
        backoff_seconds: float = 1.0,
        backoff_max_seconds: float = 300.0,
        give_up_seconds: float = 86_400.0,
        poll_seconds: float = 1.0,
        rng: random.Random | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._url = database_url
        self._channels = channels
        self._timeout = timeout_seconds
        self._base = backoff_seconds
        self._cap = backoff_max_seconds
        self._give_up = give_up_seconds
        self._poll = poll_seconds
        self._rng = rng or random.Random()
        self._verify = verify  # a CA bundle for receivers behind a private CA
        self._pool: asyncpg.Pool | None = None
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task | None = None
        self._filter = _ScrubSecrets([s for c in channels.values() for s in c.secrets()])

    @classmethod
    def from_settings(cls, settings: Settings) -> "DeliveryWorker | None":
        """The worker for the configured channels; None when no channel is configured."""
        channels = build_channels(settings)
        if not channels:
            return None
        return cls(settings.database_url or "", channels, timeout_seconds=settings.notify_timeout_seconds,
                   backoff_seconds=settings.notify_backoff_seconds,
                   backoff_max_seconds=settings.notify_backoff_max_seconds,
                   give_up_seconds=settings.notify_give_up_seconds, poll_seconds=settings.notify_poll_seconds,
                   verify=http_verify(settings))

    async def _ready(self) -> tuple[asyncpg.Pool, httpx.AsyncClient]:
        if self._pool is None:
            from pipelines.store import _init_connection

            self._pool = await asyncpg.create_pool(self._url, min_size=1, max_size=2, statement_cache_size=0,
                                                   init=_init_connection, timeout=10)
        if self._client is None:
            for name in ("httpx", "httpcore"):
                logging.getLogger(name).addFilter(self._filter)
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False, verify=self._verify)
        return self._pool, self._client

    async def run_once(self) -> int:
        """Claim the due rows, send them (concurrently), record each attempt; the number of rows tried."""
        pool, client = await self._ready()
        async with pool.acquire() as conn:
            rows = await outbox.claim(conn, list(self._channels), BATCH, self._lease())
        if rows:
            await asyncio.gather(*(self._deliver(pool, client, row) for row in rows))
        async with pool.acquire() as conn:
            pending = await outbox.backlog(conn)
        for channel in self._channels:
            metrics.set_outbox_backlog(channel, pending.get(channel, 0))
        return len(rows)

    def _lease(self) -> float:
        return self._timeout * 3 + 30

    async def _deliver(self, pool: asyncpg.Pool, client: httpx.AsyncClient, row: outbox.OutboxRow) -> None:
        channel = self._channels[row.channel]
        result = await attempt(client, channel, row.message, row.id)
        status, retry_in = self._next(row, result)
        metrics.count_notification(row.channel, result.outcome if status != "expired" else "expired")
        if status in ("rejected", "expired"):
            log.warning("notification %s of incident %s on %s %s: %s", row.event, row.incident_id, row.channel,
                        status, result.reason)
        async with pool.acquire() as conn:
            await outbox.record(conn, row, result, status=status, retry_in_seconds=retry_in)

    def _next(self, row: outbox.OutboxRow, result: Attempt) -> tuple[str, float | None]:
        """The row's new status and, when it stays pending, the seconds until the next try."""
        if result.outcome != "retry":
            return result.outcome, None
        age = (datetime.now(timezone.utc) - row.created_at).total_seconds()
        if age >= self._give_up:
            return "expired", None
        wait = backoff_seconds(row.attempts + 1, self._base, self._cap, self._rng)
        if result.retry_after_seconds is not None:
            wait = max(wait, result.retry_after_seconds)
        return "pending", wait

    # ---------------------------------------------------------------- as a task of the ingress

    def start(self) -> None:
        """Run in the background on the running event loop until ``stop``."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rca-notify-worker")

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                tried = await self.run_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database down, ...: the rows wait in the outbox; try again, less often
                failures += 1
                wait = backoff_seconds(failures, self._poll, FAILED_PASS_MAX_WAIT_SECONDS, self._rng)
                log.warning("notification worker pass failed (%s: %s); next pass in %.1f s",
                            type(exc).__name__, exc, wait)
                await asyncio.sleep(wait)
                continue
            if tried < BATCH:
                await asyncio.sleep(self._poll)

    def cancel(self) -> None:
        """Stop the loop without waiting (a replica shutting down); leased rows are retried after their lease."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def stop(self) -> None:
        """Stop the loop and close the pool and the client (rows being sent stay leased, then are retried)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            for name in ("httpx", "httpcore"):
                logging.getLogger(name).removeFilter(self._filter)
            self._client = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
