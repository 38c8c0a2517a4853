"""The analysis pipeline in-process, without Ray: the real stages called directly (what the
deployments delegate to), for tests that need real analyses but no Serve application."""

from __future__ import annotations

from anomaly import AnomalyReport, Digest, MetricFrame, score_anomalies
from pipelines.pipeline import AnalysisPipeline, Chunk, Reason, digest_chunk
from pipelines.reasoning.evidence import EvidenceReasoner


async def _summarize(chunk: Chunk) -> Digest:
    return digest_chunk(chunk)


async def _score(window: Digest, baseline: Digest | None, metrics: MetricFrame,
                 baseline_metrics: MetricFrame | None) -> AnomalyReport:
    return score_anomalies(window, baseline, metrics=metrics, baseline_metrics=baseline_metrics)


def local_pipeline(chunk_lines: int = 1000, *, reason: Reason | None = None, min_chunks: int = 1) -> AnalysisPipeline:
    """The pipeline with the summarizer, scorer and a reasoner (the evidence reasoner unless given) run in this process."""
    return AnalysisPipeline(_summarize, _score, reason or EvidenceReasoner().reason, chunk_lines=chunk_lines,
                            min_chunks=min_chunks)
