"""The log analytics engine: intake, masking, template mining, mergeable digests,
summaries and IsolationForest anomaly scoring. Pure Python/numpy/scikit-learn."""

from anomaly.digest import Digest, TemplateStats
from anomaly.engine import digest_lines, run_engine
from anomaly.intake import Intake, parse_frame, parse_lines
from anomaly.records import LogRecord
from anomaly.scoring import AnomalyReport, MetricFrame, ScoredItem, score_anomalies
from anomaly.summary import summarize

__all__ = [
    "AnomalyReport",
    "Digest",
    "Intake",
    "LogRecord",
    "MetricFrame",
    "ScoredItem",
    "TemplateStats",
    "digest_lines",
    "parse_frame",
    "parse_lines",
    "run_engine",
    "score_anomalies",
    "summarize",
]
