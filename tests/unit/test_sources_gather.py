"""gather_context: concurrent, merges what came, turns every failure into a reason, never raises."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from pipelines.schemas import Alert, LogEvent, MetricSeries
from pipelines.sources import SourceResult, gather_context

NOW = datetime(2024, 3, 1, 12, 5, tzinfo=timezone.utc)
ALERT = Alert(name="HighCPUUsage", timestamp=NOW, labels={"service": "api"})


class Fixed:
    def __init__(self, name: str, result: SourceResult) -> None:
        self.name = name
        self.result = result

    async def fetch(self, alert: Alert, start: datetime, end: datetime) -> SourceResult:
        return self.result


class Raises:
    name = "raises"

    async def fetch(self, alert: Alert, start: datetime, end: datetime) -> SourceResult:
        raise RuntimeError("boom\nsecond line of a traceback")


class Hangs:
    name = "hangs"

    async def fetch(self, alert: Alert, start: datetime, end: datetime) -> SourceResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_results_are_merged_and_failures_become_reasons() -> None:
    logs = Fixed("logs", SourceResult("ok", logs=[LogEvent(message="hello")]))
    metrics = Fixed("metrics", SourceResult("ok", metrics=[MetricSeries(service="api", name="cpu", points=[(1.0, 2.0)])]))
    partial = Fixed("partial", SourceResult("ok", logs=[LogEvent(message="x")], error="line cap reached"))
    empty = Fixed("empty", SourceResult("no_data"))
    failed = Fixed("failed", SourceResult.failed("HTTP 500"))
    telemetry, reasons = await gather_context(
        [logs, metrics, partial, empty, failed, Raises(), Hangs()], ALERT, NOW, NOW, timeout=0.5
    )
    assert [e.message for e in telemetry.logs] == ["hello", "x"]
    assert [m.name for m in telemetry.metrics] == ["cpu"]
    assert reasons == [
        "partial: line cap reached",
        "failed: HTTP 500",
        "raises: RuntimeError: boom",
        "hangs: no answer within 0.5 s",
    ]


async def test_no_sources_is_empty_context() -> None:
    telemetry, reasons = await gather_context([], ALERT, NOW, NOW)
    assert telemetry.logs == [] and telemetry.metrics == [] and reasons == []
