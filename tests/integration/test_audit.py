"""The audit trail against a real PostgreSQL: append-only, written in the transaction of the change, filtered safely."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import asyncpg
import pytest

from pipelines import audit
from pipelines.audit import AuditContext
from pipelines.auth import Role, generate_api_key
from pipelines.schemas import Alert
from pipelines.store import ApiKeyNotFound, Store

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=timezone.utc)


def _who(name: str) -> AuditContext:
    return AuditContext(actor=name, actor_kind="jwt", role="operator", client="192.0.2.10", method="POST",
                        route="/analyze", request_id=str(uuid.uuid4()))


async def test_each_change_has_its_row_with_who_and_where(store: Store) -> None:
    who = _who(f"op-{uuid.uuid4().hex[:6]}")
    alert = Alert(name="HighErrorRate", severity="critical", timestamp=T0,
                  labels={"service": f"svc-{uuid.uuid4().hex[:6]}"},
                  annotations={"description": "token ghp_" + "a1B2c3D4" * 5})
    incident, _ = await store.record_alert(alert, who)
    await store.resolve(alert.model_copy(update={"status": "resolved"}), who)
    rows = (await store.list_audit(actor=who.actor)).items
    assert [r.action for r in reversed(rows)] == ["incident.open", "incident.resolve"]
    assert all(r.incident_id == incident.id and r.request_id == who.request_id and r.client == "192.0.2.10"
               for r in rows)
    stored = await store.get_incident(incident.id)
    assert "ghp_" not in stored.alert.annotations["description"], "the stored alert is redacted"


async def test_the_bound_request_actor_is_used_and_system_otherwise(store: Store) -> None:
    who = _who(f"bound-{uuid.uuid4().hex[:6]}")
    token = audit.bind(who)
    try:
        await store.record_alert(Alert(name="A", timestamp=T0, labels={"service": f"b-{uuid.uuid4().hex[:6]}"}))
    finally:
        audit.unbind(token)
    assert (await store.list_audit(actor=who.actor)).total == 1
    service = f"sys-{uuid.uuid4().hex[:6]}"
    incident, _ = await store.record_alert(Alert(name="A", timestamp=T0, labels={"service": service}))
    rows = (await store.list_audit(incident_id=incident.id)).items
    assert rows[0].actor == "system" and rows[0].actor_kind == "system"


async def test_audit_log_is_append_only(store: Store, database_url: str) -> None:
    await store.append_audit(audit.entry("request", context=_who("appender"), status=200))
    conn = await asyncpg.connect(database_url)
    try:
        for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log",
                          "TRUNCATE audit_log"):
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute(statement)
    finally:
        await conn.close()
    assert (await store.list_audit(actor="appender")).total >= 1


async def test_a_change_that_fails_leaves_no_audit_row_and_the_row_is_in_its_transaction(store: Store) -> None:
    """The audit row and the change commit together: a key whose insert fails has no row."""
    who = _who(f"keys-{uuid.uuid4().hex[:6]}")
    _, key_id, secret_hash = generate_api_key()
    await store.create_api_key(key_id, "first", Role.viewer, secret_hash, who)
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.create_api_key(key_id, "duplicate", Role.admin, secret_hash, who)
    rows = (await store.list_audit(actor=who.actor, action="api_key.create")).items
    assert len(rows) == 1 and rows[0].detail["name"] == "first"
    revoked = await store.revoke_api_key(key_id, who)
    again = await store.revoke_api_key(key_id, who)
    assert revoked.revoked_at == again.revoked_at, "revoking twice keeps the first time"
    assert (await store.find_api_key(key_id)).revoked
    with pytest.raises(ApiKeyNotFound):
        await store.revoke_api_key("ffffffffffff", who)


@pytest.mark.parametrize("evil", ["' OR '1'='1", "x'; DROP TABLE audit_log; --", "\x00", "$1", "%"])
async def test_audit_filters_are_parameterized(store: Store, evil: str) -> None:
    for kwargs in ({"actor": evil}, {"action": evil}, {"route": evil}, {"incident_id": evil}):
        assert (await store.list_audit(**kwargs)).total == 0
    assert (await store.list_audit(page_size=1)).total > 0, "the table is still there"
