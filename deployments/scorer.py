"""AnomalyScorer deployment: IsolationForest scoring of a merged Digest (and metrics)."""

from __future__ import annotations

from ray import serve

from anomaly import AnomalyReport, Digest, MetricFrame, score_anomalies


@serve.deployment(name="AnomalyScorer", num_replicas=1, ray_actor_options={"num_cpus": 0.25})
class AnomalyScorer:
    def score(
        self,
        window: Digest,
        baseline: Digest | None,
        metrics: MetricFrame,
        baseline_metrics: MetricFrame | None,
    ) -> AnomalyReport:
        return score_anomalies(window, baseline, metrics=metrics, baseline_metrics=baseline_metrics)
