"""Throughput benchmark of the log engine (a benchmark, never a test).

Generates a large realistic log once (mixed formats: plain, JSON, docker-wrapped,
logfmt, Java stack traces; many templates over several services) into a cache
folder outside git, then measures lines/s of ``run_engine`` in one process and of
Drain3 (``pip install drain3==0.9.11``, a benchmark-only extra) on the same lines.

    .venv/bin/python bench/throughput.py --json [--lines 1000000]

It also measures the Serve summarizer fan-out (the production path) with one and with
two replicas (``serve_one_replica_lines_per_s``, ``serve_lines_per_s``); ``--no-serve``
skips that part.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomaly.digest import Digest  # noqa: E402
from anomaly.engine import run_engine as _run_engine  # noqa: E402

SERVICES = ["checkout", "payments", "inventory", "users", "search", "gateway", "auth", "shipping", "billing", "catalog"]
VERBS = ["GET", "POST", "PUT", "DELETE"]
RESOURCES = ["orders", "carts", "items", "users", "sessions", "invoices", "payments", "products", "tokens", "addresses"]
ACTIONS = ["created", "updated", "deleted", "loaded", "cached", "evicted", "validated", "rejected", "queued", "retried"]
ERRORS = [
    ("java.net.SocketTimeoutException", "Read timed out"),
    ("java.sql.SQLTransientConnectionException", "Connection is not available, request timed out"),
    ("java.lang.NullPointerException", "Cannot invoke method on null"),
    ("java.lang.IllegalStateException", "Pool exhausted"),
    ("org.springframework.web.client.HttpServerErrorException", "503 Service Unavailable"),
]


def _templates(rng: random.Random) -> list:
    """About 200 message generators: each is a function of rng -> message."""
    out = []
    for res in RESOURCES:
        for verb in VERBS:
            out.append(lambda r, v=verb, s=res: f"{v} /api/v1/{s}/{r.randint(1, 10**6)} {r.choice([200, 201, 204, 404])} {r.randint(1, 900)}ms")
        for act in ACTIONS:
            out.append(lambda r, a=act, s=res: f"{s[:-1]} {r.randint(1, 10**7)} {a} by user {r.choice(['alice', 'bob', 'carol', 'dave', 'erin', 'frank'])}")
            out.append(lambda r, a=act, s=res: f"batch of {r.randint(1, 500)} {s} {a} in {r.random() * 3:.3f}s")
    out += [
        lambda r: f"connection pool stats active={r.randint(0, 50)} idle={r.randint(0, 50)} waiting={r.randint(0, 9)}",
        lambda r: f"cache hit ratio {r.random():.2f} for region {r.choice(['eu-west-1', 'us-east-1', 'ap-south-1'])}",
        lambda r: f"Sending request to http://{r.choice(SERVICES)}:{r.randint(8000, 8100)}/internal/health trace_id={r.getrandbits(64):016x}",
        lambda r: f"session {r.getrandbits(128):032x} expired after {r.randint(1, 3600)} seconds",
        lambda r: f"Retrying call to {r.choice(SERVICES)} attempt {r.randint(1, 5)} of 5 after {r.randint(10, 5000)}ms",
        lambda r: f"Received message from 10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}:{r.randint(1024, 65535)} size {r.randint(10, 99999)} bytes",
        lambda r: f"Loaded config file /etc/app/{r.choice(['app', 'db', 'cache'])}.yaml in {r.randint(1, 90)}ms",
        lambda r: f'user "{r.choice(["alice", "bob"])}" logged in from {r.choice(["web", "mobile", "api"])}',
    ]
    return out


def generate(path: Path, lines: int, seed: int = 7) -> None:
    """Write ``lines`` physical lines of mixed-format logs to ``path``."""
    rng = random.Random(seed)
    tmpl = _templates(rng)
    t = 1_767_000_000.0
    tmp = path.with_suffix(".part")
    written = 0
    with tmp.open("w", encoding="utf-8") as fh:
        while written < lines:
            t += rng.random() * 0.01
            svc = rng.choice(SERVICES)
            iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
            level = rng.choices(["INFO", "DEBUG", "WARN", "ERROR"], [80, 10, 7, 3])[0]
            fmt = rng.random()
            if level == "ERROR" and rng.random() < 0.5:
                exc, why = rng.choice(ERRORS)
                frames = [f"\tat com.shop.{svc}.Service{rng.randint(1, 9)}.call(Service.java:{rng.randint(10, 400)})" for _ in range(rng.randint(2, 6))]
                block = [f"{iso} ERROR [{svc}] request failed: {exc}: {why}", *frames, f"Caused by: {exc}: {why}", "\t... 42 more"]
                fh.write("\n".join(block) + "\n")
                written += len(block)
                continue
            msg = rng.choice(tmpl)(rng)
            if fmt < 0.4:
                line = f"{iso} {level} [{svc}] {msg}"
            elif fmt < 0.6:
                line = json.dumps({"time": iso, "level": level.lower(), "service": svc, "msg": msg})
            elif fmt < 0.8:
                inner = f"{iso} {level} {msg}\n"
                line = json.dumps({"log": inner, "stream": "stdout", "kubernetes": {"container_name": svc, "pod_name": f"{svc}-7d9f-{rng.randint(1, 3)}"}})
            else:
                line = f'ts={iso} level={level.lower()} service={svc} msg="{msg.replace(chr(34), chr(39))}"'
            fh.write(line + "\n")
            written += 1
    os.replace(tmp, path)


def dataset(lines: int, cache: Path | None = None) -> Path:
    cache = cache or Path(tempfile.gettempdir()) / "rca-bench"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"mixed-{lines}.log"
    if not path.exists():
        generate(path, lines)
    return path


def read_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            yield line


def run_engine(lines) -> Digest:
    """The engine in one process: raw lines in, one merged Digest out (reused by the Serve bench)."""
    return _run_engine(lines)


def bench_engine(path: Path) -> tuple[float, float, Digest, int]:
    """Lines per wall second and per CPU second (the latter is steadier on a shared machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    digest = run_engine(read_lines(path))
    templates = len(digest.templates)  # mining is part of the work
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    n = sum(1 for _ in read_lines(path))
    return n / elapsed, n / cpu, digest, templates


def bench_drain3(path: Path) -> float | None:
    try:
        from drain3 import TemplateMiner
        from drain3.template_miner_config import TemplateMinerConfig
    except ImportError:
        return None
    import logging

    logging.getLogger("drain3").setLevel(logging.WARNING)
    config = TemplateMinerConfig()
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    n = 0
    start = time.perf_counter()
    for line in read_lines(path):
        miner.add_log_message(line.rstrip("\n"))
        n += 1
    return n / (time.perf_counter() - start)




def bench_serve(path: Path, replica_counts: tuple[int, ...] = (1, 2)) -> dict[int, float]:
    """Lines/s through the Serve summarizer fan-out (the production path: chunks over replicas, merged).

    One Ray instance; the Summarizer is deployed with a fixed number of replicas for each
    measurement, and the same ``AnalysisPipeline.digest`` the ingress runs sends the chunks.
    """
    import asyncio

    import ray
    from ray import serve

    from deployments.summarizer import Summarizer
    from pipelines.pipeline import AnalysisPipeline
    from pipelines.settings import Settings

    chunk_lines = Settings().chunk_lines  # what the ingress uses (RCA_CHUNK_LINES)

    lines = [line.rstrip("\n") for line in read_lines(path)]
    ray.init(address="local", num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    results: dict[int, float] = {}
    try:
        for replicas in replica_counts:
            handle = serve.run(
                Summarizer.options(num_replicas=replicas, autoscaling_config=None, max_ongoing_requests=2).bind(),
                name="bench-summarizer", route_prefix=None,
            )

            async def summarize(chunk, handle=handle):
                return await handle.summarize_chunk.remote(chunk)

            pipeline = AnalysisPipeline(summarize, None, None, chunk_lines=chunk_lines, min_chunks=replicas)  # type: ignore[arg-type]
            asyncio.run(pipeline.digest(lines[:50_000]))  # warm-up: imports and first compilations
            start = time.perf_counter()
            digest, _ = asyncio.run(pipeline.digest(lines))
            results[replicas] = len(lines) / (time.perf_counter() - start)
            assert digest.lines > 0
            serve.delete("bench-summarizer")
    finally:
        serve.shutdown()
        ray.shutdown()
    return results


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--no-drain3", action="store_true")
    ap.add_argument("--no-serve", action="store_true", help="skip the Serve fan-out measurement")
    ap.add_argument("--cache", type=Path, default=None, help="where the generated log is kept")
    args = ap.parse_args(argv)
    path = dataset(args.lines, args.cache)
    load_before = os.getloadavg()[0]
    engine_lps, engine_lpcpu, digest, templates = bench_engine(path)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result: dict = {
        "lines": args.lines,
        "records": digest.lines,
        "templates": templates,
        "engine_lines_per_s": round(engine_lps),
        "engine_lines_per_cpu_s": round(engine_lpcpu),
        "peak_rss_mb": round(rss, 1),
        "cpus": os.cpu_count(),
        "load_avg_1m_before": round(load_before, 2),
    }
    drain = None if args.no_drain3 else bench_drain3(path)
    result["drain3_lines_per_s"] = round(drain) if drain else None
    result["ratio_vs_drain3"] = round(engine_lps / drain, 2) if drain else None
    if not args.no_serve:
        serve_lps = bench_serve(path)
        result["serve_one_replica_lines_per_s"] = round(serve_lps[1])
        result["serve_lines_per_s"] = round(serve_lps[2])
        result["serve_speedup_two_vs_one_replica"] = round(serve_lps[2] / serve_lps[1], 2)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v}")
    return result


if __name__ == "__main__":
    main()
