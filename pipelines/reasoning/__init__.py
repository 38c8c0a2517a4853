"""Reasoners: the offline evidence reasoner, and the LLM reasoner that falls back to it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.reasoning.base import Evidence, Reasoner, Verdict
from pipelines.settings import Settings

if TYPE_CHECKING:
    from pipelines.runbooks import Runbooks

__all__ = ["Evidence", "Reasoner", "Verdict", "build_reasoner"]


def build_reasoner(settings: Settings, runbooks: Runbooks | None = None) -> Reasoner:
    """The LLM reasoner when an endpoint or key is configured, else the evidence reasoner (with the user's runbooks)."""
    from pipelines.reasoning.evidence import EvidenceReasoner

    evidence = EvidenceReasoner(runbooks)
    if not settings.llm_configured:
        return evidence
    from pipelines.reasoning.llm import LLMReasoner

    return LLMReasoner(settings, fallback=evidence)
