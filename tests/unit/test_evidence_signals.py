"""The evidence reasoner on synthetic incidents where the cause and the victim differ."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from anomaly import AnomalyReport, Digest, LogRecord
from pipelines.reasoning.base import Evidence
from pipelines.reasoning.evidence import EvidenceReasoner
from pipelines.reasoning.signals.log_templates import LogTemplateSignal
from pipelines.reasoning.signals.patterns import LogPatternSignal
from pipelines.reasoning.signals.traces import TraceSignal
from pipelines.schemas import Alert, Category, Span

T0 = 1_700_000_000.0
ALERT = Alert(name="HighErrorRate", timestamp=datetime.fromtimestamp(T0, tz=timezone.utc), labels={"service": "gateway", "namespace": "shop"})


def _digest(rows: list[tuple[str, str, str, float]]) -> Digest:
    return Digest.from_records([LogRecord(message=m, timestamp=t, level=lv, service=s) for s, lv, m, t in rows])


def _normal(start: float, n: int = 40) -> list[tuple[str, str, str, float]]:
    rows = []
    for i in range(n):
        t = start + i * 3
        rows.append(("gateway", "INFO", f"GET /api/orders 200 in {10 + i % 5} ms", t))
        rows.append(("orders", "INFO", f"order {1000 + i} created", t))
        rows.append(("payments", "INFO", f"payment {2000 + i} captured", t))
    return rows


def _evidence(window: Digest, baseline: Digest, **extra) -> Evidence:
    return Evidence(alert=ALERT, summary="", digest=window, report=AnomalyReport(), baseline_digest=baseline, **extra)


def _spans(start: float, slow_service: str | None, delay_ms: float) -> list[Span]:
    """gateway -> orders -> payments and gateway -> catalog; the slow service's edges gain delay_ms."""
    spans = []
    for i in range(20):
        tid = f"t{start}-{i}"
        t = start + i

        def dur(base: float, *services: str) -> float:
            return base + (delay_ms if slow_service in services else 0.0)

        pay = Span(trace_id=tid, span_id=f"{tid}p", parent_id=f"{tid}o", service="payments", start=t, duration_ms=5.0)
        orders = Span(trace_id=tid, span_id=f"{tid}o", parent_id=f"{tid}g", service="orders", start=t, duration_ms=pay.duration_ms + dur(3.0, "payments"))
        catalog = Span(trace_id=tid, span_id=f"{tid}c", parent_id=f"{tid}g", service="catalog", start=t, duration_ms=4.0)
        gateway = Span(trace_id=tid, span_id=f"{tid}g", parent_id=None, service="gateway", start=t,
                       duration_ms=orders.duration_ms + catalog.duration_ms + dur(2.0, "orders"))
        spans += [gateway, orders, catalog, pay]
    return spans


def test_callee_named_in_callers_errors_is_the_cause() -> None:
    baseline = _digest(_normal(T0 - 600))
    window_rows = _normal(T0 - 60)
    for i in range(30):  # after the alert: orders fails calling payments-service; payments logs nothing
        window_rows.append(("orders", "ERROR", f"call to payments-service failed: HTTP 500 for order {i}", T0 + 1 + i))
    verdict = EvidenceReasoner().decide(_evidence(_digest(window_rows), baseline))
    top = verdict.hypotheses[0]
    assert top.service == "payments"
    assert top.category == Category.application
    assert any("payments-service failed" in e for e in top.evidence)
    assert "orders" in [h.service for h in verdict.hypotheses]


def test_slow_callee_beats_the_caller_that_waits() -> None:
    digest = _digest(_normal(T0 - 60))
    evidence = _evidence(digest, _digest(_normal(T0 - 600)), spans=_spans(T0, "payments", 400.0), baseline_spans=_spans(T0 - 600, None, 0.0))
    ranked = {f.service: f.strength for f in TraceSignal().findings(evidence) if f.fault_type == "network_delay"}
    assert max(ranked, key=ranked.get) == "payments"
    assert ranked["payments"] > ranked.get("orders", 0.0)
    verdict = EvidenceReasoner().decide(evidence)
    assert verdict.hypotheses[0].service == "payments"
    assert verdict.hypotheses[0].fault_type == "network_delay"
    assert verdict.classification.category == Category.network
    assert any("tc" in (s.command or "") for s in verdict.remediation)


def test_own_cpu_rise_names_cpu_contention_with_before_after_values() -> None:
    digest = _digest(_normal(T0 - 60))
    metrics = {("orders", "cpu_usage_percent"): [(T0 + i * 15, 95.0) for i in range(8)],
               ("payments", "cpu_usage_percent"): [(T0 + i * 15, 21.0 + i % 3) for i in range(8)]}
    baseline = {k: [(T0 - 900 + i * 15, 20.0 + (i % 5)) for i in range(40)] for k in metrics}
    verdict = EvidenceReasoner().decide(_evidence(digest, _digest(_normal(T0 - 600)), metrics=metrics, baseline_metrics=baseline))
    top = verdict.hypotheses[0]
    assert top.service == "orders" and top.fault_type == "cpu_contention"
    assert verdict.classification.category == Category.infrastructure
    assert any("->" in e and "95" in e for e in top.evidence)
    assert all("orders" in s.action or "noisy" in s.action for s in verdict.remediation[:2])


def test_errors_already_present_before_the_alert_weigh_little() -> None:
    baseline = _digest(_normal(T0 - 600))
    rows = _normal(T0 - 120, 80)
    for i in range(40):  # steady background error, same rate before and after the alert
        rows.append(("orders", "ERROR", f"retrying stale cache entry {i}", T0 - 120 + i * 6))
    for i in range(20):  # new after the alert
        rows.append(("payments", "ERROR", f"NullPointerException in capture {i}", T0 + 5 + i))
    verdict = EvidenceReasoner().decide(_evidence(_digest(rows), baseline))
    assert verdict.hypotheses[0].service == "payments"


def test_no_evidence_still_answers_two_hypotheses() -> None:
    empty = _digest([])
    verdict = EvidenceReasoner().decide(_evidence(empty, empty))
    assert len(verdict.hypotheses) >= 2
    assert verdict.remediation


def _fanout_spans(start: float, n: int, delayed: str | None, delay_ms: float, noisy: str | None, noise_ms: float) -> list[Span]:
    """gateway -> shop -> {stock, prices, reviews}; a delayed service answers late on every incoming edge,
    a noisy one is a little slower on all of its edges (a busy service, not the cause)."""
    spans = []
    for i in range(n):
        tid = f"f{start}-{i}"
        t = start + i
        kids = []
        for callee in ("stock", "prices", "reviews"):
            late = (delay_ms if callee == delayed else 0.0) + (noise_ms if noisy in (callee, "shop") else 0.0)
            kids.append(Span(trace_id=tid, span_id=f"{tid}{callee}", parent_id=f"{tid}s", service=callee, start=t, duration_ms=3.0 + late))
        shop_gap = (delay_ms if delayed == "shop" else 0.0) + (noise_ms if noisy == "shop" else 0.0)
        shop = Span(trace_id=tid, span_id=f"{tid}s", parent_id=f"{tid}g", service="shop", start=t,
                    duration_ms=sum(k.duration_ms for k in kids) + 2.0)
        gateway = Span(trace_id=tid, span_id=f"{tid}g", parent_id=None, service="gateway", start=t, duration_ms=shop.duration_ms + 2.0 + shop_gap)
        spans += [gateway, shop, *kids]
    return spans


def test_delay_is_blamed_on_the_service_whose_callers_all_wait() -> None:
    """Only the edge into ``shop`` is many-fold slower (its outgoing calls are not); ``stock`` is
    a bit slower on its edge. The baseline saw each edge only twice: a short baseline still anchors it."""
    window = _fanout_spans(T0, 20, delayed="shop", delay_ms=1500.0, noisy="stock", noise_ms=4.0)
    baseline = _fanout_spans(T0 - 600, 2, delayed=None, delay_ms=0.0, noisy=None, noise_ms=0.0)
    evidence = _evidence(_digest(_normal(T0 - 60)), _digest(_normal(T0 - 600)), spans=window, baseline_spans=baseline)
    ranked = {f.service: f for f in TraceSignal().findings(evidence) if f.fault_type == "network_delay"}
    assert max(ranked, key=lambda s: ranked[s].strength) == "shop"
    assert ranked["shop"].strength > 0.9
    assert "1 of 1 incoming" in ranked["shop"].evidence and "gateway -> shop" in ranked["shop"].evidence
    verdict = EvidenceReasoner().decide(evidence)
    assert verdict.hypotheses[0].service == "shop"
    assert verdict.classification.category == Category.network


def _traced(start: float, n: int, broken_after: float | None) -> tuple[list[Span], list[tuple[str, str, str, float]]]:
    """gateway -> orders -> routes requests, every line carrying its span id as a logback MDC pattern prints it.

    ``routes`` logs "Query route by id" in every request; from ``broken_after`` on, its method
    throws before that line (the request is still answered and nothing is logged as an error).
    """
    spans, rows = [], []
    for i in range(n):
        t = start + i * 2
        tid = f"{int(t):x}{i:04x}aaaa"
        ids = {name: f"{abs(hash((tid, name))) % 16**16:016x}" for name in ("gateway", "orders", "routes")}
        spans += [
            Span(trace_id=tid, span_id=ids["gateway"], parent_id=None, service="gateway", operation="GET /api/trips", start=t, duration_ms=9.0),
            Span(trace_id=tid, span_id=ids["orders"], parent_id=ids["gateway"], service="orders", operation="OrderController.query", start=t + 0.001, duration_ms=6.0),
            Span(trace_id=tid, span_id=ids["routes"], parent_id=ids["orders"], service="routes", operation="RouteController.queryById", start=t + 0.002, duration_ms=2.0),
        ]
        ctx = lambda name: f"TraceID: {tid} SpanID: {ids[name]}"  # noqa: E731
        rows.append(("orders", "INFO", f"o.c.OrderController#39 {ctx('orders')} [query][Query orders][user: u{i % 7}]", t + 0.001))
        if broken_after is None or t < broken_after:
            rows.append(("routes", "INFO", f"r.c.RouteController#41 {ctx('routes')} [getRouteById][Query route by id][RouteId: r{i}]", t + 0.002))
        rows.append(("orders", "INFO", f"o.s.OrderServiceImpl#88 {ctx('orders')} [query][Orders found][count: {i % 3}]", t + 0.005))
    return spans, rows


def test_trace_context_is_not_part_of_a_template_and_links_lines_to_spans() -> None:
    spans, rows = _traced(T0 - 60, 10, None)
    digest = _digest(rows)
    texts = sorted(t.text for t in digest.templates.values())
    assert len(texts) == 3, texts  # three statements, not one "<*> TraceID: <*> SpanID: <*> ..." template
    assert not any("TraceID" in t or "SpanID" in t for t in texts)
    linked = digest.span_templates()
    routes = next(s for s in spans if s.service == "routes")
    assert [digest.templates[tid].text for tid in linked[routes.span_id]] == [
        next(t for t in texts if "Query route by id" in t)
    ]
    same = Digest.from_dict(digest.to_dict())  # the links survive the trip between Serve replicas
    assert same.span_templates().keys() == linked.keys()
    assert Digest.from_records([LogRecord(message='{"span_id": "00F067AA0BA902B7", "msg": "x"}')]).span_templates().keys() == {"00f067aa0ba902b7"}


def test_an_operation_that_stops_logging_after_the_alert_names_its_service() -> None:
    """A code exception with no error line: only the shift inside RouteController.queryById shows it."""
    spans, rows = _traced(T0 - 60, 60, broken_after=T0)
    evidence = _evidence(_digest(rows), _digest(_normal(T0 - 600)), spans=spans)
    findings = LogPatternSignal().findings(evidence)
    assert [f.service for f in findings] == ["routes"]
    assert "Query route by id" in findings[0].evidence and "RouteController.queryById" in findings[0].evidence
    verdict = EvidenceReasoner().decide(evidence)
    assert verdict.hypotheses[0].service == "routes"
    assert verdict.hypotheses[0].fault_type == "code_exception"


def test_a_sampled_digest_counts_only_the_sampled_requests(monkeypatch) -> None:
    """Links of a third of the requests kept (the span sample of a busy stream): the shift is still
    found, and the share before is read over the sampled requests (every one wrote the line), not
    over all of them."""
    import re

    import anomaly.digest as digest_module

    spans, rows = _traced(T0 - 60, 60, broken_after=T0)
    monkeypatch.setattr(digest_module, "MAX_SPAN_LINKS", 40)  # of 120 linked requests (orders and routes)
    window = _digest(rows)
    assert len(window.span_templates()) == 40 and window.dropped["span_links_sampled_out"] > 0
    findings = LogPatternSignal().findings(_evidence(window, _digest(_normal(T0 - 600)), spans=spans))
    assert [f.service for f in findings] == ["routes"]
    before, n_ref = map(int, re.search(r"(\d+) of (\d+) before", findings[0].evidence).groups())
    assert before == n_ref < 30


def test_no_pattern_shift_without_a_change() -> None:
    spans, rows = _traced(T0 - 60, 60, broken_after=None)
    assert LogPatternSignal().findings(_evidence(_digest(rows), _digest(_normal(T0 - 600)), spans=spans)) == []


def test_a_change_is_located_in_the_data_not_at_the_alert() -> None:
    """The alert fires two minutes after the line stopped: the change point is found where it is."""
    spans, rows = _traced(T0 - 180, 90, broken_after=T0 - 120)
    findings = LogPatternSignal().findings(_evidence(_digest(rows), _digest(_normal(T0 - 600)), spans=spans))
    assert [f.service for f in findings] == ["routes"]
    said = findings[0].evidence.split(" from ")[1][:9]
    expected = datetime.fromtimestamp(T0 - 120, tz=timezone.utc)
    assert abs((datetime.strptime(said, "%H:%M:%SZ") - datetime.strptime(expected.strftime("%H:%M:%SZ"), "%H:%M:%SZ")).total_seconds()) <= 10


def test_a_named_callee_that_keeps_serving_is_not_blamed_for_its_callers_complaint() -> None:
    """"No instances available for payments-service" from orders, while payments answers every other caller."""
    window_rows = _normal(T0 - 60)
    for i in range(30):
        window_rows.append(("orders", "ERROR", f"call failed: No instances available for payments-service (order {i})", T0 + 1 + i))
    serving = [
        Span(trace_id=f"s{i}", span_id=f"s{i}p", parent_id=None, service="payments", operation="POST /pay", start=T0 + 1 + i, duration_ms=5.0)
        for i in range(30)
    ]
    findings = LogTemplateSignal().findings(_evidence(_digest(window_rows), _digest(_normal(T0 - 600)), spans=serving))
    blamed = {f.service for f in findings}
    assert "orders" in blamed and "payments" not in blamed
    # without spans nothing shows payments answering: the complaint names the cause (the test above)
    silent = LogTemplateSignal().findings(_evidence(_digest(window_rows), _digest(_normal(T0 - 600))))
    assert max(silent, key=lambda f: f.strength).service == "payments"


def test_a_name_that_could_not_be_resolved_is_the_query_not_the_cause() -> None:
    window_rows = _normal(T0 - 60)
    for i in range(40):
        window_rows.append(("coredns", "ERROR", f"[ERROR] plugin/errors: 2 payments-service.shop.svc.cluster.local. A: read udp 10.0.0.{i}:53: i/o timeout", T0 + 1 + i))
    findings = LogTemplateSignal().findings(_evidence(_digest(window_rows), _digest(_normal(T0 - 600))))
    top = max(findings, key=lambda f: f.strength)
    assert top.service == "coredns" and top.fault_type == "dns_failure"
    assert "payments" not in {f.service for f in findings}


def test_the_owner_of_an_exhausted_database_is_blamed_over_the_clients_that_wait_on_it() -> None:
    """orders times out on its pool (many lines); orders-db refuses clients (fewer lines): the database causes."""
    window_rows = _normal(T0 - 60)
    for i in range(90):
        window_rows.append(("orders", "ERROR", f"Failed to create order {i}: java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms.", T0 + 1 + i))
    for i in range(30):
        window_rows.append(("orders-db", "FATAL", "sorry, too many clients already", T0 + 1 + i * 3))
    verdict = EvidenceReasoner().decide(_evidence(_digest(window_rows), _digest(_normal(T0 - 600))))
    top = verdict.hypotheses[0]
    assert (top.service, top.fault_type) == ("orders-db", "db_connection_exhaustion")
    assert any("a client of the failing resource" in e for e in top.evidence)
    assert "orders" in [h.service for h in verdict.hypotheses]
    assert verdict.classification.category == Category.database
    assert any("pg_stat_activity" in (s.command or "") for s in verdict.remediation)


def test_without_the_owner_speaking_the_client_that_reports_the_failure_is_named() -> None:
    window_rows = _normal(T0 - 60)
    for i in range(90):
        window_rows.append(("orders", "ERROR", f"Failed to create order {i}: HikariPool-1 - Connection is not available, request timed out after 30000ms.", T0 + 1 + i))
    verdict = EvidenceReasoner().decide(_evidence(_digest(window_rows), _digest(_normal(T0 - 600))))
    assert verdict.hypotheses[0].service == "orders"
    assert verdict.hypotheses[0].fault_type == "db_connection_exhaustion"


def test_the_dns_server_failing_upstream_is_blamed_over_the_services_whose_lookups_fail() -> None:
    window_rows = _normal(T0 - 60)
    for i in range(80):
        window_rows.append(("orders", "ERROR", f"dependency call failed: dial tcp: lookup payments.shop.svc.cluster.local on 10.96.0.10:53: read udp 10.2.1.{i}:4{i:03d}->10.96.0.10:53: i/o timeout", T0 + 1 + i))
        window_rows.append(("gateway", "ERROR", f"upstream request failed: getaddrinfo ENOTFOUND orders.shop.svc.cluster.local attempt {i}", T0 + 1 + i))
    for i in range(40):
        window_rows.append(("coredns", "ERROR", f"[ERROR] plugin/errors: 2 orders.shop.svc.cluster.local. A: read udp 10.2.0.{i}:53->10.96.0.1:53: i/o timeout", T0 + 2 + i * 2))
    verdict = EvidenceReasoner().decide(_evidence(_digest(window_rows), _digest(_normal(T0 - 600))))
    assert verdict.hypotheses[0].service == "coredns"
    assert verdict.hypotheses[0].fault_type == "dns_failure"
    assert verdict.classification.category == Category.network
    assert any("coredns" in (s.command or "") for s in verdict.remediation)


def test_a_line_gone_before_the_alert_fired_is_found_against_the_baseline() -> None:
    """Alerts fire minutes after a fault begins: the window alone shows no change, the baseline does."""
    spans, rows = _traced(T0 - 60, 60, broken_after=T0 - 600)
    base_spans, base_rows = _traced(T0 - 3600, 60, broken_after=None)
    window_only = _evidence(_digest(rows), _digest(_normal(T0 - 600)), spans=spans)
    assert LogPatternSignal().findings(window_only) == []
    evidence = _evidence(_digest(rows), _digest(base_rows), spans=spans, baseline_spans=base_spans)
    findings = LogPatternSignal().findings(evidence)
    assert [f.service for f in findings] == ["routes"]
    assert "Query route by id" in findings[0].evidence and "in the baseline" in findings[0].evidence
    assert EvidenceReasoner().decide(evidence).hypotheses[0].service == "routes"


def test_a_fault_that_sets_in_after_the_alert_is_found_at_its_own_change_point() -> None:
    """The line goes on for 40 s after the alert, then stops: compared at the alert it is diluted,
    at its own change point it is gone."""
    spans, rows = _traced(T0 - 60, 90, broken_after=T0 + 40)
    findings = LogPatternSignal().findings(_evidence(_digest(rows), _digest(_normal(T0 - 600)), spans=spans))
    assert [f.service for f in findings] == ["routes"]
    wrote, of = (int(n) for n in re.search(r"(\d+) of (\d+) after", findings[0].evidence).groups())
    assert wrote / of < 0.1


def test_an_error_the_baseline_had_and_the_window_lacks_is_a_recovery_not_a_fault() -> None:
    spans, rows = _traced(T0 - 60, 60, broken_after=None)
    base_spans, base_rows = _traced(T0 - 3600, 60, broken_after=None)
    failing = [(s, "ERROR", m.replace("[query][Query orders]", "[query][Seat service unreachable]"), t)
               for s, lv, m, t in base_rows if "Query orders" in m]
    evidence = _evidence(_digest(rows), _digest(base_rows + failing), spans=spans, baseline_spans=base_spans)
    assert LogPatternSignal().findings(evidence) == []


def test_a_line_few_requests_write_is_data_not_a_code_path() -> None:
    """One request in eight logs "cache miss"; it vanishes with the alert: too few requests to call it a fault."""
    spans, rows = _traced(T0 - 240, 240, broken_after=None)
    for s in spans:
        if s.service == "routes" and s.start < T0 and int(s.start) % 16 == 0:
            rows.append(("routes", "INFO", f"r.s.RouteServiceImpl#77 SpanID: {s.span_id} [getRouteById][cache miss]", s.start + 0.001))
    assert LogPatternSignal().findings(_evidence(_digest(rows), _digest(_normal(T0 - 600)), spans=spans)) == []


def test_a_window_that_begins_unusual_and_returns_to_the_baseline_is_not_a_fault() -> None:
    """The line is written early in the window only, and never in the baseline: "after" is the normal state."""
    spans, rows = _traced(T0 - 120, 60, broken_after=T0 - 80)
    base_spans, base_rows = _traced(T0 - 3600, 60, broken_after=T0 - 3600)
    evidence = _evidence(_digest(rows), _digest(base_rows), spans=spans, baseline_spans=base_spans)
    assert LogPatternSignal().findings(evidence) == []
    usual_spans, usual_rows = _traced(T0 - 3600, 60, broken_after=None)  # the baseline wrote it: it stopped
    stopped = _evidence(_digest(rows), _digest(usual_rows), spans=spans, baseline_spans=usual_spans)
    assert [f.service for f in LogPatternSignal().findings(stopped)] == ["routes"]


def test_a_delay_that_began_late_in_the_window_is_measured_after_its_onset() -> None:
    """Two minutes of normal calls, then one of delayed ones: over the whole window the median edge
    is unchanged; from the edges' own change point on it is many times slower."""
    window = [s for k in range(6) for s in _spans(T0 - 180 + 20 * k, None, 0.0)]
    window += [s for k in range(3) for s in _spans(T0 - 60 + 20 * k, "payments", 40.0)]
    baseline = [s for k in range(3) for s in _spans(T0 - 900 + 20 * k, None, 0.0)]
    digest = _digest(_normal(T0 - 180))
    evidence = _evidence(digest, _digest(_normal(T0 - 900)), spans=window, baseline_spans=baseline)
    slow = {f.service for f in TraceSignal().findings(evidence) if f.fault_type == "network_delay"}
    assert "payments" in slow


def test_an_idle_pod_waking_up_is_not_cpu_contention() -> None:
    """0.01 -> 1.6 millicores is hundreds of robust deviations, and still the smallest consumer of all."""
    from pipelines.reasoning.signals.metrics import MetricDeviationSignal

    busy = {(f"svc{i}", "cpu_usage_millicores"): [(T0 + j * 60, 20.0 + i + j % 2) for j in range(5)] for i in range(6)}
    idle = {("ticket-office", "cpu_usage_millicores"): [(T0 + j * 60, 1.6 if j == 3 else 0.01) for j in range(5)]}
    baseline = {k: [(T0 - 1800 + j * 60, v[0][1] if k[0] != "ticket-office" else 0.01 + 0.001 * (j % 3)) for j in range(30)]
                for k, v in {**busy, **idle}.items()}
    evidence = _evidence(_digest(_normal(T0 - 60)), _digest(_normal(T0 - 600)), metrics={**busy, **idle}, baseline_metrics=baseline)
    assert "ticket-office" not in {f.service for f in MetricDeviationSignal().findings(evidence)}
    hot = {**busy, ("ticket-office", "cpu_usage_millicores"): [(T0 + j * 60, 400.0 if j >= 3 else 0.01) for j in range(5)]}
    evidence = _evidence(_digest(_normal(T0 - 60)), _digest(_normal(T0 - 600)), metrics=hot, baseline_metrics=baseline)
    assert "ticket-office" in {f.service for f in MetricDeviationSignal().findings(evidence)}


def test_a_complaint_about_a_callee_that_keeps_serving_is_weak_evidence_against_the_caller() -> None:
    """The call failed somewhere between orders and payments (discovery, a client pool, the path):
    orders keeps only a part of the blame an error of its own would carry, and payments none."""
    serving = [
        Span(trace_id=f"s{i}", span_id=f"s{i}p", parent_id=None, service="payments", operation="POST /pay", start=T0 + 1 + i, duration_ms=5.0)
        for i in range(30)
    ]

    def orders_strength(message: str) -> float:
        rows = _normal(T0 - 60) + [("orders", "ERROR", message.format(i=i), T0 + 1 + i) for i in range(30)]
        findings = LogTemplateSignal().findings(_evidence(_digest(rows), _digest(_normal(T0 - 600)), spans=serving))
        assert "payments" not in {f.service for f in findings}
        return next(f.strength for f in findings if f.service == "orders")

    complaint = orders_strength("call failed: No instances available for payments-service (order {i})")
    own_error = orders_strength("call failed: NullPointerException in OrderValidator (order {i})")
    assert 0 < complaint < 0.5 * own_error


def test_a_line_half_the_requests_wrote_is_weaker_evidence_than_one_every_request_wrote() -> None:
    """A line every span of an operation wrote is its code path; one that half wrote is a branch the
    data takes, whose share moves with the traffic: its vanishing counts in proportion (enough
    requests that both shifts are certain)."""
    spans, rows = _traced(T0 - 200, 200, broken_after=T0)
    every = LogPatternSignal().findings(_evidence(_digest(rows), _digest(_normal(T0 - 600)), spans=spans))
    half_rows = [r for r in rows if not (r[0] == "routes" and int(re.search(r"RouteId: r(\d+)", r[2]).group(1)) % 2)]
    half = LogPatternSignal().findings(_evidence(_digest(half_rows), _digest(_normal(T0 - 600)), spans=spans))
    assert [f.service for f in every] == [f.service for f in half] == ["routes"]
    assert 0 < half[0].strength <= 0.55 * every[0].strength
def test_server_errors_inside_an_access_log_template_are_found_when_they_grow() -> None:
    """The ingress logs every request in one shape; 5xx answers of the checkout path grow from none
    to one in four while the line count stays the same: the grown error lines name the ingress."""

    def access(start: float, failing_every: int | None) -> list[tuple[str, str, str, float]]:
        rows = _normal(start)
        for i in range(160):
            status = 503 if failing_every and i % failing_every == 0 else 200
            rows.append(("ingress", "INFO", f'10.1.0.{i % 7} - - "POST /api/checkout/{i} HTTP/1.1" {status} {90 + i} "-" "okhttp/4"', start + i * 0.5))
        return rows

    evidence = _evidence(_digest(access(T0 - 60, 4)), _digest(access(T0 - 600, None)))
    findings = LogTemplateSignal().findings(evidence)
    assert [f.service for f in findings] == ["ingress"]
    assert "x40 " in findings[0].evidence  # the 40 failed requests, not the 160 lines of the shape
    assert LogTemplateSignal().findings(_evidence(_digest(access(T0 - 60, None)), _digest(access(T0 - 600, None)))) == []


def test_a_peer_that_logs_nothing_is_named_by_the_host_and_port_its_callers_fail_on() -> None:
    """orders times out on inventory:8080; inventory's own logs were not given (or it logs nothing)."""
    window_rows = _normal(T0 - 60)
    for i in range(40):
        window_rows.append(("orders", "ERROR", f"Failed to load order {i}: java.net.SocketTimeoutException: Read timed out calling inventory:8080", T0 + 1 + i))
    findings = LogTemplateSignal().findings(_evidence(_digest(window_rows), _digest(_normal(T0 - 600))))
    strength = {f.service: f.strength for f in findings}
    assert max(strength, key=strength.get) == "inventory" and strength["orders"] < strength["inventory"]
    assert "logged by orders" in next(f.evidence for f in findings if f.service == "inventory")
    quiet = [("orders", "INFO", f"listening on orders:8080, worker {i}", T0 + 1 + i) for i in range(40)]
    assert LogTemplateSignal().findings(_evidence(_digest(_normal(T0 - 60) + quiet), _digest(_normal(T0 - 600)))) == []
    frames = [("orders", "ERROR", f"request {i} failed at o.a.c.c.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:205)",
               T0 + 1 + i) for i in range(40)]  # a source file and line is not a host and port
    assert {f.service for f in LogTemplateSignal().findings(_evidence(_digest(_normal(T0 - 60) + frames), _digest(_normal(T0 - 600))))} == {"orders"}
