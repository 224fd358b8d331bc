-- The SQLite schema, created once when a command opens the store read-write
-- (crate::store::Store::create_schema). `records`, `checkpoints` and `expiries` are
-- append-only, enforced by triggers; `policy_versions` likewise.
CREATE TABLE IF NOT EXISTS records (
    seq    INTEGER PRIMARY KEY,
    id     TEXT    NOT NULL UNIQUE,
    tenant TEXT    NOT NULL,
    ts     INTEGER NOT NULL,
    sub    TEXT,
    email  TEXT,
    tool   TEXT,
    result TEXT    NOT NULL,
    event  TEXT    NOT NULL,
    json   TEXT    NOT NULL,
    tseq   INTEGER NOT NULL,
    hashes BLOB    NOT NULL,
    session_id     TEXT,
    trace_id       TEXT,
    request_id     TEXT,
    source_address TEXT
);
CREATE INDEX IF NOT EXISTS records_export ON records (tenant, ts, seq);
CREATE UNIQUE INDEX IF NOT EXISTS records_tseq ON records (tenant, tseq);
-- The correlation columns (crate::store::records::CORRELATION_COLUMNS) have no index of their
-- own: a filter on them reads the tenant's records in time order through records_export. Their
-- values are random ids, and an index of random keys costs every insert pages scattered over
-- the index (measured with the ingest bench: SQLite 12,100 records/s with four such indexes,
-- 36,200 with one, 50,700 with none).

CREATE TABLE IF NOT EXISTS checkpoints (
    tenant     TEXT    NOT NULL,
    tree_size  INTEGER NOT NULL,
    root       BLOB    NOT NULL,
    created_ms INTEGER NOT NULL,
    note       TEXT    NOT NULL,
    PRIMARY KEY (tenant, tree_size)
);
CREATE TABLE IF NOT EXISTS expiries (
    tenant     TEXT    NOT NULL,
    from_seq   INTEGER NOT NULL,
    to_seq     INTEGER NOT NULL,
    tree_size  INTEGER NOT NULL,
    cutoff_ms  INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    note       TEXT    NOT NULL,
    PRIMARY KEY (tenant, to_seq)
);
CREATE TABLE IF NOT EXISTS signing_keys (
    vkey       TEXT    PRIMARY KEY,
    created_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS api_keys (
    prefix     TEXT    PRIMARY KEY,
    hash       BLOB    NOT NULL UNIQUE,
    tenant     TEXT    NOT NULL,
    name       TEXT,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
WHEN NOT EXISTS (SELECT 1 FROM expiries WHERE tenant = OLD.tenant AND to_seq > OLD.tseq)
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_change BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS expiries_no_change BEFORE UPDATE ON expiries
BEGIN SELECT RAISE(ABORT, 'expiry notes are append-only'); END;
CREATE TRIGGER IF NOT EXISTS expiries_no_delete BEFORE DELETE ON expiries
BEGIN SELECT RAISE(ABORT, 'expiry notes are append-only'); END;
CREATE TABLE IF NOT EXISTS policy_versions (
    tenant      TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    hash        TEXT    NOT NULL,
    received_ms INTEGER NOT NULL,
    document    TEXT    NOT NULL,
    chain       BLOB    NOT NULL,
    note        TEXT    NOT NULL,
    PRIMARY KEY (tenant, version),
    UNIQUE (tenant, hash)
);
CREATE TRIGGER IF NOT EXISTS policy_versions_no_update BEFORE UPDATE ON policy_versions
BEGIN SELECT RAISE(ABORT, 'policy versions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS policy_versions_no_delete BEFORE DELETE ON policy_versions
BEGIN SELECT RAISE(ABORT, 'policy versions are append-only'); END;
