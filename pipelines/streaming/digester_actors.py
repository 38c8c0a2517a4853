"""Digesters as Ray actors: members of the digesters' consumer group spread over the cluster's nodes.

Why actors of their own
    One process mines about 200k lines per CPU second and holds ``RCA_DIGEST_MAX_BYTES`` of
    digests. Inside the reader actor the digesters could never use more than that one process:
    as actors, ``RCA_DIGESTERS_PER_NODE`` of them run on every node (each a
    :class:`~pipelines.streaming.digester_group.DigesterMember` of one consumer group, so Kafka
    shares the partitions of ``rca.logs`` and ``rca.spans`` among them, and moves a dead one's
    partitions to the others), each asks for ``RCA_DIGESTER_CPUS`` so KubeRay's autoscaler sees them, and a node
    the autoscaler adds gets its own when the reader next looks (every ``KEEP_EVERY_SECONDS``).

Context by merging
    An alert's window and baseline are asked of every digester at once
    (:meth:`DigesterActors.between`); each answers with its partitions' buckets already merged
    (one digest per range per digester) and the spans of its span partitions (``Span`` models),
    and the reader merges those few (:func:`~pipelines.streaming.digester_group.merge_ranges`).
    A digester holding no partition answers an empty digest and no span.

Names: ``rca-digester-<app>-<node id prefix>-<index>`` in Ray namespace ``rca``, detached and
restarted by Ray when they die (a restarted one rejoins the group and rebuilds from Kafka).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pipelines.settings import Settings
from pipelines.streaming.digester import DigesterStats, DigestRange
from pipelines.streaming.digester_group import DigesterMember, merge_ranges
from pipelines.streaming.offsets import ReadPositions, read_to_ends

logger = logging.getLogger(__name__)

NAMESPACE = "rca"
METRICS_EVERY_SECONDS = 5.0
KEEP_EVERY_SECONDS = 30.0
"""How often the reader makes sure every alive node has its digesters (nodes come and go)."""
ASK_TIMEOUT_SECONDS = 30.0


class DigesterNotReady(RuntimeError):
    """A digester asked for its share before it joined the group (just started or restarted)."""


class DigestersUnavailable(RuntimeError):
    """A digester actor gave no answer (restarting, or its node gone): a context now would lack its partitions."""


def digester_prefix(app_name: str) -> str:
    return f"rca-digester-{app_name}-"


class DigesterHost:
    """The actor: one :class:`DigesterMember`, run and asked on the actor's event loop, recording its metrics."""

    def __init__(self, settings: Settings, client_id: str) -> None:
        self.member = DigesterMember(settings, client_id=client_id)
        self._metrics: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Join the group (once; later calls do nothing). An actor that Ray restarted after a crash
        runs ``__init__`` again and nothing else: the reader's gather sends ``start`` before it asks."""
        await self.member.start()
        if self._metrics is None:
            self._metrics = asyncio.create_task(self._record_metrics(), name="rca-digester-metrics")

    async def stop(self) -> None:
        if self._metrics is not None:
            self._metrics.cancel()
            self._metrics = None
        await self.member.stop()

    async def _record_metrics(self) -> None:
        while True:
            self.member.record_metrics()
            await asyncio.sleep(METRICS_EVERY_SECONDS)

    # Queries: they start nothing and write nothing.

    def between(self, start: float, end: float, through_end: bool = False) -> DigestRange:
        """Its partitions' share of a range; refused while it has not joined the group (its share unknown)."""
        if not self.member.joined():
            raise DigesterNotReady(f"digester {self.member.client_id} has not joined {self.member.group_id} yet")
        return self.member.between(start, end, through_end=through_end)

    def read_positions(self) -> ReadPositions | None:
        return self.member.read_positions()

    def stats(self) -> DigesterStats:
        return self.member.stats()

    def consumed(self) -> tuple[int, int]:
        """Log records and span records read."""
        return self.member.consumed, self.member.spans_consumed

    def partitions(self) -> list[str]:
        """The ``rca.logs`` and ``rca.spans`` partitions it holds."""
        return sorted(f"{tp.topic}/{tp.partition}" for tp in self.member.held())

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


def ensure_digesters(settings: Settings, app_name: str) -> list[Any]:
    """Get or create ``settings.digesters_per_node`` digester actors on every alive node that has
    ``RCA_DIGESTER_CPUS`` of CPU, and start them.

    Idempotent (named, ``get_if_exists``): the reader calls it at start and every
    ``KEEP_EVERY_SECONDS``. A digester is placed on its node softly: if the node goes away,
    Ray restarts it elsewhere rather than never."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor_class = ray.remote(DigesterHost)
    handles = []
    for node in ray.nodes():
        if not node.get("Alive") or node.get("Resources", {}).get("CPU", 0) < settings.digester_num_cpus:
            continue  # a dead node, or one that can never host one (KubeRay's head: num-cpus 0)
        node_id = node["NodeID"]
        for index in range(settings.digesters_per_node):
            name = f"{digester_prefix(app_name)}{node_id[:12]}-{index}"
            handle = actor_class.options(  # type: ignore[attr-defined]
                name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                num_cpus=settings.digester_num_cpus, max_restarts=-1, max_task_retries=0, max_concurrency=64,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=True),
            ).remote(settings, name)
            handle.start.remote()
            handles.append(handle)
    return handles


def digester_handles(app_name: str) -> list[Any]:
    """Every digester actor of ``app_name`` that Ray knows of, by name."""
    import ray

    prefix = digester_prefix(app_name)
    return [ray.get_actor(entry["name"], namespace=NAMESPACE)
            for entry in ray.util.list_named_actors(all_namespaces=True)
            if entry.get("namespace") == NAMESPACE and entry["name"].startswith(prefix)]


def stop_digesters(app_name: str, timeout_seconds: float = 15.0) -> int:
    """Stop and remove every digester actor of ``app_name`` (tests, shutdown); how many there were."""
    import ray

    handles = digester_handles(app_name)
    for handle in handles:
        try:
            ray.get(handle.stop.remote(), timeout=timeout_seconds)
        except Exception as error:  # noqa: BLE001 - the actor is killed below either way
            logger.warning("a digester of %s did not stop cleanly: %s", app_name, error)
        ray.kill(handle)
    return len(handles)


class DigesterActors:
    """The reader's view of the digester actors of one app: asks them all at once and merges their answers."""

    def __init__(self, settings: Settings, app_name: str) -> None:
        self.settings = settings
        self.app_name = app_name
        self.handles: list[Any] = []

    def keep(self) -> None:
        """Make sure every alive node has its digesters, started, and remember their handles."""
        self.handles = ensure_digesters(self.settings, self.app_name)

    async def _ask_all(self, method: str, *args: Any) -> list[Any]:
        """Every digester's answer; :class:`DigestersUnavailable` names the ones that gave none."""
        if not self.handles:
            self.keep()
        calls = [getattr(handle, method).remote(*args) for handle in self.handles]
        answers = await asyncio.gather(*(asyncio.wait_for(c, ASK_TIMEOUT_SECONDS) for c in calls),
                                       return_exceptions=True)
        failed = [f"{type(a).__name__}: {a}" for a in answers if isinstance(a, BaseException)]
        if failed:
            raise DigestersUnavailable(
                f"{len(failed)} of {len(calls)} digesters of {self.app_name} did not answer {method}: {failed[0]}")
        return list(answers)

    async def between(self, start: float, end: float, *, through_end: bool = False) -> DigestRange:
        """The range's context: every digester's share (already merged per digester), merged.

        A digester that cannot answer (Ray is restarting it, or it has not joined yet) raises
        :class:`DigestersUnavailable` rather than giving a context short of its partitions: the
        reader retries the alert. ``start`` is sent first (a command, idempotent), so a digester
        that Ray restarted joins again."""
        await self._ask_all("start")
        return merge_ranges(await self._ask_all("between", start, end, through_end))

    async def caught_up(self) -> bool:
        """Has every digester read its partitions to their ends? (False while one cannot answer or has
        not joined; a digester given no partition, more digesters than partitions, has nothing to read.)"""
        return read_to_ends(await self.read_positions())

    async def read_positions(self) -> ReadPositions | None:
        """Every digester's read positions in one map; None while one cannot answer or has not joined."""
        try:
            answers = await self._ask_all("read_positions")
        except DigestersUnavailable:
            return None
        if any(answer is None for answer in answers):
            return None
        return {key: value for answer in answers for key, value in answer.items()}

    async def consumed(self) -> tuple[int, int]:
        """Log records and span records read, over every digester."""
        answers = await self._ask_all("consumed")
        return sum(logs for logs, _ in answers), sum(spans for _, spans in answers)

    async def partitions(self) -> int:
        return sum(len(held) for held in await self._ask_all("partitions"))

    async def stats(self) -> DigesterStats:
        """Every digester's stats summed (``max_bytes``: the bound of each)."""
        return DigesterStats.total(await self._ask_all("stats"), self.settings.digest_max_bytes)
