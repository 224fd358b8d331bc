-- The append-only rules of crate::store in PostgreSQL: PL/pgSQL triggers raising SQLite's
-- messages.
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
