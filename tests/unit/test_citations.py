"""What each evidence item cites is found in the incident's data and stored, bounded and redacted."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from anomaly import digest_lines
from pipelines import citations
from pipelines.schemas import Alert, Category, Hypothesis, IncidentContext, Span, Telemetry
from pipelines.simulate import simulate
from tests.support.local_pipeline import local_pipeline

START = datetime(2024, 1, 7, 10, 20, tzinfo=timezone.utc)


def _at(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S.000")


def _lines() -> list[str]:
    """Ten minutes of steady INFO lines; from minute 6 a database error every 2 s."""
    out = [f"{_at(s)} INFO orders-service handled order {1000 + s} in {s % 7 + 3} ms" for s in range(0, 600)]
    out += [f"{_at(s)} ERROR orders-service could not connect to orders-db: connection refused (attempt {s % 5})"
            for s in range(360, 600, 2)]
    return sorted(out)


def _hypothesis(*evidence: str, service: str = "orders-service") -> Hypothesis:
    return Hypothesis(cause="c", confidence=0.8, evidence=list(evidence), category=Category.database, service=service)


def test_a_quoted_template_is_found_with_its_counts_times_and_lines() -> None:
    digest = digest_lines(_lines())
    error = next(t for t in digest.templates.values() if "connect" in t.text)
    quoted = f'[logs] error template "{error.text[:40]}..." x{error.count} (baseline 0)'
    cited = citations.cite([_hypothesis("[metrics] nothing quoted"), _hypothesis(quoted)], digest, None, {}, None, [], [])
    assert [t.template_id for t in cited.templates] == [error.template_id]
    t = cited.templates[0]
    assert t.count == 120
    assert [(r.hypothesis, r.evidence) for r in t.cited_by] == [(1, 0)]
    assert t.first_seen == START + timedelta(seconds=360) and t.last_seen == START + timedelta(seconds=598)
    assert 1 <= len(t.exemplars) <= citations.MAX_EXEMPLARS
    assert all("could not connect to orders-db" in line for line in t.exemplars)
    assert t.onset == START + timedelta(seconds=360), "a template new in the window began at its first line"
    assert citations.onset(cited) == t.onset


def test_a_concrete_line_quoted_cites_the_template_it_fits() -> None:
    digest = digest_lines(_lines())
    line = [line for line in _lines() if "ERROR" in line][-1]
    cited = citations.cite([_hypothesis(f'[dependencies] named by 120 error lines: "{line}" x120')], digest, None, {},
                           None, [], [])
    assert len(cited.templates) == 1 and "connect" in cited.templates[0].text


def test_a_short_or_unknown_quote_cites_nothing() -> None:
    digest = digest_lines(_lines())
    evidence = ['error template "ERROR" x5', 'error template "the disk of node-7 is full and nothing else" x3']
    assert citations.cite([_hypothesis(*evidence)], digest, None, {}, None, [], []).templates == []


def test_metrics_and_operations_named_by_the_evidence_carry_their_numbers() -> None:
    t0 = START.timestamp()
    window = {("orders-service", "error_rate"): [(t0 + 15 * i, 0.01 if i < 20 else 0.4) for i in range(40)],
              ("orders-db", "error_rate"): [(t0, 0.0)], ("orders-service", "cpu_usage_percent"): [(t0, 30.0)]}
    baseline = {("orders-service", "error_rate"): [(t0 - 600 + 15 * i, 0.01) for i in range(40)]}
    spans = [Span(trace_id="t", span_id=f"s{i}", service="orders-db", operation="INSERT orders", start=t0 + i,
                  duration_ms=900.0, error=i % 2 == 0) for i in range(10)]
    before = [Span(trace_id="b", span_id=f"b{i}", service="orders-db", operation="INSERT orders", start=t0 - 300 + i,
                   duration_ms=5.0) for i in range(4)]
    hypotheses = [_hypothesis("[metrics] errors error_rate: baseline median 0.01 -> 0.4 in the window (50 robust sd)"),
                  _hypothesis("[traces] INSERT orders of orders-db: median 5 ms -> 900 ms", service="orders-db")]
    cited = citations.cite(hypotheses, digest_lines(_lines()), None, window, baseline, spans, before)
    assert [(m.service, m.name) for m in cited.metrics] == [("orders-service", "error_rate")], \
        "the hypothesis' service's series only, not orders-db's, and not a metric the sentence does not name"
    m = cited.metrics[0]
    assert (m.peak, m.baseline_median, m.points) == (0.4, 0.01, 40)
    assert m.peak_at == START + timedelta(seconds=300)
    [op] = cited.operations
    assert (op.service, op.operation, op.spans, op.errors, op.median_ms) == ("orders-db", "INSERT orders", 10, 5, 900.0)
    assert (op.baseline_spans, op.baseline_median_ms) == (4, 5.0)
    assert [(r.hypothesis, r.evidence) for r in op.cited_by] == [(1, 0)]


def test_stored_sizes_are_bounded() -> None:
    lines = [f"{_at(s)} ERROR svc{i} failure number {i} of a kind: " + "x" * 5000 + f" end{s}"
             for i in range(30) for s in range(0, 40, 4)]
    digest = digest_lines(sorted(lines))
    quoted = "; ".join(f'"{t.text[:60]}"' for t in digest.templates.values())
    cited = citations.cite([_hypothesis(quoted)], digest, None, {}, None, [], [])
    assert 1 <= len(cited.templates) <= citations.MAX_TEMPLATES
    for t in cited.templates:
        assert len(t.text) <= citations.MAX_TEMPLATE_CHARS
        assert all(len(line) <= citations.MAX_EXEMPLAR_CHARS for line in t.exemplars)


@pytest.fixture(scope="module")
async def db_pool_analysis():
    """The simulated database outage through the real stages, in this process, with a secret in a quoted template's lines."""
    body = simulate("db_pool_exhaustion", seed=5).request_body()
    secret = "postgres://orders:S3cretPassw0rd@orders-db:5432/orders"
    def with_secret(text: str) -> str:
        return text.replace("too many clients already", f"too many clients already dsn={secret}")

    body["logs"] = [with_secret(line) if isinstance(line, str) else {**line, "message": with_secret(line["message"])}
                    for line in body["logs"]]
    assert secret in str(body["logs"])
    context = IncidentContext(alert=Alert.model_validate(body["alert"]),
                              window=Telemetry(logs=body["logs"], metrics=body["metrics"], spans=body.get("spans", [])),
                              baseline=Telemetry.model_validate(body["baseline"]) if body.get("baseline") else None)
    return await local_pipeline().analyze("cite-1", context), secret


async def test_the_pipeline_stores_what_the_evidence_cites(db_pool_analysis) -> None:
    analysis, _ = db_pool_analysis
    cited = analysis.cited
    assert cited.templates, "the top hypothesis quotes templates"
    for t in cited.templates:
        for ref in t.cited_by:
            sentence = analysis.hypotheses[ref.hypothesis].evidence[ref.evidence]
            assert any(citations.same_text(q, t.text) or any(citations.same_text(q, line.split("\n")[0]) for line in t.exemplars)
                       or "<*>" in t.text for q in citations.quotes(sentence)), sentence
    quoting = {e for e, sentence in enumerate(analysis.hypotheses[0].evidence) if citations.quotes(sentence)}
    linked = {ref.evidence for t in cited.templates for ref in t.cited_by if ref.hypothesis == 0}
    assert quoting and linked == quoting, "every evidence item of the top hypothesis that quotes a line links it"
    assert analysis.onset is not None and analysis.onset == min(
        t.onset for t in cited.templates if t.onset and any(r.hypothesis == 0 for r in t.cited_by))
    assert analysis.baseline_range is not None and analysis.window_range is not None
    assert analysis.baseline_range.end < analysis.window_range.start
    assert analysis.window_range.lines == analysis.stats.lines_in


async def test_a_secret_in_an_exemplar_line_is_redacted_in_the_stored_analysis(db_pool_analysis) -> None:
    analysis, secret = db_pool_analysis
    stored = analysis.model_dump_json()
    assert "S3cretPassw0rd" not in stored
    lines = [line for t in analysis.cited.templates for line in t.exemplars if "too many clients" in line]
    assert lines and all("[REDACTED:password]" in line for line in lines)
    assert analysis.stats.redactions > 0
