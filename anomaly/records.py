"""One log record: the unit every other module of the engine reads.

Kept deliberately small (slots, plain fields) because the intake may build
millions of them; everything richer (templates, counts) lives in a ``Digest``.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE")


@dataclass(slots=True)
class LogRecord:
    """A parsed log line (stack-trace continuation lines already joined to it)."""

    message: str
    timestamp: float | None = None  # unix seconds, UTC
    level: str | None = None  # normalized upper-case: FATAL, ERROR, WARN, INFO, DEBUG, TRACE
    service: str | None = None
    pod: str | None = None
    container: str | None = None  # the container in the pod, when the export names it (stern, kubectl, Loki)
    host: str | None = None  # the node or machine, for node daemons (journald, syslog) and node events
    span_id: str | None = None  # the trace span the line was written in, when the shipper knows it
