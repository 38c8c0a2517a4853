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


ReadPositions = dict[str, tuple[int | None, int | None]]
"""``topic/partition`` -> (next offset to read, end of the partition as last fetched); None: not known yet."""


def read_to(positions: ReadPositions | None, targets: dict[str, int]) -> bool:
    """Has every partition of ``targets`` been read up to its target offset?

    ``positions`` None (a consumer that has not joined, or a digester that gave no answer) or a
    target partition nobody reports (it is moving between members) is not read."""
    if positions is None:
        return False
    for key, target in targets.items():
        position = positions.get(key, (None, None))[0]
        if position is None or position < target:
            return False
    return True


def read_to_ends(positions: ReadPositions | None) -> bool:
    """Has every partition reported been read to its end as last fetched? (None: not known, so no.)"""
    return positions is not None and all(position is not None and end is not None and position >= end
                                         for position, end in positions.values())


def read_targets(positions: ReadPositions | None, partitions: dict[str, int]) -> dict[str, int] | None:
    """The ends to read up to, taken now: one per partition of each topic in ``partitions`` (topic ->
    partition count). None while a partition is reported by nobody or its end is not known yet
    (a member that just got it has not fetched), so a context is never taken short of a partition."""
    if positions is None:
        return None
    targets: dict[str, int] = {}
    for topic, count in partitions.items():
        for partition in range(count):
            end = positions.get(f"{topic}/{partition}", (None, None))[1]
            if end is None:
                return None
            targets[f"{topic}/{partition}"] = end
    return targets
