"""Operators' feedback, and what the next analysis learns from it.

- :func:`confirm` turns a feedback body into the confirmed cause (which hypothesis, or the
  real category and service) and checks it against the analysis it judges.
- :func:`cite_history` adds to a new analysis the confirmed past incidents most like it
  (``pipelines/similarity.py``): one evidence line that says how many of them had which cause
  and how the closest was resolved, and, when a hypothesis names that cause's service, raises it.
- :func:`recall` does both steps against the store. The ingress's ``IncidentService`` calls it
  between the pipeline and ``save_analysis``: only the ingress holds the store; the reasoner
  deployment and the offline evaluations have none, so their answers never change.

The two constants are set by reasoning, not fitted (no dataset has feedback to fit them on):
- :data:`CITE_SIMILARITY` 0.5: a past incident is cited when at least half of the weighted
  signature is shared. One that shares no service and no template reaches at most
  0.25 + 0.15 = 0.4 (every evidence kind and the category), so it is never cited.
- :data:`HISTORY_WEIGHT` 0.5: history moves a hypothesis at most half-way from its own
  confidence to certainty, and only that far when every similar confirmed incident had that
  cause and the closest is identical; today's evidence always counts at least as much.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from pipelines.schemas import Analysis, Category, FeedbackCreate, Hypothesis, Signature, SimilarIncident
from pipelines.similarity import HISTORY_SIGNAL, signature_of

CITE_SIMILARITY = 0.5
HISTORY_WEIGHT = 0.5
#: how many confirmed past incidents are weighed for a citation
MAX_CITED = 20
MAX_NOTES_CHARS = 300


class FeedbackError(ValueError):
    """Feedback that cannot apply to the incident's analysis; the message names the field."""


@dataclass(frozen=True)
class ConfirmedCause:
    """What a feedback body confirms, resolved against the analysis it judges."""

    rank: int | None
    confirmed_rank: int | None
    category: Category
    service: str | None
    cause: str | None


def confirm(body: FeedbackCreate, hypotheses: list[Hypothesis] | None, incident_id: str) -> ConfirmedCause:
    """The cause ``body`` confirms; FeedbackError naming ``rank`` when it points at no hypothesis.

    With ``category`` and ``service``, ``confirmed_rank`` is the first hypothesis naming both
    (None when none does): that is what top-1 / top-3 accuracy counts.
    """
    if body.rank is not None:
        if not hypotheses:
            raise FeedbackError(f"rank: incident {incident_id} has no analysis yet; give category and service instead")
        if not 1 <= body.rank <= len(hypotheses):
            raise FeedbackError(f"rank: {body.rank} is out of range; the analysis of incident {incident_id} has "
                                f"{len(hypotheses)} hypotheses (1..{len(hypotheses)})")
        chosen = hypotheses[body.rank - 1]
        return ConfirmedCause(body.rank, body.rank, chosen.category, chosen.service, chosen.cause)
    assert body.category is not None  # FeedbackCreate requires category and service without a rank
    confirmed = next((i for i, h in enumerate(hypotheses or [], start=1)
                      if h.service == body.service and h.category == body.category), None)
    return ConfirmedCause(None, confirmed, body.category, body.service, None)


def cite_history(analysis: Analysis, confirmed: list[SimilarIncident]) -> Analysis:
    """``analysis`` with its confirmed look-alikes cited (module doc); the same object when there are none.

    ``confirmed`` are past incidents with feedback, most alike first; only those at
    :data:`CITE_SIMILARITY` or more count.
    """
    alike = [p for p in confirmed if p.feedback is not None and p.similarity >= CITE_SIMILARITY][:MAX_CITED]
    if not alike:
        return analysis
    causes = Counter((p.feedback.service, p.feedback.category) for p in alike if p.feedback)
    (service, category), agreeing = max(causes.items(), key=lambda kv: kv[1])  # ties: the first seen, the closest
    closest = next(p for p in alike if p.feedback and (p.feedback.service, p.feedback.category) == (service, category))
    assert closest.feedback is not None
    notes = closest.feedback.notes.strip()
    notes = (notes[:MAX_NOTES_CHARS] + "…") if len(notes) > MAX_NOTES_CHARS else notes
    line = (f"[{HISTORY_SIGNAL}] {agreeing} of the {len(alike)} confirmed past incidents most like this one "
            f"(similarity >= {CITE_SIMILARITY}) were {service or 'not of one service'} ({category.value}); "
            f"the closest, {closest.alert_name} of {closest.started_at:%Y-%m-%d %H:%M} UTC (incident {closest.incident_id}, "
            f"similarity {closest.similarity:.2f}), was resolved by: {notes or 'no notes given'}")
    hypotheses = [h.model_copy(deep=True) for h in analysis.hypotheses]
    target = next((h for h in hypotheses if service and h.service == service), None)
    if target is None:
        hypotheses[0].evidence.append(line + "; no hypothesis of this analysis names that service")
    else:
        before = target.confidence
        target.confidence = round(before + (1 - before) * HISTORY_WEIGHT * (agreeing / len(alike)) * closest.similarity, 3)
        target.evidence.append(line + f"; confidence raised from {before:.2f} to {target.confidence:.2f} by this history")
    hypotheses.sort(key=lambda h: h.confidence, reverse=True)
    return analysis.model_copy(update={"hypotheses": hypotheses})


class PastIncidents(Protocol):
    """What :func:`recall` needs of the store."""

    async def confirmed_similar(self, signature: Signature, *, exclude: str, minimum: float,
                                limit: int) -> list[SimilarIncident]: ...


async def recall(store: PastIncidents, analysis: Analysis) -> Analysis:
    """``analysis`` with the confirmed past incidents most like it cited (:func:`cite_history`)."""
    confirmed = await store.confirmed_similar(signature_of(analysis), exclude=analysis.incident_id,
                                              minimum=CITE_SIMILARITY, limit=MAX_CITED)
    return cite_history(analysis, confirmed)
