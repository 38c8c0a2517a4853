-- Incidents, the alerts that opened or joined them, and their analyses.
CREATE TABLE IF NOT EXISTS incidents (
    id           uuid PRIMARY KEY,
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
    alert        jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_created_idx  ON incidents (created_at DESC);
CREATE INDEX IF NOT EXISTS incidents_category_idx ON incidents (category, created_at DESC);
CREATE INDEX IF NOT EXISTS incidents_service_idx  ON incidents (service, created_at DESC);
CREATE INDEX IF NOT EXISTS incidents_severity_idx ON incidents (severity, created_at DESC);
CREATE INDEX IF NOT EXISTS incidents_open_service_idx ON incidents (service, started_at) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS incidents_fingerprint_idx ON incidents (fingerprint, started_at DESC);

CREATE TABLE IF NOT EXISTS alerts (
    id           bigserial   PRIMARY KEY,
    incident_id  uuid        NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    fingerprint  text        NOT NULL,
    starts_at    timestamptz NOT NULL,
    status       text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    repeats      integer     NOT NULL DEFAULT 1,
    payload      jsonb       NOT NULL,
    UNIQUE (fingerprint, starts_at, status)
);
CREATE INDEX IF NOT EXISTS alerts_incident_idx ON alerts (incident_id);

CREATE TABLE IF NOT EXISTS analyses (
    id               bigserial   PRIMARY KEY,
    incident_id      uuid        NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    reasoner         text        NOT NULL,
    category         text        NOT NULL,
    confidence       double precision NOT NULL,
    degraded         boolean     NOT NULL DEFAULT false,
    duration_seconds double precision,
    top_service      text,
    top_cause        text,
    summary          text        NOT NULL,
    hypotheses       jsonb       NOT NULL,
    remediation      jsonb       NOT NULL,
    body             jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS analyses_incident_idx ON analyses (incident_id, created_at DESC);
CREATE INDEX IF NOT EXISTS analyses_created_idx  ON analyses (created_at DESC);
