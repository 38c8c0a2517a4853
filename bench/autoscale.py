"""Serve autoscaling, seen to work (a benchmark, never a test).

Starts the application of ``pipelines.app.build_app`` on a Ray cluster of its own (no HTTP
proxy, so no port is taken), ramps load on the Summarizer up and down by calling its
deployment handle with chunks of simulated incident logs at a changing concurrency, and
samples once a second the running replicas of every deployment from ``serve.status()`` and
the lines summarized. It writes the timeline as JSON and a PNG plot and prints the figures:
time to scale up under load, time to scale back down, lines/s at 1 replica and at the most
replicas reached.

    .venv/bin/pip install -e ".[bench]"      # matplotlib
    .venv/bin/python bench/autoscale.py [--out bench/out] [--cpus 2] [--chunk-lines 20000]

The schedule is ``--schedule "10x1,50x12,40x0"`` (seconds x concurrent requests). On a
2-core machine more than two replicas add little throughput: every replica shares the same
cores, so the figures show Serve's scaling decisions more than a speed-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEPLOYMENTS = ("Ingress", "Summarizer", "AnomalyScorer", "Reasoner")
APP = "rca-autoscale-bench"


@dataclass
class Sample:
    t: float  # seconds since the load started
    concurrency: int
    lines_per_s: float
    running: dict[str, int] = field(default_factory=dict)
    target: dict[str, int] = field(default_factory=dict)


def parse_schedule(text: str) -> list[tuple[float, int]]:
    """``"10x1,45x12"`` -> [(10.0, 1), (45.0, 12)]; a clear error names the bad part."""
    phases = []
    for part in text.split(","):
        seconds, _, concurrency = part.strip().partition("x")
        try:
            phases.append((float(seconds), int(concurrency)))
        except ValueError:
            raise SystemExit(f"--schedule: {part!r} is not <seconds>x<concurrency>") from None
    return phases


def make_chunk(lines: int) -> list[str | dict]:
    """About ``lines`` log lines of the simulated incidents, as the ingress sends them."""
    from pipelines.pipeline import to_chunk_items
    from pipelines.simulate import SCENARIOS, simulate

    items: list[str | dict] = []
    seed = 0
    while len(items) < lines:
        for name in SCENARIOS:
            items.extend(to_chunk_items(simulate(name, seed=seed).logs))
        seed += 1
    return items[:lines]


def replica_counts(app: str) -> tuple[dict[str, int], dict[str, int]]:
    """Running replicas per deployment, and the replicas each is heading for (running + starting)."""
    from ray import serve

    status = serve.status().applications.get(app)
    running: dict[str, int] = {}
    target: dict[str, int] = {}
    if status is None:
        return running, target
    for name, deployment in status.deployments.items():
        states = {str(getattr(k, "value", k)): v for k, v in deployment.replica_states.items()}
        running[name] = states.get("RUNNING", 0)
        target[name] = states.get("RUNNING", 0) + states.get("STARTING", 0) + states.get("UPDATING", 0)
    return running, target


async def run_load(handle: Any, chunk: list[str | dict], schedule: list[tuple[float, int]]) -> list[Sample]:
    """Run the schedule; one sample a second."""
    done_lines = 0
    concurrency = 0
    stop = asyncio.Event()

    async def worker(index: int) -> None:
        nonlocal done_lines
        while not stop.is_set():
            if index >= concurrency:
                await asyncio.sleep(0.05)
                continue
            result = await handle.summarize_chunk.remote(chunk)
            done_lines += result.lines  # a Digest

    workers = [asyncio.create_task(worker(i)) for i in range(max(c for _, c in schedule))]
    samples: list[Sample] = []
    started = time.monotonic()
    phase_ends = []
    total = 0.0
    for seconds, level in schedule:
        total += seconds
        phase_ends.append((total, level))
    last_lines, last_t = 0, started
    while True:
        now = time.monotonic()
        elapsed = now - started
        current = next((level for end, level in phase_ends if elapsed < end), None)
        if current is None:
            break
        concurrency = current
        await asyncio.sleep(1.0)
        running, target = await asyncio.to_thread(replica_counts, APP)
        t = time.monotonic()
        rate = (done_lines - last_lines) / (t - last_t)
        last_lines, last_t = done_lines, t
        samples.append(Sample(round(t - started, 2), concurrency, round(rate, 1), running, target))
        logging.info("t=%5.1fs load=%2d lines/s=%8.0f replicas=%s", t - started, concurrency, rate, running)
    stop.set()
    concurrency = 0
    await asyncio.gather(*workers, return_exceptions=True)
    return samples


def figures(samples: list[Sample], deployment: str = "Summarizer") -> dict[str, Any]:
    """Time to scale up/down and lines/s at 1 replica vs at the most replicas reached."""
    peak_load = max(s.concurrency for s in samples)
    high = [s for s in samples if s.concurrency == peak_load]
    peak = max(s.running.get(deployment, 0) for s in samples)
    floor = min(s.running.get(deployment, 0) for s in samples)
    load_up_at = high[0].t if high else None
    up_at = next((s.t for s in high if s.running.get(deployment, 0) == peak), None)
    first_more = next((s.t for s in high if s.running.get(deployment, 0) > floor), None)
    decided_up = next((s.t for s in samples if load_up_at is not None and s.t >= load_up_at
                       and s.target.get(deployment, 0) > floor), None)
    idle_from = next((s.t for s in samples if load_up_at is not None and s.t > load_up_at and s.concurrency == 0), None)
    down_at = next((s.t for s in samples if idle_from is not None and s.t >= idle_from
                    and s.running.get(deployment, 0) == floor), None)
    # the first sample of the high load is one tick after the load rose
    load_up_at = load_up_at - 1.0 if load_up_at is not None else None
    idle_from = idle_from - 1.0 if idle_from is not None else None

    def mean_rate(chosen: list[Sample]) -> float | None:
        # skip a replica count's first second, when a new replica is still warming up
        chosen = chosen[1:] if len(chosen) > 2 else chosen
        return round(sum(s.lines_per_s for s in chosen) / len(chosen), 0) if chosen else None

    # one replica and none starting (a starting replica takes CPU from the running one)
    at_one = [s for s in samples if s.concurrency > 0 and s.running.get(deployment, 0) == 1
              and s.target.get(deployment, 0) == 1]
    at_peak = [s for s in high if s.running.get(deployment, 0) == peak]
    return {
        "deployment": deployment,
        "peak_concurrency": peak_load,
        "min_replicas_seen": floor,
        "max_replicas_seen": peak,
        "time_to_upscale_decision_s": round(decided_up - load_up_at, 1) if decided_up is not None and load_up_at is not None else None,
        "time_to_first_upscale_s": round(first_more - load_up_at, 1) if first_more is not None and load_up_at is not None else None,
        "time_to_scale_up_s": round(up_at - load_up_at, 1) if up_at is not None and load_up_at is not None else None,
        "time_to_scale_down_s": round(down_at - idle_from, 1) if down_at is not None and idle_from is not None else None,
        "lines_per_s_at_1_replica": mean_rate(at_one),
        "lines_per_s_at_max_replicas": mean_rate(at_peak),
        "samples_at_1_replica": len(at_one),
        "samples_at_max_replicas": len(at_peak),
    }


def plot(samples: list[Sample], result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, dpi=90)
    for name in DEPLOYMENTS:
        top.step(t, [s.running.get(name, 0) for s in samples], where="post", label=name)
    top.step(t, [s.target.get("Summarizer", 0) for s in samples], where="post", color="tab:orange", linestyle="--",
             alpha=0.6, label="Summarizer target (running + starting)")
    top.step(t, [s.concurrency for s in samples], where="post", color="grey", linestyle=":", label="requests in flight")
    top.set_ylabel("running replicas")
    top.legend(loc="upper right", fontsize=8)
    top.set_title(
        f"Serve autoscaling: up in {result['time_to_scale_up_s']} s, down in {result['time_to_scale_down_s']} s", fontsize=10
    )
    bottom.plot(t, [s.lines_per_s / 1000 for s in samples], color="tab:green")
    bottom.set_ylabel("Summarizer k lines/s")
    bottom.set_xlabel("seconds since the load started")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description="Ramp load on the Summarizer and record Serve autoscaling.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--cpus", type=int, default=2, help="logical CPUs of the benchmark's Ray node")
    parser.add_argument("--chunk-lines", type=int, default=20_000)
    parser.add_argument("--schedule", default="10x1,50x12,40x0", help="<seconds>x<requests in flight>,...")
    parser.add_argument("--max-replicas", type=int, default=6)
    parser.add_argument("--replot", type=Path, help="only redraw the PNG from a timeline JSON written before")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.replot:
        saved = json.loads(args.replot.read_text())
        plot([Sample(**s) for s in saved["timeline"]], saved["figures"], args.replot.with_suffix(".png"))
        return
    schedule = parse_schedule(args.schedule)
    args.out.mkdir(parents=True, exist_ok=True)

    import ray
    from ray import serve

    from pipelines.app import build_app
    from pipelines.settings import Settings

    chunk = make_chunk(args.chunk_lines)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        serve.start(proxy_location="Disabled")
        settings = Settings(summarizer_replicas=1, data_dir=args.out / "data")
        serve.run(
            build_app(settings, autoscaling={"Summarizer": {"max_replicas": args.max_replicas}}),
            name=APP,
            route_prefix=None,
            logging_config={"enable_access_log": False, "log_level": "ERROR"},
        )
        handle = serve.get_deployment_handle("Summarizer", app_name=APP)
        handle.summarize_chunk.remote(chunk[:100]).result()  # warm up
        samples = asyncio.run(run_load(handle, chunk, schedule))
    finally:
        serve.shutdown()
        ray.shutdown()

    result = figures(samples)
    result.update(chunk_lines=args.chunk_lines, cpus=args.cpus, schedule=args.schedule, machine_cpus=os.cpu_count())
    (args.out / "autoscale.json").write_text(json.dumps({"figures": result, "timeline": [asdict(s) for s in samples]}, indent=1))
    plot(samples, result, args.out / "autoscale.png")
    print(json.dumps(result, indent=1))
    print(f"timeline: {args.out / 'autoscale.json'}  plot: {args.out / 'autoscale.png'}")


if __name__ == "__main__":
    main()
