"""Anomaly scoring: which templates, services, time buckets and metrics are unusual.

IsolationForest (scikit-learn) runs on two kinds of rows, fitted on the baseline
when one is given (otherwise on the incident window itself), and never reads a label:
- time buckets as per-template count vectors: which minutes look unlike normal ones;
- templates as feature rows (rate in window, rate in baseline, change, newness,
  burstiness, error share): which templates stand out.
A template's score blends its isolation with a count-surprise evidence score (how
far its window count lies from what the baseline rate predicts), so a template is
flagged for a reason a person can read in ``detail``. Services and metrics are
scored from the same evidence; every item carries the raw lines or values behind it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
from sklearn.ensemble import IsolationForest

from anomaly.digest import Digest

MetricFrame = dict[tuple[str, str], list[tuple[float, float]]]

#: items scoring at or above this are flagged
FLAG_THRESHOLD = 0.6
#: at most this many templates are flagged (a summary must name each of them)
MAX_FLAGGED_TEMPLATES = 6


@dataclass
class ScoredItem:
    kind: str  # "template" | "service" | "time_bucket" | "metric"
    subject: str  # template text | service | ISO bucket start | metric name
    score: float  # higher = more unusual, 0..1 normalised
    service: str | None
    detail: str
    evidence: list[str]
    template_id: str | None = None
    flagged: bool = False


@dataclass
class AnomalyReport:
    templates: list[ScoredItem] = field(default_factory=list)
    services: list[ScoredItem] = field(default_factory=list)
    buckets: list[ScoredItem] = field(default_factory=list)
    metrics: list[ScoredItem] = field(default_factory=list)

    def flagged(self) -> list[ScoredItem]:
        """The items judged anomalous, most unusual first."""
        items = [i for i in (*self.templates, *self.services, *self.buckets, *self.metrics) if i.flagged]
        return sorted(items, key=lambda i: -i.score)

    def flagged_template_ids(self) -> list[str]:
        return [i.template_id for i in self.templates if i.flagged and i.template_id]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _span_buckets(d: Digest) -> int:
    return max(1, len(d.bucket_counts()))


def _forest(n_rows: int, random_state: int) -> IsolationForest:
    return IsolationForest(
        n_estimators=100, max_samples=min(256, max(2, n_rows)), random_state=random_state
    )


def _if_scores(fit_rows: np.ndarray, score_rows: np.ndarray, random_state: int) -> np.ndarray:
    """Isolation score in 0..1 (the paper's s(x, n): > 0.5 means isolated early)."""
    if len(fit_rows) < 2 or len(score_rows) == 0:
        return np.zeros(len(score_rows))
    forest = _forest(len(fit_rows), random_state).fit(fit_rows)
    return np.clip(-forest.score_samples(score_rows), 0.0, 1.0)


def _surprise(observed: float, expected: float) -> float:
    """0..1 evidence that ``observed`` exceeds a Poisson mean ``expected`` (log-likelihood based)."""
    expected = max(expected, 0.5)
    if observed <= expected:
        return 0.0
    llr = observed * math.log(observed / expected) - (observed - expected)
    return 1.0 - math.exp(-llr / 10.0)


def _burst(t_buckets: list[int]) -> float:
    if not t_buckets:
        return 0.0
    arr = np.asarray(t_buckets, dtype=float)
    return float(arr.max() / (np.median(arr) + 1.0))


def score_anomalies(
    window: Digest,
    baseline: Digest | None = None,
    *,
    metrics: MetricFrame | None = None,
    baseline_metrics: MetricFrame | None = None,
    random_state: int = 0,
) -> AnomalyReport:
    """Score the window's templates, services, buckets and metrics (see module doc)."""
    report = AnomalyReport()
    templates = window.templates
    if templates:
        report.buckets, bucket_scores = _score_buckets(window, baseline, random_state)
        report.templates = _score_templates(window, baseline, bucket_scores, random_state)
        report.services = _score_services(window, baseline, report.templates)
    report.metrics = _score_metrics(metrics or {}, baseline_metrics or {}, random_state)
    return report


def _score_buckets(
    window: Digest, baseline: Digest | None, random_state: int
) -> tuple[list[ScoredItem], dict[float, float]]:
    wb = window.bucket_counts()
    if not wb:
        return [], {}
    tids = sorted(window.templates)
    col = {t: i for i, t in enumerate(tids)}

    def matrix(bc: dict[float, dict[str, int]]) -> np.ndarray:
        m = np.zeros((len(bc), len(tids) + 1))
        for r, counts in enumerate(bc.values()):
            for t, n in counts.items():
                if t in col:
                    m[r, col[t]] = n
                else:
                    m[r, -1] += n  # baseline-only templates
        return np.log1p(m)

    wx = matrix(wb)
    fit = wx
    if baseline is not None:
        _, bb = window.counts_of(baseline)
        if len(bb) >= 4:
            fit = matrix(bb)
    scores = _if_scores(fit, wx, random_state)
    items = []
    templates = window.templates
    for (b, counts), s in zip(wb.items(), scores):
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
        errors = round(sum(n * templates[t].error_share for t, n in counts.items()))
        items.append(
            ScoredItem(
                kind="time_bucket", subject=_iso(b), score=round(float(s), 4), service=None,
                detail=f"{sum(counts.values())} lines, {errors} error lines, {len(counts)} templates",
                evidence=[f"{n}x {templates[t].text}" for t, n in top],
                flagged=bool(s >= FLAG_THRESHOLD),
            )
        )
    items.sort(key=lambda i: -i.score)
    return items, {b: float(s) for b, s in zip(wb, scores)}


def _score_templates(
    window: Digest, baseline: Digest | None, bucket_scores: dict[float, float], random_state: int
) -> list[ScoredItem]:
    templates = window.templates
    tids = list(templates)
    span_w = _span_buckets(window)
    per_bucket: dict[str, list[int]] = defaultdict(list)
    for counts in window.bucket_counts().values():
        for t, n in counts.items():
            per_bucket[t].append(n)
    if baseline is not None:
        base_counts, _ = window.counts_of(baseline)
        span_b = _span_buckets(baseline)
    else:
        base_counts, span_b = {}, 1
    total_w = max(1, window.lines)
    rows, evidence = [], []
    for t in tids:
        st = templates[t]
        cw = st.count
        cb = base_counts.get(t, 0)
        err = st.error_share
        novel = 1.0 if baseline is not None and cb == 0 else 0.0
        burst = _burst(per_bucket.get(t, []))
        if baseline is not None:
            expected = cb * span_w / span_b
            surprise = _surprise(cw, expected)
        else:
            # no baseline: a template is surprising when it bursts, or is an error at all
            surprise = _surprise(max(per_bucket.get(t, [cw])), float(np.median(per_bucket.get(t, [cw]))) + 1)
        rows.append([
            math.log1p(cw / span_w), math.log1p(cb / span_b), math.log1p(cw / span_w) - math.log1p(cb / span_b),
            err, max(err, 1.0 if st.exception_types else 0.0), novel, math.log1p(burst),
            math.log1p(cw / total_w * 1000),
        ])
        evidence.append((cw, cb, novel, surprise, err, burst))
    x = np.asarray(rows)
    iso = _if_scores(x, x, random_state) if len(x) >= 8 else np.full(len(x), 0.5)
    items = []
    for t, s_if, (cw, cb, novel, surprise, err, burst) in zip(tids, iso, evidence):
        st = templates[t]
        # evidence first: errors that are new or grew; isolation refines the order
        if baseline is not None:
            base = 0.45 * surprise + 0.25 * err + 0.15 * novel * (0.5 + 0.5 * err)
        else:  # nothing to compare with: errors and exceptions are the evidence
            base = 0.45 * surprise + 0.5 * err + (0.1 if st.exception_types else 0.0)
        score = min(1.0, base + 0.3 * max(0.0, float(s_if) - 0.4))
        if baseline is not None:
            detail = (
                f"new since baseline: {cw} lines, 0 in baseline" if novel
                else f"{cw} lines in window vs {cb} in baseline"
            )
        else:
            detail = f"{cw} lines, peak bucket {burst:.1f}x the median"
        if st.exception_types:
            detail += "; exceptions: " + ", ".join(f"{k} x{v}" for k, v in sorted(st.exception_types.items(), key=lambda kv: -kv[1])[:3])
        service = max(st.services, key=st.services.get) if st.services else None
        items.append(
            ScoredItem(
                kind="template", subject=st.text, score=round(score, 4), service=service,
                detail=detail, evidence=list(st.samples), template_id=t,
            )
        )
    items.sort(key=lambda i: (-i.score, i.template_id or ""))
    for i in items[:MAX_FLAGGED_TEMPLATES]:
        i.flagged = i.score >= FLAG_THRESHOLD
    return items


def _score_services(window: Digest, baseline: Digest | None, scored: list[ScoredItem]) -> list[ScoredItem]:
    templates = window.templates
    by_service: dict[str, list[tuple[float, ScoredItem, int]]] = defaultdict(list)
    for item in scored:
        st = templates[item.template_id]
        for svc, n in st.services.items():
            by_service[svc].append((item.score, item, n))
    base_err: dict[str, float] = {}
    if baseline is not None:
        for svc, counts in baseline.template_counts_by_service().items():
            bt = baseline.templates
            total = sum(counts.values())
            base_err[svc] = sum(n * bt[t].error_share for t, n in counts.items()) / max(1, total)
    items = []
    for svc, entries in by_service.items():
        total = sum(n for _, _, n in entries)
        errors = sum(n * templates[it.template_id].error_share for _, it, n in entries)
        top = max(entries, key=lambda e: (e[0], e[2]))
        err_rate = errors / max(1, total)
        rise = max(0.0, err_rate - base_err.get(svc, 0.0))
        score = min(1.0, 0.7 * top[0] + 0.3 * math.sqrt(rise))
        items.append(
            ScoredItem(
                kind="service", subject=svc, score=round(score, 4), service=svc,
                detail=f"{total} lines, error share {err_rate:.0%}"
                + (f" (baseline {base_err[svc]:.0%})" if svc in base_err else "")
                + f"; most unusual template: {top[1].subject[:80]}",
                evidence=list(top[1].evidence[:2]), template_id=top[1].template_id,
                flagged=score >= FLAG_THRESHOLD,
            )
        )
    items.sort(key=lambda i: -i.score)
    return items


METRIC_FIT_SAMPLE = 4096


def _score_metrics(metrics: MetricFrame, baseline: MetricFrame, random_state: int) -> list[ScoredItem]:
    """Score every metric series against its own baseline with ONE IsolationForest.

    Each series is put on a common scale (robust z-score against its baseline median and
    MAD, or against the window itself without one); the forest is fitted once on the pooled
    reference points of all series and scores the window points of all series in one call.
    Hundreds of series (one per pod and metric) then cost one fit, not hundreds.
    """
    prepared = []
    for (svc, name), series in sorted(metrics.items()):
        vals = np.asarray([v for _, v in series if v is not None and math.isfinite(v)], dtype=float)
        if len(vals) == 0:
            continue
        base = np.asarray(
            [v for _, v in baseline.get((svc, name), []) if v is not None and math.isfinite(v)], dtype=float
        )
        ref = base if len(base) >= 5 else vals
        med = float(np.median(ref))
        mad = float(np.median(np.abs(ref - med))) * 1.4826 or (abs(med) * 0.05 + 1e-9)
        prepared.append((svc, name, series, vals, len(base) >= 5, med, mad, np.abs(ref - med) / mad, np.abs(vals - med) / mad))
    if not prepared:
        return []
    pooled_ref = np.concatenate([p[7] for p in prepared])
    if len(pooled_ref) > METRIC_FIT_SAMPLE:
        pooled_ref = np.random.default_rng(random_state).choice(pooled_ref, METRIC_FIT_SAMPLE, replace=False)
    window_z = np.concatenate([p[8] for p in prepared])
    # z-scores are capped so one absurd spike (a 3600 s sentinel) does not stretch the scale
    if_scores = _if_scores(np.minimum(pooled_ref, 50.0).reshape(-1, 1), np.minimum(window_z, 50.0).reshape(-1, 1), random_state)
    items = []
    offset = 0
    for svc, name, series, vals, has_base, med, _mad, _ref_z, z in prepared:
        s_if = if_scores[offset: offset + len(vals)]
        offset += len(vals)
        worst = int(np.argmax(z))
        top_if = float(np.sort(s_if)[-3:].mean()) if len(s_if) else 0.0
        score = min(1.0, 0.5 * (1.0 - math.exp(-float(z[worst]) / 6.0)) + 0.5 * max(0.0, top_if - 0.3) / 0.7)
        items.append(
            ScoredItem(
                kind="metric", subject=name, score=round(score, 4), service=svc,
                detail=f"peak {vals[worst]:.4g} vs {'baseline' if has_base else 'window'} median {med:.4g} ({z[worst]:.1f} robust sd)",
                evidence=[f"{_iso(t)} {v:.4g}" for t, v in series[-5:] if v is not None],
                flagged=score >= FLAG_THRESHOLD,
            )
        )
    items.sort(key=lambda i: -i.score)
    return items
