"""AnomalyScorer deployment: IsolationForest scoring of a merged Digest (and metrics).

One call per incident, so it scales with concurrent incidents, not with log volume; a tenth
of a CPU reserves little on a small node (scikit-learn uses what is free when it runs).
"""

from __future__ import annotations

from typing import Any

from ray import serve

from anomaly import AnomalyReport, Digest, MetricFrame, score_anomalies
from pipelines.log_setup import configure_logging

AUTOSCALING: dict[str, Any] = {
    "min_replicas": 1,
    "max_replicas": 3,
    "target_ongoing_requests": 2,
    "upscale_delay_s": 3,
    "downscale_delay_s": 20,
    "metrics_interval_s": 1,
    "look_back_period_s": 5,
}


@serve.deployment(
    name="AnomalyScorer",
    autoscaling_config=AUTOSCALING,
    ray_actor_options={"num_cpus": 0.1},
    max_ongoing_requests=4,
)
class AnomalyScorer:
    def __init__(self, log_level: str = "INFO") -> None:
        configure_logging(log_level)

    def score(
        self,
        window: Digest,
        baseline: Digest | None,
        metrics: MetricFrame,
        baseline_metrics: MetricFrame | None,
    ) -> AnomalyReport:
        return score_anomalies(window, baseline, metrics=metrics, baseline_metrics=baseline_metrics)
