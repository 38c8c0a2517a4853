"""An analysis' signature, and how alike two signatures are: pure functions, no database.

A signature is what identifies a *kind* of incident, independent of its times and counts:
- ``services``: the services the hypotheses name (where the cause was looked for);
- ``templates``: the masked text of the log templates the scorer flagged (the same fault
  logs the same templates, whatever its ids, pods and numbers);
- ``evidence_kinds``: which signals backed the hypotheses (``signal:metrics``), which metrics
  moved (``metric:error_rate``) and which fault types were named (``fault:db_connection_exhaustion``);
- ``category``: the classification.

Similarity is a weighted mean of the Jaccard index (shared / either) of the three sets plus
1 for the same category. The weights say what tells a recurring fault apart, fixed by
reasoning, not fitted on any data: the services and the templates identify a fault
(0.3 each); evidence kinds are coarser, many faults move the error rate (0.25); six categories
split incidents least (0.15). A set that neither signature has says nothing and is left out of
the mean (its weight is spread over the others), so two analyses without flagged templates
can still be alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pipelines.schemas import Analysis, Signature

WEIGHTS = {"services": 0.30, "templates": 0.30, "evidence_kinds": 0.25, "category": 0.15}
#: evidence lines start with the signal that found them: "[metrics] CPU ...", "[logs] error template ..."
SIGNAL_PREFIX = re.compile(r"^\[([a-z_]+)\]")
#: the signal of the line that cites past incidents (``pipelines/feedback.py``): history is not a signature
HISTORY_SIGNAL = "history"
MAX_TEMPLATES = 20

K = TypeVar("K")


def signature_of(analysis: Analysis) -> Signature:
    """The signature of one analysis (see the module doc)."""
    services = {h.service for h in analysis.hypotheses if h.service}
    templates = [a.subject for a in analysis.anomalies if a.kind == "template"][:MAX_TEMPLATES]
    kinds: set[str] = set()
    for h in analysis.hypotheses:
        if h.fault_type:
            kinds.add(f"fault:{h.fault_type}")
        for line in h.evidence:
            found = SIGNAL_PREFIX.match(line)
            if found and found.group(1) != HISTORY_SIGNAL:
                kinds.add(f"signal:{found.group(1)}")
    kinds.update(f"metric:{a.subject}" for a in analysis.anomalies if a.kind == "metric")
    return Signature(
        category=analysis.classification.category,
        services=sorted(services),
        templates=sorted(set(templates)),
        evidence_kinds=sorted(kinds),
    )


@dataclass(frozen=True)
class Likeness:
    """How alike two signatures are, and what they share (what a reader checks the score against)."""

    score: float
    services: list[str]
    templates: list[str]
    evidence_kinds: list[str]
    same_category: bool


def jaccard(a: Iterable[str], b: Iterable[str]) -> float | None:
    """|a ∩ b| / |a ∪ b|; None when both are empty (nothing to compare)."""
    left, right = set(a), set(b)
    union = left | right
    return len(left & right) / len(union) if union else None


def likeness(a: Signature, b: Signature) -> Likeness:
    """The weighted similarity of two signatures (module doc), 0..1, symmetric."""
    parts = {
        "services": jaccard(a.services, b.services),
        "templates": jaccard(a.templates, b.templates),
        "evidence_kinds": jaccard(a.evidence_kinds, b.evidence_kinds),
        "category": 1.0 if a.category == b.category else 0.0,
    }
    weight = sum(WEIGHTS[k] for k, v in parts.items() if v is not None)
    score = sum(WEIGHTS[k] * v for k, v in parts.items() if v is not None) / weight
    return Likeness(
        score=round(score, 4),
        services=sorted(set(a.services) & set(b.services)),
        templates=sorted(set(a.templates) & set(b.templates)),
        evidence_kinds=sorted(set(a.evidence_kinds) & set(b.evidence_kinds)),
        same_category=a.category == b.category,
    )


def rank_similar(
    target: Signature, candidates: Sequence[tuple[K, Signature]], *, limit: int, minimum: float = 0.0
) -> list[tuple[K, Likeness]]:
    """The ``limit`` candidates most like ``target`` (score at least ``minimum``, never 0), most alike first.

    Ties keep the candidates' order (the store gives the most recent first).
    """
    scored = [(key, likeness(target, signature)) for key, signature in candidates]
    kept = [(key, like) for key, like in scored if like.score > 0 and like.score >= minimum]
    kept.sort(key=lambda pair: pair[1].score, reverse=True)
    return kept[:limit]
