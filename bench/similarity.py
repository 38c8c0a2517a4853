"""How long ranking similar past incidents takes (a benchmark, never a test).

``GET /api/incidents/{id}/similar`` and the history recall compare one signature with up to
``pipelines.store.SIMILAR_CANDIDATES`` stored ones in Python. This times that comparison on
synthetic signatures shaped like real ones (3 services, 8 templates, 5 evidence kinds drawn
from pools of 40, 300 and 20), best of ``--repeat`` runs, and prints one JSON object.

    .venv/bin/python bench/similarity.py [--candidates 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.schemas import Category, Signature  # noqa: E402
from pipelines.similarity import rank_similar  # noqa: E402


def _signature(rng: random.Random) -> Signature:
    return Signature(
        category=rng.choice(list(Category)),
        services=rng.sample([f"service-{i}" for i in range(40)], 3),
        templates=rng.sample([f"<*> ERROR template {i} failed for <*>" for i in range(300)], 8),
        evidence_kinds=rng.sample([f"metric:m{i}" for i in range(20)], 5),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(1)
    candidates = [(i, _signature(rng)) for i in range(args.candidates)]
    target = _signature(rng)
    best = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        rank_similar(target, candidates, limit=10)
        best = min(best, time.perf_counter() - started)
    print(json.dumps({"candidates": args.candidates, "rank_seconds": round(best, 4),
                      "microseconds_per_candidate": round(1e6 * best / args.candidates, 1)}))


if __name__ == "__main__":
    main()
