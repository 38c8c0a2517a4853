"""Context sources: where logs and metrics around an alert come from.

All of them answer :class:`ContextSource.fetch` with a :class:`SourceResult`;
:func:`gather_context` runs them concurrently and turns failures into degraded reasons.
:func:`build_sources` makes the configured ones from :class:`~pipelines.settings.Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from pipelines.settings import Settings
from pipelines.sources.base import ContextSource, SourceResult, SourceStatus, gather_context
from pipelines.sources.files import FilesSource
from pipelines.sources.loki import LokiSource, build_selector
from pipelines.sources.prometheus import PrometheusSource
from pipelines.tls import http_verify

__all__ = [
    "ContextSource",
    "FilesSource",
    "LokiSource",
    "PrometheusSource",
    "SourceResult",
    "SourceStatus",
    "build_selector",
    "build_sources",
    "gather_context",
]


def build_sources(settings: Settings, files: Iterable[str | os.PathLike[str]] = ()) -> list[ContextSource]:
    """The sources the settings enable: Prometheus and Loki when their URLs are set, files when given."""
    sources: list[ContextSource] = []
    verify = http_verify(settings) if settings.prometheus_url or settings.loki_url else True
    if settings.prometheus_url:
        sources.append(
            PrometheusSource(
                settings.prometheus_url, settings.prometheus_queries, timeout=settings.source_timeout_seconds,
                verify=verify,
            )
        )
    if settings.loki_url:
        sources.append(
            LokiSource(
                settings.loki_url,
                settings.loki_selector_labels,
                timeout=settings.source_timeout_seconds,
                max_lines=settings.loki_max_lines,
                verify=verify,
            )
        )
    paths = list(files)
    if paths:
        sources.append(FilesSource(paths, max_bytes=settings.file_max_bytes))
    return sources
