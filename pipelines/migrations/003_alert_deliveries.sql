-- Kafka deliveries of alerts already recorded, by topic:partition:offset. When the reader retries
-- an alert whose reply was lost (stored, but the answer never came back), the store recognises the
-- delivery: it is neither counted as an Alertmanager repeat nor reported as a new incident twice.
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id           text        PRIMARY KEY,
    incident_id  uuid        NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    created      boolean     NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alert_deliveries_received_idx ON alert_deliveries (received_at);
