"""The same app on a Ray cluster of two nodes: a head and a worker, separate ``ray start`` processes.

Both nodes run on this machine with one CPU each, on ports picked free (none of Ray's
defaults), with their own temp folder, and token authentication as in production
(``RAY_AUTH_MODE=token`` for the head, the worker and the driver; NOTES.md). Each
``ray start --block`` runs in the background, so ending that process tears its node down:
the test never runs ``ray stop``, which would end every Ray process of the machine.

The pytest process keeps its own Ray (the session's cluster) untouched: the Serve app is
deployed by a driver in a subprocess, this file run as a script (``--driver``). The driver
asks for two Summarizer replicas at most one per node, runs one analysis of a simulated
incident through the ingress (its chunks fan out over both replicas), and prints what it saw
as JSON: the alive nodes, the node of every Summarizer replica, the analysis.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ray_nodes
from tests.support.ray_nodes import RAY

REPO = Path(__file__).resolve().parents[2]
SCENARIO = "db_pool_exhaustion"
APP = "rca-two-nodes"


# ---------------------------------------------------------------- the driver (a subprocess)


def _summarizer_nodes() -> list[str]:
    """The node of every alive Summarizer replica, from the GCS actor table.

    The dashboard is off, so ``ray.util.state`` cannot answer (NOTES.md); the GCS's actor
    table can, through ``ray._private.state``, Ray's own source of ``ray.nodes()``.
    """
    from ray._private import state

    nodes = []
    for actor in state.actors().values():
        if actor.get("State") == "ALIVE" and "Summarizer" in (actor.get("Name") or "") and APP in actor.get("Name", ""):
            nodes.append(actor["Address"]["NodeID"])
    return nodes


def drive(address: str, database_url: str, data_dir: str) -> dict:
    import ray
    from ray import serve

    from pipelines.app import build_app
    from pipelines.settings import Settings
    from pipelines.simulate import simulate

    ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    try:
        ray_nodes.wait_for_nodes(2)
        alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        serve.start(proxy_location="Disabled")
        settings = Settings(database_url=database_url, data_dir=Path(data_dir), summarizer_replicas=2)
        app = build_app(settings, options={"Summarizer": {"max_replicas_per_node": 1}},
                        autoscaling={"Summarizer": {"max_replicas": 2}})
        ingress = serve.run(app, name=APP, route_prefix=None, logging_config={"log_level": "WARNING"})
        incident = simulate(SCENARIO)
        analysis = ingress.analyze.remote(incident.request_body()).result(timeout_s=300)
        replica_nodes = _summarizer_nodes()
        serve.delete(APP)
        return {
            "nodes": alive,
            "summarizer_nodes": replica_nodes,
            "expected_category": incident.category.value,
            "expected_culprit": incident.culprit,
            "log_entries": len(incident.logs),
            "analysis": analysis,
        }
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


# ---------------------------------------------------------------- the test


@pytest.fixture
def two_nodes() -> Iterator[tuple[str, dict[str, str]]]:
    if RAY is None:
        pytest.skip("the ray command is not installed")
    with ray_nodes.two_nodes() as started:
        yield started


@pytest.mark.serve
def test_summarizer_replicas_spread_over_a_head_and_a_worker_node_and_the_analysis_is_right(
    two_nodes: tuple[str, dict[str, str]], database_url: str, tmp_path: Path
) -> None:
    address, env = two_nodes
    run = subprocess.run(
        [sys.executable, __file__, "--driver", address, database_url, str(tmp_path)],
        env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True, timeout=420,
    )
    assert run.returncode == 0, f"driver failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(set(seen["nodes"])) == 2, f"expected a head and a worker node, the cluster has {seen['nodes']}"
    assert len(seen["summarizer_nodes"]) == 2
    assert set(seen["summarizer_nodes"]) == set(seen["nodes"]), "the Summarizer replicas are not on both nodes"
    analysis = seen["analysis"]
    assert analysis["classification"]["category"] == seen["expected_category"]
    assert seen["expected_culprit"] in [h["service"] for h in analysis["hypotheses"]]
    assert analysis["stats"]["lines_in"] >= seen["log_entries"] * 0.9, "lines were lost between the nodes"
    assert analysis["stats"]["chunks"] >= 2, "the lines were not fanned out over the replicas"


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--driver":
    sys.path.insert(0, str(REPO))
    print(json.dumps(drive(sys.argv[2], sys.argv[3], sys.argv[4]), default=str))
