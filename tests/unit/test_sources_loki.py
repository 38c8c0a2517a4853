"""Loki range queries with a selector from the alert labels, against a documented-API stand-in."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipelines.schemas import Alert
from pipelines.sources import LokiSource, build_selector, gather_context
from tests.support.http_standin import closed_port_url
from tests.support.loki_standin import Entry, LokiStandin

END = datetime(2024, 3, 1, 12, 5, tzinfo=timezone.utc)
START = END - timedelta(minutes=5)
NS = 1_000_000_000


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * NS


def alert(**labels: str) -> Alert:
    return Alert(name="HighErrorRate", timestamp=END, labels=labels)


def entries(service: str, count: int, *, start: datetime = START, step_ns: int = NS // 10) -> list[Entry]:
    return [
        Entry({"service": service, "namespace": "prod", "level": "error"}, ns(start) + i * step_ns, f"{service} line {i}")
        for i in range(count)
    ]


def test_selector_uses_configured_labels_and_escapes_values() -> None:
    a = alert(service="pay", namespace='pr"od', team="x")
    assert build_selector(a, ["service", "namespace", "pod"]) == '{service="pay", namespace="pr\\"od"}'
    # the alert's service may come from another label (job); it still selects the service stream
    assert build_selector(alert(job="pay"), ["service"]) == '{service="pay"}'
    assert build_selector(alert(team="x"), ["service", "pod"]) is None


async def test_lines_of_the_alert_streams_inside_the_window_in_time_order() -> None:
    data = entries("pay", 30) + entries("other", 10)
    data.append(Entry({"service": "pay", "namespace": "prod"}, ns(START) - NS, "before the window"))
    data.append(Entry({"service": "pay", "namespace": "prod"}, ns(END) + NS, "after the window"))
    with LokiStandin(data) as loki:
        result = await LokiSource(loki.url, ["service", "namespace"]).fetch(alert(service="pay", namespace="prod"), START, END)
        assert loki.selectors()[0] == '{service="pay", namespace="prod"}'
    assert result.status == "ok" and result.error is None
    assert [e.message for e in result.logs] == [f"pay line {i}" for i in range(30)]
    first = result.logs[0]
    assert first.service == "pay" and first.level == "error" and first.labels["namespace"] == "prod"
    assert first.timestamp == START


async def test_pages_are_followed_across_lines_sharing_a_nanosecond(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipelines.sources.loki.PAGE_LIMIT", 7)
    same_ns = [Entry({"service": "pay"}, ns(START) + 5, f"burst {i}") for i in range(6)]
    data = entries("pay", 20) + same_ns
    with LokiStandin(data) as loki:
        result = await LokiSource(loki.url, ["service"]).fetch(alert(service="pay"), START, END)
        pages = len(loki.requests)
    assert pages > 1
    assert sorted(e.message for e in result.logs) == sorted(e.line for e in data)
    assert result.error is None


async def test_the_line_cap_is_reported_not_hidden() -> None:
    with LokiStandin(entries("pay", 50)) as loki:
        result = await LokiSource(loki.url, ["service"], max_lines=20).fetch(alert(service="pay"), START, END)
    assert len(result.logs) == 20
    assert result.status == "ok" and "line cap of 20" in (result.error or "")


async def test_no_matching_label_is_no_data_without_a_request() -> None:
    with LokiStandin(entries("pay", 5)) as loki:
        result = await LokiSource(loki.url, ["service"]).fetch(alert(severity="warning"), START, END)
        assert loki.requests == []
    assert result.status == "no_data"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("garbage", "not JSON"), ("error", "HTTP 500"), ("matrix", "streams"), ("slow", "no answer within")],
)
async def test_bad_answers_are_errors(mode: str, expected: str) -> None:
    with LokiStandin(entries("pay", 5), mode=mode, delay=5.0) as loki:
        # only the slow case relies on the timeout; the others get a generous one so load cannot turn them into it
        timeout = 0.3 if mode == "slow" else 10.0
        result = await LokiSource(loki.url, ["service"], timeout=timeout).fetch(alert(service="pay"), START, END)
    assert result.status == "error" and result.logs == []
    assert expected in (result.error or "")


async def test_loki_down_and_prometheus_fine_keeps_the_logs_of_neither_lost() -> None:
    from pipelines.sources import PrometheusSource
    from tests.support.prometheus_standin import PrometheusStandin

    with PrometheusStandin() as prom:
        sources = [
            LokiSource(closed_port_url(), ["service"], timeout=1.0),
            PrometheusSource(prom.url, {"up": 'up{{service="{service}"}}'}),
        ]
        telemetry, reasons = await gather_context(sources, alert(service="pay"), START, END)
    assert [m.name for m in telemetry.metrics] == ["up"]
    assert len(reasons) == 1 and reasons[0].startswith("loki: ")
