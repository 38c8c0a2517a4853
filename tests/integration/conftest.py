"""Fixtures shared by the integration tests (the session's database comes from tests/conftest.py)."""

from __future__ import annotations

import pytest

from pipelines.store import Store


@pytest.fixture()
async def store(database_url: str):
    s = await Store.connect(database_url)
    yield s
    await s.close()
