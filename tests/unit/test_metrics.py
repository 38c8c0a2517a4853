"""pipelines.metrics: what each function records, and that bad input or a failing backend never raises."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipelines import metrics
from tests.support.metrics_recorder import Call, recording


@pytest.fixture
def calls() -> Iterator[list[Call]]:
    with recording() as recorded:
        yield recorded


def test_each_function_records_its_metric(calls: list) -> None:
    metrics.observe_stage("summarize", 0.25)
    metrics.count_incident("database", "critical")
    metrics.count_lines(1000, {"oversized": 3, "buffer_full": 0})
    metrics.count_templates(12)
    metrics.count_anomalies(2)
    metrics.count_llm_request("ok", prompt_tokens=100, completion_tokens=20)
    metrics.set_kafka_lag("rca.logs", 2, 42)
    metrics.count_dlq("bad_json")
    metrics.count_rejected("too_large")

    assert calls == [
        ("rca_stage_duration_seconds", "observe", 0.25, {"stage": "summarize"}),
        ("rca_incidents_total", "inc", 1.0, {"category": "database", "severity": "critical"}),
        ("rca_log_lines_total", "inc", 1000.0, {}),
        ("rca_log_lines_dropped_total", "inc", 3.0, {"reason": "oversized"}),
        ("rca_templates_mined_total", "inc", 12.0, {}),
        ("rca_anomalies_flagged_total", "inc", 2.0, {}),
        ("rca_llm_requests_total", "inc", 1.0, {"outcome": "ok"}),
        ("rca_llm_tokens_total", "inc", 100.0, {"kind": "prompt"}),
        ("rca_llm_tokens_total", "inc", 20.0, {"kind": "completion"}),
        ("rca_kafka_consumer_lag_messages", "set", 42.0, {"topic": "rca.logs", "partition": "2"}),
        ("rca_dlq_messages_total", "inc", 1.0, {"reason": "bad_json"}),
        ("rca_requests_rejected_total", "inc", 1.0, {"reason": "too_large"}),
    ]


def test_enum_members_are_accepted_and_unknown_values_become_other(calls: list) -> None:
    from pipelines.schemas import Category, Severity

    metrics.count_incident(Category.network, Severity.warning)
    metrics.count_incident("Banana", "SEV1")
    assert [c[3] for c in calls] == [
        {"category": "network", "severity": "warning"},
        {"category": "other", "severity": "other"},
    ]


def test_zero_lag_is_recorded_so_a_caught_up_partition_shows_zero(calls: list) -> None:
    metrics.set_kafka_lag("rca.logs", 0, 0)
    assert calls == [("rca_kafka_consumer_lag_messages", "set", 0.0, {"topic": "rca.logs", "partition": "0"})]


@pytest.mark.parametrize(
    "call",
    [
        lambda: metrics.observe_stage("score", float("nan")),
        lambda: metrics.observe_stage("score", -1.0),
        lambda: metrics.observe_stage("score", "slow"),  # type: ignore[arg-type]
        lambda: metrics.count_lines(-5, {"oversized": -1}),
        lambda: metrics.count_lines(None, None),  # type: ignore[arg-type]
        lambda: metrics.count_lines(True, {"x": float("inf")}),
        lambda: metrics.count_templates(0),
        lambda: metrics.count_anomalies("3"),  # type: ignore[arg-type]
        lambda: metrics.set_kafka_lag("rca.logs", 0, -3),
        lambda: metrics.set_kafka_lag("rca.logs", 0, float("nan")),
    ],
)
def test_bad_numbers_record_nothing_and_do_not_raise(calls: list, call: Any) -> None:
    call()
    assert calls == []


def test_label_values_are_bounded_and_cleaned(calls: list) -> None:
    for i in range(metrics.MAX_LABEL_VALUES + 10):
        metrics.count_dlq(f"reason {i}")
    metrics.count_rejected("x" * 500 + "\n{evil=\"1\"}")
    reasons = [c[3]["reason"] for c in calls if c[0] == "rca_dlq_messages_total"]
    assert len(set(reasons)) == metrics.MAX_LABEL_VALUES + 1
    assert reasons[-1] == metrics.OTHER and reasons[0] == "reason_0"
    rejected = [c[3]["reason"] for c in calls if c[0] == "rca_requests_rejected_total"][0]
    assert len(rejected) <= metrics.MAX_LABEL_LENGTH and "\n" not in rejected and '"' not in rejected
    metrics.count_rejected("")
    assert calls[-1][3] == {"reason": metrics.UNKNOWN}


def test_a_failing_backend_never_raises_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def inc(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("core worker gone")

        observe = set = inc

    metrics._reset(lambda name: Broken())
    try:
        for _ in range(3):
            metrics.count_dlq("poison")
            metrics.observe_stage("reason", 1.0)
            metrics.set_kafka_lag("t", 0, 1)
        messages = [r.getMessage() for r in caplog.records if "could not be recorded" in r.getMessage()]
        assert len(messages) == 3  # one per metric, not one per call
        assert any("core worker gone" in m for m in messages)
    finally:
        metrics._reset()


def test_a_failing_factory_never_raises() -> None:
    def factory(name: str) -> Any:
        raise ValueError("bad metric")

    metrics._reset(factory)
    try:
        metrics.count_incident("database", "critical")
        metrics.count_llm_request("timeout")
    finally:
        metrics._reset()


def test_real_ray_metric_objects_accept_every_definition_without_a_cluster() -> None:
    """Outside Ray the real backend is a no-op; the definitions (names, tags, buckets) must be valid."""
    metrics._reset()
    try:
        for name in metrics.METRICS:
            assert metrics._ray_factory(name) is not None
        metrics.observe_stage("total", 1.5)
        metrics.count_incident("application", "warning")
        metrics.count_lines(10, {"oversized": 1})
        metrics.count_llm_request("error", 5, 0)
        metrics.set_kafka_lag("rca.logs", 1, 3)
        assert metrics._failed == set()
    finally:
        metrics._reset()


def test_metric_names_follow_prometheus_conventions() -> None:
    for name, (kind, _tags, help_text) in metrics.METRICS.items():
        assert name.startswith("rca_") and help_text
        if kind == "counter":
            assert name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name


def test_render_latest_outside_ray_serves_own_process_metrics_and_says_why() -> None:
    body, content_type = metrics.render_latest()
    assert content_type.startswith("text/plain")
    text = body.decode()
    assert text.startswith("# rca: application metrics unavailable here (not running inside Ray)")
    names = {family.name for family in text_string_to_metric_families(text)}
    assert "python_gc_objects_collected" in names or "process_cpu_seconds" in names


class _AgentPage(BaseHTTPRequestHandler):
    body = b"# TYPE ray_rca_incidents_total counter\nray_rca_incidents_total{category=\"network\"} 3.0\n"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def test_render_latest_inside_ray_returns_the_node_agent_page(monkeypatch: pytest.MonkeyPatch) -> None:
    server = HTTPServer(("127.0.0.1", 0), _AgentPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        monkeypatch.setattr(metrics, "node_metrics_url", lambda: url)
        body, content_type = metrics.render_latest()
        assert body == _AgentPage.body
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    finally:
        server.shutdown()
        server.server_close()


def test_render_latest_falls_back_when_the_agent_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    server = HTTPServer(("127.0.0.1", 0), _AgentPage)
    port = server.server_address[1]
    server.server_close()  # nothing listens there any more
    monkeypatch.setattr(metrics, "node_metrics_url", lambda: f"http://127.0.0.1:{port}/metrics")
    body, _ = metrics.render_latest(timeout_seconds=0.5)
    assert f"127.0.0.1:{port}/metrics did not answer" in body.decode().splitlines()[0]
