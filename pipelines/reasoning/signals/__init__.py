"""Evidence extractors, one module per kind of signal, registered in one list.

Adding a kind of evidence is adding one module with a class that has ``name`` and
``findings(evidence) -> list[Finding]``, and one entry in ``SIGNALS``.
"""

from __future__ import annotations

import logging

from pipelines.reasoning.base import Evidence
from pipelines.reasoning.signals.base import Finding, Signal
from pipelines.reasoning.signals.dependencies import DependencySignal
from pipelines.reasoning.signals.log_templates import LogTemplateSignal
from pipelines.reasoning.signals.metrics import MetricDeviationSignal
from pipelines.reasoning.signals.node_agents import NodeAgentSignal
from pipelines.reasoning.signals.patterns import LogPatternSignal
from pipelines.reasoning.signals.security import SecuritySignal
from pipelines.reasoning.signals.traces import TraceSignal

log = logging.getLogger(__name__)

SIGNALS: list[Signal] = [
    LogTemplateSignal(), MetricDeviationSignal(), TraceSignal(), LogPatternSignal(), DependencySignal(),
    SecuritySignal(), NodeAgentSignal(),
]


def collect(evidence: Evidence, signals: list[Signal] | None = None) -> tuple[list[Finding], list[str]]:
    """Every signal's findings; a signal that fails is skipped and named in the second list."""
    findings: list[Finding] = []
    failed: list[str] = []
    for signal in signals if signals is not None else SIGNALS:
        try:
            findings.extend(signal.findings(evidence))
        except Exception as exc:  # one broken extractor must not lose the others' evidence
            log.warning("signal %s failed: %r", signal.name, exc)
            failed.append(f"signal {signal.name} failed: {type(exc).__name__}")
    return findings, failed


__all__ = ["Finding", "SIGNALS", "Signal", "collect"]
