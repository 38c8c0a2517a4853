-- History that stays fast (README "History: partitions, archival, read replica").
--
-- incidents, alerts and analyses are partitioned by month of the incident's start
-- (incidents.started_at; alerts and analyses carry it as incident_started_at), so a month is
-- one table and a query with a time range reads only its months. A partitioned table's unique
-- keys must hold the partition key, so incidents' primary key is (id, started_at): the one
-- place that keeps an incident id unique on its own, and that other tables reference, is
-- incident_keys (id -> started_at, archived_at). Incidents resolved more than
-- RCA_RETENTION_DAYS ago are moved (pipelines/history.py) to *_archive tables of the same
-- columns: a column added to incidents, alerts or analyses must be added to its archive too.
-- Monthly partitions are created ahead by the app (rca_history_month, called at migrate and by
-- the daily history job); a row of a month that has none yet lands in the *_default partition
-- and is moved into its month when that month's partition is created. audit_log is untouched.

CREATE TABLE incident_keys (
    id           uuid        PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    archived_at  timestamptz
);
INSERT INTO incident_keys (id, started_at) SELECT id, started_at FROM incidents;

-- Tables that referenced incidents (or analyses) now reference incident_keys; analysis ids stay
-- unique by their sequence (a foreign key to a partitioned table would need its partition key).
ALTER TABLE feedback DROP CONSTRAINT IF EXISTS feedback_incident_id_fkey;
ALTER TABLE feedback DROP CONSTRAINT IF EXISTS feedback_analysis_id_fkey;
ALTER TABLE notification_outbox DROP CONSTRAINT IF EXISTS notification_outbox_incident_id_fkey;
ALTER TABLE alert_deliveries DROP CONSTRAINT IF EXISTS alert_deliveries_incident_id_fkey;

-- The previous tables go aside (with their indexes), their id sequences stay for the new ones.
CREATE SCHEMA rca_before_006;
ALTER SEQUENCE alerts_id_seq OWNED BY NONE;
ALTER SEQUENCE analyses_id_seq OWNED BY NONE;
ALTER TABLE analyses SET SCHEMA rca_before_006;
ALTER TABLE alerts SET SCHEMA rca_before_006;
ALTER TABLE incidents SET SCHEMA rca_before_006;

CREATE TABLE incidents (
    id           uuid        NOT NULL REFERENCES incident_keys (id) ON DELETE CASCADE,
    fingerprint  text        NOT NULL,
    alert_name   text        NOT NULL,
    service      text,
    severity     text        NOT NULL,
    status       text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    category     text,
    started_at   timestamptz NOT NULL,
    resolved_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    alert        jsonb       NOT NULL,
    PRIMARY KEY (id, started_at)
) PARTITION BY RANGE (started_at);

CREATE TABLE alerts (
    id                   bigint      NOT NULL DEFAULT nextval('alerts_id_seq'),
    incident_id          uuid        NOT NULL REFERENCES incident_keys (id) ON DELETE CASCADE,
    incident_started_at  timestamptz NOT NULL,
    fingerprint          text        NOT NULL,
    starts_at            timestamptz NOT NULL,
    status               text        NOT NULL,
    received_at          timestamptz NOT NULL DEFAULT now(),
    repeats              integer     NOT NULL DEFAULT 1,
    payload              jsonb       NOT NULL,
    PRIMARY KEY (id, incident_started_at),
    -- the store's per-service lock keeps (fingerprint, starts_at, status) to one incident
    UNIQUE (fingerprint, starts_at, status, incident_started_at)
) PARTITION BY RANGE (incident_started_at);

CREATE TABLE analyses (
    id                   bigint      NOT NULL DEFAULT nextval('analyses_id_seq'),
    incident_id          uuid        NOT NULL REFERENCES incident_keys (id) ON DELETE CASCADE,
    incident_started_at  timestamptz NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    reasoner             text        NOT NULL,
    category             text        NOT NULL,
    confidence           double precision NOT NULL,
    degraded             boolean     NOT NULL DEFAULT false,
    duration_seconds     double precision,
    top_service          text,
    top_cause            text,
    summary              text        NOT NULL,
    hypotheses           jsonb       NOT NULL,
    remediation          jsonb       NOT NULL,
    body                 jsonb       NOT NULL,
    signature            jsonb,
    PRIMARY KEY (id, incident_started_at)
) PARTITION BY RANGE (incident_started_at);

CREATE TABLE incidents_default PARTITION OF incidents DEFAULT;
CREATE TABLE alerts_default PARTITION OF alerts DEFAULT;
CREATE TABLE analyses_default PARTITION OF analyses DEFAULT;

-- The list's filters are an equality and the newest first: one index each, in every partition.
CREATE INDEX incidents_started_idx  ON incidents (started_at DESC, id);
CREATE INDEX incidents_category_idx ON incidents (category, started_at DESC, id);
CREATE INDEX incidents_service_idx  ON incidents (service, started_at DESC, id);
CREATE INDEX incidents_severity_idx ON incidents (severity, started_at DESC, id);
CREATE INDEX incidents_status_idx   ON incidents (status, started_at DESC, id);
CREATE INDEX incidents_open_service_idx ON incidents (service, started_at) WHERE status = 'open';
CREATE INDEX incidents_fingerprint_idx  ON incidents (fingerprint, started_at DESC);
CREATE INDEX incidents_resolved_idx ON incidents (resolved_at) WHERE status = 'resolved';
CREATE INDEX incidents_id_idx       ON incidents (id);
CREATE INDEX alerts_incident_idx    ON alerts (incident_id);
CREATE INDEX analyses_incident_idx  ON analyses (incident_id, created_at DESC, id DESC);
CREATE INDEX analyses_created_idx   ON analyses (created_at DESC);
CREATE INDEX analyses_unsigned_idx  ON analyses (id) WHERE signature IS NULL;
-- /api/stats?days=N reads counts and analysis durations of recent months from the index alone
-- (bench/history.py: a seq scan of a month of analyses was most of its time)
CREATE INDEX IF NOT EXISTS incidents_started_kinds_idx ON incidents (started_at) INCLUDE (category, severity);
CREATE INDEX IF NOT EXISTS analyses_started_duration_idx ON analyses (incident_started_at) INCLUDE (duration_seconds);

-- Archive: same columns, read by id (detail) and skipped by the list unless asked for.
CREATE TABLE incidents_archive (LIKE incidents INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE incidents_archive ADD PRIMARY KEY (id);
ALTER TABLE incidents_archive ADD FOREIGN KEY (id) REFERENCES incident_keys (id) ON DELETE CASCADE;
CREATE INDEX incidents_archive_started_idx ON incidents_archive (started_at DESC, id);
CREATE TABLE alerts_archive (LIKE alerts INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE alerts_archive ADD PRIMARY KEY (id);
ALTER TABLE alerts_archive ADD FOREIGN KEY (incident_id) REFERENCES incident_keys (id) ON DELETE CASCADE;
CREATE INDEX alerts_archive_incident_idx ON alerts_archive (incident_id);
CREATE TABLE analyses_archive (LIKE analyses INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE analyses_archive ADD PRIMARY KEY (id);
ALTER TABLE analyses_archive ADD FOREIGN KEY (incident_id) REFERENCES incident_keys (id) ON DELETE CASCADE;
CREATE INDEX analyses_archive_incident_idx ON analyses_archive (incident_id, created_at DESC, id DESC);

-- One month's partition of one table, [month, month + 1) in UTC; rows of that month waiting in
-- the default partition move into it first (attaching would refuse them). True if created.
CREATE OR REPLACE FUNCTION rca_history_month_of(parent text, key text, month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := (date_trunc('month', month)::timestamp) AT TIME ZONE 'UTC';
    hi timestamptz := ((date_trunc('month', month) + interval '1 month')::timestamp) AT TIME ZONE 'UTC';
    part text := format('%s_y%sm%s', parent, to_char(month, 'YYYY'), to_char(month, 'MM'));
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
    EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                   parent || '_default', key, lo, key, hi, part);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, part, lo, hi);
    RETURN true;
END;
$$;

-- The month's partitions of incidents, alerts and analyses; how many were created.
CREATE OR REPLACE FUNCTION rca_history_month(month date) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    RETURN rca_history_month_of('incidents', 'started_at', month)::integer
         + rca_history_month_of('alerts', 'incident_started_at', month)::integer
         + rca_history_month_of('analyses', 'incident_started_at', month)::integer;
END;
$$;

-- Partitions for the months the existing rows need (the latest 36 of them: older rows stay in
-- the default partition, where they are still read), then the rows, every one, with their ids.
SELECT rca_history_month(m)
FROM (SELECT DISTINCT date_trunc('month', started_at AT TIME ZONE 'UTC')::date AS m
      FROM rca_before_006.incidents ORDER BY 1 DESC LIMIT 36) months;

INSERT INTO incidents (id, fingerprint, alert_name, service, severity, status, category, started_at, resolved_at,
                       created_at, updated_at, alert)
SELECT id, fingerprint, alert_name, service, severity, status, category, started_at, resolved_at,
       created_at, updated_at, alert
FROM rca_before_006.incidents;
INSERT INTO alerts (id, incident_id, incident_started_at, fingerprint, starts_at, status, received_at, repeats, payload)
SELECT a.id, a.incident_id, i.started_at, a.fingerprint, a.starts_at, a.status, a.received_at, a.repeats, a.payload
FROM rca_before_006.alerts a JOIN rca_before_006.incidents i ON i.id = a.incident_id;
INSERT INTO analyses (id, incident_id, incident_started_at, created_at, reasoner, category, confidence, degraded,
                      duration_seconds, top_service, top_cause, summary, hypotheses, remediation, body, signature)
SELECT a.id, a.incident_id, i.started_at, a.created_at, a.reasoner, a.category, a.confidence, a.degraded,
       a.duration_seconds, a.top_service, a.top_cause, a.summary, a.hypotheses, a.remediation, a.body, a.signature
FROM rca_before_006.analyses a JOIN rca_before_006.incidents i ON i.id = a.incident_id;

DROP SCHEMA rca_before_006 CASCADE;
ALTER SEQUENCE alerts_id_seq OWNED BY alerts.id;
ALTER SEQUENCE analyses_id_seq OWNED BY analyses.id;

ALTER TABLE feedback ADD FOREIGN KEY (incident_id) REFERENCES incident_keys (id) ON DELETE CASCADE;
ALTER TABLE notification_outbox ADD FOREIGN KEY (incident_id) REFERENCES incident_keys (id) ON DELETE CASCADE;
ALTER TABLE alert_deliveries ADD FOREIGN KEY (incident_id) REFERENCES incident_keys (id) ON DELETE CASCADE;
