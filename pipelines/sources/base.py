"""One small interface for every place context comes from, and the fan-out over them.

Prometheus, Loki and log files (and anything added later) answer the same question - "what
happened around this alert?" - so they sit behind one protocol, HolmesGPT-style: a source
has a ``name`` and ``fetch(alert, start, end)``, and its answer says itself whether it
worked (``status``). :func:`gather_context` asks all of them at once and turns failures into
``degraded_reasons``: a source that is down makes the analysis weaker, never absent.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, Sequence

from pipelines.schemas import Alert, LogEvent, MetricSeries, Telemetry

log = logging.getLogger(__name__)

SourceStatus = Literal["ok", "error", "no_data"]

MAX_REASON_CHARS = 300


@dataclass
class SourceResult:
    """What one source found: a status that explains itself, the data, and what went wrong.

    ``error`` is set when ``status`` is ``"error"``, and also when a source answered only in
    part (one of several queries failed, a line limit was reached): the data that did come
    is kept and the gap is reported. ``dropped`` counts what was left out, by reason.
    """

    status: SourceStatus
    logs: list[LogEvent] = field(default_factory=list)
    metrics: list[MetricSeries] = field(default_factory=list)
    error: str | None = None
    dropped: dict[str, int] = field(default_factory=dict)

    @classmethod
    def failed(cls, error: str) -> "SourceResult":
        return cls(status="error", error=error)


class ContextSource(Protocol):
    """A place to read logs or metrics around an alert. ``fetch`` should not raise; if it does,
    :func:`gather_context` records the exception as a degraded reason."""

    name: str

    async def fetch(self, alert: Alert, start: datetime, end: datetime) -> SourceResult: ...


def describe_error(exc: BaseException) -> str:
    """A one-line, bounded description of an exception (no tracebacks in analyses)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:MAX_REASON_CHARS]


async def _fetch_guarded(
    source: ContextSource, alert: Alert, start: datetime, end: datetime, timeout: float | None
) -> SourceResult:
    try:
        if timeout is None:
            return await source.fetch(alert, start, end)
        return await asyncio.wait_for(source.fetch(alert, start, end), timeout)
    except asyncio.TimeoutError:
        return SourceResult.failed(f"no answer within {timeout:g} s")
    except Exception as exc:  # noqa: BLE001 - a broken source must not lose the alert
        log.warning("context source %s raised", getattr(source, "name", source), exc_info=True)
        return SourceResult.failed(describe_error(exc))


async def gather_context(
    sources: Sequence[ContextSource],
    alert: Alert,
    start: datetime,
    end: datetime,
    *,
    timeout: float | None = None,
) -> tuple[Telemetry, list[str]]:
    """Ask every source concurrently; merge what they found; never raise.

    Returns the merged :class:`Telemetry` and one degraded reason per source that failed or
    answered only in part (``"<name>: <what went wrong>"``). ``no_data`` is not a failure.
    ``timeout`` bounds each source on top of its own HTTP timeouts.
    """
    results = await asyncio.gather(*(_fetch_guarded(s, alert, start, end, timeout) for s in sources))
    telemetry = Telemetry()
    reasons: list[str] = []
    for source, result in zip(sources, results):
        name = getattr(source, "name", type(source).__name__)
        if not isinstance(result, SourceResult):
            reasons.append(f"{name}: returned {type(result).__name__}, not a SourceResult")
            continue
        telemetry.logs.extend(result.logs)
        telemetry.metrics.extend(result.metrics)
        if result.error:
            reasons.append(f"{name}: {result.error}"[:MAX_REASON_CHARS])
        elif result.status == "error":
            reasons.append(f"{name}: failed")
    return telemetry, reasons
