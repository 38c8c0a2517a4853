"""Composition root: the Serve application of four deployments.

``build_app(settings)`` is used by ``rca serve``, ``rca analyze``, ``rca demo``, the
evaluation and the tests; ``app_builder(args)`` is the import path for ``serve run`` /
``serve build`` and the KubeRay ``serveConfigV2`` (settings then come from the environment).
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from deployments.ingress import Ingress
from deployments.reasoner import AUTOSCALING as REASONER_AUTOSCALING
from deployments.reasoner import Reasoner
from deployments.scorer import AUTOSCALING as SCORER_AUTOSCALING
from deployments.scorer import AnomalyScorer
from deployments.summarizer import AUTOSCALING as SUMMARIZER_AUTOSCALING
from deployments.summarizer import Summarizer
from pipelines.notify.channels import build_channels
from pipelines.runbooks import load_runbooks
from pipelines.settings import Settings
from pipelines.tls import serve_http_options

APP_NAME = "rca"


def summarizer_autoscaling(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The Summarizer's autoscaling: its defaults, never fewer than ``RCA_SUMMARIZER_REPLICAS`` replicas.

    The ingress cuts at least one chunk per configured replica, so the minimum follows that
    setting; ``overrides`` (a benchmark, a test) replace single keys.
    """
    config = {**SUMMARIZER_AUTOSCALING, **overrides}
    config["min_replicas"] = max(int(config["min_replicas"]), settings.summarizer_replicas)
    config["max_replicas"] = max(int(config["max_replicas"]), config["min_replicas"])
    return config


STAGES = ("Summarizer", "AnomalyScorer", "Reasoner")


def build_app(
    settings: Settings,
    *,
    autoscaling: dict[str, dict[str, Any]] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> Application:
    """Bind the deployments into one application; the ingress holds handles to the stages.

    Every stage autoscales (``deployments/*.py`` hold the defaults). By deployment name,
    ``autoscaling`` replaces keys of its ``autoscaling_config`` (``{"Summarizer":
    {"max_replicas": 3}}``) and ``options`` adds other ``.options()`` of Serve
    (``{"Summarizer": {"max_replicas_per_node": 1}}``): for benchmarks and tests.
    The user's runbooks are read here, once: one that does not validate raises ``RunbookError``
    (``file:line: field: what is wrong``) before anything starts.
    So are the notification channels: an unreadable ``*_FILE`` or a route to a channel that is not
    configured raises ``ValueError`` naming the variable.
    """
    runbooks = load_runbooks(settings.runbooks_dir)
    build_channels(settings)  # a bad notification setting (README "Notify") stops here, naming the variable
    extra, more = autoscaling or {}, options or {}
    unknown = (set(extra) | set(more)) - set(STAGES)
    if unknown:
        raise ValueError(f"no stage deployment named {', '.join(sorted(unknown))}; the stages are {', '.join(STAGES)}")
    summarizer = Summarizer.options(
        autoscaling_config=summarizer_autoscaling(settings, **extra.get("Summarizer", {})), **more.get("Summarizer", {})
    ).bind(settings.max_line_bytes, settings.log_level)
    scorer = AnomalyScorer.options(
        autoscaling_config={**SCORER_AUTOSCALING, **extra.get("AnomalyScorer", {})}, **more.get("AnomalyScorer", {})
    ).bind(settings.log_level)
    reasoner = Reasoner.options(
        autoscaling_config={**REASONER_AUTOSCALING, **extra.get("Reasoner", {})}, **more.get("Reasoner", {})
    ).bind(settings, runbooks)
    return Ingress.bind(settings, summarizer, scorer, reasoner)


def app_builder(args: dict[str, Any]) -> Application:
    """Entry point for Serve config files: ``import_path: pipelines.app:app_builder``.

    ``args`` override settings by field name; the database must be given by URL
    (``RCA_DATABASE_URL``), since replicas in a cluster do not start an embedded one.
    """
    return build_app(Settings(**args))


def run_app(settings: Settings, *, blocking: bool = False, route_prefix: str = "/") -> Any:
    """Start the application on the running Ray cluster and return the ingress handle."""
    serve.start(http_options=serve_http_options(settings))
    return serve.run(
        build_app(settings),
        name=APP_NAME,
        route_prefix=route_prefix,
        blocking=blocking,
        logging_config={"enable_access_log": False, "log_level": "WARNING"},
    )
