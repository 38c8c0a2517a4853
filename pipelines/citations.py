"""What each evidence item cites, looked up in the incident's data and stored with the analysis.

Evidence items are sentences a reasoner wrote (``error template "<*> ERROR ... Failed to create
order" x120``, ``errors error_rate: baseline median 0.004 -> 0.5``); the stored anomalies hold
only what the scorer flagged, so most templates a sentence quotes would be gone once the window's
``Digest`` is. This runs in the pipeline after reasoning, while the digest, the metrics and the
spans are at hand, and keeps of each cited item what a reader needs to check the sentence: a
template's counts, times and a few of its lines; a metric's peak and medians; an operation's
spans. Sizes are capped (``MAX_*``), so a stored analysis stays small whatever the logs held.

A sentence cites a template when one of its quoted strings and the template's text (or one of
its exemplar lines) are the same text, one maybe cut short where the other goes on (reasoners cut
long templates with ``...``), or when the template fits the quoted line;
a metric when it names the metric as a word and its service (or the hypothesis is about that
service); an operation when it names the operation and its service. Only what the data holds
is linked: a quote that matches nothing links nothing.
"""

from __future__ import annotations

import re
import statistics
from functools import lru_cache
from collections.abc import Sequence
from datetime import datetime, timezone

from anomaly import Digest, MetricFrame
from anomaly.change_points import MIN_SIDE_BUCKETS, best_change
from anomaly.digest import TemplateStats
from pipelines.schemas import (
    Citations,
    CitedMetric,
    CitedOperation,
    CitedTemplate,
    EvidenceRef,
    Hypothesis,
    Span,
    TimeRange,
)

#: quoted strings of an evidence sentence; a quote may itself hold quotes (an access log's template)
_QUOTED = re.compile(r'"((?:[^"]|"(?=[^"]*"))*?)"(?=\s|$|[;,)])')
#: a shorter common start says too little to tell two templates apart
MIN_CHARS = 12
MAX_TEMPLATES = 10
MAX_METRICS = 10
MAX_OPERATIONS = 10
MAX_EXEMPLARS = 5
MAX_EXEMPLAR_CHARS = 600
MAX_EXEMPLAR_LINES = 8
MAX_TEMPLATE_CHARS = 400
#: an operation name shorter than this is too common a word to count as named ("get", "db")
MIN_OPERATION_CHARS = 4


def _uncut(text: str) -> str:
    """The text without the mark of a cut (``…`` or ``...``) at its end."""
    return text.removesuffix("…").removesuffix("...").rstrip()


def quotes(evidence: str) -> list[str]:
    """The quoted strings of an evidence sentence long enough to identify a template."""
    return [q for q in (_uncut(found) for found in _QUOTED.findall(evidence)) if len(q) >= MIN_CHARS]


def same_text(quote: str, text: str) -> bool:
    """One is the other, or the start of it (a cut quote, or a template cut in storage)."""
    short, long = sorted((" ".join(_uncut(quote).split()), " ".join(_uncut(text).split())), key=len)
    return len(short) >= MIN_CHARS and long.startswith(short)


@lru_cache(maxsize=4096)
def _template_pattern(text: str) -> re.Pattern[str]:
    """A line the template fits, at the end of a quote (lines may keep a prefix the miner took off)."""
    words = (".*".join(re.escape(part) for part in word.split("<*>")) for word in text.split())
    return re.compile(r"(?:^|(?<=\s))" + r"\s+".join(words) + r"\s*\Z", re.S)


def _cites(quote: str, t: TemplateStats) -> bool:
    """The quote is the template's text (maybe cut short), one of its lines, or a line the template fits."""
    if same_text(quote, t.text) or any(same_text(quote, line.split("\n", 1)[0]) for line in t.samples):
        return True
    literal = len(t.text.replace("<*>", "").replace(" ", ""))
    return literal >= MIN_CHARS and _template_pattern(t.text).search(quote) is not None


def _word(name: str, sentence: str) -> bool:
    return re.search(rf"(?<![\w.\-]){re.escape(name)}(?![\w\-])", sentence) is not None


def _utc(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=timezone.utc) if ts is not None else None


def _cut(line: str) -> str:
    """An exemplar line kept readable and small: its first lines (a stack trace's top frames), cut."""
    kept = "\n".join(line.split("\n")[:MAX_EXEMPLAR_LINES])
    return kept if len(kept) <= MAX_EXEMPLAR_CHARS else kept[: MAX_EXEMPLAR_CHARS - 1] + "…"


def _onset(tid: str, t: TemplateStats, digest: Digest, buckets: dict[float, dict[str, int]],
           baseline_count: int | None) -> float | None:
    """When the template began (new since the baseline, first seen after the window's start) or its share rose."""
    if not buckets:
        return None
    first, last, width = min(buckets), max(buckets), digest.bucket_seconds
    starts = [first + i * width for i in range(int(round((last - first) / width)) + 1)]
    counts = [buckets.get(b, {}).get(tid, 0) for b in starts]
    totals = [sum(buckets.get(b, {}).values()) for b in starts]
    if not baseline_count and t.first_seen is not None and t.first_seen >= first + MIN_SIDE_BUCKETS * width:
        return t.first_seen
    change = best_change(counts, totals)
    if change is not None and change.significant and change.rate_after > change.rate_before:
        return starts[change.index]
    return None


def _templates(hypotheses: Sequence[Hypothesis], digest: Digest, baseline: Digest | None) -> list[CitedTemplate]:
    refs: dict[str, list[EvidenceRef]] = {}
    by_text = list(digest.templates.items())
    for h, hypothesis in enumerate(hypotheses):
        for e, sentence in enumerate(hypothesis.evidence):
            for quote in quotes(sentence):
                for tid, t in by_text:
                    if _cites(quote, t):
                        ref = EvidenceRef(hypothesis=h, evidence=e)
                        if ref not in refs.setdefault(tid, []):
                            refs[tid].append(ref)
    if not refs:
        return []
    chosen = list(refs)[:MAX_TEMPLATES]
    in_baseline = digest.counts_of(baseline)[0] if baseline is not None and baseline.lines else None
    buckets = digest.bucket_counts()
    out = []
    for tid in chosen:
        t = digest.templates[tid]
        base = in_baseline.get(tid, 0) if in_baseline is not None else None
        out.append(CitedTemplate(
            template_id=tid,
            text=t.text if len(t.text) <= MAX_TEMPLATE_CHARS else t.text[: MAX_TEMPLATE_CHARS - 1] + "…",
            services=dict(sorted(t.services.items(), key=lambda kv: -kv[1])[:5]),
            count=t.count,
            baseline_count=base,
            first_seen=_utc(t.first_seen),
            last_seen=_utc(t.last_seen),
            onset=_utc(_onset(tid, t, digest, buckets, base)),
            levels=dict(sorted(t.levels.items(), key=lambda kv: -kv[1])[:5]),
            exception_types=dict(sorted(t.exception_types.items(), key=lambda kv: -kv[1])[:5]),
            exemplars=[_cut(line) for line in t.samples[:MAX_EXEMPLARS]],
            cited_by=refs[tid],
        ))
    return out


def _median(values: Sequence[float]) -> float | None:
    return round(float(statistics.median(values)), 6) if values else None


def _metrics(hypotheses: Sequence[Hypothesis], metrics: MetricFrame, baseline: MetricFrame | None) -> list[CitedMetric]:
    refs: dict[tuple[str, str], list[EvidenceRef]] = {}
    for h, hypothesis in enumerate(hypotheses):
        for e, sentence in enumerate(hypothesis.evidence):
            for (service, name) in metrics:
                if _word(name, sentence) and (_word(service, sentence) or service == hypothesis.service):
                    refs.setdefault((service, name), []).append(EvidenceRef(hypothesis=h, evidence=e))
    out = []
    for (service, name), cited_by in list(refs.items())[:MAX_METRICS]:
        points = [(t, v) for t, v in metrics[(service, name)] if v == v]  # NaN is no reading
        peak = max(points, key=lambda p: p[1]) if points else None
        base = [v for _, v in (baseline or {}).get((service, name), []) if v == v]
        out.append(CitedMetric(
            name=name, service=service, points=len(points),
            peak=round(peak[1], 6) if peak else None, peak_at=_utc(peak[0]) if peak else None,
            median=_median([v for _, v in points]), baseline_median=_median(base), cited_by=cited_by,
        ))
    return out


def _operations(hypotheses: Sequence[Hypothesis], spans: Sequence[Span], baseline: Sequence[Span]) -> list[CitedOperation]:
    names = {(s.service, s.operation) for s in spans if len(s.operation) >= MIN_OPERATION_CHARS}
    refs: dict[tuple[str, str], list[EvidenceRef]] = {}
    for h, hypothesis in enumerate(hypotheses):
        for e, sentence in enumerate(hypothesis.evidence):
            for service, operation in sorted(names):
                if operation in sentence and (_word(service, sentence) or service == hypothesis.service):
                    refs.setdefault((service, operation), []).append(EvidenceRef(hypothesis=h, evidence=e))
    out = []
    for (service, operation), cited_by in list(refs.items())[:MAX_OPERATIONS]:
        mine = [s for s in spans if (s.service, s.operation) == (service, operation)]
        before = [s.duration_ms for s in baseline if (s.service, s.operation) == (service, operation)]
        out.append(CitedOperation(
            service=service, operation=operation, spans=len(mine), errors=sum(s.error for s in mine),
            median_ms=_median([s.duration_ms for s in mine]), baseline_spans=len(before),
            baseline_median_ms=_median(before), cited_by=cited_by,
        ))
    return out


def cite(hypotheses: Sequence[Hypothesis], digest: Digest, baseline: Digest | None, metrics: MetricFrame,
         baseline_metrics: MetricFrame | None, spans: Sequence[Span], baseline_spans: Sequence[Span]) -> Citations:
    """The templates, metric series and span operations the hypotheses' evidence items cite."""
    return Citations(
        templates=_templates(hypotheses, digest, baseline),
        metrics=_metrics(hypotheses, metrics, baseline_metrics),
        operations=_operations(hypotheses, spans, baseline_spans),
    )


def onset(citations: Citations) -> datetime | None:
    """The earliest change point of the templates the top hypothesis cites; of any cited template if it cites none."""
    timed = [t for t in citations.templates if t.onset is not None]
    top = [t.onset for t in timed if any(ref.hypothesis == 0 for ref in t.cited_by) and t.onset]
    return min(top or [t.onset for t in timed if t.onset], default=None)


def time_range(digest: Digest | None) -> TimeRange | None:
    """From the first to the last timed line of a digest, and its line count; None when no line has a time."""
    if digest is None or not digest.lines:
        return None
    firsts = [t.first_seen for t in digest.templates.values() if t.first_seen is not None]
    lasts = [t.last_seen for t in digest.templates.values() if t.last_seen is not None]
    if not firsts or not lasts:
        return None
    return TimeRange(start=_utc(min(firsts)), end=_utc(max(lasts)), lines=digest.lines)


__all__ = ["cite", "onset", "quotes", "same_text", "time_range"]
