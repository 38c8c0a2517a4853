"""The small facade over masking and mining: messages in, template ids out.

A template id is derived from the template text alone (a short hash), so the same
template gets the same id in every process, chunk and merge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from anomaly.masking import mask_many
from anomaly.mining import mine


def template_id(text: str) -> str:
    """Stable id of a template text: ``T`` + 10 hex digits of its BLAKE2b hash."""
    return "T" + hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=5).hexdigest()


def assign_templates(signatures: Iterable[str], **constants: int) -> dict[str, tuple[str, str]]:
    """Map each distinct masked message to ``(template_id, template_text)``.

    ``constants`` override the miner's measured constants (``mine``'s keyword arguments);
    only the leave-one-system-out evaluation passes them.
    """
    sigs = sorted(set(signatures))
    assignment, texts = mine(sigs, **constants)
    ids = [template_id(t) for t in texts]
    return {s: (ids[a], texts[a]) for s, a in zip(sigs, assignment)}


class TemplateMiner:
    """Collect messages, then ask which template each belongs to."""

    def __init__(self) -> None:
        self._signatures: set[str] = set()
        self._assigned: dict[str, tuple[str, str]] | None = None

    def add(self, messages: Sequence[str]) -> list[str]:
        """Mask and remember messages; returns their masked forms."""
        masked = mask_many(messages)
        self._signatures.update(masked)
        self._assigned = None
        return masked

    def assignment(self) -> dict[str, tuple[str, str]]:
        if self._assigned is None:
            self._assigned = assign_templates(self._signatures)
        return self._assigned

    def template_ids(self, messages: Sequence[str]) -> list[str]:
        assigned = self.assignment()
        return [assigned[m][0] for m in mask_many(messages)]
