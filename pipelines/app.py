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
from deployments.reasoner import Reasoner
from deployments.scorer import AnomalyScorer
from deployments.summarizer import Summarizer
from pipelines.settings import Settings

APP_NAME = "rca"


def build_app(settings: Settings) -> Application:
    """Bind the deployments into one application; the ingress holds handles to the stages."""
    summarizer = Summarizer.options(num_replicas=settings.summarizer_replicas).bind(settings.max_line_bytes)
    scorer = AnomalyScorer.bind()
    reasoner = Reasoner.bind(settings)
    return Ingress.bind(settings, summarizer, scorer, reasoner)


def app_builder(args: dict[str, Any]) -> Application:
    """Entry point for Serve config files: ``import_path: pipelines.app:app_builder``.

    ``args`` override settings by field name; the database must be given by URL
    (``RCA_DATABASE_URL``), since replicas in a cluster do not start an embedded one.
    """
    return build_app(Settings(**args))


def run_app(settings: Settings, *, blocking: bool = False, route_prefix: str = "/") -> Any:
    """Start the application on the running Ray cluster and return the ingress handle."""
    serve.start(http_options={"host": settings.host, "port": settings.port})
    return serve.run(
        build_app(settings),
        name=APP_NAME,
        route_prefix=route_prefix,
        blocking=blocking,
        logging_config={"enable_access_log": False, "log_level": "WARNING"},
    )
