"""A simulated incident analyzed by the running app and stored, on a service no other test uses."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

from pipelines.simulate import simulate


def analyze_simulated(serve_app: str, auth_headers: Callable[[str], dict[str, str]], scenario: str, prefix: str,
                      *, seed: int = 5, change: Callable[[dict[str, Any]], None] | None = None) -> dict:
    """POST /analyze a simulated ``scenario`` as an operator; ``change`` edits the body first.

    Returns ``{"service": ..., "analysis": ...}``: the service is ``<prefix>-<random>``, so a
    filter on it finds this incident only.
    """
    service = f"{prefix}-{uuid.uuid4().hex[:8]}"
    body = simulate(scenario, seed=seed).request_body()
    body["alert"]["labels"]["service"] = service
    if change is not None:
        change(body)
    with httpx.Client(base_url=serve_app, timeout=300, headers=auth_headers("operator")) as client:
        response = client.post("/analyze", json=body)
    assert response.status_code == 200, response.text
    return {"service": service, "analysis": response.json()}
