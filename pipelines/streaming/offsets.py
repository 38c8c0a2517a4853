"""Which offset of a partition may be committed: the lowest one still in flight (at-least-once).

Pure bookkeeping (no Kafka), so the rule is tested on its own and reused by every consumer
that commits by hand.
"""

from __future__ import annotations


class PartitionProgress:
    """Offsets of one partition that are in flight; what may be committed is the lowest unfinished one."""

    __slots__ = ("pending", "next_offset", "committed")

    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.next_offset: int | None = None  # one past the highest offset taken
        self.committed: int | None = None

    def take(self, offset: int) -> None:
        self.pending.add(offset)
        if self.next_offset is None or offset + 1 > self.next_offset:
            self.next_offset = offset + 1

    def finish(self, offset: int) -> None:
        self.pending.discard(offset)

    def committable(self) -> int | None:
        """The offset to commit now (the next record to read after a restart), or None if nothing new."""
        if self.next_offset is None:
            return None
        offset = min(self.pending) if self.pending else self.next_offset
        return None if self.committed is not None and offset <= self.committed else offset
