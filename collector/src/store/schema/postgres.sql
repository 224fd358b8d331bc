-- The PostgreSQL schema, created under an advisory lock when a collector connects
-- (crate::store::PgPool::open): SQLite's tables in PostgreSQL's types (64-bit integers, BYTEA
-- blobs, an identity column for `seq`, SQLite's rowid), the policy and webhook tables, and the
-- append-only rules.
CREATE TABLE IF NOT EXISTS records (
    seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id     TEXT    NOT NULL UNIQUE,
    tenant TEXT    NOT NULL,
    ts     BIGINT NOT NULL,
    sub    TEXT,
    email  TEXT,
    tool   TEXT,
    result TEXT    NOT NULL,
    event  TEXT    NOT NULL,
    json   TEXT    NOT NULL,
    tseq   BIGINT NOT NULL,
    hashes BYTEA    NOT NULL,
    session_id     TEXT,
    trace_id       TEXT,
    request_id     TEXT,
    source_address TEXT
);
CREATE INDEX IF NOT EXISTS records_export ON records (tenant, ts, seq);
CREATE UNIQUE INDEX IF NOT EXISTS records_tseq ON records (tenant, tseq);
-- A database from before the correlation columns gets them, NULL in its records (which have
-- no correlation fields); checked first, as ALTER TABLE would lock the table at every start.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'records' AND column_name = 'session_id') THEN
        ALTER TABLE records ADD COLUMN session_id TEXT, ADD COLUMN trace_id TEXT,
            ADD COLUMN request_id TEXT, ADD COLUMN source_address TEXT;
    END IF;
END $$;
-- The correlation columns (crate::store::records::CORRELATION_COLUMNS) have no index of their
-- own: a filter on them reads the tenant's records in time order through records_export. Their
-- values are random ids, and an index of random keys costs every insert pages scattered over
-- the index (measured with the ingest bench: SQLite 12,100 records/s with four such indexes,
-- 36,200 with one, 50,700 with none).

CREATE TABLE IF NOT EXISTS checkpoints (
    tenant     TEXT    NOT NULL,
    tree_size  BIGINT NOT NULL,
    root       BYTEA    NOT NULL,
    created_ms BIGINT NOT NULL,
    note       TEXT    NOT NULL,
    PRIMARY KEY (tenant, tree_size)
);
CREATE TABLE IF NOT EXISTS expiries (
    tenant     TEXT    NOT NULL,
    from_seq   BIGINT NOT NULL,
    to_seq     BIGINT NOT NULL,
    tree_size  BIGINT NOT NULL,
    cutoff_ms  BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    note       TEXT    NOT NULL,
    PRIMARY KEY (tenant, to_seq)
);
CREATE TABLE IF NOT EXISTS signing_keys (
    vkey       TEXT    PRIMARY KEY,
    created_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS api_keys (
    prefix     TEXT    PRIMARY KEY,
    hash       BYTEA    NOT NULL UNIQUE,
    tenant     TEXT    NOT NULL,
    name       TEXT,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
CREATE TABLE IF NOT EXISTS policy_versions (
    tenant      TEXT    NOT NULL,
    version     BIGINT NOT NULL,
    hash        TEXT    NOT NULL,
    received_ms BIGINT NOT NULL,
    document    TEXT    NOT NULL,
    chain       BYTEA    NOT NULL,
    note        TEXT    NOT NULL,
    PRIMARY KEY (tenant, version),
    UNIQUE (tenant, hash)
);
CREATE TABLE IF NOT EXISTS webhooks (
    id              TEXT    PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    events          TEXT    NOT NULL,
    format          TEXT    NOT NULL,
    hec_token       TEXT,
    max_events      BIGINT NOT NULL,
    max_wait_ms     BIGINT NOT NULL,
    secret          TEXT    NOT NULL,
    created_ms      BIGINT NOT NULL,
    enabled         BIGINT NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    last_attempt_ms BIGINT,
    last_success_ms BIGINT,
    last_error      TEXT,
    failures        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhooks_tenant ON webhooks (tenant);
CREATE TABLE IF NOT EXISTS webhook_cursors (
    webhook TEXT    NOT NULL,
    source  TEXT    NOT NULL,
    next    BIGINT NOT NULL,
    PRIMARY KEY (webhook, source)
);
-- The append-only rules in PostgreSQL: PL/pgSQL triggers raising SQLite's messages.
CREATE OR REPLACE FUNCTION acp_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0];
END $$;
-- A record may only be deleted once an expiry note covers it (retention).
CREATE OR REPLACE FUNCTION acp_records_no_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM expiries WHERE tenant = OLD.tenant AND to_seq > OLD.tseq) THEN
        RAISE EXCEPTION 'audit records are append-only';
    END IF;
    RETURN OLD;
END $$;
DROP TRIGGER IF EXISTS records_no_update ON records;
CREATE TRIGGER records_no_update BEFORE UPDATE ON records
    FOR EACH ROW EXECUTE FUNCTION acp_append_only('audit records are append-only');
DROP TRIGGER IF EXISTS records_no_delete ON records;
CREATE TRIGGER records_no_delete BEFORE DELETE ON records
    FOR EACH ROW EXECUTE FUNCTION acp_records_no_delete();
DROP TRIGGER IF EXISTS checkpoints_no_change ON checkpoints;
CREATE TRIGGER checkpoints_no_change BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION acp_append_only('checkpoints are append-only');
DROP TRIGGER IF EXISTS expiries_no_change ON expiries;
CREATE TRIGGER expiries_no_change BEFORE UPDATE OR DELETE ON expiries
    FOR EACH ROW EXECUTE FUNCTION acp_append_only('expiry notes are append-only');
DROP TRIGGER IF EXISTS policy_versions_no_change ON policy_versions;
CREATE TRIGGER policy_versions_no_change BEFORE UPDATE OR DELETE ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION acp_append_only('policy versions are append-only');
