-- Notifications outbox (pipelines/notify/): one row per (incident, channel, event), written in the
-- transaction that stores the analysis (trigger) or resolves the incident (resolve), so a stored
-- state is never without its notification and a notification never without its state. The
-- delivery worker claims due rows (FOR UPDATE SKIP LOCKED, with a lease), and records each try.
CREATE TABLE IF NOT EXISTS notification_outbox (
    id               bigserial   PRIMARY KEY,
    incident_id      uuid        NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    channel          text        NOT NULL,
    event            text        NOT NULL CHECK (event IN ('trigger', 'resolve')),
    message          jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'rejected', 'expired')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    UNIQUE (incident_id, channel, event)
);
CREATE INDEX IF NOT EXISTS notification_outbox_due_idx ON notification_outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS notification_attempts (
    id                   bigserial   PRIMARY KEY,
    outbox_id            bigint      NOT NULL REFERENCES notification_outbox (id) ON DELETE CASCADE,
    attempt              integer     NOT NULL,
    at                   timestamptz NOT NULL DEFAULT now(),
    outcome              text        NOT NULL,
    http_status          integer,
    reason               text        NOT NULL,
    retry_after_seconds  double precision,
    next_attempt_at      timestamptz
);
CREATE INDEX IF NOT EXISTS notification_attempts_outbox_idx ON notification_attempts (outbox_id);
