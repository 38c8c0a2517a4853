"""Authentication, roles, API keys, the webhook's credentials, the audit trail and the rate limit on the running app."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid

import httpx
import jwt
import pytest

from tests.conftest import AUTH_SETTINGS, JWT_SECRET, SESSION_RATE_LIMIT_PER_MINUTE, WEBHOOK_TOKEN

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def anon(serve_app: str):
    with httpx.Client(base_url=serve_app, timeout=120) as c:
        yield c


def _claims(**kw) -> dict:
    now = int(time.time())
    return {"sub": "mallory", "role": "admin", "iss": AUTH_SETTINGS["auth_issuer"], "aud": AUTH_SETTINGS["auth_audience"],
            "iat": now, "exp": now + 600, **kw}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _webhook_payload(service: str) -> dict:
    return {"version": "4", "status": "firing", "receiver": "rca", "groupKey": "{}", "alerts": [
        {"status": "firing", "labels": {"alertname": "HighErrorRate", "service": service, "severity": "critical"},
         "annotations": {}, "startsAt": "2025-06-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
         "fingerprint": uuid.uuid4().hex[:16]}]}


def test_every_route_but_health_requires_credentials(anon: httpx.Client) -> None:
    schema = anon.get("/openapi.json").json()
    assert anon.get("/health").status_code == 200
    checked = 0
    for path, operations in schema["paths"].items():
        if path == "/health":
            continue
        concrete = path.replace("{incident_id}", str(uuid.uuid4())).replace("{key_id}", "0123456789ab")
        for method in operations:
            response = anon.request(method.upper(), concrete, json={})
            assert response.status_code == 401, (method, path, response.text)
            assert "missing credentials" in response.json()["detail"]
            checked += 1
    assert anon.get("/metrics").status_code == 401
    assert checked >= 9


@pytest.mark.parametrize(
    ("token", "says"),
    [
        (jwt.encode(_claims(exp=int(time.time()) - 600), JWT_SECRET, algorithm="HS256"), "expired"),
        (jwt.encode(_claims(aud="other-api"), JWT_SECRET, algorithm="HS256"), "wrong audience"),
        (jwt.encode(_claims(), "not-the-secret-" * 3, algorithm="HS256"), "bad signature"),
        ("garbage.token.value", "malformed"),
    ],
)
def test_bad_token_is_a_401_that_says_why_without_echoing_it(anon: httpx.Client, token: str, says: str) -> None:
    response = anon.get("/api/stats", headers=_bearer(token))
    assert response.status_code == 401 and says in response.json()["detail"]
    assert token not in response.text and "Bearer" in response.headers["www-authenticate"]


def test_roles_viewer_operator_admin(anon: httpx.Client, auth_headers) -> None:
    viewer, operator, admin = auth_headers("viewer"), auth_headers("operator"), auth_headers("admin")
    assert anon.get("/api/incidents", headers=viewer).status_code == 200
    assert anon.get("/api/stats", headers=viewer).status_code == 200
    refused = anon.post("/analyze", headers=viewer, json={"alert": {"name": "X", "timestamp": "2024-01-07T10:30:00Z"}})
    assert refused.status_code == 403 and "operator role" in refused.json()["detail"]
    for path in ("/api/audit", "/api/keys"):
        forbidden = anon.get(path, headers=operator)
        assert forbidden.status_code == 403 and "admin role" in forbidden.json()["detail"]
        assert anon.get(path, headers=admin).status_code == 200


def test_api_key_lifecycle_created_used_and_revoked(anon: httpx.Client, auth_headers) -> None:
    admin = auth_headers("admin")
    created = anon.post("/api/keys", headers=admin, json={"name": "grafana", "role": "viewer"})
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["api_key"].startswith(f"rca_{key['key_id']}_") and key["role"] == "viewer"
    listed = anon.get("/api/keys", headers=admin).json()
    assert key["key_id"] in [k["key_id"] for k in listed] and all("api_key" not in k for k in listed)
    assert anon.get("/api/stats", headers=_bearer(key["api_key"])).status_code == 200
    assert anon.get("/api/stats", headers={"X-API-Key": key["api_key"]}).status_code == 200
    assert anon.post("/analyze", headers=_bearer(key["api_key"]), json={}).status_code == 403
    wrong = key["api_key"][:-4] + "AAAA"
    assert "unknown API key" in anon.get("/api/stats", headers=_bearer(wrong)).json()["detail"]
    revoked = anon.delete(f"/api/keys/{key['key_id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    refused = anon.get("/api/stats", headers=_bearer(key["api_key"]))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert anon.delete("/api/keys/ffffffffffff", headers=admin).status_code == 404


def test_webhook_accepts_alertmanagers_bearer_or_basic_auth_with_the_webhook_token(anon: httpx.Client) -> None:
    basic = base64.b64encode(f"alertmanager:{WEBHOOK_TOKEN}".encode()).decode()
    for headers in (_bearer(WEBHOOK_TOKEN), {"Authorization": f"Basic {basic}"}):
        response = anon.post("/webhook/alertmanager", headers=headers, json=_webhook_payload(f"svc-{uuid.uuid4().hex[:6]}"))
        assert response.status_code == 202, response.text
    assert anon.post("/webhook/alertmanager", headers=_bearer("wrong-token"), json=_webhook_payload("x")).status_code == 401
    assert anon.post("/webhook/alertmanager", json=_webhook_payload("x")).status_code == 401
    assert anon.get("/api/stats", headers=_bearer(WEBHOOK_TOKEN)).status_code == 401, "the webhook token opens the webhook only"


def test_audit_trail_records_who_what_when_outcome_and_the_analysis(anon: httpx.Client, auth_headers) -> None:
    subject = f"auditor-{uuid.uuid4().hex[:6]}"
    operator = auth_headers("operator", subject=subject)
    admin = auth_headers("admin")
    body = {"alert": {"name": "HighErrorRate", "severity": "critical", "timestamp": "2024-01-07T10:30:00Z",
                      "labels": {"service": f"svc-{subject}"}},
            "logs": [f"2024-01-07T10:29:{i:02d}Z ERROR checkout failed for order {i}" for i in range(60)]}
    analysis = anon.post("/analyze", headers=operator, json=body)
    assert analysis.status_code == 200, analysis.text
    incident_id = analysis.json()["incident_id"]
    assert anon.get("/api/incidents/not-a-uuid", headers=operator).status_code == 404

    rows = anon.get("/api/audit", headers=admin, params={"actor": subject, "page_size": 50}).json()
    by_action = {}
    for row in rows["items"]:
        by_action.setdefault(row["action"], []).append(row)
    request = next(r for r in by_action["request"] if r["route"] == "/analyze")
    assert request["status"] == 200 and request["incident_id"] == incident_id and request["method"] == "POST"
    assert request["client"] == "127.0.0.1" and request["actor_kind"] == "jwt" and request["role"] == "operator"
    saved = by_action["analysis.save"][0]
    assert saved["request_id"] == request["request_id"] and saved["status"] is None
    assert saved["detail"]["reasoner"] == "evidence" and saved["detail"]["model"] is None
    assert len(saved["detail"]["context_sha256"]) == 64 and saved["detail"]["lines_in"] >= 60
    assert by_action["incident.open"][0]["incident_id"] == incident_id
    assert any(r["status"] == 404 for r in by_action["request"])

    only = anon.get("/api/audit", headers=admin, params={"incident_id": incident_id, "action": "analysis.save"}).json()
    assert only["total"] == 1 and only["items"][0]["actor"] == subject
    paged = anon.get("/api/audit", headers=admin, params={"actor": subject, "page_size": 1, "page": 2}).json()
    assert paged["total"] == rows["total"] and len(paged["items"]) == 1
    assert paged["items"][0]["id"] == rows["items"][1]["id"], "newest first, stable paging"


def test_refused_calls_are_audited_as_anonymous_with_the_reason(anon: httpx.Client, auth_headers) -> None:
    marker = f"/api/incidents/{uuid.uuid4()}"
    assert anon.get(marker, headers=_bearer("nope.nope.nope")).status_code == 401
    rows = anon.get("/api/audit", headers=auth_headers("admin"),
                    params={"actor": "anonymous", "status": 401, "page_size": 100}).json()["items"]
    mine = [r for r in rows if r["incident_id"] == marker.rsplit("/", 1)[1]]
    assert mine and mine[0]["detail"]["refused"].startswith("malformed") and "nope" not in str(mine[0])


def test_rate_limit_is_a_429_with_retry_after_per_client(serve_app: str, auth_headers) -> None:
    """A client (named by X-Forwarded-For; 127.0.0.1 is a trusted proxy in the session) over its minute."""
    client_ip = f"203.0.113.{uuid.uuid4().int % 250 + 1}"

    async def flood() -> list[httpx.Response]:
        """Batches until refused: the bucket refills while the flood runs, so the count needed varies."""
        limits = httpx.Limits(max_connections=16)
        sent: list[httpx.Response] = []
        async with httpx.AsyncClient(base_url=serve_app, timeout=60, limits=limits,
                                     headers={"X-Forwarded-For": client_ip}) as c:
            while len(sent) < 5 * SESSION_RATE_LIMIT_PER_MINUTE and not any(r.status_code == 429 for r in sent):
                sent += await asyncio.gather(*(c.get("/openapi.json") for _ in range(100)))
        return sent

    responses = asyncio.run(flood())
    limited = [r for r in responses if r.status_code == 429]
    assert limited, "over the limit is refused"
    assert all(r.status_code in (200, 429) for r in responses)
    assert int(limited[0].headers["retry-after"]) >= 1 and "RCA_RATE_LIMIT_PER_MINUTE" in limited[0].text
    with httpx.Client(base_url=serve_app, timeout=60) as other:  # another client is not affected
        assert other.get("/api/stats", headers={**auth_headers("viewer"), "X-Forwarded-For": "198.51.100.77"}).status_code == 200
        deadline = time.monotonic() + 60
        body = ""
        while time.monotonic() < deadline and 'reason="rate_limited"' not in body:
            body = other.get("/metrics", headers={**auth_headers("viewer"), "X-Forwarded-For": "198.51.100.78"}).text
            time.sleep(2)
    assert 'reason="rate_limited"' in body, "refusals are counted in the metrics"
