"""What every reasoner reads and what it answers.

A reasoner sees the evidence the pipeline gathered (never the raw request), and returns a
``Verdict``: the part of an ``Analysis`` that names the cause. Keeping this boundary small
lets the evidence reasoner, the LLM reasoner and the fallback between them be swapped
without touching the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from anomaly import AnomalyReport, Digest, MetricFrame
from pipelines.schemas import Alert, Classification, Hypothesis, LLMUsage, RemediationStep, Span


@dataclass
class Evidence:
    """Everything the pipeline learned about one incident, ready to reason over."""

    alert: Alert
    summary: str
    digest: Digest
    report: AnomalyReport
    baseline_digest: Digest | None = None
    metrics: MetricFrame = field(default_factory=dict)
    baseline_metrics: MetricFrame | None = None
    spans: list[Span] = field(default_factory=list)
    baseline_spans: list[Span] = field(default_factory=list)


@dataclass
class Verdict:
    """A reasoner's answer: classification, ranked hypotheses, remediation."""

    classification: Classification
    hypotheses: list[Hypothesis]
    remediation: list[RemediationStep]
    reasoner: str
    degraded_reasons: list[str] = field(default_factory=list)
    llm_usage: LLMUsage | None = None
    redactions: int = 0


class Reasoner(Protocol):
    """Names the root cause from the evidence. Implementations must not raise on odd evidence."""

    name: str

    async def reason(self, evidence: Evidence) -> Verdict: ...
