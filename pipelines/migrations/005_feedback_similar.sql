-- Each analysis' signature (pipelines/similarity.py), for similar past incidents. Analyses stored
-- before this migration are signed by Store.migrate from their body (see sign_unsigned_analyses).
ALTER TABLE analyses ADD COLUMN IF NOT EXISTS signature jsonb;
CREATE INDEX IF NOT EXISTS analyses_unsigned_idx ON analyses (id) WHERE signature IS NULL;

-- Operators' verdicts on an incident's analysis: every one is kept, the latest is in force.
-- category/service/cause are the confirmed cause; confirmed_rank the hypothesis that named it
-- (NULL: none did), which is what top-1 / top-3 accuracy counts.
CREATE TABLE IF NOT EXISTS feedback (
    id              bigserial   PRIMARY KEY,
    incident_id     uuid        NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    analysis_id     bigint      REFERENCES analyses (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor           text        NOT NULL,
    rank            integer     CHECK (rank BETWEEN 1 AND 3),
    confirmed_rank  integer     CHECK (confirmed_rank BETWEEN 1 AND 3),
    category        text        NOT NULL,
    service         text,
    cause           text,
    notes           text        NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS feedback_incident_idx ON feedback (incident_id, created_at DESC, id DESC);
