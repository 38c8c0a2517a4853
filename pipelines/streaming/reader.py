"""The Kafka reader: alerts from ``rca.alerts`` become stored incidents, with logs from ``rca.logs``
and trace spans from ``rca.spans`` as context.

One class, :class:`KafkaReader`, and its loops:

* **logs and spans** - ``rca.logs`` and ``rca.spans`` are read by the members of the
  digesters' consumer group (:class:`~pipelines.streaming.digester_group.DigesterMember`),
  partition *i* of both by the same member. Lines are mined on arrival into per-(service, time
  bucket) digests, never held raw; span batches (OTLP/JSON from an OpenTelemetry Collector,
  :mod:`pipelines.streaming.otlp`) are decoded and their spans held per time bucket
  (:mod:`pipelines.streaming.span_store`: the traces signal reads every span of the window, and
  spans are far fewer than lines). A member rebuilds a partition it is given from the last two
  context windows in Kafka. An alert's context is its window, and its baseline the window
  before, gathered from every member and merged: digests and spans. Inside Ray the members are
  the app's digester actors (:mod:`pipelines.streaming.digester_actors`, some on every node);
  without Ray (tests, benchmarks) the reader runs one member itself. The reader itself consumes
  neither topic. Bad records go to ``rca.dlq``.
* **alerts** - a consumer group with manual commits. An alert's offset is committed only
  after ``process(alert, context)`` returned, i.e. after its incident and analysis are stored
  (at-least-once). Per partition the committed offset is the lowest offset still in flight,
  so a slow alert never lets a later one's commit skip it. Incidents are idempotent by
  fingerprint and start time, so a redelivered alert never makes a second incident.

Backpressure: at most ``max_inflight_analyses`` alerts are analyzed at once and at most
``max_pending`` are held (waiting for their context or for a slot); when that many are held
the alert partitions are *paused*, so a slow pipeline stops the consumer instead of filling
memory. A failing ``process`` (database down, the app restarting) is retried with backoff
and the offset stays uncommitted; an alert the pipeline rejects as invalid goes to the DLQ.
Nothing stops the consumer: an undecodable or invalid message goes to ``rca.dlq`` with its
reason in headers (``rca-dlq-reason``, ``rca-dlq-detail``, ``rca-dlq-source``) and is counted.

Metrics: the reader records them itself, every ``METRICS_EVERY_SECONDS`` while it runs (nobody
has to ask ``stats()``): the lag of each partition (``rca_kafka_consumer_lag_messages``) and
the log events its digests left out (``rca_log_lines_dropped_total``, reason ``oversized``,
``older_than_retention`` or ``digest_bound``), recorded by the digesters' members for the
``rca.logs`` and ``rca.spans`` partitions they hold; each DLQ message is counted as it is sent (``rca_dlq_messages_total``).

Without Ray the class runs in any asyncio loop with a plain ``process`` callback (tests,
the benchmark); :func:`ensure_reader` runs it as a named detached Ray actor that calls the
Serve ingress's ``process_alert``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError

from pipelines import metrics
from pipelines.context_window import ContextWindow
from pipelines.streaming.dead_letters import DeadLetters
from pipelines.streaming.digester import DigestRange
from pipelines.streaming.digester_actors import KEEP_EVERY_SECONDS, DigesterActors, stop_digesters
from pipelines.streaming.digester_group import DigesterMember
from pipelines.streaming.offsets import PartitionProgress, ReadPositions, read_targets, read_to
from pipelines.streaming.producer import Publisher
from pipelines.streaming.retry import backoff_seconds
from pipelines.streaming.topics import KafkaUnavailable, TopicNames, ensure_topics
from pipelines.schemas import Alert, IncidentContext, Span, Telemetry
from pipelines.settings import Settings
from pipelines.tls import kafka_client_options

logger = logging.getLogger(__name__)

#: (alert, its context: merged digests and spans of the window and the baseline, the delivery
#: "topic:partition:offset") -> what the app did with it
Process = Callable[[dict[str, Any], IncidentContext, str], Awaitable[dict[str, Any]]]
"""``process(alert as JSON dict, context) -> {"incident_id", "created", "analyzed", "status"}``; stores first."""

READER_NAMESPACE = "rca"
REVOKE_WAIT_SECONDS = 30.0
METRICS_EVERY_SECONDS = 5.0


def _now() -> float:
    return time.time()


class _Listener(ConsumerRebalanceListener):
    """Before partitions move to another reader, finish (or give up on) their alerts and commit."""

    def __init__(self, reader: "KafkaReader") -> None:
        self._reader = reader

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._reader._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._reader._on_assigned(set(assigned))


class KafkaReader:
    """Consumes alerts and logs; turns each alert into a stored incident with its log context."""

    def __init__(
        self,
        settings: Settings,
        app_name: str | None = None,
        process: Process | None = None,
        *,
        max_pending: int | None = None,
        client_id: str = "rca-reader",
        digester_actors: bool = False,
    ) -> None:
        """``process`` defaults to the Serve app ``app_name``'s ``Ingress.process_alert`` (inside Ray).

        ``digester_actors``: the lines are mined by the app's digester actors (inside Ray,
        :mod:`pipelines.streaming.digester_actors`), not by a member in this reader."""
        if not settings.kafka_bootstrap:
            raise ValueError("RCA_KAFKA_BOOTSTRAP is not set: the Kafka reader needs a broker")
        if process is None and app_name is None:
            raise ValueError("give either process= or the Serve app_name whose Ingress processes alerts")
        self.settings = settings
        self.bootstrap: str = settings.kafka_bootstrap
        self.topics = TopicNames.from_settings(settings)
        self.app_name = app_name
        self.client_id = client_id
        self._process = process
        self.max_inflight = settings.max_inflight_analyses
        self.max_pending = max_pending or max(16, 16 * settings.max_inflight_analyses)
        self._analysis_slots = asyncio.Semaphore(self.max_inflight)
        self._pending_tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._alerts: AIOKafkaConsumer | None = None
        self.dead_letters = DeadLetters(
            Publisher(self.bootstrap, partitions=None, topics=self.topics,
                      client_options=kafka_client_options(settings)), self.topics.dlq
        )
        self.digests = DigesterMember(settings, client_id=f"{client_id}-digester", dead_letters=self.dead_letters)
        """The reader's own member of the digesters' group; idle when ``digester_actors``."""
        if digester_actors and app_name is None:
            raise ValueError("digester_actors needs the Serve app_name whose digester actors mine the lines")
        self._actors = DigesterActors(settings, app_name) if digester_actors and app_name else None
        self._stopping = False
        self._topic_partitions: dict[str, int] = {}  # rca.logs and rca.spans -> partition count, once known
        self.counts: dict[str, int] = {
            "alerts_consumed": 0,
            "alerts_processed": 0,
            "incidents_created": 0,
            "process_retries": 0,
            "commits": 0,
            "pauses": 0,
        }
        self._dropped_recorded: dict[str, int] = {}
        self.state = "new"
        self.last_error: str | None = None

    # ---------------------------------------------------------------- life cycle

    async def start(self) -> str:
        """Start both loops (once; later calls do nothing) and return the reader's state."""
        if not self._tasks:
            self._stopping = False
            self.state = "starting"
            digests = self._keep_digesters if self._actors is not None else self.digests.run
            self._tasks = [
                asyncio.create_task(self._supervise("digests", digests), name="rca-kafka-digests"),
                asyncio.create_task(self._supervise("alerts", self._run_alerts), name="rca-kafka-alerts"),
                asyncio.create_task(self._record_metrics_periodically(), name="rca-kafka-metrics"),
            ]
        return self.state

    async def stop(self) -> None:
        """Stop consuming; alerts in flight are cancelled uncommitted (they are redelivered)."""
        self._stopping = True
        for task in [*self._tasks, *self._pending_tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._pending_tasks, return_exceptions=True)
        self._tasks = []
        self._pending_tasks.clear()
        if self._alerts is not None:
            await _stop_quietly(self._alerts)
        self._alerts = None
        await self.dead_letters.stop()
        self.state = "stopped"

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a loop; if it fails on something unforeseen, log it, close its client and run it again."""
        attempt = 0
        while not self._stopping:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the reader must outlive any one failure
                self.last_error = f"{name} loop: {type(error).__name__}: {_short(error)}"
                logger.exception("Kafka reader %s loop failed; restarting it", name)
                client = {"alerts": self._alerts}.get(name)
                if client is not None:
                    await _stop_quietly(client)
                await asyncio.sleep(backoff_seconds(attempt))
                attempt += 1

    async def _connect(self, what: str, connect: Callable[[], Awaitable[Any]]) -> Any:
        """Retry ``connect`` with backoff until it works (a broker that is down at start is waited for)."""
        attempt = 0
        while True:
            try:
                return await connect()
            except (KafkaError, KafkaUnavailable, OSError, asyncio.TimeoutError) as error:
                self.last_error = f"{what}: {type(error).__name__}: {error}"
                delay = backoff_seconds(attempt)
                logger.warning(
                    "Kafka reader cannot connect %s to %s (%s); retrying in %gs", what, self.bootstrap, error, delay
                )
                attempt += 1
                await asyncio.sleep(delay)

    async def _send_to_dlq(self, record: Any, reason: str, detail: str) -> None:
        await self.dead_letters.send(record, reason, detail)
        self.last_error = self.dead_letters.last_error or self.last_error

    async def _keep_digesters(self) -> None:
        """Every ``KEEP_EVERY_SECONDS``, make sure each alive node runs its digester actors."""
        assert self._actors is not None
        while not self._stopping:
            self._actors.keep()
            await asyncio.sleep(KEEP_EVERY_SECONDS)

    # ---------------------------------------------------------------- alerts

    async def _start_alerts_consumer(self) -> AIOKafkaConsumer:
        async def connect() -> AIOKafkaConsumer:
            found = await ensure_topics(self.bootstrap, self.settings.kafka_partitions, self.topics,
                                        client_options=kafka_client_options(self.settings))
            self._topic_partitions = {topic: found.partitions.get(topic, 0) for topic in (self.topics.logs, self.topics.spans)}
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=self.settings.kafka_group_id,
                client_id=f"{self.client_id}-alerts", enable_auto_commit=False, auto_offset_reset="earliest",
                max_poll_interval_ms=600_000, session_timeout_ms=30_000, heartbeat_interval_ms=3_000,
                **kafka_client_options(self.settings),
            )
            consumer.subscribe([self.topics.alerts], listener=_Listener(self))
            try:
                await consumer.start()
            except BaseException:
                await _stop_quietly(consumer)
                raise
            return consumer

        return await self._connect("the alert consumer", connect)

    async def _run_alerts(self) -> None:
        consumer = self._alerts = await self._start_alerts_consumer()
        self.state = "running"
        committer = asyncio.create_task(self._commit_periodically(consumer), name="rca-kafka-commit")
        paused = False
        try:
            while not self._stopping:
                room = self.max_pending - len(self._pending_tasks)
                if room <= 0:
                    # Backpressure: paused partitions return nothing, but getmany keeps being
                    # called so the group membership stays alive however long the pipeline takes.
                    consumer.pause(*consumer.assignment())
                    if not paused:
                        paused = True
                        self.counts["pauses"] += 1
                        self.state = "paused"
                elif paused:
                    consumer.resume(*consumer.assignment())
                    paused = False
                    self.state = "running"
                batches = await consumer.getmany(timeout_ms=200, max_records=max(room, 1))
                for tp, records in batches.items():
                    progress = self._progress.get(tp)
                    if progress is None:  # revoked while the batch was on its way
                        continue
                    for record in records:
                        progress.take(record.offset)
                        task = asyncio.create_task(self._handle_alert(tp, record))
                        self._pending_tasks[task] = tp
                        task.add_done_callback(self._alert_done)
                        self.counts["alerts_consumed"] += 1
        finally:
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)

    def _alert_done(self, task: asyncio.Task[None]) -> None:
        self._pending_tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            self.last_error = f"alert handling failed: {type(error).__name__}: {error}"
            logger.error("alert handling failed; its offset stays uncommitted", exc_info=error)

    async def _handle_alert(self, tp: TopicPartition, record: Any) -> None:
        """Store the alert's incident (or DLQ it); only then is its offset marked finished.

        A cancelled or failed handling leaves the offset pending, so it is never committed past.
        """
        try:
            alert = Alert.model_validate_json(record.value or b"")
        except ValidationError as error:
            reason = "undecodable" if "json_invalid" in str(error) or not record.value else "invalid"
            await self._send_to_dlq(record, reason, _short(error))
        else:
            await self._wait_for_context(alert)
            async with self._analysis_slots:
                await self._process_until_stored(record, alert)
        progress = self._progress.get(tp)
        if progress is not None:
            progress.finish(record.offset)

    async def _wait_for_context(self, alert: Alert) -> None:
        """Give the logs written just after the alert ``context_wait_seconds`` to arrive."""
        if alert.status != "firing":
            return
        wait = self.settings.context_wait_seconds
        delay = alert.timestamp.timestamp() + wait - _now()
        if delay > 0:
            await asyncio.sleep(min(delay, wait))

    async def _caught_up_within(self, seconds: float) -> bool:
        """Wait (at most ``seconds``) until the digests and the spans are read up to the ends their
        partitions had when the wait began, so that lines published before the alert are in the
        context even when the alert is read first, or a digester is still joining or rebuilding
        moved partitions. Ends taken once, not chased: under a steady stream the context does not
        wait for lines newer than itself. False if they were still behind when the time ran out."""
        deadline = _now() + seconds
        targets: dict[str, int] | None = None
        while True:
            positions = await self._read_positions()
            if targets is None and self._topic_partitions:
                targets = read_targets(positions, self._topic_partitions)
            if targets is not None and read_to(positions, targets):
                return True
            if _now() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def _read_positions(self) -> ReadPositions | None:
        """The digesters' read positions of their ``rca.logs`` and ``rca.spans`` partitions in one map
        (None while one is not up)."""
        return await self._actors.read_positions() if self._actors is not None else self.digests.read_positions()

    async def _digest_range(self, start: float, end: float, *, through_end: bool) -> DigestRange:
        """A range's merged digests and spans: of every digester actor, or of the reader's own member."""
        if self._actors is not None:
            return await self._actors.between(start, end, through_end=through_end)
        return self.digests.between(start, end, through_end=through_end)

    async def context(self, alert: Alert) -> IncidentContext:
        """A firing alert's context in its ``ContextWindow`` (INCIDENT_CONTEXT_WINDOW before it to
        RCA_CONTEXT_WAIT_SECONDS after it) and, as its baseline, the range of the same width just
        before: the merged digests of their buckets and their spans, both from the digesters. What
        the memory bounds cut from either, and spans past ``max_lines_per_request`` (the latest
        are kept), are named in ``degraded_reasons``. A resolved alert needs none."""
        if alert.status != "firing":
            return IncidentContext(alert=alert)
        span = ContextWindow.for_alert(alert, self.settings)
        reasons = []
        if not await self._caught_up_within(self.settings.context_catchup_seconds):
            reasons.append(f"the digesters had not read {self.topics.logs} and {self.topics.spans} to their ends after "
                           f"{self.settings.context_catchup_seconds:g} s (RCA_CONTEXT_CATCHUP_SECONDS): "
                           f"lines written near the alert may be missing")
        ranges = {}
        for label, (start, end) in (("window", (span.start, span.end)), ("baseline", span.baseline)):
            ranges[label] = found = await self._digest_range(start, end, through_end=label == "window")
            for reason in (found.degraded_reason(label, self.settings.digest_max_bytes),
                           found.spans.degraded_reason(label, self.settings.span_buffer_max_bytes)):
                if reason:
                    reasons.append(reason)
        return IncidentContext(
            alert=alert,
            window=Telemetry(spans=self._latest_spans(ranges["window"], "window", reasons)),
            baseline=Telemetry(spans=self._latest_spans(ranges["baseline"], "baseline", reasons)),
            window_digest=ranges["window"].digest,
            baseline_digest=ranges["baseline"].digest,
            degraded_reasons=reasons,
        )

    def _latest_spans(self, found: DigestRange, label: str, reasons: list[str]) -> list[Span]:
        """The range's spans, the latest ``max_lines_per_request`` of them; how many more there were is a reason."""
        spans, limit = list(found.spans.spans), self.settings.max_lines_per_request
        if len(spans) > limit:
            reasons.append(f"context_limit: {len(spans) - limit} spans of the {label} left out, the latest {limit} "
                           f"kept (RCA_MAX_LINES_PER_REQUEST)")
            spans = spans[-limit:]
        return spans

    async def _process_until_stored(self, record: Any, alert: Alert) -> None:
        process = self._process or self._serve_process()
        payload = alert.model_dump(mode="json")
        attempt = 0
        while True:
            try:
                result = await process(payload, await self.context(alert), f"{record.topic}:{record.partition}:{record.offset}")
                break
            except asyncio.CancelledError:
                raise
            except (ValidationError, ValueError, TypeError) as error:
                await self._send_to_dlq(record, "rejected", _short(error))
                return
            except Exception as error:  # the app or its database is down: keep the alert, retry
                self.counts["process_retries"] += 1
                self.last_error = f"process_alert: {type(error).__name__}: {_short(error)}"
                delay = backoff_seconds(attempt)
                logger.warning("alert %s (%s) not stored yet (%s); retrying in %gs",
                               alert.name, alert.identity(), self.last_error, delay)
                attempt += 1
                await asyncio.sleep(delay)
        self.counts["alerts_processed"] += 1
        if isinstance(result, dict) and result.get("created"):
            self.counts["incidents_created"] += 1

    def _serve_process(self) -> Process:
        from ray import serve

        handle = serve.get_deployment_handle("Ingress", app_name=self.app_name or "rca")

        async def process(alert: dict[str, Any], context: dict[str, Any], delivery: str) -> dict[str, Any]:
            return await handle.process_alert.remote(alert, context, delivery)

        self._process = process
        return process

    # ---------------------------------------------------------------- commits and rebalances

    async def _commit_periodically(self, consumer: AIOKafkaConsumer, every: float = 0.2) -> None:
        while True:
            await asyncio.sleep(every)
            await self._commit(consumer)

    async def _commit(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition] | None = None) -> None:
        offsets = {}
        for tp, progress in self._progress.items():
            if partitions is not None and tp not in partitions:
                continue
            offset = progress.committable()
            if offset is not None:
                offsets[tp] = offset
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except CommitFailedError as error:  # the group rebalanced: the new owner redoes them (idempotent)
            logger.warning("commit of %s refused after a rebalance: %s", offsets, error)
            return
        except KafkaError as error:  # the broker is away: the offsets are committed on a later try
            self.last_error = f"commit: {type(error).__name__}: {error}"
            return
        for tp, offset in offsets.items():
            if tp in self._progress:
                self._progress[tp].committed = offset
        self.counts["commits"] += 1

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Let the alerts of revoked partitions finish (bounded), commit what is stored, forget the rest."""
        mine = [task for task, tp in self._pending_tasks.items() if tp in revoked]
        if mine:
            await asyncio.wait(mine, timeout=REVOKE_WAIT_SECONDS)
        if self._alerts is not None:
            await self._commit(self._alerts, revoked)
        for tp in revoked:
            self._progress.pop(tp, None)

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self._progress.setdefault(tp, PartitionProgress())

    # ---------------------------------------------------------------- read side

    def lag(self) -> dict[str, int]:
        """Messages behind the end of each partition (``topic/partition`` -> count), as last fetched.

        A query: it writes no gauge (:meth:`record_metrics` does)."""
        return {**self.digests.lag(), **self._own_lag()}

    def _own_lag(self) -> dict[str, int]:
        """The alert partitions' lag (the logs' and spans' is the digesters' members')."""
        lags: dict[str, int] = {}
        consumer = self._alerts
        for tp in consumer.assignment() if consumer is not None else ():
            end, progress = consumer.highwater(tp), self._progress.get(tp)
            position = progress.next_offset if progress else None
            if end is not None and position is not None:
                lags[f"{tp.topic}/{tp.partition}"] = max(0, end - position)
        return lags

    def record_metrics(self) -> None:
        """Record the lag of the alert partitions, and the digests' metrics (log and span partitions)
        when they are the reader's own (digester actors record theirs); never raises."""
        try:
            if self._actors is None:
                self.digests.record_metrics()
            for key, value in self._own_lag().items():
                topic, partition = key.rsplit("/", 1)
                metrics.set_kafka_lag(topic, int(partition), value)
        except Exception as error:  # noqa: BLE001 - metrics never take the reader down
            logger.warning("Kafka reader metrics not recorded: %s: %s", type(error).__name__, error)

    async def _record_metrics_periodically(self) -> None:
        while not self._stopping:
            self.record_metrics()
            await asyncio.sleep(METRICS_EVERY_SECONDS)

    async def stats(self) -> dict[str, Any]:
        """What /health and metrics show: counts, DLQ and drops by reason, lag, digests, spans held, in flight.

        A query: it starts nothing (an actor that Ray restarted is started by :meth:`start`,
        which the ingress calls before it asks).
        """
        actors = self._actors
        digests = await actors.stats() if actors is not None else self.digests.stats()
        spans = digests.spans
        logs_consumed, spans_consumed = (await actors.consumed() if actors is not None
                                         else (self.digests.consumed, self.digests.spans_consumed))
        return {
            "state": self.state,
            "bootstrap": self.bootstrap,
            "logs_consumed": logs_consumed,
            "spans_consumed": spans_consumed,
            **self.counts,
            "dlq": dict(self.dead_letters.counts),
            "dropped": dict(digests.dropped),
            "lag": self.lag(),
            "digest_bytes": digests.bytes,
            "digest_max_bytes": digests.max_bytes,
            "digest_lines": digests.lines,
            "digest_buckets": digests.buckets,
            "digest_pending": digests.pending,
            "digest_partitions": await actors.partitions() if actors is not None else len(self.digests.held()),
            "digester_actors": len(actors.handles) if actors is not None else 0,
            "span_bytes": spans.bytes,
            "spans_held": spans.spans,
            "spans_cut": spans.cut_spans,
            "spans_dropped": dict(spans.dropped),
            "in_flight": len(self._pending_tasks),
            "max_pending": self.max_pending,
            "max_inflight_analyses": self.max_inflight,
            "last_error": self.last_error,
        }


async def _stop_quietly(client: Any, timeout_seconds: float = 10.0) -> None:
    """Stop an aiokafka client; its own errors are logged, not raised.

    aiokafka 0.14 can raise CancelledError from an internal task while a consumer stops;
    that one is swallowed unless this task itself is being cancelled.
    """
    try:
        await asyncio.wait_for(client.stop(), timeout_seconds)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except (asyncio.TimeoutError, KafkaError, OSError) as error:
        logger.warning("Kafka client did not stop cleanly: %s", error)


def _short(error: BaseException) -> str:
    text = str(error).replace("\n", " ")
    return text if len(text) <= 500 else text[:497] + "..."


def reader_name(app_name: str) -> str:
    return f"rca-kafka-reader-{app_name}"


def ensure_reader(settings: Settings, app_name: str, num_cpus: float = 0.1) -> Any:
    """Get or create the named, detached reader actor of Serve app ``app_name`` and start its loops.

    Safe to call from every ingress replica and on every restart: one actor per app name
    (``rca-kafka-reader-<app>`` in Ray namespace ``rca``), and ``start`` is idempotent. Returns
    the actor handle (``await handle.stats.remote()``). Does not
    wait for the broker: the actor retries until it answers.
    """
    import ray

    actor_class = ray.remote(KafkaReader)
    handle = actor_class.options(  # type: ignore[attr-defined]
        name=reader_name(app_name),
        namespace=READER_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=num_cpus,
        max_concurrency=1000,
        max_restarts=-1,
        max_task_retries=0,
    ).remote(settings, app_name, digester_actors=True)
    handle.start.remote()
    return handle


def get_reader(app_name: str) -> Any | None:
    """The reader actor of ``app_name`` if it exists (for /health), else None."""
    import ray

    try:
        return ray.get_actor(reader_name(app_name), namespace=READER_NAMESPACE)
    except ValueError:
        return None


def stop_reader(app_name: str, timeout_seconds: float = 15.0) -> bool:
    """Stop and remove the detached reader of ``app_name`` and its digester actors (tests, ``rca serve``
    shutdown); False if there was no reader."""
    import ray

    handle = get_reader(app_name)
    stop_digesters(app_name, timeout_seconds)
    if handle is None:
        return False
    try:
        ray.get(handle.stop.remote(), timeout=timeout_seconds)
    except Exception as error:  # noqa: BLE001 - the actor is killed below either way
        logger.warning("Kafka reader of %s did not stop cleanly: %s", app_name, error)
    ray.kill(handle)
    return True
