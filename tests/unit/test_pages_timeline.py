"""The incident timeline is drawn from the stored analysis only (no Ray, no database)."""

from __future__ import annotations

from datetime import datetime, timezone

from deployments.ui.citations import Link, links
from deployments.ui.pages import parse_filters
from deployments.ui.timeline import ALL_SERVICES, build_timeline, parse_time
from pipelines.schemas import (
    Alert,
    Analysis,
    Anomaly,
    Category,
    Citations,
    CitedMetric,
    CitedTemplate,
    EvidenceRef,
    Incident,
)

ALERT_AT = datetime(2024, 1, 7, 10, 30, tzinfo=timezone.utc)


def _incident(anomalies: list[Anomaly]) -> Incident:
    alert = Alert(name="HighErrorRate", severity="critical", timestamp=ALERT_AT, labels={"service": "checkout"})
    analysis = Analysis(
        incident_id="00000000-0000-0000-0000-000000000001",
        summary="s",
        classification={"category": "external", "confidence": 0.7},
        hypotheses=[{"cause": "a", "confidence": 0.7, "category": "external", "service": "payments"},
                    {"cause": "b", "confidence": 0.4, "category": "application", "service": "checkout"}],
        remediation=[{"step": 1, "action": "x", "expected_outcome": "y", "risk_level": "low"}],
        anomalies=anomalies,
        reasoner="evidence",
    )
    return Incident(id=analysis.incident_id, alert_name=alert.name, service="checkout", severity="critical", status="open",
                    fingerprint="f", started_at=ALERT_AT, created_at=ALERT_AT, alert=alert, analysis=analysis)


def test_parse_time_reads_the_usual_forms_as_utc() -> None:
    assert parse_time("2024-01-07 10:28:05.000 ERROR x") == datetime(2024, 1, 7, 10, 28, 5, tzinfo=timezone.utc)
    assert parse_time("at 2024-01-07T12:28:05+0200 y") == datetime(2024, 1, 7, 10, 28, 5, tzinfo=timezone.utc)
    assert parse_time("no time here") is None


def test_lanes_follow_the_hypotheses_and_marks_fall_in_time_order() -> None:
    timeline = build_timeline(_incident([
        Anomaly(kind="metric", subject="error_rate", score=0.9, service="payments",
                evidence=["2024-01-07T10:28:00Z 0.5", "2024-01-07T10:29:00Z 0.6"]),
        Anomaly(kind="template", subject="Payment failed <*>", score=0.8, service="checkout",
                evidence=["2024-01-07 10:28:30.000 ERROR Payment failed 502"]),
        Anomaly(kind="time_bucket", subject="2024-01-07T10:20:00Z", score=0.6, detail="80 lines, 40 error lines"),
        Anomaly(kind="template", subject="misread", score=0.5, service="checkout", evidence=["1999-01-01 00:00:00 old"]),
    ]))
    assert timeline is not None
    assert [lane.label for lane in timeline.lanes] == ["payments", "checkout", ALL_SERVICES]
    xs = {m.title.split(" (")[0]: m.x for m in timeline.marks}
    assert len(timeline.marks) == 4, "the misread 1999 time is left out"
    bucket = next(m for m in timeline.marks if m.kind == "bucket")
    metric = sorted(m.x for m in timeline.marks if m.kind == "metric")
    log_mark = next(m for m in timeline.marks if m.kind == "log")
    assert bucket.x < metric[0] < log_mark.x < metric[1] < timeline.alert_x, xs
    assert timeline.plot_left <= bucket.x and timeline.alert_x <= timeline.width
    assert all("502" not in m.title for m in timeline.marks), "a mark names its anomaly, never copies its lines"


def test_no_timeline_without_timed_anomalies() -> None:
    assert build_timeline(_incident([Anomaly(kind="service", subject="checkout", score=0.7, service="checkout")])) is None


def test_filters_parse_like_the_api_and_name_each_bad_field() -> None:
    filters, errors = parse_filters({"category": "database", "since": "2024-01-07T10:00", "service": " api ", "page": "2"})
    assert not errors
    assert filters == {"page": 2, "page_size": 20, "category": Category.database, "service": "api",
                       "since": datetime(2024, 1, 7, 10, tzinfo=timezone.utc)}
    assert parse_filters({"category": "", "status": ""}) == ({"page": 1, "page_size": 20}, [])
    _, errors = parse_filters({"category": "nope", "status": "closed", "until": "yesterday", "page_size": "500"})
    assert [e.split(":")[0] for e in errors] == ["page_size", "category", "status", "until"]


def test_cited_templates_are_bars_in_their_lane_and_the_onset_is_marked() -> None:
    incident = _incident([Anomaly(kind="time_bucket", subject="2024-01-07T10:20:00Z", score=0.6, detail="80 lines")])
    analysis = incident.analysis
    assert analysis is not None
    onset = datetime(2024, 1, 7, 10, 26, tzinfo=timezone.utc)
    analysis.cited = Citations(templates=[CitedTemplate(
        template_id="T1", text="<*> ERROR [payments,<*>,<*>] Payment provider answered <*>", services={"payments": 40}, count=40,
        first_seen=onset, last_seen=datetime(2024, 1, 7, 10, 29, tzinfo=timezone.utc), onset=onset,
        exemplars=["2024-01-07 10:26:00 ERROR [payments,abc,abc] Payment provider answered 503"],
        cited_by=[EvidenceRef(hypothesis=0, evidence=0)])])
    analysis.onset = onset
    timeline = build_timeline(incident)
    assert timeline is not None
    [bar] = timeline.bars
    lane = next(lane for lane in timeline.lanes if lane.label == "payments")
    assert bar.y == lane.y and bar.x1 < bar.x2 < timeline.alert_x
    assert "Payment provider answered …" in bar.title and "x40" in bar.title and "503" not in bar.title
    assert timeline.onset_x == bar.x1 and timeline.onset_label == "onset 10:26:00"
    assert all(m.kind == "bucket" for m in timeline.marks), "bars are not drawn a second time as marks"


def test_evidence_links_point_at_the_cited_items() -> None:
    incident = _incident([])
    analysis = incident.analysis
    assert analysis is not None
    analysis.hypotheses[0].evidence = ["[logs] error template \"Payment provider answered <*>\" x40", "[metrics] errors error_rate"]
    analysis.cited = Citations(
        templates=[CitedTemplate(template_id="T1", text="<*> ERROR [payments,<*>,<*>] Payment provider answered <*>", count=40,
                                 exemplars=["2024-01-07 10:26:00.000 ERROR [payments,ab12,ab12] Payment provider answered 503"],
                                 cited_by=[EvidenceRef(hypothesis=0, evidence=0)])],
        metrics=[CitedMetric(name="error_rate", service="payments", points=3, peak=0.5,
                             cited_by=[EvidenceRef(hypothesis=0, evidence=1), EvidenceRef(hypothesis=1, evidence=0)])])
    found = links(analysis)
    assert found == {
        (0, 0): [Link("cite-template-1", "template", "Payment provider answered …")],
        (0, 1): [Link("cite-metric-1", "metric", "error_rate of payments")],
        (1, 0): [Link("cite-metric-1", "metric", "error_rate of payments")],
    }
