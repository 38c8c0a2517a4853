"""Trace-linked log evidence: what each operation logs, before the alert and after it.

A code fault (an exception thrown half-way through a method, a wrong return value) often
leaves a service's spans and error counts looking normal: the request is answered, but the
code path inside it changed. A log line that every ``RouteController.queryById`` span used to
write stops appearing, or a new one appears. Such a change is invisible in per-service
counts, which move with the workload mix, but it stands out when each operation is compared
with itself: of the spans of one (service, operation), the share that logged a given template
before the alert against the share after it. Conditioning on the operation cancels the
workload, and comparing the window's own halves needs no baseline from another hour (whose
templates and traffic may differ).

Only the directions a fault takes count: a normal line that vanishes, an error line that
appears. The opposite (an error that stops, a normal line that comes back) is a recovery,
often of callers that were failing before the alert for another reason. A line whose share
merely moves (half the requests take another branch) is the workload, not a fault.

It needs log lines that carry their span id (``Digest.span_templates``) and spans; without
either, or without any window time before the alert, it finds nothing. Spans too close to
the window's edges are skipped: their logs or children may lie outside it.
"""

from __future__ import annotations

import math
from collections import defaultdict

from pipelines.reasoning.base import Evidence
from pipelines.reasoning.signals.base import Finding, saturate
from pipelines.schemas import Category, Span

MIN_SPANS = 3  # spans of an operation needed on each side of the alert
MIN_Z = 3.0  # two-proportion z of a shift that counts (noise across ~1,000 pairs stays under it)
Z_SCALE = 1.5  # z beyond the minimum that gives 0.63
EDGE_SECONDS = 5.0  # spans this close to the window's first or last span are left out
#: the rarer side of a shift may keep at most this share of the other's rate: a line that
#: appears or vanishes, not one whose share moves with the mix of requests (``trainNumber`` G|D)
MAX_KEPT_SHARE = 0.25


def _shift_z(before: int, n_before: int, after: int, n_after: int) -> float:
    """Two-proportion z statistic, with a floor on the variance so 0-of-n against n-of-n stays finite."""
    pooled = (before + after) / (n_before + n_after)
    variance = max(pooled * (1 - pooled), 0.25 / (n_before + n_after)) * (1 / n_before + 1 / n_after)
    return (after / n_after - before / n_before) / math.sqrt(variance)


class LogPatternSignal:
    """Per-operation shift in which log templates its spans write, after the alert against before."""

    name = "patterns"

    def findings(self, evidence: Evidence) -> list[Finding]:
        if not evidence.spans or evidence.digest is None or not evidence.digest.lines:
            return []
        logged = evidence.digest.span_templates()
        if not logged:
            return []
        spans, wrote = _count(evidence.spans, logged, evidence.alert.timestamp.timestamp())
        best: dict[str, tuple[float, str]] = {}
        texts = evidence.digest.templates
        for op in spans[0].keys() & spans[1].keys():
            n_before, n_after = spans[0][op], spans[1][op]
            if n_before < MIN_SPANS or n_after < MIN_SPANS:
                continue
            for tid in wrote[0][op].keys() | wrote[1][op].keys():
                before, after = wrote[0][op].get(tid, 0), wrote[1][op].get(tid, 0)
                template = texts.get(tid)
                is_error = template is not None and template.is_error
                if is_error != (after > before):
                    continue  # an error that stops, or a normal line that (re)appears, is a recovery
                if not _changed_kind(before / n_before, after / n_after):
                    continue
                z = _shift_z(before, n_before, after, n_after)
                if abs(z) < MIN_Z or abs(z) <= abs(best.get(op[0], (0.0, ""))[0]):
                    continue
                text = template.text if template is not None else tid
                text = text if len(text) <= 140 else text[:137] + "..."
                how = "stopped logging" if z < 0 else "started logging"
                best[op[0]] = (z, (
                    f'{op[1]} spans of {op[0]} {how} "{text}": {before} of {n_before} before the alert, '
                    f"{after} of {n_after} after"
                ))
        return sorted(
            (
                Finding(
                    service=service,
                    signal=self.name,
                    fault_type="code_exception",
                    category=Category.application,
                    strength=round(saturate(abs(z) - MIN_Z, Z_SCALE), 4),
                    evidence=why,
                )
                for service, (z, why) in best.items()
            ),
            key=lambda f: -f.strength,
        )


Operation = tuple[str, str]  # (service, operation name)


def _count(
    all_spans: list[Span], logged: dict[str, dict[str, int]], alert_ts: float
) -> tuple[tuple[dict[Operation, int], dict[Operation, int]], tuple[dict, dict]]:
    """Before and after the alert: spans per operation, and per operation how many wrote each template."""
    first = min(s.start for s in all_spans) + EDGE_SECONDS
    last = max(s.start for s in all_spans) - EDGE_SECONDS
    spans: tuple[dict[Operation, int], dict[Operation, int]] = (defaultdict(int), defaultdict(int))
    wrote: tuple[dict, dict] = (defaultdict(lambda: defaultdict(int)), defaultdict(lambda: defaultdict(int)))
    for s in all_spans:
        if not _inside(s, first, last):
            continue
        side = 0 if s.start < alert_ts else 1
        op = (s.service, s.operation)
        spans[side][op] += 1
        for tid in logged.get(s.span_id.lower(), ()):
            wrote[side][op][tid] += 1
    return spans, wrote


def _changed_kind(share_before: float, share_after: float) -> bool:
    """Did the line (nearly) appear or vanish? A share that merely moves is a data-dependent branch."""
    low, high = sorted((share_before, share_after))
    return low <= MAX_KEPT_SHARE * high


def _inside(span: Span, first: float, last: float) -> bool:
    return first <= span.start and span.start + span.duration_ms / 1000.0 <= last
