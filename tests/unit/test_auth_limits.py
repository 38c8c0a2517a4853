"""Limits and the auth dependencies on a small FastAPI app (no Ray): 429 with Retry-After, 401/403, audit rows."""

from __future__ import annotations

import ipaddress

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from deployments import auth as auth_deps
from deployments.body_limit import RateLimit, RateLimiter, client_address, parse_networks
from pipelines import audit
from pipelines.audit import AuditEntry
from pipelines.auth import Authenticator, Role, issue_token
from pipelines.settings import Settings

SETTINGS = Settings(auth_jwt_secret="k" * 40, auth_issuer="rca", auth_audience="rca-api")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_minute_then_refills_steadily() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)
    assert all(limiter.acquire("a") is None for _ in range(60))
    wait = limiter.acquire("a")
    assert wait is not None and 0 < wait <= 1.0
    assert limiter.acquire("b") is None, "clients are counted apart"
    clock.now += 2.0
    assert limiter.acquire("a") is None and limiter.acquire("a") is None
    assert limiter.acquire("a") is not None
    assert RateLimiter(0).acquire("a") is None, "0 turns the limit off"


def test_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(5, max_clients=100)
    for i in range(1000):
        limiter.acquire(f"client-{i}")
    assert len(limiter._buckets) == 100


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    trusted = parse_networks(["10.0.0.0/8"])
    scope = {"client": ("10.1.2.3", 1), "headers": [(b"x-forwarded-for", b"198.51.100.7, 10.0.0.5")]}
    assert client_address(scope, trusted) == "198.51.100.7"
    assert client_address({**scope, "client": ("203.0.113.9", 1)}, trusted) == "203.0.113.9"
    assert client_address({**scope, "headers": [(b"x-forwarded-for", b"not-an-ip")]}, trusted) == "10.1.2.3"
    with pytest.raises(ValueError, match="RCA_TRUSTED_PROXIES"):
        parse_networks(["10.0.0.0/33"])
    assert isinstance(parse_networks(["::1"])[0], ipaddress.IPv6Network)


@pytest.fixture()
def app_client():
    rows: list[AuditEntry] = []

    async def lookup(key_id: str) -> None:
        return None

    async def write(entry: AuditEntry) -> None:
        rows.append(entry)

    auth_deps.configure(Authenticator(SETTINGS, lookup), write)
    RateLimit.limiter = RateLimiter(5)
    RateLimit.trusted = []
    app = FastAPI()
    app.add_middleware(RateLimit)
    app.add_middleware(auth_deps.AuditTrail)
    seen: list[str] = []

    @app.get("/api/things", dependencies=[Depends(auth_deps.require(Role.operator))])
    async def things() -> dict:
        seen.append(audit.current().actor)
        return {"ok": True}

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    with TestClient(app) as client:
        yield client, rows, seen
    RateLimit.limiter = RateLimiter(0)


def bearer(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SETTINGS, f'u-{role.value}', role)}"}


def test_401_403_200_and_each_call_audited_with_its_status(app_client) -> None:
    client, rows, seen = app_client
    missing = client.get("/api/things")
    assert missing.status_code == 401 and "missing credentials" in missing.json()["detail"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    viewer = client.get("/api/things", headers=bearer(Role.viewer))
    assert viewer.status_code == 403 and "operator" in viewer.json()["detail"]
    ok = client.get("/api/things", headers=bearer(Role.admin))
    assert ok.status_code == 200 and seen == ["u-admin"], "the endpoint runs as the authenticated actor"
    assert [(r.action, r.status, r.context.actor) for r in rows] == [
        ("request", 401, "anonymous"), ("request", 403, "u-viewer"), ("request", 200, "u-admin")]
    assert rows[0].detail["refused"].startswith("missing credentials")
    assert rows[2].context.route == "/api/things" and rows[2].context.request_id


def test_over_the_rate_limit_is_a_429_with_retry_after_before_auth(app_client) -> None:
    client, rows, _ = app_client
    codes = [client.get("/api/things").status_code for _ in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    limited = client.get("/api/things")
    assert int(limited.headers["retry-after"]) >= 1 and "RCA_RATE_LIMIT_PER_MINUTE" in limited.json()["detail"]
    assert client.get("/health").status_code == 200, "health is never limited"
    assert rows[-1].status == 429
