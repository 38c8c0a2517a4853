"""Summary and anomaly scoring on a simulated incident (thousands of lines, several services)."""

from __future__ import annotations

import json
import random
import re
import time

import pytest

from anomaly import Digest, digest_lines, score_anomalies, summarize

T0 = 1_767_000_000.0
SERVICES = ["frontend", "orders", "payments", "inventory"]


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "Z"


def _normal(rng: random.Random, t: float) -> str:
    svc = rng.choice(SERVICES)
    msg = rng.choice([
        f"GET /api/{svc}/{rng.randint(1, 9999)} 200 {rng.randint(2, 80)}ms",
        f"cache hit ratio {rng.random():.2f}",
        f"processed batch of {rng.randint(1, 50)} events",
        f"user {rng.choice(['ann', 'ben', 'cat', 'dan', 'eve', 'fay'])} session refreshed",
    ])
    return json.dumps({"time": _iso(t), "level": "info", "service": svc, "msg": msg})


def simulate(seed: int, start: float, n: int, incident: bool) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        t = start + i * 0.2
        if incident and i > n // 2 and rng.random() < 0.12:
            lines += [
                f"ts={_iso(t)} level=error service=payments msg=\"charge {rng.randint(1, 9999)} failed: "
                "java.sql.SQLTransientConnectionException: Connection is not available\"",
                f"\tat com.shop.payments.Repo.save(Repo.java:{rng.randint(10, 99)})",
            ]
        elif incident and i > n // 2 and rng.random() < 0.05:
            inner = f"{_iso(t)} WARN upstream payments timed out after {rng.randint(1000, 5000)}ms\n"
            lines.append(json.dumps({"log": inner, "stream": "stdout", "kubernetes": {"container_name": "orders"}}))
        else:
            lines.append(_normal(rng, t))
    return lines


@pytest.fixture(scope="module")
def incident() -> tuple[list[str], Digest, Digest]:
    window_lines = simulate(1, T0 + 3600, 6000, incident=True)
    baseline = digest_lines(simulate(2, T0, 6000, incident=False))
    # the window arrives in chunks, as the Summarizer replicas see it
    chunks = [digest_lines(window_lines[i : i + 1500]) for i in range(0, len(window_lines), 1500)]
    return window_lines, Digest.merge_all(chunks), baseline


def test_new_error_template_is_flagged_with_evidence(incident):
    _, window, baseline = incident
    report = score_anomalies(window, baseline)
    top = report.flagged()
    assert top, "the incident must flag something"
    flagged = {i.subject: i for i in report.templates if i.flagged}
    sql = next(i for s, i in flagged.items() if "SQLTransientConnectionException" in s)
    assert any("upstream payments timed out" in s for s in flagged)
    assert sql.detail.startswith("new since baseline")
    assert "java.sql.SQLTransientConnectionException x" in sql.detail
    assert any("Connection is not available" in e and "Repo.java" in e for e in sql.evidence)
    assert report.services[0].subject == "payments"
    assert all(0.0 <= i.score <= 1.0 for i in (*report.templates, *report.services, *report.buckets))
    normal = [i for i in report.templates if "cache hit ratio" in i.subject]
    assert normal and not normal[0].flagged


def test_bucket_scores_rise_when_the_incident_starts(incident):
    _, window, baseline = incident
    report = score_anomalies(window, baseline)
    by_time = sorted(report.buckets, key=lambda i: i.subject)
    half = len(by_time) // 2
    early = max(i.score for i in by_time[:half - 1])
    late = max(i.score for i in by_time[half + 1 :])
    assert late > early


def test_without_baseline_the_window_is_its_own_reference(incident):
    _, window, _ = incident
    report = score_anomalies(window)
    flagged = [i for i in report.templates if i.flagged]
    assert flagged and any("SQLTransientConnectionException" in i.subject for i in flagged)


def test_metric_spike_is_flagged_and_flat_metric_is_not():
    base = {("payments", "cpu"): [(T0 + i * 60, 0.30 + 0.01 * (i % 3)) for i in range(30)],
            ("orders", "cpu"): [(T0 + i * 60, 0.50 + 0.01 * (i % 3)) for i in range(30)]}
    window = {("payments", "cpu"): [(T0 + 3600 + i * 60, 0.31 if i < 5 else 0.97) for i in range(10)],
              ("orders", "cpu"): [(T0 + 3600 + i * 60, 0.51) for i in range(10)]}
    report = score_anomalies(Digest(), None, metrics=window, baseline_metrics=base)
    scores = {(m.service, m.subject): m for m in report.metrics}
    assert scores[("payments", "cpu")].flagged and not scores[("orders", "cpu")].flagged
    assert scores[("payments", "cpu")].evidence


def test_summary_is_short_names_flagged_templates_and_facts(incident):
    lines, window, baseline = incident
    report = score_anomalies(window, baseline)
    flagged = report.flagged_template_ids()
    text = summarize(window, must_include=flagged, baseline=baseline)
    words = len(text.split())
    assert words <= 200
    assert words <= 0.01 * sum(len(line.split()) for line in lines)  # >= 99 % fewer words
    # the flagged templates are told by what their lines say, not by their ids
    assert not any(tid in text for tid in window.templates) and "<*>" not in text
    assert "java.sql.SQLTransientConnectionException" in text
    assert "upstream payments timed out" in text
    assert "payments" in text


def test_summary_keeps_every_flagged_template_even_when_many():
    # 40 templates of different lengths, all errors
    lines = [f"2024-01-01T00:00:{i % 60:02d}Z ERROR failure {'step ' * (i % 40)}code {i}" for i in range(4000)]
    d = digest_lines(lines)
    ids = list(d.templates)
    assert len(ids) >= 30
    text = summarize(d, must_include=ids, max_words=200)
    assert len(text.split()) <= 200
    assert not any(t in text for t in ids)
    # each flagged template is described (a count of its lines) or counted among the rest
    described = len(re.findall(r"\d+ times in \d+ min|every \d+ s", text))
    rest = re.search(r"(\d+) more new or flagged patterns?", text)
    assert described + (int(rest.group(1)) if rest else 0) == len(ids)
