"""LOG_LEVEL applied to this app's own loggers, in whichever process they run.

Ray starts every Serve replica and the CLI in processes of their own, each with Python's
logging unconfigured (only warnings reach stderr, through ``logging.lastResort``). Each entry
point (the CLI, every deployment's constructor) calls :func:`configure_logging` so that the
operator's ``LOG_LEVEL`` means the same everywhere. Third-party loggers stay at WARNING: Ray,
httpx and aiokafka are verbose at INFO and have settings of their own.
"""

from __future__ import annotations

import logging

#: the packages whose loggers LOG_LEVEL sets
APP_PACKAGES = ("anomaly", "pipelines", "deployments")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Give the app's loggers ``level`` and, when nothing handles log records yet, a stderr handler."""
    logging.basicConfig(level=logging.WARNING, format=FORMAT)  # a no-op when the process configured logging
    for package in APP_PACKAGES:
        logging.getLogger(package).setLevel(level)
