"""Start the whole application on this machine: database, Ray, the Serve app.

One implementation for ``rca serve``, the one-shot commands (``analyze``, ``demo``,
``eval``) and the test session, so that every path runs the same pipeline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pipelines import tls
from pipelines.database import resolve_database_url, stop_embedded
from pipelines.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class LocalApp:
    settings: Settings
    ingress: Any  # DeploymentHandle of the Ingress

    @property
    def url(self) -> str:
        return f"{self.settings.api_scheme}://{self.settings.host}:{self.settings.port}"


def start(
    settings: Settings,
    *,
    http: bool = True,
    dashboard: bool = False,
    num_cpus: int | None = None,
    metrics_port: int | None = None,
) -> LocalApp:
    """Resolve the database, start Ray and the Serve app; returns the ingress handle.

    ``http=False`` runs the app without an HTTP proxy (one-shot CLI commands), so it does
    not clash with an ``rca serve`` already listening on the port. ``metrics_port`` is
    Ray's metrics export port, where Prometheus scrapes the ``ray_rca_*`` metrics
    (``rca serve`` uses 8080; None lets Ray pick one); it listens where ``ray_node_options`` says.
    """
    import ray
    from ray import serve

    from pipelines.app import APP_NAME, build_app

    database_url = resolve_database_url(settings.database_url, settings.data_dir)
    settings = settings.model_copy(update={"database_url": database_url})
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if settings.tls_client_ca_file:
        # read by Serve's proxy process, which inherits this environment (pipelines/tls.py says why)
        os.environ[tls.PROXY_CALLBACK_ENV] = tls.PROXY_CALLBACK
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            # join the cluster the operator named (e.g. a head started with `ray start`): where its
            # metrics port listens was decided there (`ray start --node-ip-address`)
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            # "local": always a new instance, never a stale `ray start` cluster found in /tmp/ray
            with _node_address(settings):
                ray.init(
                    address="local",
                    num_cpus=num_cpus or os.cpu_count() or 2,
                    include_dashboard=dashboard,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                    configure_logging=True,
                    _metrics_export_port=metrics_port,
                    **ray_node_options(settings),
                )
    if http:
        serve.start(http_options=tls.serve_http_options(settings))
    else:
        serve.start(proxy_location="Disabled")
    handle = serve.run(
        build_app(settings),
        name=APP_NAME,
        route_prefix="/" if http else None,
        logging_config={"enable_access_log": False, "log_level": "WARNING"},
    )
    return LocalApp(settings=settings, ingress=handle)


def ray_node_options(settings: Settings) -> dict[str, Any]:
    """Where the local Ray node's metrics export port listens (README "Security").

    Ray's metrics agent binds loopback when the node's address is loopback, else every
    interface; it has no setting of its own. So a loopback choice (``RCA_METRICS_HOST``, or
    ``RCA_HOST`` when unset) gives the node 127.0.0.1, which keeps the node's other ports
    (GCS, raylet, agents) on loopback too; "0.0.0.0" leaves the address to Ray (every
    interface, for a Prometheus on another host).
    """
    return {"_node_ip_address": "127.0.0.1"} if settings.metrics_loopback else {}


@contextmanager
def _node_address(settings: Settings) -> Iterator[None]:
    """Let ``ray.init`` keep a loopback node address.

    Ray 2.60 replaces a loopback ``_node_ip_address`` by the machine's reachable address unless
    its "local only" switch is off (``ray_constants.ENABLE_RAY_CLUSTER``, what Ray uses on macOS
    and Windows; read at call time by ``services.get_node_ip_address``). Measured: with it off
    for the call, the metrics agent, GCS, raylet and agents all listen on 127.0.0.1.
    """
    if not settings.metrics_loopback:
        yield
        return
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
        stop_embedded()


@contextmanager
def running(settings: Settings, **kwargs: Any) -> Iterator[LocalApp]:
    app = start(settings, **kwargs)
    try:
        yield app
    finally:
        stop()
