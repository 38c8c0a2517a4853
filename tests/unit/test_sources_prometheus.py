"""Prometheus range queries around the alert, against a stand-in that follows the documented API."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from pipelines.schemas import Alert
from pipelines.sources import PrometheusSource, gather_context
from tests.support.http_standin import closed_port_url
from tests.support.prometheus_standin import PrometheusStandin

END = datetime(2024, 3, 1, 12, 5, tzinfo=timezone.utc)
START = END - timedelta(minutes=5)
QUERIES = {
    "cpu_usage_percent": 'sum(rate(cpu_seconds_total{{service="{service}"}}[1m])) * 100',
    "error_rate": 'sum(rate(http_requests_total{{service="{service}",code=~"5.."}}[1m]))',
}


def alert(**labels: str) -> Alert:
    return Alert(name="HighCPUUsage", timestamp=END, labels=labels)


async def test_each_query_becomes_a_series_with_the_service_substituted() -> None:
    with PrometheusStandin() as prom:
        result = await PrometheusSource(prom.url, QUERIES, step_seconds=15).fetch(alert(service="checkout"), START, END)
        queries = prom.queries()
    assert result.status == "ok" and result.error is None
    assert sorted(q for q in queries) == sorted(t.format(service="checkout") for t in QUERIES.values())
    assert {m.name for m in result.metrics} == set(QUERIES)
    for series in result.metrics:
        assert series.service == "checkout"
        times = [t for t, _ in series.points]
        assert times[0] == pytest.approx(START.timestamp()) and times[-1] <= END.timestamp()
        assert len(times) == 21  # 300 s at a 15 s step, both ends included


async def test_replicas_are_told_apart_and_non_finite_points_are_counted() -> None:
    def series_for(query: str):
        return [
            ({"service": "api", "pod": "api-1"}, lambda t: 1.0),
            ({"service": "api", "pod": "api-2"}, lambda t: "NaN" if int(t) % 30 == 0 else 2.0),
        ]

    with PrometheusStandin(series_for) as prom:
        result = await PrometheusSource(prom.url, {"cpu": "cpu{{service=\"{service}\"}}"}).fetch(alert(service="api"), START, END)
    assert sorted(m.name for m in result.metrics) == ["cpu:api-1", "cpu:api-2"]
    assert all(math.isfinite(v) for m in result.metrics for _, v in m.points)
    assert result.dropped["non_finite_points"] > 0


async def test_label_values_are_escaped_into_promql() -> None:
    with PrometheusStandin() as prom:
        await PrometheusSource(prom.url, {"q": 'up{{service="{service}"}}'}).fetch(alert(service='a"b\\c'), START, END)
        assert prom.queries() == ['up{service="a\\"b\\\\c"}']


async def test_alert_without_a_service_is_no_data_and_asks_nothing() -> None:
    with PrometheusStandin() as prom:
        result = await PrometheusSource(prom.url, QUERIES).fetch(alert(severity="critical"), START, END)
        assert prom.requests == []
    assert result.status == "no_data" and result.metrics == []


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("garbage", "not JSON"), ("error", "HTTP 503"), ("vector", "matrix"), ("slow", "no answer within")],
)
async def test_bad_answers_are_errors_that_say_what_happened(mode: str, expected: str) -> None:
    with PrometheusStandin(mode=mode, delay=5.0) as prom:
        # only the slow case relies on the timeout; the others get a generous one so load cannot turn them into it
        timeout = 0.3 if mode == "slow" else 10.0
        result = await PrometheusSource(prom.url, QUERIES, timeout=timeout).fetch(alert(service="x"), START, END)
    assert result.status == "error"
    assert expected in (result.error or "")


async def test_a_broken_query_template_fails_alone() -> None:
    queries = {"good": 'up{{service="{service}"}}', "bad": 'up{service="{service}"}'}  # unescaped braces
    with PrometheusStandin() as prom:
        result = await PrometheusSource(prom.url, queries).fetch(alert(service="x"), START, END)
    assert result.status == "ok"
    assert [m.name for m in result.metrics] == ["good"]
    assert "bad:" in (result.error or "")


async def test_server_down_degrades_the_context_without_raising() -> None:
    source = PrometheusSource(closed_port_url(), QUERIES, timeout=1.0)
    telemetry, reasons = await gather_context([source], alert(service="x"), START, END)
    assert telemetry.metrics == []
    assert len(reasons) == 1 and reasons[0].startswith("prometheus: ")
