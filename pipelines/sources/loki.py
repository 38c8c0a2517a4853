"""Logs around an alert from Loki's range-query API.

``GET /loki/api/v1/query_range`` (https://grafana.com/docs/loki/latest/reference/loki-http-api/)
with a LogQL stream selector built from the alert's labels answers ``{"status": "success",
"data": {"resultType": "streams", "result": [{"stream": {labels}, "values": [["<unix ns>",
"<line>"(, {structured metadata})], ...]}]}}``. Pages are read forward in time until the
window is covered or ``max_lines`` is reached; reaching the cap is reported, not hidden.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import httpx

from pipelines.schemas import Alert, LogEvent, service_from_labels
from pipelines.sources.base import SourceResult, describe_error
from pipelines.sources.prometheus import promql_string, unix_seconds
from pipelines.tls import describe_tls_error

LEVEL_LABELS = ("level", "detected_level", "severity", "lvl")
PAGE_LIMIT = 5000  # Loki's default max_entries_limit_per_query


def build_selector(alert: Alert, label_names: Sequence[str]) -> str | None:
    """``{a="x", b="y"}`` from the alert labels named in settings; None when the alert has none of them.

    The alert's service (whatever label it came from) is used for ``service`` when that label
    is configured but absent, since a Prometheus rule often names it ``job`` or ``app``.
    """
    matchers: list[str] = []
    for name in label_names:
        value = alert.labels.get(name)
        if not value and name == "service":
            value = alert.service
        if value:
            matchers.append(f'{name}="{promql_string(value)}"')
    if not matchers:
        return None
    return "{" + ", ".join(matchers) + "}"


class LokiSource:
    """Log lines of the alert's streams over the incident window."""

    def __init__(
        self,
        base_url: str,
        selector_labels: Sequence[str],
        *,
        timeout: float = 10.0,
        max_lines: int = 20_000,
        headers: Mapping[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.name = "loki"
        self.base_url = base_url.rstrip("/")
        self.selector_labels = list(selector_labels)
        self.timeout = timeout
        self.max_lines = max_lines
        self.headers = dict(headers or {})
        self.verify = verify  # pipelines.tls.http_verify: the CA bundle of RCA_CA_FILE

    async def fetch(self, alert: Alert, start: datetime, end: datetime) -> SourceResult:
        selector = build_selector(alert, self.selector_labels)
        if selector is None:
            return SourceResult(status="no_data")
        start_ns = int(unix_seconds(start) * 1e9)
        end_ns = int(unix_seconds(end) * 1e9)
        events: list[LogEvent] = []
        problems: list[str] = []
        try:
            async with httpx.AsyncClient(timeout=self.timeout, headers=self.headers, verify=self.verify) as client:
                cursor = start_ns
                boundary: set[tuple[int, str, str]] = set()  # lines already read at the cursor's nanosecond
                while cursor < end_ns and len(events) < self.max_lines:
                    limit = min(PAGE_LIMIT, self.max_lines - len(events))
                    page, failure = await self._page(client, selector, cursor, end_ns, limit)
                    fresh = [(ts, e) for ts, e in page if (ts, e.message, repr(sorted(e.labels.items()))) not in boundary]
                    events.extend(e for _, e in fresh)
                    if failure:
                        problems.append(failure)
                        break
                    if len(page) < limit or not page:
                        break
                    # Loki's start is inclusive: the next page starts at the newest nanosecond read, and the
                    # lines of that nanosecond already read are skipped (several lines can share it).
                    last_ns = page[-1][0]
                    if last_ns == cursor and not fresh:
                        # A whole page shares one nanosecond: the rest of it cannot be paged to.
                        problems.append(f"more than {limit} lines share one timestamp; some of them were skipped")
                        cursor += 1
                        continue
                    if last_ns != cursor:
                        boundary = set()
                    cursor = last_ns
                    boundary |= {(ts, e.message, repr(sorted(e.labels.items()))) for ts, e in page if ts == last_ns}
                else:
                    if len(events) >= self.max_lines:
                        problems.append(
                            f"line cap of {self.max_lines} reached; later lines of the window may be missing"
                        )
        except Exception as exc:  # noqa: BLE001 - an invalid URL or a broken transport
            problems.append(describe_error(exc))
        error = "; ".join(problems) if problems else None
        if error and not events:
            return SourceResult.failed(error)
        return SourceResult(status="ok" if events else "no_data", logs=events, error=error)

    async def _page(
        self, client: httpx.AsyncClient, selector: str, start_ns: int, end_ns: int, limit: int
    ) -> tuple[list[tuple[int, LogEvent]], str | None]:
        params = {
            "query": selector,
            "start": str(start_ns),
            "end": str(end_ns),
            "limit": str(limit),
            "direction": "forward",
        }
        try:
            response = await client.get(f"{self.base_url}/loki/api/v1/query_range", params=params)
        except httpx.TimeoutException:
            return [], f"no answer within {self.timeout:g} s"
        except httpx.HTTPError as exc:
            return [], describe_tls_error("Loki", self.base_url, exc) or describe_error(exc)
        try:
            body = response.json()
        except ValueError:
            return [], f"HTTP {response.status_code}, body is not JSON"
        if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
            detail = body.get("error") or body.get("message") if isinstance(body, dict) else None
            return [], f"HTTP {response.status_code}: {str(detail or 'unexpected answer')[:200]}"
        try:
            return _parse_streams(body.get("data")), None
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            return [], f"malformed streams result ({describe_error(exc)})"


def _parse_streams(data: Any) -> list[tuple[int, LogEvent]]:
    """(unix ns, LogEvent) of every stream, in time order."""
    if not isinstance(data, dict) or data.get("resultType") != "streams":
        raise ValueError(f"resultType is {data.get('resultType') if isinstance(data, dict) else None!r}, not 'streams'")
    rows: list[tuple[int, LogEvent]] = []
    for stream in data.get("result") or []:
        labels = {str(k): str(v) for k, v in (stream.get("stream") or {}).items()}
        service = service_from_labels(labels)
        level = next((labels[k] for k in LEVEL_LABELS if labels.get(k)), None)
        for value in stream.get("values") or []:
            ts_ns = int(value[0])
            line = value[1] if isinstance(value[1], str) else str(value[1])
            event = LogEvent(
                message=line,
                timestamp=datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc),
                service=service,
                pod=labels.get("pod"),
                level=level,
                labels=labels,
            )
            rows.append((ts_ns, event))
    rows.sort(key=lambda row: row[0])
    return rows
