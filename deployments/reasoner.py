"""Reasoner deployment: the evidence reasoner, or the LLM reasoner when one is configured."""

from __future__ import annotations

from ray import serve

from pipelines.reasoning import build_reasoner
from pipelines.reasoning.base import Evidence, Verdict
from pipelines.settings import Settings


@serve.deployment(name="Reasoner", num_replicas=1, ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=16)
class Reasoner:
    def __init__(self, settings: Settings) -> None:
        self._reasoner = build_reasoner(settings)

    async def reason(self, evidence: Evidence) -> Verdict:
        return await self._reasoner.reason(evidence)
