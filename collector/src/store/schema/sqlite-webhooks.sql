-- The webhook tables on SQLite, created by `serve` and `webhook` (PostgreSQL creates them with
-- the rest of the schema).
CREATE TABLE IF NOT EXISTS webhooks (
    id              TEXT    PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    events          TEXT    NOT NULL,
    format          TEXT    NOT NULL,
    hec_token       TEXT,
    max_events      INTEGER NOT NULL,
    max_wait_ms     INTEGER NOT NULL,
    secret          TEXT    NOT NULL,
    created_ms      INTEGER NOT NULL,
    enabled         INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    last_attempt_ms INTEGER,
    last_success_ms INTEGER,
    last_error      TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhooks_tenant ON webhooks (tenant);
CREATE TABLE IF NOT EXISTS webhook_cursors (
    webhook TEXT    NOT NULL,
    source  TEXT    NOT NULL,
    next    INTEGER NOT NULL,
    PRIMARY KEY (webhook, source)
);
