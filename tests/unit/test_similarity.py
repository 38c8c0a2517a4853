"""Signatures, their similarity, feedback resolution and the history citation: pure functions, no database."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from pipelines.feedback import CITE_SIMILARITY, FeedbackError, cite_history, confirm
from pipelines.schemas import Analysis, Feedback, FeedbackCreate, Signature, SimilarIncident
from pipelines.similarity import jaccard, likeness, rank_similar, signature_of

DB_TEMPLATE = "<*> UTC [<*>] FATAL: sorry, too many clients already"
APP_TEMPLATE = "<*> ERROR [orders-service] Failed to create order"


def _analysis(incident_id: str = "b", top: str = "orders-db", second: str = "orders-service",
              confidence: tuple[float, float] = (0.6, 0.5)) -> Analysis:
    return Analysis.model_validate({
        "incident_id": incident_id,
        "summary": "connections refused",
        "classification": {"category": "database", "confidence": 0.8},
        "hypotheses": [
            {"cause": f"connections exhausted in {top}", "confidence": confidence[0], "category": "database",
             "service": top, "fault_type": "db_connection_exhaustion",
             "evidence": [f'[logs] error template "{DB_TEMPLATE}" x80', "[metrics] CPU up"]},
            {"cause": f"errors in {second}", "confidence": confidence[1], "category": "application",
             "service": second, "fault_type": "code_exception", "evidence": ["[logs] error template x120"]},
        ],
        "remediation": [{"step": 1, "action": "look", "expected_outcome": "seen", "risk_level": "low"}],
        "anomalies": [
            {"kind": "template", "subject": DB_TEMPLATE, "score": 0.9, "service": "orders-db"},
            {"kind": "template", "subject": APP_TEMPLATE, "score": 0.9, "service": "orders-service"},
            {"kind": "metric", "subject": "error_rate", "score": 0.8, "service": "orders-service"},
            {"kind": "time_bucket", "subject": "2024-01-07T10:26:50Z", "score": 0.7},
        ],
        "reasoner": "evidence",
    })


def _past(incident_id: str, similarity: float, service: str | None, category: str = "database",
          notes: str = "raised max_connections") -> SimilarIncident:
    feedback = None if service == "-" else Feedback(
        id=1, incident_id=incident_id, created_at=datetime(2026, 1, 1, tzinfo=timezone.utc), actor="op", rank=None,
        confirmed_rank=1, category=category, service=service, cause=None, notes=notes)
    return SimilarIncident(incident_id=incident_id, alert_name="HighErrorRate", service="orders-service",
                           started_at=datetime(2026, 1, 1, 3, 4, tzinfo=timezone.utc), status="resolved",
                           category="database", top_cause="x", similarity=similarity, same_category=True,
                           feedback=feedback)


def test_the_signature_holds_services_templates_and_evidence_kinds() -> None:
    signature = signature_of(_analysis())
    assert signature.category.value == "database"
    assert signature.services == ["orders-db", "orders-service"]
    assert signature.templates == sorted([DB_TEMPLATE, APP_TEMPLATE])
    assert signature.evidence_kinds == ["fault:code_exception", "fault:db_connection_exhaustion", "metric:error_rate",
                                        "signal:logs", "signal:metrics"]


def test_a_history_citation_does_not_change_the_signature() -> None:
    plain = _analysis()
    cited = cite_history(plain, [_past("a", 0.9, "orders-db")])
    assert cited.hypotheses[0].evidence[-1].startswith("[history]")
    assert signature_of(cited) == signature_of(plain)


def test_jaccard_and_likeness() -> None:
    assert jaccard(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3)
    assert jaccard([], []) is None
    a = signature_of(_analysis())
    assert likeness(a, a).score == 1.0
    other = Signature(category="network", services=["dns"], templates=["<*> NXDOMAIN"], evidence_kinds=["signal:logs"])
    like = likeness(a, other)
    # services 0/3, templates 0/3, kinds 1/5, category 0: 0.25 * 0.2
    assert like.score == pytest.approx(0.05) and like.evidence_kinds == ["signal:logs"] and not like.same_category
    assert likeness(other, a).score == like.score


def test_a_set_neither_signature_has_is_left_out_of_the_mean() -> None:
    a = Signature(category="infrastructure", services=["node-1"], evidence_kinds=["metric:cpu"])
    b = Signature(category="infrastructure", services=["node-1"], evidence_kinds=["metric:cpu"])
    assert likeness(a, b).score == 1.0, "no templates on either side is not a difference"


def test_ranking_is_most_alike_first_keeps_order_on_ties_and_drops_nothing_in_common() -> None:
    target = signature_of(_analysis())
    same = signature_of(_analysis())
    half = Signature(category="database", services=["orders-db"], templates=[DB_TEMPLATE], evidence_kinds=[])
    unrelated = Signature(category="security", services=["auth"], templates=["<*> login failed"], evidence_kinds=["x"])
    ranked = rank_similar(target, [("half", half), ("new", same), ("old", same), ("none", unrelated)], limit=10)
    assert [key for key, _ in ranked] == ["new", "old", "half"]
    assert rank_similar(target, [("half", half), ("new", same)], limit=1)[0][0] == "new"
    assert [k for k, _ in rank_similar(target, [("half", half), ("new", same)], limit=5, minimum=0.99)] == ["new"]


def test_feedback_body_needs_a_rank_or_the_real_cause() -> None:
    assert FeedbackCreate(rank=2).rank == 2
    assert FeedbackCreate(category="database", service="orders-db").service == "orders-db"
    for bad, says in (({}, "give rank"), ({"rank": 1, "service": "x"}, "not both"),
                      ({"category": "database"}, "give rank"), ({"category": "nope", "service": "x"}, "category"),
                      ({"rank": 1, "extra": 1}, "extra")):
        with pytest.raises(ValidationError, match=says):
            FeedbackCreate.model_validate(bad)


def test_confirm_a_rank_or_a_cause_against_the_analysis() -> None:
    hypotheses = _analysis().hypotheses
    second = confirm(FeedbackCreate(rank=2), hypotheses, "i")
    assert (second.rank, second.confirmed_rank, second.service, second.category.value) == (2, 2, "orders-service", "application")
    named = confirm(FeedbackCreate(category="database", service="orders-db"), hypotheses, "i")
    assert named.confirmed_rank == 1 and named.cause is None
    missed = confirm(FeedbackCreate(category="network", service="dns"), hypotheses, "i")
    assert missed.confirmed_rank is None and missed.service == "dns"
    with pytest.raises(FeedbackError, match=r"rank: 3 is out of range; .* 2 hypotheses \(1\.\.2\)"):
        confirm(FeedbackCreate(rank=3), hypotheses, "i")
    with pytest.raises(FeedbackError, match="rank: incident i has no analysis yet"):
        confirm(FeedbackCreate(rank=1), None, "i")


def test_no_confirmed_history_changes_nothing() -> None:
    analysis = _analysis()
    assert cite_history(analysis, []) is analysis
    assert cite_history(analysis, [_past("a", 0.9, "-")]) is analysis, "without feedback a look-alike is not cited"
    assert cite_history(analysis, [_past("a", CITE_SIMILARITY - 0.01, "orders-db")]) is analysis


def test_history_is_cited_and_raises_the_hypothesis_it_confirms() -> None:
    analysis = _analysis(confidence=(0.6, 0.5))
    past = [_past("a1", 0.9, "orders-service", "application", notes="rolled back release 42"),
            _past("a2", 0.8, "orders-service", "application"), _past("a3", 0.7, "orders-service", "application"),
            _past("a4", 0.6, "orders-db")]
    cited = cite_history(analysis, past)
    top = cited.hypotheses[0]
    assert top.service == "orders-service", "raised above the first: 0.5 + 0.5 * 0.5 * 3/4 * 0.9 = 0.669"
    assert top.confidence == pytest.approx(0.669)
    line = top.evidence[-1]
    assert line.startswith("[history] 3 of the 4 confirmed past incidents most like this one")
    assert "were orders-service (application)" in line and "incident a1" in line and "rolled back release 42" in line
    assert "confidence raised from 0.50 to 0.67" in line
    assert analysis.hypotheses[1].confidence == 0.5, "the given analysis is not changed"


def test_a_cause_no_hypothesis_names_is_cited_on_the_top_without_raising() -> None:
    analysis = _analysis()
    cited = cite_history(analysis, [_past("a", 0.9, "dns", "network", notes="")])
    assert [h.confidence for h in cited.hypotheses] == [h.confidence for h in analysis.hypotheses]
    assert cited.hypotheses[0].evidence[-1].endswith("resolved by: no notes given; no hypothesis of this analysis names that service")


def test_evaluations_run_without_history() -> None:
    """An evaluation's figures never depend on feedback in the database it runs against."""
    from pipelines.cli import _eval_settings
    from pipelines.settings import Settings

    assert Settings().recall_history and not _eval_settings().recall_history


def test_without_a_shared_service_or_template_a_past_incident_is_never_cited() -> None:
    mine = signature_of(_analysis())
    elsewhere = Signature(category=mine.category, services=["other"], templates=["<*> other"],
                          evidence_kinds=mine.evidence_kinds)
    score = likeness(mine, elsewhere).score
    assert score == pytest.approx(0.4) and score < CITE_SIMILARITY
