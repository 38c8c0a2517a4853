"""The evidence reasoner's answer as a whole: who is named, in which category, how confidently, what to do.

Each test builds its evidence by hand: normal traffic of three services in the baseline and the
window, and a fault written as its callers and owners would log it.
"""

from __future__ import annotations

from datetime import datetime, timezone

from anomaly import AnomalyReport, Digest, LogRecord
from pipelines.reasoning.base import Evidence
from pipelines.reasoning.evidence import CONFIDENT, EvidenceReasoner, confidences_of
from pipelines.reasoning.signals.dependencies import pod_workload
from pipelines.reasoning.signals.hosts import external_provider, is_external_host
from pipelines.schemas import Alert, Category, RiskLevel

T0 = 1_700_000_000.0
ALERT = Alert(name="HighErrorRate", timestamp=datetime.fromtimestamp(T0, tz=timezone.utc),
              labels={"service": "checkout", "namespace": "shop"})


def _digest(rows: list[tuple[str, str, str, float]]) -> Digest:
    return Digest.from_records([LogRecord(message=m, timestamp=t, level=lv, service=s) for s, lv, m, t in rows])


def _normal(start: float, n: int = 100) -> list[tuple[str, str, str, float]]:
    rows = []
    for i in range(n):
        t = start + i * 3
        rows.append(("checkout", "INFO", f"POST /api/checkout 200 in {10 + i % 5} ms", t))
        rows.append(("orders", "INFO", f"order {1000 + i} created", t + 1))
        rows.append(("payments", "INFO", f"payment {2000 + i} captured", t + 2))
    return rows


def _decide(fault_rows: list[tuple[str, str, str, float]]):
    window = _digest(_normal(T0 - 240) + fault_rows)
    evidence = Evidence(alert=ALERT, summary="", digest=window, report=AnomalyReport(), baseline_digest=_digest(_normal(T0 - 900)))
    return EvidenceReasoner().decide(evidence)


def _no_change_to(verdict, *clients: str) -> None:
    """No step changes (medium/high risk) a service that only suffers the fault."""
    for step in verdict.remediation:
        if step.risk_level != RiskLevel.low:
            text = f"{step.action} {step.command or ''}"
            assert not any(f"deployment/{c}" in text or f"deploy/{c}" in text for c in clients), step


def test_a_database_refusing_connections_is_named_by_its_callers() -> None:
    rows = []
    for i in range(40):
        t = T0 - 100 + i * 4
        rows.append(("orders", "ERROR", f"Connection to orders-db:5432 refused. Check that the hostname and port are correct "
                                        f"(request {i}) java.net.ConnectException: Connection refused", t))
        rows.append(("checkout", "ERROR", f"call to orders failed: HTTP 503 for cart {i}", t + 1))
    verdict = _decide(rows)
    top = verdict.hypotheses[0]
    assert top.service == "orders-db"
    assert top.category == Category.database
    assert verdict.classification.category == top.category
    assert any("orders-db" in e for e in top.evidence)
    assert any("orders-db" in (s.command or s.action) for s in verdict.remediation)
    _no_change_to(verdict, "orders", "checkout")


def test_an_external_provider_answering_503_is_the_cause_not_its_caller() -> None:
    rows = []
    for i in range(40):
        t = T0 - 100 + i * 4
        rows.append(("payments", "ERROR", f"POST https://api.stripe.com/v1/payment_intents -> 503 Service Unavailable (attempt {i % 3 + 1}/3)", t))
        rows.append(("checkout", "ERROR", f"payment authorization failed: payments: 503 Service Unavailable order {i}", t + 1))
    verdict = _decide(rows)
    top = verdict.hypotheses[0]
    assert "stripe" in (top.service or "")
    assert top.category == Category.external
    assert verdict.classification.category == Category.external
    assert top.confidence >= CONFIDENT
    _no_change_to(verdict, "payments", "checkout")


def test_a_crashed_dns_server_is_blamed_over_the_names_that_failed_to_resolve() -> None:
    rows = []
    for i in range(30):
        t = T0 - 100 + i * 5
        rows.append(("checkout", "ERROR", f"quote failed: dial tcp: lookup shipping.shop.svc.cluster.local on 10.96.0.10:53: server misbehaving ({i})", t))
        rows.append(("payments", "ERROR", f"fraud check failed: dial tcp: lookup riskscore.shop.svc.cluster.local on 10.96.0.10:53: read udp: i/o timeout ({i})", t + 1))
        if i % 3 == 0:
            rows.append(("coredns", "ERROR", f"[FATAL] plugin/loop: Loop (127.0.0.1:{40000 + i} -> :53) detected for zone \".\"", t + 2))
    verdict = _decide(rows)
    top = verdict.hypotheses[0]
    assert top.service == "coredns"
    assert top.category == Category.network
    assert top.fault_type == "dns_failure"
    names = [h.service for h in verdict.hypotheses]
    assert "shipping" not in names and "riskscore" not in names


def test_weak_evidence_says_so_and_gathers_evidence_instead_of_blaming_the_alerting_service() -> None:
    rows = [("checkout", "ERROR", "cart total mismatch, recalculating", T0 - 20),
            ("checkout", "ERROR", "cart total mismatch, recalculating", T0 + 5)]
    verdict = _decide(rows)
    assert all(h.confidence < CONFIDENT for h in verdict.hypotheses)
    assert verdict.classification.confidence < CONFIDENT
    assert any(r.startswith("weak evidence") for r in verdict.degraded_reasons)
    assert all(s.risk_level == RiskLevel.low for s in verdict.remediation)
    assert "dashboards" in verdict.remediation[0].action


def test_a_window_like_its_baseline_names_no_confident_cause() -> None:
    verdict = _decide([])
    assert max(h.confidence for h in verdict.hypotheses) < CONFIDENT
    assert any(r.startswith("weak evidence") for r in verdict.degraded_reasons)


def test_hypotheses_name_distinct_services_or_causes() -> None:
    rows = [("checkout", "ERROR", f"NullPointerException in PriceCalculator.total for cart {i}", T0 - 100 + i * 4) for i in range(40)]
    verdict = _decide(rows)
    assert 2 <= len(verdict.hypotheses) <= 3
    pairs = [(h.service, h.cause) for h in verdict.hypotheses]
    assert len(set(pairs)) == len(pairs)
    services = [h.service for h in verdict.hypotheses if h.service]
    assert len(set(services)) == len(services)
    assert verdict.hypotheses[0].service == "checkout"
    assert verdict.hypotheses[1].service != "checkout"


def test_confidence_grows_with_evidence_and_with_the_margin() -> None:
    assert confidences_of([0.2], True)[0] < CONFIDENT  # one weak signal
    assert confidences_of([1.5], True)[0] >= CONFIDENT  # strong, alone
    assert confidences_of([1.5, 1.4], True)[0] < confidences_of([1.5, 0.3], True)[0]  # a close runner-up
    assert confidences_of([1.5], False)[0] < confidences_of([1.5], True)[0]  # nothing compared with a baseline
    ranked = confidences_of([1.0, 0.9, 0.2], True)
    assert ranked == sorted(ranked, reverse=True)


def test_what_counts_as_an_external_provider() -> None:
    assert is_external_host("api.stripe.com")
    assert not is_external_host("orders.shop.svc.cluster.local")
    assert not is_external_host("10.0.3.17")
    assert not is_external_host("com.stripe.net")  # a Java package
    assert external_provider("PutObject: operation error S3: PutObject, https response error StatusCode: 503") == {"aws s3"}
    # a referer of an inbound request and a documentation link are not what the logger called
    assert external_provider('"GET /api/cart HTTP/1.1" 502 157 "https://shop.example.com/" "Mozilla/5.0"') == set()
    assert external_provider("WARNING overcommit disabled, see https://github.com/redis/redis/issues/1328") == set()


def test_a_pod_name_gives_its_workload() -> None:
    assert pod_workload("batch/report-builder-28796234-5nj8q", set()) == "report-builder"
    assert pod_workload("prod/billing-chgnt4t9tq-5lxvp", set()) == "billing"
    assert pod_workload("billing-db-0", {"billing"}) == "billing-db"
    assert pod_workload("prod/cart-hp9rmbnsb-5rj4d", {"cart"}) == "cart"
