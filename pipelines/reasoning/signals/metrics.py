"""Per-service metric deviations against the baseline (CPU, memory, network, latency, success rate).

A metric counts when its worst point in the window lies many robust deviations (median
absolute deviation) away from the baseline's median and clearly changed relative to that
median. Which metric moved says what kind of fault it suggests: the pod's own CPU points at
CPU contention (infrastructure), memory at a leak (application); latency and error rates rise in
every service on a slow or failing path, so they are weak and only help to break ties. Node-level
metrics are shared by all pods of a node and are left out: they cannot single out a service.
A resource (CPU, memory, disk) counts only when the pod's peak is at least what a usual pod of
the window peaks at: an idle pod that wakes up moves by hundreds of deviations from almost
nothing and still takes no material share of the node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipelines.reasoning.base import Evidence
from pipelines.reasoning.signals.base import Finding, finite, fmt, median, saturate
from pipelines.schemas import Category


@dataclass(frozen=True)
class MetricRule:
    pattern: re.Pattern[str]
    fault_type: str
    category: Category
    weight: float  # how much this metric alone can single out a cause
    direction: int  # +1: a rise is bad, -1: a drop is bad
    label: str

    @property
    def resource(self) -> bool:
        """A resource the pods share (CPU, memory, disk): exhausting it takes a material share of it."""
        return self.fault_type in RESOURCE_FAULTS


def _rule(pattern: str, fault_type: str, category: Category, weight: float, direction: int, label: str) -> MetricRule:
    return MetricRule(re.compile(pattern, re.IGNORECASE), fault_type, category, weight, direction, label)


RESOURCE_FAULTS = {"cpu_contention", "memory_leak", "disk_full"}

RULES: list[MetricRule] = [
    _rule(r"^(?!.*node).*cpu.*(rate|percent|usage|seconds|millicores)", "cpu_contention", Category.infrastructure, 1.0, 1, "CPU"),
    _rule(r"^(?!.*node).*(mem|heap|rss)", "memory_leak", Category.application, 0.8, 1, "memory"),
    _rule(r"^(?!.*node).*(disk|filesystem|fs_)", "disk_full", Category.infrastructure, 0.8, 1, "disk"),
    _rule(r"^(?!.*node).*(success|availability)", "code_exception", Category.application, 0.15, -1, "success rate"),
    _rule(r"^(?!.*node).*(error|5xx|fail)", "code_exception", Category.application, 0.15, 1, "errors"),
    _rule(r"^(?!.*(node|client)).*(latency|duration|response_time)", "latency", Category.application, 0.1, 1, "latency"),
]

MIN_BASELINE_POINTS = 3
MIN_PEERS = 5  # services needed to say what a usual pod's peak is
MIN_ROBUST_SD = 4.0  # the worst point must lie this many robust deviations away
MIN_RELATIVE_CHANGE = 0.5  # ... and differ from the median by half of it
Z_SCALE = 60.0  # robust sd beyond the minimum that give 0.63 of a rule's weight


def deviation(window: list[float], baseline: list[float], direction: int) -> tuple[float, float, float] | None:
    """(baseline median, worst window value, robust z) of the window against the baseline, or None."""
    if len(baseline) < MIN_BASELINE_POINTS or not window:
        return None
    center = median(baseline)
    spread = 1.4826 * median([abs(v - center) for v in baseline])
    spread = max(spread, 0.05 * abs(center), 1e-6)
    worst = max(window) if direction > 0 else min(window)
    z = direction * (worst - center) / spread
    relative = abs(worst - center) / (abs(center) + 1e-6)
    if z < MIN_ROBUST_SD or relative < MIN_RELATIVE_CHANGE:
        return None
    return center, worst, z


class MetricDeviationSignal:
    """Metrics of a service far from their baseline."""

    name = "metrics"

    def findings(self, evidence: Evidence) -> list[Finding]:
        if not evidence.metrics or not evidence.baseline_metrics:
            return []
        best: dict[tuple[str, str], Finding] = {}
        usual_peak = _usual_peaks(evidence.metrics)
        for (service, metric), points in evidence.metrics.items():
            rule = next((r for r in RULES if r.pattern.search(metric)), None)
            if rule is None:
                continue
            base = finite(v for _, v in evidence.baseline_metrics.get((service, metric), []))
            moved = deviation(finite(v for _, v in points), base, rule.direction)
            if moved is None:
                continue
            if rule.resource and moved[1] < usual_peak.get(metric, 0.0):
                continue  # grew many-fold from almost nothing: still a small consumer among its peers
            center, worst, z = moved
            strength = rule.weight * saturate(z - MIN_ROBUST_SD, Z_SCALE)
            finding = Finding(
                service=service,
                signal=self.name,
                fault_type=rule.fault_type,
                category=rule.category,
                strength=round(strength, 4),
                evidence=f"{rule.label} {metric}: baseline median {fmt(center)} -> {fmt(worst)} in the window ({z:.0f} robust sd)",
            )
            key = (service, rule.label)
            if key not in best or best[key].strength < finding.strength:
                best[key] = finding
        return sorted(best.values(), key=lambda f: -f.strength)


def _usual_peaks(metrics: dict[tuple[str, str], list[tuple[float, float]]]) -> dict[str, float]:
    """Per metric, the median over services of each one's peak in the window: what a usual pod uses."""
    peaks: dict[str, list[float]] = {}
    for (_, metric), points in metrics.items():
        values = finite(v for _, v in points)
        if values:
            peaks.setdefault(metric, []).append(max(values))
    return {metric: median(values) for metric, values in peaks.items() if len(values) >= MIN_PEERS}
