"""A Ray cluster of a head and a worker node on this machine, each a ``ray start --block`` of its own.

Both nodes run with one CPU each, on ports picked free (none of Ray's defaults), with their own
temp folder, and token authentication as in production (``RAY_AUTH_MODE=token`` for the head,
the worker and any driver; NOTES.md). Ending the ``ray start`` process tears its node down:
nothing here runs ``ray stop``, which would end every Ray process of the machine. Used by
``tests/integration/test_two_nodes.py`` and ``bench/digester_scaling.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")


class NodesDidNotStart(RuntimeError):
    """The head or the worker did not come up (its output is in the temp folder named)."""


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait_for_port(port: int, process: subprocess.Popen, deadline_s: float = 90) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise NodesDidNotStart(f"ray start --head exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise NodesDidNotStart(f"the Ray head did not open port {port} within {deadline_s:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    """End one ``ray start --block`` (its node goes with it); SIGKILL its own group if it lingers."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def two_nodes() -> Iterator[tuple[str, dict[str, str]]]:
    """Start a head and a worker node (one CPU each); yield the GCS address and the environment a
    driver needs; tear both down on exit."""
    if RAY is None:
        raise NodesDidNotStart("the ray command is not installed")
    temp = Path(tempfile.mkdtemp(prefix="rca2n-", dir="/tmp"))  # short: Ray's socket paths must fit
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
    (gcs, head_nm, head_om, head_client, head_metrics, head_agent, head_agent_grpc, head_rt,
     worker_nm, worker_om, worker_metrics, worker_agent, worker_agent_grpc, worker_rt) = _free_ports(14)
    address = f"127.0.0.1:{gcs}"
    common = ["--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head = subprocess.Popen(
        [RAY, "start", "--head", f"--port={gcs}", *common, "--include-dashboard=false", f"--temp-dir={temp}",
         f"--node-manager-port={head_nm}", f"--object-manager-port={head_om}", f"--ray-client-server-port={head_client}",
         f"--metrics-export-port={head_metrics}", f"--dashboard-agent-listen-port={head_agent}",
         f"--dashboard-agent-grpc-port={head_agent_grpc}", f"--runtime-env-agent-port={head_rt}",
         "--object-store-memory=100000000"],
        env=env, stdout=open(temp / "head.out", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    worker = None
    try:
        _wait_for_port(gcs, head)  # the worker joins a head that answers (and has its auth token)
        worker = subprocess.Popen(
            [RAY, "start", f"--address={address}", *common,
             f"--node-manager-port={worker_nm}", f"--object-manager-port={worker_om}",
             f"--metrics-export-port={worker_metrics}", f"--dashboard-agent-listen-port={worker_agent}",
             f"--dashboard-agent-grpc-port={worker_agent_grpc}", f"--runtime-env-agent-port={worker_rt}",
             "--object-store-memory=100000000"],
            env=env, stdout=open(temp / "worker.out", "w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        yield address, env
    finally:
        if worker is not None:
            _stop(worker)
        _stop(head)
        shutil.rmtree(temp, ignore_errors=True)


def wait_for_nodes(count: int, deadline_s: float = 120) -> None:
    """In a driver connected to the cluster: return once ``count`` nodes are alive (the worker needs the head first)."""
    import ray

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if sum(1 for n in ray.nodes() if n["Alive"]) >= count:
            return
        time.sleep(1)
    raise NodesDidNotStart(f"fewer than {count} alive Ray nodes after {deadline_s:.0f} s")
