"""Trace evidence: slow call edges, slow services, and where errors originate.

*Network delay* shows on call edges: the time between a caller's client span and the
callee's server span (parent duration minus child duration) grows on every edge that
touches the delayed service, and only on those. A caller that times out has one slow edge
among many normal ones; the slow callee has all of its edges slow. So a service is scored by
the mean growth over all its edges, which separates the one that suffers from the one that
causes. *Slowness inside a service* shows as a rise of its spans' self time (duration minus
time spent in children). *Errors* are blamed on the deepest failing span of a trace: a
caller that fails because its callee failed is a victim.

Alerts fire minutes after a delay begins, so the window holds normal calls before it too: each
edge's and each service's window values are taken from their own change point on, when their
level rose there (``change_points.after_rise``), and compared with the baseline.
"""

from __future__ import annotations

import math
from collections import defaultdict

from pipelines.reasoning.base import Evidence
from anomaly.change_points import after_rise
from pipelines.reasoning.signals.base import Finding, median, saturate
from pipelines.schemas import Category, Span

MIN_EDGE_SAMPLES = 3
MIN_BASELINE_SAMPLES = 2  # a short baseline sees a rare edge only a few times; its median still anchors a many-fold growth
MIN_EDGE_GROWTH = 1.5  # window/baseline ratio of the edge gap that counts as slower
MIN_SELF_GROWTH = 1.5
SMOOTH_MS = 1.0
CALLEE_PRIOR = 0.25  # a slow edge with no other clue is blamed mostly on the callee
BUCKET_SECONDS = 10.0  # time buckets in which an edge's change point is looked for (as the digests')
EDGE_SCALE = 1.5  # log-growth of slow edges (shared out) that gives 0.63: a 20x slower edge is strong evidence


def _index(spans: list[Span]) -> tuple[dict[str, Span], dict[str, list[Span]]]:
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[Span]] = defaultdict(list)
    for s in spans:
        if s.parent_id and s.parent_id in by_id:
            children[s.parent_id].append(s)
    return by_id, children


def edge_gaps(spans: list[Span]) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(caller, callee) -> (start, time spent between the caller's span and the callee's span in ms)."""
    by_id, _ = _index(spans)
    gaps: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for s in spans:
        parent = by_id.get(s.parent_id) if s.parent_id else None
        if parent is not None and parent.service != s.service:
            gaps[(parent.service, s.service)].append((s.start, max(0.0, parent.duration_ms - s.duration_ms)))
    return gaps


def self_times(spans: list[Span]) -> dict[str, list[tuple[float, float]]]:
    """service -> (start, self time of its span: duration minus children's, in ms)."""
    _, children = _index(spans)
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in spans:
        inside = sum(c.duration_ms for c in children.get(s.span_id, []))
        out[s.service].append((s.start, max(0.0, s.duration_ms - inside)))
    return out


def _values(samples: list[tuple[float, float]]) -> list[float]:
    return [v for _, v in samples]


def _growth(window: list[float], baseline: list[float]) -> float | None:
    if len(window) < MIN_EDGE_SAMPLES or len(baseline) < MIN_BASELINE_SAMPLES:
        return None
    return (median(window) + SMOOTH_MS) / (median(baseline) + SMOOTH_MS)


class TraceSignal:
    """Slow edges (network), slow services (self time) and error origins from spans."""

    name = "traces"

    def findings(self, evidence: Evidence) -> list[Finding]:
        if not evidence.spans:
            return []
        out: list[Finding] = []
        if evidence.baseline_spans:
            out.extend(self._edges(evidence))
            out.extend(self._self_time(evidence))
        out.extend(self._errors(evidence))
        return sorted(out, key=lambda f: -f.strength)

    def _edges(self, evidence: Evidence) -> list[Finding]:
        # the window's part after each edge's own change point: an alert fires minutes after a
        # delay began, and the window's minutes before it would dilute the growth
        window = {edge: after_rise(gaps, BUCKET_SECONDS) for edge, gaps in edge_gaps(evidence.spans).items()}
        baseline = {edge: _values(gaps) for edge, gaps in edge_gaps(evidence.baseline_spans).items()}
        growth: dict[tuple[str, str], float] = {}
        for edge, gaps in window.items():
            g = _growth(gaps, baseline.get(edge, []))
            if g is not None:
                growth[edge] = g
        edges_of: dict[str, list[tuple[str, str]]] = defaultdict(list)
        incoming: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for edge in growth:
            incoming[edge[1]].append(edge)
            for service in edge:
                edges_of[service].append(edge)
        slow = {e for e, g in growth.items() if g >= MIN_EDGE_GROWTH}

        def slow_share(service: str) -> float:
            """Share of the service's incoming edges that got slower: every caller waits on a delayed service."""
            mine = incoming[service]
            return sum(1 for e in mine if e in slow) / len(mine) if mine else 0.0

        score: dict[str, float] = defaultdict(float)
        worst: dict[str, tuple[float, tuple[str, str]]] = {}
        for edge in slow:
            caller, callee = edge
            weight = math.log(growth[edge] / MIN_EDGE_GROWTH)  # growth beyond the noise floor
            # the endpoint whose callers all wait longer is the cause; with no other clue, the callee is
            f_caller, f_callee = slow_share(caller), slow_share(callee) + CALLEE_PRIOR
            for service, share in ((caller, f_caller / (f_caller + f_callee)), (callee, f_callee / (f_caller + f_callee))):
                score[service] = max(score[service], weight * share)  # the clearest edge, not many mild ones
                if service not in worst or worst[service][0] < weight:
                    worst[service] = (weight, edge)
        out = []
        for service, value in score.items():
            _, edge = worst[service]
            n_slow = sum(1 for e in edges_of[service] if e in slow)
            n_in = sum(1 for e in incoming[service] if e in slow)
            out.append(
                Finding(
                    service=service,
                    signal=self.name,
                    fault_type="network_delay",
                    category=Category.network,
                    strength=round(saturate(value, EDGE_SCALE), 4),
                    evidence=(
                        f"{n_slow} of {len(edges_of[service])} call edges of {service} slower ({n_in} of {len(incoming[service])} "
                        f"incoming); worst {edge[0]} -> {edge[1]}: "
                        f"median gap {median(baseline[edge]):.1f} ms -> {median(window[edge]):.1f} ms"
                    ),
                )
            )
        return out

    def _self_time(self, evidence: Evidence) -> list[Finding]:
        window = {s: after_rise(times, BUCKET_SECONDS) for s, times in self_times(evidence.spans).items()}
        baseline = {s: _values(times) for s, times in self_times(evidence.baseline_spans).items()}
        out = []
        for service, values in window.items():
            growth = _growth(values, baseline.get(service, []))
            if growth is None or growth < MIN_SELF_GROWTH:
                continue
            out.append(
                Finding(
                    service=service,
                    signal=self.name,
                    fault_type="latency",
                    category=Category.application,
                    strength=round(0.5 * saturate(math.log(growth), 1.5), 4),
                    evidence=(
                        f"self time of {service}'s spans: median {median(baseline[service]):.1f} ms -> "
                        f"{median(values):.1f} ms"
                    ),
                )
            )
        return out

    def _errors(self, evidence: Evidence) -> list[Finding]:
        def origins(spans: list[Span]) -> dict[str, int]:
            _, children = _index(spans)
            counts: dict[str, int] = defaultdict(int)
            for s in spans:
                if s.error and not any(c.error for c in children.get(s.span_id, [])):
                    counts[s.service] += 1
            return counts

        window = origins(evidence.spans)
        if not window:
            return []
        base = origins(evidence.baseline_spans) if evidence.baseline_spans else {}
        scale = len(evidence.spans) / max(1, len(evidence.baseline_spans)) if evidence.baseline_spans else 1.0
        out = []
        for service, n in window.items():
            excess = n - base.get(service, 0) * scale
            if excess <= 0:
                continue
            out.append(
                Finding(
                    service=service,
                    signal=self.name,
                    fault_type="code_exception",
                    category=Category.application,
                    strength=round(saturate(excess, 10.0), 4),
                    evidence=f"{n} failing spans originate in {service} (baseline {base.get(service, 0)})",
                )
            )
        return out
