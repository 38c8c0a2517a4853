"""When a change began: change points found in the data, not taken from the alert.

Pure Python, in ``anomaly/`` so the reasoner's signals and the summary share one implementation.

Alerts fire minutes after a fault begins (a ``for: 2m`` rule, a slow scrape), and earlier
faults may still be going on. The window before the alert then holds the fault as much as the
normal traffic before it, and "before the alert against after it" finds nothing. So each
series locates its own change: of all the boundaries between the window's time buckets, the
one where "one rate before, another after" explains the counts best, scored by the
log-likelihood ratio against "one rate throughout".

Rates are relative to each bucket's total (a template's share of all lines, an operation's
share of all spans), so a dip in the whole workload is not a change of any one series, and the
first and last buckets, which the window cuts, count for what they hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: buckets needed on each side of a change point (with 10 s buckets, 30 s)
MIN_SIDE_BUCKETS = 3
#: a change whose log-likelihood ratio reaches this is significant for one series (chi-square
#: with one degree of freedom above 11: p < 0.001, so a few hundred series rarely pass by chance)
CHANGED_LLR = 5.5


@dataclass(frozen=True)
class Change:
    """The best change point of one series: where, how significant, and the rates either side."""

    index: int  # the first bucket after the change
    llr: float
    rate_before: float  # share of the buckets' totals before the change
    rate_after: float

    @property
    def significant(self) -> bool:
        return self.llr >= CHANGED_LLR


def count_llr(c1: float, e1: float, c2: float, e2: float) -> float:
    """Poisson log-likelihood ratio of a rate change between two spans of exposure ``e``."""

    def term(c: float, e: float) -> float:
        return c * math.log(c / e) if c > 0 and e > 0 else 0.0

    return max(0.0, term(c1, e1) + term(c2, e2) - term(c1 + c2, e1 + e2))


def best_change(counts: Sequence[float], totals: Sequence[float], min_side: int = MIN_SIDE_BUCKETS) -> Change | None:
    """The boundary where the series' share of the totals changes most, or None when too short."""
    n = len(counts)
    if n < 2 * min_side or len(totals) != n:
        return None
    c_all, e_all = float(sum(counts)), float(sum(totals))
    best: Change | None = None
    c1 = e1 = 0.0
    for k in range(1, n - min_side + 1):
        c1 += counts[k - 1]
        e1 += totals[k - 1]
        if k < min_side:
            continue
        c2, e2 = c_all - c1, e_all - e1
        llr = count_llr(c1, e1, c2, e2)
        if best is None or llr > best.llr:
            best = Change(k, llr, c1 / e1 if e1 else 0.0, c2 / e2 if e2 else 0.0)
    return best


def mean_llr(left: Sequence[float], right: Sequence[float]) -> float:
    """Gaussian log-likelihood ratio of a shift in mean between two samples (pooled variance)."""
    n1, n2 = len(left), len(right)
    if n1 < 2 or n2 < 2:
        return 0.0
    n = n1 + n2
    s1, s2 = sum(left), sum(right)
    q = sum(v * v for v in left) + sum(v * v for v in right)
    total = q / n - ((s1 + s2) / n) ** 2
    within = (q - s1 * s1 / n1 - s2 * s2 / n2) / n
    floor = 1e-6
    return max(0.0, 0.5 * n * math.log(max(total, floor) / max(within, floor)))


def after_rise(samples: Sequence[tuple[float, float]], width: float, min_side: int = MIN_SIDE_BUCKETS) -> list[float]:
    """The values from a series' own change point on, when its level rose there; all values otherwise.

    ``samples`` are (time, value) pairs; the level is the mean of ``log1p(value)``, so a latency
    that went from 2 ms to 200 ms weighs as much as one from 20 ms to 2 s. A window that holds
    the minutes before a fault and the minutes after it compares the after part with a baseline,
    not a mixture of both.
    """
    values = [v for _, v in samples]
    if not samples:
        return values
    first = min(t for t, _ in samples)
    buckets: dict[int, list[float]] = {}
    for t, v in samples:
        buckets.setdefault(int((t - first) // width), []).append(math.log1p(max(v, 0.0)))
    size = max(buckets) + 1
    best_k, best_llr = None, 0.0
    for k in range(min_side, size - min_side + 1):
        left = [v for i in range(k) for v in buckets.get(i, [])]
        right = [v for i in range(k, size) for v in buckets.get(i, [])]
        if not left or not right or sum(right) / len(right) <= sum(left) / len(left):
            continue
        llr = mean_llr(left, right)
        if llr > best_llr:
            best_k, best_llr = k, llr
    if best_k is None or best_llr < CHANGED_LLR:
        return values
    return [v for t, v in samples if int((t - first) // width) >= best_k]
