"""Reasoners: the offline evidence reasoner, and the LLM reasoner that falls back to it."""

from __future__ import annotations

from pipelines.reasoning.base import Evidence, Reasoner, Verdict
from pipelines.settings import Settings

__all__ = ["Evidence", "Reasoner", "Verdict", "build_reasoner"]


def build_reasoner(settings: Settings) -> Reasoner:
    """The LLM reasoner when an endpoint or key is configured, else the evidence reasoner."""
    from pipelines.reasoning.evidence import EvidenceReasoner

    evidence = EvidenceReasoner()
    if not settings.llm_configured:
        return evidence
    from pipelines.reasoning.llm import LLMReasoner

    return LLMReasoner(settings, fallback=evidence)
