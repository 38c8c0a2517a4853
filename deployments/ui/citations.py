"""The page's view of what the evidence cites: a link under each evidence item to the cited
template, metric or operation, and how a template reads for a person.

The analysis stores what each evidence item cites (``Analysis.cited``, looked up by
``pipelines/citations.py`` while the incident's data was at hand); this only turns those
references into anchors of the page, so a link never points at something the analysis lacks.
"""

from __future__ import annotations

from dataclasses import dataclass

from anomaly.summary import body
from pipelines.schemas import Analysis, CitedTemplate

#: a cited template's label under an evidence item is cut to this many characters
LABEL_CHARS = 60


@dataclass(frozen=True)
class Link:
    """One link under an evidence item: the anchor of the cited item and what it says."""

    anchor: str
    kind: str  # template, metric or operation
    label: str


def readable(template: CitedTemplate) -> str:
    """The event a template records, as a person reads it: no transport prefix, ``…`` for a placeholder.

    The summary's ``body`` finds the prefix on a concrete line (a template's placeholders hide the
    timestamp it looks for), so the template keeps as many trailing words as its first exemplar's body has.
    """
    words = template.text.split()
    event = body(template.exemplars[0]).split() if template.exemplars else []
    kept = " ".join(words[-len(event):]) if 0 < len(event) <= len(words) else body(template.text)
    return kept.replace("<*>", "…") or template.text


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def links(analysis: Analysis) -> dict[tuple[int, int], list[Link]]:
    """(hypothesis index, evidence index) -> the links to show under that evidence item."""
    out: dict[tuple[int, int], list[Link]] = {}
    cited = analysis.cited
    for i, t in enumerate(cited.templates):
        for ref in t.cited_by:
            out.setdefault((ref.hypothesis, ref.evidence), []).append(
                Link(f"cite-template-{i + 1}", "template", _short(readable(t))))
    for i, m in enumerate(cited.metrics):
        for ref in m.cited_by:
            out.setdefault((ref.hypothesis, ref.evidence), []).append(
                Link(f"cite-metric-{i + 1}", "metric", f"{m.name} of {m.service}"))
    for i, o in enumerate(cited.operations):
        for ref in o.cited_by:
            out.setdefault((ref.hypothesis, ref.evidence), []).append(
                Link(f"cite-operation-{i + 1}", "operation", f"{o.operation} of {o.service}"))
    return out


__all__ = ["Link", "links", "readable"]
