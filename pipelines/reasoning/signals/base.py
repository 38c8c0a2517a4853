"""What an evidence extractor (a *signal*) finds, and the interface every signal has.

A signal reads the ``Evidence`` of one incident and returns ``Finding``s: a service, what it
suggests (a fault type and category), how strongly (0..1), whether the service looks like the
cause or like a victim of another service, and the evidence in words an engineer can check
(template text with counts, a metric with before/after values, a call edge with latencies).
One file per kind of signal, registered in ``signals/__init__.py`` (k8sgpt's analyzer list).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pipelines.reasoning.base import Evidence
from pipelines.schemas import Category


@dataclass(frozen=True)
class Finding:
    """One piece of evidence that points at a service."""

    service: str
    signal: str
    fault_type: str
    category: Category
    strength: float
    evidence: str


class Signal(Protocol):
    """An evidence extractor. Must not raise on odd or missing evidence: it returns nothing then."""

    name: str

    def findings(self, evidence: Evidence) -> list[Finding]: ...


def finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def saturate(x: float, scale: float) -> float:
    """Map a non-negative excess onto 0..1: ``scale`` gives 0.63."""
    return 0.0 if not math.isfinite(x) or x <= 0 else 1.0 - math.exp(-x / scale)


def fmt(value: float) -> str:
    return f"{value:.3g}"
