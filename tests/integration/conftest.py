"""Fixtures shared by the integration tests (the session's database comes from tests/conftest.py)."""

from __future__ import annotations

import pytest

from pipelines.store import Store


@pytest.fixture()
async def store(database_url: str):
    s = await Store.connect(database_url)
    yield s
    await s.close()


@pytest.fixture()
async def fresh_database_url(database_url: str):
    """The URL of a new, empty database on the session's server (dropped after the test), for tests
    that need a database of their own: a schema of another version, or archival that must not
    move the other tests' incidents."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    name = f"rca_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(database_url)
        yield urlunsplit(parts._replace(path=f"/{name}"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
