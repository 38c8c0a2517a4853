-- API keys (stored hashed) and the append-only audit trail.
CREATE TABLE IF NOT EXISTS api_keys (
    key_id       text        PRIMARY KEY,
    name         text        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    secret_hash  text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text        NOT NULL,
    revoked_at   timestamptz,
    revoked_by   text
);

-- One row per API call (status = the HTTP status answered) and one per change, written in the
-- transaction of the change (status NULL: the row exists only if the change committed).
CREATE TABLE IF NOT EXISTS audit_log (
    id           bigserial   PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    request_id   uuid,
    actor        text        NOT NULL,
    actor_kind   text        NOT NULL,
    key_id       text,
    role         text,
    client       text,
    method       text,
    route        text,
    action       text        NOT NULL,
    incident_id  uuid,
    status       integer,
    detail       jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_at_idx       ON audit_log (at DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_log_actor_idx    ON audit_log (actor, at DESC);
CREATE INDEX IF NOT EXISTS audit_log_incident_idx ON audit_log (incident_id, at DESC);
CREATE INDEX IF NOT EXISTS audit_log_action_idx   ON audit_log (action, at DESC);

-- Append-only: rows can be added, never changed or removed (not even by TRUNCATE).
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
