"""Trace-linked log evidence: what each operation logs, before the alert and after it.

A code fault (an exception thrown half-way through a method, a wrong return value) often
leaves a service's spans and error counts looking normal: the request is answered, but the
code path inside it changed. A log line that every ``RouteController.queryById`` span used to
write stops appearing, or a new one appears. Such a change is invisible in per-service
counts, which move with the workload mix, but it stands out when each operation is compared
with itself: of the spans of one (service, operation), the share that logged a given template
before against the share after. Conditioning on the operation cancels the workload.

"Before" is the window's own time before the alert, and the baseline's spans where there are
some (their lines read through the window's templates). The baseline matters because alerts
fire minutes after a fault begins: a line that stopped before the alert looks unchanged within
the window. "After" is all the time after the alert, and its later half: a fault may take a
while to reach full effect, and a share diluted by the minute before it did hides the change.
Templates keep the code location a logging pattern prints (``TravelServiceImpl#372``), so two
statements with the same words are two lines here, and one of them can vanish alone.

Only the directions a fault takes count: a normal line that vanishes, an error line that
appears. The opposite (an error that stops, a normal line that comes back) is a recovery,
often of callers that were failing before for another reason. A line whose share merely
moves (half the requests take another branch), or that few requests write at all, is the
workload or the data, not a fault.

It needs log lines that carry their span id (``Digest.span_templates``) and spans; without
either it finds nothing. Spans too close to a window's edges are skipped: their logs or
children may lie outside it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from anomaly import TemplateStats
from anomaly.digest import BASELINE_PREFIX
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
#: a line that fewer than this share of an operation's spans write, or stop writing, is a branch
#: that particular data takes (an empty result, a rare option), not the operation's code path
MIN_EFFECT = 0.2


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
        best: dict[str, tuple[float, str]] = {}
        for (ref_name, ref), (now_name, now) in _comparisons(_samples(evidence, logged)):
            for op in ref.spans.keys() & now.spans.keys():
                n_ref, n_now = ref.spans[op], now.spans[op]
                if n_ref < MIN_SPANS or n_now < MIN_SPANS:
                    continue
                for tid in ref.wrote[op].keys() | now.wrote[op].keys():
                    before, after = ref.wrote[op].get(tid, 0), now.wrote[op].get(tid, 0)
                    template = _template(evidence, tid)
                    z = _fault_shift(before, n_ref, after, n_now, template is not None and template.is_error)
                    if z is None:
                        continue
                    strength = saturate(abs(z) - MIN_Z, Z_SCALE)
                    if strength <= best.get(op[0], (0.0, ""))[0]:
                        continue
                    text = template.text if template is not None else tid
                    text = text if len(text) <= 140 else text[:137] + "..."
                    how = "stopped logging" if z < 0 else "started logging"
                    best[op[0]] = (strength, (
                        f'{op[1]} spans of {op[0]} {how} "{text}": {before} of {n_ref} {ref_name}, '
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


def _samples(evidence: Evidence, logged: dict[str, dict[str, int]]) -> dict[str, _Sample]:
    """The window's spans before the alert, after it, and in the later half after it; the baseline's."""
    alert_ts = evidence.alert.timestamp.timestamp()
    first, last = _edges(evidence.spans)
    late_from = alert_ts + (last - alert_ts) / 2
    out = {name: _Sample() for name in ("before", "after", "late", "baseline")}
    for s in evidence.spans:
        if not _inside(s, first, last):
            continue
        templates = logged.get(s.span_id.lower(), {})
        out["before" if s.start < alert_ts else "after"].add(s, templates)
        if s.start >= late_from:
            out["late"].add(s, templates)
    baseline = evidence.baseline_digest
    base_logged = evidence.digest.span_templates_of(baseline) if evidence.baseline_spans and baseline is not None else {}
    if base_logged:
        b_first, b_last = _edges(evidence.baseline_spans)
        for s in evidence.baseline_spans:
            if _inside(s, b_first, b_last):
                out["baseline"].add(s, base_logged.get(s.span_id.lower(), {}))
    return out


def _comparisons(samples: dict[str, _Sample]) -> list[tuple[tuple[str, _Sample], tuple[str, _Sample]]]:
    """(reference, after) pairs: the window before the alert and the baseline, each against all the
    time after the alert and against its later half (a fault may take a while to reach full effect)."""
    refs = [("before the alert", samples["before"]), ("in the baseline", samples["baseline"])]
    afters = [("after", samples["after"]), ("in the later half after", samples["late"])]
    return [(r, a) for r in refs for a in afters]


def _fault_shift(before: int, n_ref: int, after: int, n_now: int, is_error: bool) -> float | None:
    """The z of a shift in the direction a fault takes, or None for anything else.

    An error that stops or a normal line that (re)appears is a recovery; a share that merely
    moves, or that few requests ever had, is the workload or the data; a small z is noise.
    """
    share_ref, share_now = before / n_ref, after / n_now
    if is_error != (share_now > share_ref):
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
