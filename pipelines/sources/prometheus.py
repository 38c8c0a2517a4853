"""Metrics around an alert from Prometheus' range-query API.

``GET /api/v1/query_range`` (https://prometheus.io/docs/prometheus/latest/querying/api/#range-queries)
answers ``{"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {...},
"values": [[<unix s>, "<value>"], ...]}]}}``. Each configured query is a PromQL template with
``{service}`` replaced by the alert's service; every series it returns becomes one
:class:`MetricSeries` named after the query. Queries run concurrently; one failing query is
reported and the others are kept.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import httpx

from pipelines.schemas import Alert, MetricSeries, service_from_labels
from pipelines.sources.base import SourceResult, describe_error
from pipelines.tls import describe_tls_error

# Labels that tell two series of one service apart (replicas, hosts).
INSTANCE_LABELS = ("pod", "instance", "node", "host")
MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series


def unix_seconds(moment: datetime) -> float:
    """Naive datetimes are taken as UTC, like everywhere else in the contract."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def promql_string(value: str) -> str:
    """Escape a value for use inside a double-quoted PromQL/LogQL string literal."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def choose_step(start: float, end: float, min_step: float) -> float:
    """A step that keeps every series well under Prometheus' point limit."""
    span = max(end - start, 0.0)
    return max(min_step, math.ceil(span / (MAX_POINTS - 1)) if span else min_step)


class PrometheusSource:
    """Range queries around the alert for the alert's service."""

    def __init__(
        self,
        base_url: str,
        queries: Mapping[str, str],
        *,
        timeout: float = 10.0,
        step_seconds: float = 15.0,
        headers: Mapping[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.name = "prometheus"
        self.base_url = base_url.rstrip("/")
        self.queries = dict(queries)
        self.timeout = timeout
        self.step_seconds = step_seconds
        self.headers = dict(headers or {})
        self.verify = verify  # pipelines.tls.http_verify: the CA bundle of RCA_CA_FILE

    async def fetch(self, alert: Alert, start: datetime, end: datetime) -> SourceResult:
        service = alert.service
        if not service:
            return SourceResult(status="no_data", error=None)
        if not self.queries:
            return SourceResult(status="no_data")
        t0, t1 = unix_seconds(start), unix_seconds(end)
        step = choose_step(t0, t1, self.step_seconds)
        try:
            async with httpx.AsyncClient(timeout=self.timeout, headers=self.headers, verify=self.verify) as client:
                answers = await asyncio.gather(
                    *(self._query(client, name, template, service, t0, t1, step) for name, template in self.queries.items())
                )
        except Exception as exc:  # noqa: BLE001 - e.g. an invalid base URL
            return SourceResult.failed(describe_error(exc))
        found: list[tuple[MetricSeries, str]] = []
        errors: list[str] = []
        dropped: dict[str, int] = {}
        for name, series, error, non_finite in answers:
            found.extend(series)
            if error:
                errors.append(f"{name}: {error}")
            if non_finite:
                dropped["non_finite_points"] = dropped.get("non_finite_points", 0) + non_finite
        metrics = _disambiguate(found)
        error = "; ".join(errors) if errors else None
        if len(errors) == len(self.queries):
            return SourceResult(status="error", error=error, dropped=dropped)
        return SourceResult(status="ok" if metrics else "no_data", metrics=metrics, error=error, dropped=dropped)

    async def _query(
        self, client: httpx.AsyncClient, name: str, template: str, service: str, t0: float, t1: float, step: float
    ) -> tuple[str, list[tuple[MetricSeries, str]], str | None, int]:
        try:
            query = template.format(service=promql_string(service))
        except (KeyError, IndexError, ValueError) as exc:
            return name, [], f"query template is invalid ({describe_error(exc)}); use {{service}} only", 0
        params = {"query": query, "start": f"{t0:.3f}", "end": f"{t1:.3f}", "step": f"{step:g}"}
        try:
            response = await client.get(f"{self.base_url}/api/v1/query_range", params=params)
        except httpx.TimeoutException:
            return name, [], f"no answer within {self.timeout:g} s", 0
        except httpx.HTTPError as exc:
            return name, [], describe_tls_error("Prometheus", self.base_url, exc) or describe_error(exc), 0
        try:
            body = response.json()
        except ValueError:
            return name, [], f"HTTP {response.status_code}, body is not JSON", 0
        if not isinstance(body, dict):
            return name, [], "answer is not a JSON object", 0
        if response.status_code != 200 or body.get("status") != "success":
            detail = body.get("error") or body.get("errorType") or "unexpected answer"
            return name, [], f"HTTP {response.status_code}: {str(detail)[:200]}", 0
        try:
            series, non_finite = _parse_matrix(body.get("data"), name, service)
        except (TypeError, ValueError, KeyError) as exc:
            return name, [], f"malformed matrix result ({describe_error(exc)})", 0
        return name, series, None, non_finite


def _parse_matrix(data: Any, name: str, default_service: str) -> tuple[list[tuple[MetricSeries, str]], int]:
    """Series with the instance label that tells replicas apart, and the count of NaN/Inf points."""
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        raise ValueError(f"resultType is {data.get('resultType') if isinstance(data, dict) else None!r}, not 'matrix'")
    out: list[tuple[MetricSeries, str]] = []
    non_finite = 0
    for item in data.get("result") or []:
        labels = item.get("metric") or {}
        points: list[tuple[float, float]] = []
        for ts, value in item.get("values") or []:
            number = float(value)
            if not math.isfinite(number):
                non_finite += 1
                continue
            points.append((float(ts), number))
        if not points:
            continue
        service = service_from_labels({str(k): str(v) for k, v in labels.items()}) or default_service
        instance = next((str(labels[k]) for k in INSTANCE_LABELS if labels.get(k)), "")
        out.append((MetricSeries(service=service, name=name, points=points), instance))
    return out, non_finite


def _disambiguate(metrics: list[tuple[MetricSeries, str]]) -> list[MetricSeries]:
    """Two series of one (service, metric) - replicas, hosts - get the instance in their name."""
    seen: dict[tuple[str, str], int] = {}
    for series, _ in metrics:
        seen[(series.service, series.name)] = seen.get((series.service, series.name), 0) + 1
    out: list[MetricSeries] = []
    for series, instance in metrics:
        if seen[(series.service, series.name)] > 1 and instance:
            series = MetricSeries(service=series.service, name=f"{series.name}:{instance}", points=series.points)
        out.append(series)
    return out
