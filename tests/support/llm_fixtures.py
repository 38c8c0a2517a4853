"""Evidence of a small simulated incident and a fake evidence reasoner, for the LLM reasoner's tests.

The evidence uses the log engine's documented result types (``TemplateStats``,
``ScoredItem``, ``AnomalyReport``) filled from generated lines by a deliberately simple
grouping, so these unit tests depend on the engine's interface, not on its algorithms.
The fake fallback stands in for the evidence reasoner only in these unit tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from anomaly import AnomalyReport, ScoredItem, TemplateStats
from pipelines.reasoning.base import Evidence, Verdict
from pipelines.schemas import Alert, Category, Classification, Hypothesis, RemediationStep, RiskLevel

T0 = 1_700_000_000.0
POOL_LINE = "connection pool exhausted: 50/50 connections in use"
TIMEOUT_LINE = "java.net.SocketTimeoutException: Read timed out calling payment"


@dataclass
class SimpleDigest:
    """The part of ``anomaly.Digest`` the prompt reads: templates and services."""

    templates: dict[str, TemplateStats] = field(default_factory=dict)
    services: dict[str, int] = field(default_factory=dict)
    lines: int = 0


def _digest(lines: list[tuple[str, str, str, float]]) -> SimpleDigest:
    """Group (service, level, message, time) by the message with digits masked."""
    digest = SimpleDigest()
    for service, level, message, ts in lines:
        text = re.sub(r"\d+", "<NUM>", message)
        tid = f"T{abs(hash(text)) % 10**8:08d}"
        t = digest.templates.get(tid)
        if t is None:
            exc = re.findall(r"\b(?:[a-z]+\.)+[A-Z]\w*(?:Exception|Error)\b", message)
            t = digest.templates[tid] = TemplateStats(
                template_id=tid, text=text, count=0, first_seen=ts, last_seen=ts, samples=[], levels={},
                services={}, exception_types={e: 0 for e in exc}, is_error=level == "ERROR",
            )
        t.count += 1
        t.last_seen = ts
        if len(t.samples) < 3:
            t.samples.append(message)
        t.levels[level] = t.levels.get(level, 0) + 1
        t.services[service] = t.services.get(service, 0) + 1
        if level == "ERROR":
            t.failures[service] = t.failures.get(service, 0) + 1
        for e in t.exception_types:
            t.exception_types[e] += 1
        digest.services[service] = digest.services.get(service, 0) + 1
        digest.lines += 1
    return digest


def _report(digest: SimpleDigest) -> AnomalyReport:
    """Error templates flagged, scored by their share of the error lines."""
    errors = [t for t in digest.templates.values() if t.is_error]
    total = sum(t.count for t in errors) or 1
    items = [
        ScoredItem(kind="template", subject=t.text, score=t.count / total, service=max(t.services, key=t.services.get),
                   detail=f"{t.count} lines", evidence=t.samples[:2], template_id=t.template_id, flagged=True)
        for t in errors
    ]
    return AnomalyReport(templates=items)


def make_evidence(extra_lines: list[tuple[str, str]] | None = None, *, noise_templates: int = 0) -> Evidence:
    """A payment database-pool incident seen from the frontend; ``extra_lines`` are (service, message)."""
    lines = [("frontend", "INFO", f"GET /api/orders/{i} 200 in {i % 50}ms", T0 + i) for i in range(300)]
    lines += [("frontend", "ERROR", f"{TIMEOUT_LINE} at 10.0.0.{i % 9}:8080", T0 + 200 + i) for i in range(80)]
    lines += [("payment", "ERROR", f"{POOL_LINE} (waited {i} ms)", T0 + 190 + i) for i in range(60)]
    for k in range(noise_templates):
        words = " ".join(f"w{chr(97 + k % 26)}{chr(97 + k // 26)}{'q' * (j % 5)}" for j in range(30))
        lines += [(f"svc{k}", "ERROR", f"worker failed step {words} code {i}", T0 + 100 + i) for i in range(3)]
    for i, (service, message) in enumerate(extra_lines or []):
        lines.append((service, "ERROR", message, T0 + 250 + i))
    digest = _digest(lines)
    report = _report(digest)
    errors = sorted((t for t in digest.templates.values() if t.is_error), key=lambda t: -t.count)
    summary = f"{digest.lines} lines, {len(digest.templates)} templates. " + " ".join(
        f'"{t.text}" x{t.count} in {", ".join(t.services)}.' for t in errors[:5]
    )
    alert = Alert(
        name="HighErrorRate",
        severity="critical",
        timestamp=datetime.fromtimestamp(T0 + 240, tz=timezone.utc),
        labels={"service": "frontend", "namespace": "shop"},
        annotations={"summary": "5xx above 5% on frontend"},
    )
    return Evidence(alert=alert, summary=summary, digest=digest, report=report)  # type: ignore[arg-type]


def candidate_verdict() -> Verdict:
    return Verdict(
        classification=Classification(category=Category.database, confidence=0.6),
        hypotheses=[
            Hypothesis(cause="payment database connection pool exhausted", confidence=0.6,
                       evidence=[POOL_LINE], category=Category.database, service="payment",
                       fault_type="db_pool_exhaustion"),
            Hypothesis(cause="frontend calls to payment time out", confidence=0.3,
                       evidence=[TIMEOUT_LINE], category=Category.network, service="frontend",
                       fault_type="network_delay"),
            Hypothesis(cause="frontend code exception", confidence=0.1,
                       evidence=[TIMEOUT_LINE], category=Category.application, service="frontend",
                       fault_type="code_exception"),
        ],
        remediation=[RemediationStep(step=1, action="Raise the payment pool size", command=None,
                                     expected_outcome="timeouts stop", risk_level=RiskLevel.medium)],
        reasoner="evidence",
    )


class FakeFallback:
    """The evidence reasoner's place in unit tests of the LLM reasoner."""

    name = "evidence"

    def __init__(self, verdict: Verdict | None = None, *, fail: bool = False) -> None:
        self.verdict = verdict or candidate_verdict()
        self.fail = fail
        self.calls = 0

    async def reason(self, evidence: Evidence) -> Verdict:
        self.calls += 1
        if self.fail:
            raise RuntimeError("evidence reasoner broke")
        return self.verdict


def good_answer(**overrides: object) -> dict:
    """A valid model answer that quotes the incident's evidence."""
    answer = {
        "category": "database",
        "category_confidence": 0.8,
        "hypotheses": [
            {"cause": "The payment service exhausted its database connection pool", "confidence": 0.9,
             "evidence": [POOL_LINE], "category": "database", "service": "payment",
             "fault_type": "db_pool_exhaustion"},
            {"cause": "Frontend requests to payment time out", "confidence": 0.4,
             "evidence": ["Read timed out calling payment"], "category": "network", "service": "frontend",
             "fault_type": "network_delay"},
        ],
        "remediation": [
            {"action": "Increase the payment DB pool and find the leaking connections",
             "command": "kubectl -n shop rollout restart deploy/payment",
             "expected_outcome": "pool usage below 80 %, frontend 5xx back to normal", "risk_level": "medium"},
        ],
    }
    answer.update(overrides)
    return answer
