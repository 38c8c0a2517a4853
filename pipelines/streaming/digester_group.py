"""One member of the digesters' consumer group: the ``rca.logs`` partitions Kafka gives it, mined on
arrival, and the ``rca.spans`` partitions of the same numbers, held.

Why a consumer group
    One reader that assigns every partition must mine every line of the cluster. Lines are
    keyed by service, so a partition holds whole services, and digests of different
    partitions merge exactly: members of one group (``<RCA_KAFKA_GROUP_ID>-digesters``) share
    the partitions, and an alert's context is the merge of every member's range
    (:meth:`DigesterMember.between`).

Rebuild on rebalance, nothing counted twice
    Each ``rca.logs`` partition has its own :class:`~pipelines.streaming.digester.Digester`, each
    ``rca.spans`` partition its own :class:`~pipelines.streaming.span_store.SpanStore`. Offsets
    are never committed: on assignment a member seeks the partition to the first record of the
    history an alert can ask for (two windows and the wait, by record time) and rebuilds its
    buckets from there; on revocation it drops that partition's digests or spans. So a partition
    that moves (a member stopped, crashed or joined) is read again, once, by its new owner.

Lines and spans together
    The member subscribes both topics, and the ``range`` assignor gives partition *i* of every
    subscribed topic to the same member (``ensure_topics`` creates both with the same partition
    count), so spans keyed by service sit beside that service's lines. The context never depends
    on that keying: :meth:`DigesterMember.between` answers the spans of every span partition the
    member holds, and the context merges every member's (:func:`merge_ranges`).

Pure asyncio and aiokafka: a Ray actor can host it, tests run it as is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from anomaly.digest import Digest
from pipelines import metrics
from pipelines.settings import Settings
from pipelines.tls import kafka_client_options
from pipelines.streaming.dead_letters import DeadLetters
from pipelines.streaming.offsets import ReadPositions, read_to_ends
from pipelines.streaming.digester import DigesterStats, DigestRange, Digester, history_seconds
from pipelines.streaming.span_store import SpanRange, SpanStore, SpanStoreStats
from pipelines.streaming.producer import Publisher
from pipelines.streaming.retry import backoff_seconds
from pipelines.streaming.time_buckets import sum_counts
from pipelines.streaming.topics import TopicNames, ensure_topics

logger = logging.getLogger(__name__)

FETCH_RECORDS = 20_000
"""Records one fetch hands over at most: with aiokafka's per-partition fetch size (4 MiB) what a
member holds between Kafka and its digests is bounded, whatever the backlog."""


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, member: DigesterMember) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._member.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._member.assignments += 1
        await self._member.rebuild(set(assigned))


class DigesterMember:
    """Consumes its share of ``rca.logs`` into one Digester per partition, and of ``rca.spans`` into one
    SpanStore per partition, in the digesters' group."""

    def __init__(
        self, settings: Settings, *, client_id: str = "rca-digester", clock: Callable[[], float] = time.time,
        dead_letters: DeadLetters | None = None, fetch_records: int = FETCH_RECORDS, mine_delay_seconds: float = 0.0,
    ) -> None:
        """``dead_letters``: its host's (shared, left running on stop); else a publisher of its own.

        ``fetch_records`` bounds one fetch. ``mine_delay_seconds`` is added to the mining of every
        fetched batch: a digester on a loaded node, for the backpressure test and the benchmark
        (0 in production). A slow member simply fetches less often: Kafka is pulled, so the
        backlog waits in the broker, not in the member's memory.
        """
        if not settings.kafka_bootstrap:
            raise ValueError("RCA_KAFKA_BOOTSTRAP is not set: a digester needs a broker")
        if fetch_records < 1:
            raise ValueError(f"fetch_records must be at least 1, got {fetch_records}")
        if not mine_delay_seconds >= 0:
            raise ValueError(f"mine_delay_seconds must be 0 or more, got {mine_delay_seconds}")
        self.fetch_records = fetch_records
        self.mine_delay_seconds = mine_delay_seconds
        self.settings = settings
        self.bootstrap: str = settings.kafka_bootstrap
        self.topics = TopicNames.from_settings(settings)
        self.group_id = f"{settings.kafka_group_id}-digesters"
        self.client_id = client_id
        self._clock = clock
        self.digesters: dict[TopicPartition, Digester] = {}
        self.span_stores: dict[TopicPartition, SpanStore] = {}
        self._owns_dead_letters = dead_letters is None
        self.dead_letters = dead_letters or DeadLetters(
            Publisher(self.bootstrap, partitions=None, topics=self.topics,
                      client_options=kafka_client_options(settings)), self.topics.dlq
        )
        self.consumed = 0
        self.spans_consumed = 0  # span records (batches) read, beside ``consumed`` log records
        self.rebuilds = 0
        self.assignments = 0  # rebalances that gave this member its partitions (possibly none)
        self._partitions = settings.kafka_partitions
        self._span_partitions = settings.kafka_partitions
        self._consumer: AIOKafkaConsumer | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._dropped_recorded: dict[str, int] = {}
        self._spans_dropped_recorded: dict[str, int] = {}

    async def start(self) -> None:
        """Run :meth:`run` in a task of its own (once; later calls do nothing while it runs, and
        run it again if it failed)."""
        task = self._task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            logger.error("digester %s loop failed; running it again", self.client_id, exc_info=task.exception())
            task = None
        if task is None:
            self._task = asyncio.create_task(self.run(), name=f"{self.client_id}-loop")

    async def stop(self) -> None:
        """Leave the group (its partitions move to the other members at once) and forget every digest."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._owns_dead_letters:
            await self.dead_letters.stop()

    async def _connect(self) -> AIOKafkaConsumer:
        attempt = 0
        while True:
            try:
                found = await ensure_topics(self.bootstrap, self.settings.kafka_partitions, self.topics,
                                            client_options=kafka_client_options(self.settings))
                self._partitions = found.partitions.get(self.topics.logs, self._partitions)
                self._span_partitions = found.partitions.get(self.topics.spans, self._partitions)
                if self._span_partitions != self._partitions:
                    logger.warning(
                        "%s has %d partitions and %s has %d: a service's lines and spans are held by different "
                        "digesters. Contexts stay complete (every digester's spans are merged), but give both "
                        "topics the same count (kafka-topics.sh --alter --partitions) so each joins them locally",
                        self.topics.logs, self._partitions, self.topics.spans, self._span_partitions)
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap, group_id=self.group_id, client_id=self.client_id,
                    enable_auto_commit=False, partition_assignment_strategy=(RangePartitionAssignor,),
                    fetch_max_bytes=16 * 1024 * 1024, max_partition_fetch_bytes=4 * 1024 * 1024,
                    session_timeout_ms=10_000, heartbeat_interval_ms=1_000, check_crcs=False,
                    **kafka_client_options(self.settings),
                )
                self._consumer = consumer
                await consumer.start()
                await self._know_topics(consumer)
                consumer.subscribe([self.topics.logs, self.topics.spans], listener=_Rebalance(self))
                return consumer
            except Exception as error:  # noqa: BLE001 - a broker that is down is waited for
                if self._consumer is not None:
                    await self._consumer.stop()
                    self._consumer = None
                logger.warning("digester %s cannot join %s at %s: %s", self.client_id, self.group_id, self.bootstrap, error)
                await asyncio.sleep(backoff_seconds(attempt))
                attempt += 1

    async def _know_topics(self, consumer: AIOKafkaConsumer, within: float = 10.0) -> None:
        """Wait (bounded) until the consumer's metadata has both topics, just created or not: a group
        joined while it knew only one would be assigned that one, then rebalance when the other
        appears, and every partition would be read twice."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            known = await consumer.topics()
            if self.topics.logs in known and self.topics.spans in known:
                return
            await asyncio.sleep(0.1)

    async def run(self) -> None:
        """Join the group and mine what it assigns until cancelled; on the way out leave the group and
        forget every digest (whoever gets the partitions next rebuilds them)."""
        consumer = await self._connect()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=self.fetch_records)
                if not batches:  # idle: mine what is pending now rather than when an alert asks
                    for digester in self.digesters.values():
                        digester.flush()
                for tp, records in batches.items():
                    holder = self.digesters.get(tp) or self.span_stores.get(tp)
                    if holder is None:  # revoked while the batch was on its way
                        continue
                    if tp.topic == self.topics.spans:
                        self.spans_consumed += len(records)
                    else:
                        self.consumed += len(records)
                    if records:
                        self._positions[tp] = records[-1].offset + 1
                    for record, error in holder.ingest(records):
                        await self.dead_letters.send(record, error.reason, error.detail)
                if batches and self.mine_delay_seconds:
                    await asyncio.sleep(self.mine_delay_seconds)
        finally:
            self._consumer = None
            self.digesters.clear()
            self.span_stores.clear()
            self._positions.clear()
            try:
                await asyncio.wait_for(consumer.stop(), 10.0)
            except (asyncio.TimeoutError, OSError, KafkaError) as error:
                logger.warning("digester %s did not leave the group cleanly: %s", self.client_id, error)

    async def rebuild(self, assigned: set[TopicPartition]) -> None:
        """Start each newly assigned partition afresh at the first record of the history an alert can ask for."""
        consumer = self._consumer
        held = self.held()
        fresh = [tp for tp in assigned if tp not in held]
        if consumer is None or not fresh:
            return
        share = max(1, self.settings.digest_max_bytes // max(1, self._partitions))
        span_share = max(1, self.settings.span_buffer_max_bytes // max(1, self._span_partitions))
        retention = history_seconds(self.settings)
        for tp in fresh:
            if tp.topic == self.topics.spans:
                self.span_stores[tp] = SpanStore(max_bytes=span_share, retention_seconds=retention, clock=self._clock)
            else:
                self.digesters[tp] = Digester(
                    max_bytes=share, retention_seconds=retention,
                    max_event_bytes=self.settings.max_line_bytes, clock=self._clock,
                )
        since = int((self._clock() - retention) * 1000)
        ends = await consumer.end_offsets(fresh)  # taken first: nothing written after it is skipped
        found = await consumer.offsets_for_times({tp: since for tp in fresh})
        for tp in fresh:
            where = found.get(tp)
            self._positions[tp] = ends[tp] if where is None else min(where.offset, ends[tp])
            consumer.seek(tp, self._positions[tp])
        self.rebuilds += len(fresh)

    def forget(self, revoked: set[TopicPartition]) -> None:
        """Drop the digests and spans of partitions that move to another member (it rebuilds them)."""
        for tp in revoked:
            self.digesters.pop(tp, None)
            self.span_stores.pop(tp, None)
            self._positions.pop(tp, None)

    def held(self) -> list[TopicPartition]:
        """Every partition it holds: its ``rca.logs`` and its ``rca.spans`` partitions."""
        return [*self.digesters, *self.span_stores]

    def lag(self) -> dict[str, int]:
        """Records behind the end of each assigned partition (``topic/partition`` -> count), as last fetched."""
        return {key: max(0, end - position) for key, (position, end) in (self.read_positions() or {}).items()
                if position is not None and end is not None}

    def record_metrics(self) -> None:
        """Set the lag gauge of each partition held and count the lines and spans dropped since the last call.

        The one place a member's metrics are written (its host calls it periodically: the reader,
        or the digester actor); never raises."""
        try:
            for key, value in self.lag().items():
                topic, partition = key.rsplit("/", 1)
                metrics.set_kafka_lag(topic, int(partition), value)
            dropped, spans_dropped = self.dropped(), self.stats().spans.dropped
            metrics.count_lines(0, _since(dropped, self._dropped_recorded))
            metrics.count_spans_dropped(_since(spans_dropped, self._spans_dropped_recorded))
            self._dropped_recorded, self._spans_dropped_recorded = dropped, spans_dropped
        except Exception as error:  # noqa: BLE001 - metrics never take the digester down
            logger.warning("digester %s metrics not recorded: %s: %s", self.client_id, type(error).__name__, error)

    def dropped(self) -> dict[str, int]:
        """What the digests left out, by reason, over the partitions held."""
        return sum_counts(digester.dropped for digester in self.digesters.values())

    def stats(self) -> DigesterStats:
        """The partitions' digesters summed, and their span stores."""
        total = DigesterStats.total([d.stats() for d in self.digesters.values()], self.settings.digest_max_bytes)
        return replace(total, spans=SpanStoreStats.total(s.stats() for s in self.span_stores.values()))

    def read_positions(self) -> ReadPositions | None:
        """Where each partition it holds is read to, and its end as last fetched; None until it has
        joined the group (its share is unknown)."""
        consumer = self._consumer
        if consumer is None or not self.joined():
            return None
        return {f"{tp.topic}/{tp.partition}": (self._positions.get(tp), consumer.highwater(tp))
                for tp in self.held()}

    def caught_up(self) -> bool:
        """Has every assigned partition been read to its end as last fetched?"""
        positions = self.read_positions()
        return bool(positions) and read_to_ends(positions)

    def joined(self) -> bool:
        """In the group and given its partitions (possibly none) at least once."""
        return self._consumer is not None and self.assignments > 0

    def between(self, start: float, end: float, *, through_end: bool = False) -> DigestRange:
        """This member's share of a range: its partitions' digests merged, its span partitions' spans,
        and what their bounds cut."""
        parts = [digester.between(start, end, through_end=through_end) for _, digester in sorted(self.digesters.items())]
        spans = [store.between(start, end, through_end=through_end) for _, store in sorted(self.span_stores.items())]
        return merge_ranges(parts, spans)


def _since(counts: dict[str, int], recorded: dict[str, int]) -> dict[str, int]:
    """What each count grew by since it was last recorded."""
    return {reason: n - recorded.get(reason, 0) for reason, n in counts.items() if n > recorded.get(reason, 0)}


def merge_ranges(ranges: list[DigestRange], spans: list[SpanRange] | None = None) -> DigestRange:
    """Several shares of one range merged (a member's partitions, or every member's share: the
    range's context); ``spans``: span shares beside the ranges' own."""
    merged_spans = SpanRange.merge([*(r.spans for r in ranges), *(spans or [])])
    if not ranges:
        return DigestRange(Digest(), 0, merged_spans)
    return DigestRange(Digest.merge_all([r.digest for r in ranges]), sum(r.cut_lines for r in ranges), merged_spans)
