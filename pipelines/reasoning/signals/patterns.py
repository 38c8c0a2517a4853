"""Trace-linked log evidence: what each operation logs, before a change and after it.

A code fault (an exception thrown half-way through a method, a wrong return value) often
leaves a service's spans and error counts looking normal: the request is answered, but the
code path inside it changed. A log line that every ``RouteController.queryById`` span used to
write stops appearing, or a new one appears. Such a change is invisible in per-service
counts, which move with the workload mix, but it stands out when each operation is compared
with itself: of the spans of one (service, operation), the share that logged a given template
before against the share after. Conditioning on the operation cancels the workload.

"Before" and "after" are not split at the alert: alerts fire minutes after a fault begins, so
the window before the alert holds the fault too. Every time-bucket boundary of the window with
enough spans on both sides is tried, and the one where the share shifts most is where the
change began (``_Timeline``). The baseline's spans (their lines read through the window's
templates) are a second reference: a line that stopped before the window even began looks
unchanged within it. Templates keep the code location a logging pattern prints
(``TravelServiceImpl#372``), so two statements with the same words are two lines here, and one
of them can vanish alone.

Only the direction a fault takes counts: a normal line that vanishes. A line that comes back
is a recovery. An error line that appears is the log signal's evidence (``log_templates.py``)
and is not counted twice. A line whose share merely moves (half the requests take another
branch), or that few requests write at all, is the workload or the data, not a fault. A line
that vanishes counts in proportion to the share of the operation's spans that wrote it: a line
every span wrote is the operation's code path; one that half of them wrote is a branch the
data takes, whose share can change with the traffic (the baseline is another time's traffic).

It needs log lines that carry their span id (``Digest.span_templates``) and spans; without
either it finds nothing. Spans too close to a window's edges are skipped: their logs or
children may lie outside it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

from anomaly import TemplateStats
from anomaly.digest import BASELINE_PREFIX
from pipelines.reasoning.base import Evidence
from anomaly.change_points import MIN_SIDE_BUCKETS
from pipelines.reasoning.signals.base import Finding, saturate
from pipelines.schemas import Category, Span

MIN_SPANS = 3  # spans of an operation needed on each side of the alert
MIN_Z = 3.0  # two-proportion z of a shift that counts (noise across ~1,000 pairs stays under it)
Z_SCALE = 1.5  # z beyond the minimum that gives 0.63
EDGE_SECONDS = 5.0  # spans this close to the window's first or last span are left out
#: the rarer side of a shift may keep at most this share of the other's rate: a line that
#: appears or vanishes, not one whose share moves with the mix of requests (``trainNumber`` G|D)
MAX_KEPT_SHARE = 0.25
#: a line that fewer than this share of an operation's spans write, or stop writing, is a branch
#: that particular data takes (an empty result, a rare option), not the operation's code path
MIN_EFFECT = 0.2


def _shift_z(before: int, n_before: int, after: int, n_after: int) -> float:
    """Two-proportion z statistic, with a floor on the variance so 0-of-n against n-of-n stays finite."""
    pooled = (before + after) / (n_before + n_after)
    variance = max(pooled * (1 - pooled), 0.25 / (n_before + n_after)) * (1 / n_before + 1 / n_after)
    return (after / n_after - before / n_before) / math.sqrt(variance)


class LogPatternSignal:
    """Per-operation shift in which log templates its spans write, at the change point the data shows."""

    name = "patterns"

    def findings(self, evidence: Evidence) -> list[Finding]:
        if not evidence.spans or evidence.digest is None or not evidence.digest.lines:
            return []
        logged = evidence.digest.span_templates()
        if not logged:
            return []
        # only the requests in the digest's span sample: an operation's share that wrote a line is
        # counted over the spans whose links were kept
        sampled = [s for s in evidence.spans if evidence.digest.keeps_span(s.span_id)]
        timeline = _Timeline.of(sampled, logged, evidence.digest.bucket_seconds)
        baseline = _baseline_sample(evidence)
        best: dict[str, tuple[float, str]] = {}
        for op, per_bucket in timeline.spans.items():
            for tid in timeline.wrote[op].keys() | baseline.wrote[op].keys():
                template = _template(evidence, tid)
                if template is not None and template.is_error:
                    continue  # an error that appears is the log signal's; one that stops is a recovery
                usual = _usual_share(baseline, op, tid)
                for ref_name, (before, n_ref), now_name, (after, n_now), since in timeline.comparisons(op, tid, baseline):
                    z = _vanished(before, n_ref, after, n_now)
                    if z is None:
                        continue
                    if usual is not None and abs(usual - before / n_ref) > abs(usual - after / n_now):
                        continue  # the baseline looks like "after": the window began unusual and went back
                    strength = saturate(abs(z) - MIN_Z, Z_SCALE) * before / n_ref
                    if strength <= best.get(op[0], (0.0, ""))[0]:
                        continue
                    text = template.text if template is not None else tid
                    text = text if len(text) <= 140 else text[:137] + "..."
                    best[op[0]] = (strength, (
                        f'{op[1]} spans of {op[0]} stopped logging "{text}" from {_clock(since)}: {before} of {n_ref} {ref_name}, '
                        f"{after} of {n_now} {now_name}"
                    ))
        return sorted(
            (
                Finding(
                    service=service,
                    signal=self.name,
                    fault_type="code_exception",
                    category=Category.application,
                    strength=round(strength, 4),
                    evidence=why,
                )
                for service, (strength, why) in best.items()
            ),
            key=lambda f: -f.strength,
        )


Operation = tuple[str, str]  # (service, operation name)
Count = tuple[int, int]  # (spans that wrote the template, spans)


@dataclass
class _Sample:
    """Spans per operation, and per operation how many of them wrote each template."""

    spans: dict[Operation, int] = field(default_factory=lambda: defaultdict(int))
    wrote: dict[Operation, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))

    def add(self, span: Span, templates: dict[str, int]) -> None:
        op = (span.service, span.operation)
        self.spans[op] += 1
        for tid in templates:
            self.wrote[op][tid] += 1


@dataclass
class _Timeline:
    """The window's spans per operation and time bucket, and per bucket how many wrote each template.

    The change point is not the alert's time: every bucket boundary with enough spans on both
    sides is tried, since an alert fires minutes after the change began.
    """

    start: float
    width: float
    buckets: int
    spans: dict[Operation, list[int]]
    wrote: dict[Operation, dict[str, list[int]]]

    @classmethod
    def of(cls, spans: list[Span], logged: dict[str, dict[str, int]], width: float) -> _Timeline:
        first, last = _edges(spans)
        inside = [s for s in spans if _inside(s, first, last)]
        start = min((s.start for s in inside), default=first)
        buckets = int((last - start) // width) + 1 if inside else 0
        per_op: dict[Operation, list[int]] = defaultdict(lambda: [0] * buckets)
        wrote: dict[Operation, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0] * buckets))
        for s in inside:
            op, i = (s.service, s.operation), min(buckets - 1, int((s.start - start) // width))
            per_op[op][i] += 1
            for tid in logged.get(s.span_id.lower(), {}):
                wrote[op][tid][i] += 1
        return cls(start, width, buckets, per_op, wrote)

    def comparisons(self, op: Operation, tid: str, baseline: _Sample) -> list[tuple[str, Count, str, Count, float]]:
        """(reference, counts, "after", counts, change time) at every bucket boundary with enough
        spans on both sides: the window before the boundary, and the baseline, against after it."""
        spans, wrote = self.spans[op], self.wrote[op].get(tid, [0] * self.buckets)
        out = []
        base = (baseline.wrote[op].get(tid, 0), baseline.spans.get(op, 0))
        for k in range(MIN_SIDE_BUCKETS, self.buckets - MIN_SIDE_BUCKETS + 1):
            after = (sum(wrote[k:]), sum(spans[k:]))
            if after[1] < MIN_SPANS:
                continue
            since = self.start + k * self.width
            for ref_name, ref in (("before", (sum(wrote[:k]), sum(spans[:k]))), ("in the baseline", base)):
                if ref[1] >= MIN_SPANS:
                    out.append((ref_name, ref, "after", after, since))
        return out


def _baseline_sample(evidence: Evidence) -> _Sample:
    """The baseline's spans, their lines read through the window's templates."""
    sample = _Sample()
    baseline = evidence.baseline_digest
    if not evidence.baseline_spans or baseline is None:
        return sample
    base_logged = evidence.digest.span_templates_of(baseline)
    if not base_logged:
        return sample
    b_first, b_last = _edges(evidence.baseline_spans)
    for s in evidence.baseline_spans:
        if _inside(s, b_first, b_last) and baseline.keeps_span(s.span_id):
            sample.add(s, base_logged.get(s.span_id.lower(), {}))
    return sample


def _usual_share(baseline: _Sample, op: Operation, tid: str) -> float | None:
    """The share of the operation's baseline spans that wrote the template, when there are enough."""
    n = baseline.spans.get(op, 0)
    return baseline.wrote[op].get(tid, 0) / n if n >= MIN_SPANS else None


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%H:%M:%SZ")


def _vanished(before: int, n_ref: int, after: int, n_now: int) -> float | None:
    """The z of a line that (nearly) stopped being written, or None for anything else.

    A line that (re)appears is a recovery; a share that merely moves, or that few requests ever
    had, is the workload or the data; a small z is noise.
    """
    share_ref, share_now = before / n_ref, after / n_now
    if share_now >= share_ref:
        return None
    if not _changed_kind(share_ref, share_now) or abs(share_now - share_ref) < MIN_EFFECT:
        return None
    z = _shift_z(before, n_ref, after, n_now)
    return z if abs(z) >= MIN_Z else None


def _template(evidence: Evidence, tid: str) -> TemplateStats | None:
    """A template of the window, or of the baseline for a baseline line the window never wrote."""
    if tid.startswith(BASELINE_PREFIX) and evidence.baseline_digest is not None:
        return evidence.baseline_digest.templates.get(tid[len(BASELINE_PREFIX):])
    return evidence.digest.templates.get(tid)


def _edges(spans: list[Span]) -> tuple[float, float]:
    """Spans this close to the first or last start may have logs or children outside the window."""
    return min(s.start for s in spans) + EDGE_SECONDS, max(s.start for s in spans) - EDGE_SECONDS


def _changed_kind(share_before: float, share_after: float) -> bool:
    """Did the line (nearly) appear or vanish? A share that merely moves is a data-dependent branch."""
    low, high = sorted((share_before, share_after))
    return low <= MAX_KEPT_SHARE * high


def _inside(span: Span, first: float, last: float) -> bool:
    return first <= span.start and span.start + span.duration_ms / 1000.0 <= last
