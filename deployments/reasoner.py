"""Reasoner deployment: the evidence reasoner, or the LLM reasoner when one is configured.

With an LLM most of a call is waiting on the network, so a replica takes many calls at once
(``max_ongoing_requests``) and the deployment scales out only when that is not enough.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from pipelines.reasoning import build_reasoner
from pipelines.reasoning.base import Evidence, Verdict
from pipelines.runbooks import Runbooks
from pipelines.settings import Settings
from pipelines.log_setup import configure_logging

AUTOSCALING: dict[str, Any] = {
    "min_replicas": 1,
    "max_replicas": 3,
    "target_ongoing_requests": 8,
    "upscale_delay_s": 3,
    "downscale_delay_s": 20,
    "metrics_interval_s": 1,
    "look_back_period_s": 5,
}


@serve.deployment(
    name="Reasoner",
    autoscaling_config=AUTOSCALING,
    ray_actor_options={"num_cpus": 0.1},
    max_ongoing_requests=16,
)
class Reasoner:
    def __init__(self, settings: Settings, runbooks: Runbooks | None = None) -> None:
        configure_logging(settings.log_level)
        self._reasoner = build_reasoner(settings, runbooks)

    async def reason(self, evidence: Evidence) -> Verdict:
        return await self._reasoner.reason(evidence)
