"""Shared fixtures: the benchmark data folder, one embedded PostgreSQL and one Ray/Serve app per session.

The Serve app is started lazily by the first test that asks for it, on a free port, and
stopped at the end of the session (about 12 s once; never per test). It runs with
authentication on, as in production: ask for ``auth_headers`` (a function of the role) to call
it; ``WEBHOOK_TOKEN`` is the Alertmanager webhook's token and clients calling from 127.0.0.1
may name another client address in X-Forwarded-For (127.0.0.1 is a trusted proxy).
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("RCA_DATASETS", REPO.parent / "shared" / "datasets"))

# Security settings of the session's Serve app (fresh secrets per session).
JWT_SECRET = secrets.token_urlsafe(48)
WEBHOOK_TOKEN = secrets.token_urlsafe(24)
SESSION_RATE_LIMIT_PER_MINUTE = 600
AUTH_SETTINGS = {
    "auth_jwt_secret": JWT_SECRET,
    "auth_issuer": "rca-tests",
    "auth_audience": "rca-api",
    "webhook_token": WEBHOOK_TOKEN,
    "rate_limit_per_minute": SESSION_RATE_LIMIT_PER_MINUTE,
    "trusted_proxies": ["127.0.0.1/32"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"benchmark data not found at {DATASETS} (set RCA_DATASETS or put ../shared/datasets beside the repo)")
    return DATASETS


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rca-test-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def database_url(data_dir: Path) -> str:
    """A real PostgreSQL: RCA_TEST_DATABASE_URL if given, else the embedded one in a temp folder."""
    from pipelines.database import start_embedded

    return os.environ.get("RCA_TEST_DATABASE_URL") or start_embedded(data_dir / "postgres")


@pytest.fixture(scope="session")
def serve_app(database_url: str, data_dir: Path) -> Iterator[str]:
    """Base URL of the one Serve application of the test session."""
    from pipelines import runtime
    from pipelines.settings import Settings

    settings = Settings(database_url=database_url, data_dir=data_dir, port=free_port(), host="127.0.0.1",
                        max_body_bytes=8 * 1024 * 1024, **AUTH_SETTINGS)
    local = runtime.start(settings, http=True, num_cpus=2)
    try:
        yield local.url
    finally:
        runtime.stop()


@pytest.fixture(scope="session")
def auth_headers() -> Callable[..., dict[str, str]]:
    """``auth_headers("operator")``: an Authorization header with a fresh JWT of that role for the session app."""
    from pipelines.auth import Role, issue_token
    from pipelines.settings import Settings

    settings = Settings(**AUTH_SETTINGS)

    def headers(role: str = "operator", subject: str | None = None, ttl_seconds: int = 3600) -> dict[str, str]:
        token = issue_token(settings, subject or f"test-{role}", Role(role), ttl_seconds)
        return {"Authorization": f"Bearer {token}"}

    return headers
