"""An alert with the spans the Kafka reader holds: the Ingress takes them into the analysis.

The reader hands ``process_alert`` its context as ``{"logs", "spans", "baseline": {"logs", "spans"}}``
(span dicts decoded from OTLP batches on ``rca.spans``; the baseline is the window before). Here a code fault leaves only a trace-linked sign:
from the alert on, ``RouteController.queryById`` stops logging "Query route by id". Through the
Ingress handle of the session app, the top hypothesis must name ``routes`` from that pattern.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.serve


def _traced_context(alert_at: datetime, broken_from: datetime, first: float = -80) -> dict[str, list[dict[str, Any]]]:
    """80 requests every 2 s from ``first`` seconds around the alert; "Query route by id" stops at ``broken_from``."""
    logs: list[dict[str, Any]] = []
    spans: list[dict[str, Any]] = []
    for i in range(80):
        t = alert_at + timedelta(seconds=2 * i + first)
        trace = uuid.uuid4().hex
        ids = {name: uuid.uuid4().hex[:16] for name in ("gateway", "orders", "routes")}
        for name, parent, operation in (("gateway", None, "GET /api/trips"), ("orders", "gateway", "OrderController.query"),
                                        ("routes", "orders", "RouteController.queryById")):
            spans.append({"trace_id": trace, "span_id": ids[name], "parent_id": ids[parent] if parent else None,
                          "service": name, "operation": operation, "start": t.timestamp(), "duration_ms": 5.0})

        def line(service: str, text: str) -> None:
            logs.append({"message": f"{text} SpanID: {ids[service]}", "service": service, "level": "INFO",
                         "timestamp": t.isoformat()})

        line("orders", f"o.c.OrderController#39 [query][Query orders][user: u{i % 7}]")
        if t < broken_from:
            line("routes", f"r.c.RouteController#41 [getRouteById][Query route by id][RouteId: r{i}]")
        line("orders", f"o.s.OrderServiceImpl#88 [query][Orders found][count: {i % 3}]")
    return {"logs": logs, "spans": spans}


def test_spans_from_the_reader_reach_the_analysis(serve_app: str, auth_headers) -> None:
    fired = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    top = _top_hypothesis(serve_app, auth_headers, _alert(fired), _traced_context(fired, broken_from=fired))
    assert top["service"] == "routes"
    assert any(e.startswith("[patterns]") and "Query route by id" in e for e in top["evidence"]), top["evidence"]


def test_the_baseline_from_the_reader_shows_a_line_that_stopped_before_the_alert_window(serve_app: str, auth_headers) -> None:
    """The line stopped 100 s before the window began: only the window before (the baseline) shows it."""
    fired = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    context = _traced_context(fired, broken_from=fired - timedelta(seconds=400))
    context["baseline"] = _traced_context(fired, broken_from=fired, first=-600)
    top = _top_hypothesis(serve_app, auth_headers, _alert(fired), context)
    assert top["service"] == "routes"
    assert any(e.startswith("[patterns]") and "in the baseline" in e for e in top["evidence"]), top["evidence"]


def _alert(fired: datetime) -> dict[str, Any]:
    return {"name": "HighErrorRate", "severity": "critical", "timestamp": fired.isoformat(),
            # a service of its own: alerts of one service close in time join one open incident
            "labels": {"service": f"gateway-{uuid.uuid4().hex[:8]}", "alertname": "HighErrorRate"},
            "fingerprint": uuid.uuid4().hex[:16]}


def _top_hypothesis(serve_app: str, auth_headers, alert: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    from ray import serve

    from pipelines.app import APP_NAME

    handle = serve.get_deployment_handle("Ingress", app_name=APP_NAME)
    done = handle.process_alert.remote(alert, context, f"test:0:{uuid.uuid4().int % 10**9}").result()
    assert done["created"] and done["analyzed"]
    with httpx.Client(base_url=serve_app, timeout=60, headers=auth_headers("viewer")) as client:
        incident = client.get(f"/api/incidents/{done['incident_id']}").json()
    return incident["analysis"]["hypotheses"][0]
