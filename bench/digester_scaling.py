"""Events/s of digester actors: one on one raylet against two on two raylets (a benchmark, never a test).

``--events`` log events (``bench/streaming_digests.py``'s generator: 40 services, ~200 bytes,
variable fields the masking handles; event time recent, so nothing is expired) are published
to a fresh ``rca.logs``-like topic of ``--partitions`` partitions on the broker (the shared one by
default; it is only written to). Then, on a Ray cluster of two nodes of one CPU each on this
machine (``tests/support/ray_nodes.py``, as NOTES.md says to start them), digester actors
(:class:`~pipelines.streaming.digester_actors.DigesterHost`, one CPU each, placed on a node
each) of a fresh consumer group read the backlog from Kafka and mine it: first one actor,
then two. Reported: events/s from the moment the group is stable (every actor holds its partitions)
until every event is in a digest (wall), per case, and the ratio two over one, beside the
machine's load.

    PYTHONPATH=. .venv/bin/python bench/digester_scaling.py [--events 2000000] [--partitions 4]

Prints one JSON object (progress on stderr). On a 2-core machine the two raylets share the
cores with the broker, the producer and this driver: the ratio says how much of a second core
a second digester finds, not what two machines would give.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from streaming_digests import generate  # noqa: E402 - the bench folder is not a package

from pipelines.settings import Settings  # noqa: E402
from pipelines.streaming.producer import Publisher  # noqa: E402
from pipelines.streaming.topics import TopicNames, ensure_topics  # noqa: E402
from tests.support import ray_nodes  # noqa: E402

RATE = 100_000  # lines/s of event time in the generated events


def settings_for(bootstrap: str, tag: str, partitions: int, group: str) -> Settings:
    return Settings(kafka_bootstrap=bootstrap, kafka_partitions=partitions, kafka_group_id=group,
                    kafka_logs_topic=f"bench.{tag}.logs", kafka_alerts_topic=f"bench.{tag}.alerts",
                    kafka_spans_topic=f"bench.{tag}.spans", kafka_dlq_topic=f"bench.{tag}.dlq",
                    digester_num_cpus=1.0)


async def publish(settings: Settings, events: int) -> float:
    """Write the events; return how long it took."""
    topics = TopicNames.from_settings(settings)
    await ensure_topics(settings.kafka_bootstrap or "", settings.kafka_partitions, topics)
    publisher = Publisher(settings.kafka_bootstrap or "", partitions=None, topics=topics)
    began = time.perf_counter()
    t0 = time.time() - events / RATE - 5
    try:
        for batch in generate(RATE, events / RATE, 40, t0=t0):
            await publisher.publish_records(topics.logs, [(r.key, r.value) for r in batch])
    finally:
        await publisher.stop()
    return time.perf_counter() - began


def run_case(settings: Settings, nodes: list[str], events: int) -> dict[str, Any]:
    """One actor per node given; the events/s from a stable group to every event mined."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from pipelines.streaming.digester_actors import DigesterHost

    actor_class = ray.remote(DigesterHost)
    actors = [actor_class.options(num_cpus=settings.digester_num_cpus, max_concurrency=16,
                                  scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
                                  ).remote(settings, f"bench-digester-{i}") for i, node in enumerate(nodes)]
    try:
        ray.get([a.start.remote() for a in actors], timeout=120)
        start = None
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            shares = ray.get([a.partitions.remote() for a in actors], timeout=120)
            stats = ray.get([a.stats.remote() for a in actors], timeout=120)
            held = sum(s.lines + s.pending for s in stats)  # each line once: a moved partition is rebuilt
            now = time.perf_counter()
            if start is None and all(shares) and sum(len(p) for p in shares) == settings.kafka_partitions:
                start = (now, held)  # the group is stable: no partition moves from here on
            if start is not None and held >= events:
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"the digesters held {held} of {events} events within 1800 s")
        assert start is not None
        placed = ray.get([a.node.remote() for a in actors], timeout=120)
        seconds = now - start[0]
        return {
            "digesters": len(actors), "nodes": len(set(placed)),
            "events_per_s": round((held - start[1]) / seconds) if seconds > 0 else None,
            "events_measured": held - start[1], "seconds": round(seconds, 2),
            "lines_in_digests": sum(s.lines for s in stats), "digest_bytes": sum(s.bytes for s in stats),
            "partitions_each": [len(p) for p in shares],
        }
    finally:
        ray.get([a.stop.remote() for a in actors], timeout=60)
        for actor in actors:
            ray.kill(actor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args()
    if args.events < 1 or args.partitions < 2:
        parser.error("--events must be positive and --partitions at least 2 (two digesters share them)")
    tag = uuid.uuid4().hex[:8]
    base = settings_for(args.bootstrap, tag, args.partitions, f"bench-{tag}")
    print(f"publishing {args.events} events to {base.kafka_logs_topic}", file=sys.stderr, flush=True)
    published_seconds = asyncio.run(publish(base, args.events))
    report: dict[str, Any] = {"events": args.events, "partitions": args.partitions, "cpus": os.cpu_count(),
                              "publish_seconds": round(published_seconds, 1),
                              "load_average_1m_at_start": round(os.getloadavg()[0], 1)}
    with ray_nodes.two_nodes() as (address, env):
        os.environ.update(env)  # before Ray is imported: it reads RAY_AUTH_MODE once
        import ray

        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        try:
            ray_nodes.wait_for_nodes(2)
            nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
            for name, chosen in (("one_digester_one_raylet", nodes[:1]), ("two_digesters_two_raylets", nodes[:2])):
                print(f"{name}", file=sys.stderr, flush=True)
                case = settings_for(args.bootstrap, tag, args.partitions, f"bench-{tag}-{len(chosen)}")
                report[name] = run_case(case, chosen, args.events)
        finally:
            ray.shutdown()
    one, two = report["one_digester_one_raylet"]["events_per_s"], report["two_digesters_two_raylets"]["events_per_s"]
    report["ratio_two_over_one"] = round(two / one, 2) if one and two else None
    report["load_average_1m_at_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
